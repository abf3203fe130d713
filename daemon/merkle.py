"""The blake3 Merkle tree over a root's indexed files.

What it guarantees:
- A file's leaf is the blake3 hash of its bytes; a directory's hash covers its sorted
  children (name, kind, hash). So two trees have the same root hash exactly when they
  hold the same paths with the same contents (up to blake3 collisions), and the same
  holds for every subtree.
- `diff` visits only directories whose hashes differ, so comparing two trees costs
  what changed between them, not what they hold.

How rcmd uses it: the file hashes persist in `state.db` (`files.hash`) and the root
hash in its `merkle_root` meta, written in the same transaction (see
`daemon/ledger.py`); the interior nodes are rebuilt from the file hashes on open
(linear in files, lazily) and checked against the persisted root. `status --verify`
builds the tree of the files on disk and diffs it against the recorded one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import blake3

_FILE = b"f"
_DIR = b"d"


def hash_bytes(data: bytes) -> bytes:
    """Content hash of one file; blake3 uses several threads for large inputs."""
    if len(data) >= 1 << 20:
        return blake3.blake3(data, max_threads=blake3.blake3.AUTO).digest()
    return blake3.blake3(data).digest()


def _parent(path: str) -> str:
    i = path.rfind("/")
    return path[:i] if i >= 0 else ""


def _name(path: str) -> str:
    return path[path.rfind("/") + 1 :]


def ancestors(path: str) -> Iterable[str]:
    """Every directory above `path`, deepest first, ending with the root ""."""
    while path:
        path = _parent(path)
        yield path


@dataclass(frozen=True, slots=True)
class MerkleDiff:
    added: tuple[str, ...]
    changed: tuple[str, ...]
    deleted: tuple[str, ...]
    #: Directories present in both trees whose hashes agreed: not descended into.
    dirs_skipped: int = 0

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.deleted)


class MerkleTree:
    """File hashes plus lazily recomputed directory hashes.

    Changing a file marks its ancestors dirty; `dir_hash` recomputes only dirty nodes,
    so an edit costs O(depth × fan-out), not O(files).
    """

    def __init__(self, files: Mapping[str, bytes] | None = None) -> None:
        self._files: dict[str, bytes] = {}
        self._children: dict[str, set[str]] = {"": set()}
        self._dirs: dict[str, bytes] = {}
        self._dirty: set[str] = {""}
        for path, digest in (files or {}).items():
            self.set_file(path, digest)

    def __len__(self) -> int:
        return len(self._files)

    @property
    def files(self) -> Mapping[str, bytes]:
        return self._files

    def set_file(self, path: str, digest: bytes) -> None:
        if self._files.get(path) == digest:
            return
        self._files[path] = digest
        child = path
        for d in ancestors(path):
            kids = self._children.setdefault(d, set())
            kids.add(child)
            self._dirty.add(d)
            child = d

    def remove_file(self, path: str) -> None:
        """Drop a file and prune the directories it leaves empty. A name may be a file
        and a directory at once while a batch swaps one for the other (`set_file` of
        `a/b` before `remove_file` of `a`), so a name leaves its parent only when it
        is neither."""
        if self._files.pop(path, None) is None:
            return
        child = path
        for d in ancestors(path):
            self._dirty.add(d)
            if child not in self._files and child not in self._children:  # gone: unlist
                kids = self._children[d]
                kids.discard(child)
                if not kids and d:
                    del self._children[d]
                    self._dirs.pop(d, None)
            child = d

    def dir_hash(self, d: str = "") -> bytes:
        if d in self._dirty or d not in self._dirs:
            h = blake3.blake3()
            for child in sorted(self._children.get(d, ()), key=_name):
                if child in self._files:
                    h.update(_FILE + _name(child).encode() + b"\0" + self._files[child])
                if child in self._children:  # a directory: a file too while swapped
                    h.update(_DIR + _name(child).encode() + b"\0" + self.dir_hash(child))
            self._dirs[d] = h.digest()
            self._dirty.discard(d)
        return self._dirs[d]

    @property
    def root_hash(self) -> str:
        return self.dir_hash("").hex()

    def diff(self, new: MerkleTree) -> MerkleDiff:
        """What changed from `self` to `new`, skipping every subtree whose hash agrees."""
        added: list[str] = []
        changed: list[str] = []
        deleted: list[str] = []
        skipped = 0
        stack = [""]
        while stack:
            d = stack.pop()
            if d in self._children and d in new._children and self.dir_hash(d) == new.dir_hash(d):
                skipped += 1
                continue
            mine = self._children.get(d, set())
            theirs = new._children.get(d, set())
            for child in sorted(mine | theirs):
                in_old_f, in_new_f = child in self._files, child in new._files
                if in_old_f and in_new_f:
                    if self._files[child] != new._files[child]:
                        changed.append(child)
                elif in_new_f:
                    added.append(child)
                elif in_old_f:
                    deleted.append(child)
                if child in self._children or child in new._children:
                    stack.append(child)
        return MerkleDiff(
            tuple(sorted(added)), tuple(sorted(changed)), tuple(sorted(deleted)), skipped
        )
