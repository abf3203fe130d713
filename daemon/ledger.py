"""A root's file bookkeeping: the records of what the indexes hold, the Merkle tree over
them, and the count of vectors still to write — kept in step with `state.db` here only.

Invariant: for every recorded path, `tree` holds the recorded hash, and `state.db`'s
`merkle_root` is the tree's root hash as of the last commit (written in the same
transaction as the records). When the two disagree on open (a crash from an older
version, a hand-edited database), the records' stat data is not trusted: the next full
scan reads and hashes every file instead of taking the stat fast path.

A second tree, over the records' stat data instead of their contents, makes a whole-root
scan a diff too (`stat_diff`): a directory whose entries all agree with their records is
skipped as a whole. The stat calls stay (a file written in place changes no directory's
mtime, so a directory's own stat cannot vouch for its files); the per-file work below an
agreeing directory does not.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from daemon.merkle import MerkleDiff, MerkleTree
from daemon.state import ChunkPatch, ChunkRow, FileRecord, PendingVector, StateDB

if TYPE_CHECKING:
    from daemon.graph_rows import TableRows

log = structlog.get_logger("rcmd.ledger")


def _disk_leaf(st: os.stat_result) -> bytes:
    return struct.pack("<qqqQ", st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _record_leaf(r: FileRecord) -> bytes:
    """A record's stat leaf; one whose ctime is unknown (schema 1) is shorter, so it
    equals no disk leaf and its file is read once."""
    if r.ctime_ns is None:
        return struct.pack("<qqQ", r.size, r.mtime_ns, r.inode)
    return struct.pack("<qqqQ", r.size, r.mtime_ns, r.ctime_ns, r.inode)


class FileLedger:
    def __init__(self, state: StateDB) -> None:
        self._state = state
        self._records = state.files()
        self._tree = MerkleTree({p: r.hash for p, r in self._records.items()})
        self._vectors_pending = state.pending_count()
        #: Symbol graphs of files read but not recorded yet, by path: (content hash, graph).
        self._graphs: dict[str, tuple[bytes, TableRows]] = {}
        persisted = state.get_meta("merkle_root")
        #: The records' stat data as a tree, built on the first whole-root scan.
        self._stat_tree: MerkleTree | None = None
        #: Set when the persisted root hash disagrees with the records.
        self._distrust_stat = persisted is not None and persisted != self._tree.root_hash
        if self._distrust_stat:
            log.warning("merkle_root_mismatch", state=str(state.path), recorded=persisted)

    # ---- reads ----
    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, path: object) -> bool:
        return path in self._records

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._records))

    def get(self, path: str) -> FileRecord | None:
        return self._records.get(path)

    def chunks_of(self, paths: Iterable[str]) -> int:
        return sum(r.chunks for p in paths if (r := self._records.get(p)) is not None)

    def under(self, in_scope: Callable[[str], bool]) -> list[str]:
        """Recorded paths for which `in_scope` holds."""
        return [p for p in self._records if in_scope(p)]

    @property
    def root_hash(self) -> str:
        return self._tree.root_hash

    @property
    def vectors_pending(self) -> int:
        """Chunks recorded whose vectors are not written yet (a lexical-first batch's)."""
        return self._vectors_pending

    def diff(self, other: MerkleTree) -> MerkleDiff:
        """What differs from the recorded tree to `other` (e.g. the tree on disk)."""
        return self._tree.diff(other)

    # ---- the stat fast path ----
    def unchanged(self, path: str, st: os.stat_result) -> bool:
        """Whether `path`'s (size, mtime, ctime, inode) match its record, so it need not
        be read. The ctime catches a same-size edit whose mtime was set back (`cp -p`,
        `touch -r`): setting the mtime changes it, as git's index relies on."""
        rec = self._records.get(path)
        return not self._distrust_stat and rec is not None and rec.stat_agrees(st)

    def stat_diff(self, present: Mapping[str, os.stat_result]) -> MerkleDiff | None:
        """Files whose stat data differs from their records (`added`, `changed`) and
        recorded files not `present` (`deleted`), by diffing the records' stat tree
        against the disk's: directories that agree are skipped as a whole. None when the
        stat data is not trusted: every file must then be read."""
        if self._distrust_stat:
            return None
        if self._stat_tree is None:
            self._stat_tree = MerkleTree({p: _record_leaf(r) for p, r in self._records.items()})
        disk = MerkleTree({p: _disk_leaf(st) for p, st in present.items()})
        return self._stat_tree.diff(disk)

    def _track_stat(self, records: Iterable[FileRecord], deleted: Iterable[str] = ()) -> None:
        if self._stat_tree is None:
            return
        for p in deleted:
            self._stat_tree.remove_file(p)
        for r in records:
            self._stat_tree.set_file(r.path, _record_leaf(r))

    def is_stale(self, root: Path, path: str) -> bool:
        """Whether `path` changed on disk (or went) since it was recorded: one lstat, no
        read, so a search can flag hits whose lines may have moved (an unknown ctime
        does not: the file was as recorded when its record was last checked)."""
        rec = self._records.get(path)
        try:
            st = os.lstat(os.path.join(root, path))
        except OSError:
            return True
        return rec is None or not rec.stat_agrees(st, unknown=True)

    def same_content(self, path: str, st: os.stat_result, digest: bytes) -> bool:
        """If `path` was read and its hash is the recorded one, refresh its stat data
        (so the next scan skips it) and say so; the indexes need nothing."""
        old = self._records.get(path)
        if old is None or old.hash != digest:
            return False
        same = FileRecord.of(path, st, digest, old.chunks)
        self._state.update_stat([same])
        self._records[path] = same
        self._track_stat([same])
        return True

    def full_scan_done(self) -> None:
        """Every file was compared by content: the stat data can be trusted again."""
        self._distrust_stat = False

    # ---- writes ----
    def stage_graph(self, path: str, digest: bytes, graph: TableRows) -> None:
        """Hold the symbol graph of `path` as read with hash `digest` until its record is
        committed: the graph is then written in the same transaction as its chunks."""
        self._graphs[path] = (digest, graph)

    def _take_graphs(self, files: list[FileRecord], deleted: list[str]) -> dict[str, TableRows]:
        out: dict[str, TableRows] = {}
        for f in files:
            staged = self._graphs.pop(f.path, None)
            if staged is not None and staged[0] == f.hash:
                out[f.path] = staged[1]
        for p in deleted:
            self._graphs.pop(p, None)
        return out

    def commit(
        self,
        files: list[FileRecord],
        chunks: list[ChunkRow],
        deleted: list[str],
        skipped: dict[str, tuple[str, str]],
        vectors_later: list[PendingVector],
        patches: list[ChunkPatch] | None = None,
        checked: Collection[str] = (),
    ) -> None:
        """Record what the indexes now hold (after their commit): state.db, the records
        and the tree change together, or not at all; `checked` files' graph rows are
        compared with those state.db holds (a forced reindex). Removals go first, as in
        state.db, so a file swapped for a directory of its name is never both at once."""
        for p in deleted:
            self._tree.remove_file(p)
        for f in files:
            self._tree.set_file(f.path, f.hash)
        try:
            self._state.record(
                files,
                chunks,
                deleted,
                skipped,
                vectors_later,
                merkle_root=self._tree.root_hash,
                patches=patches or (),
                graphs=self._take_graphs(files, deleted),
                checked=checked,
            )
        except BaseException:
            self._restore_tree([f.path for f in files] + deleted)
            raise
        for p in deleted:
            self._records.pop(p, None)
        for f in files:
            self._records[f.path] = f
        self._track_stat(files, deleted)
        self._vectors_pending = self._state.pending_count()

    def vectors_written(self, ids: list[str]) -> None:
        """These pending chunks' vectors are flushed to the vector store."""
        self._state.vectors_written(ids)
        self._vectors_pending = max(0, self._vectors_pending - len(ids))

    def reset(self) -> None:
        """Forget every record (the indexes were emptied)."""
        self._state.clear()
        self._records.clear()
        self._graphs.clear()
        self._tree = MerkleTree()
        self._stat_tree = None
        self._state.set_meta("merkle_root", self._tree.root_hash)
        self._vectors_pending = 0
        self._distrust_stat = False

    def _restore_tree(self, paths: list[str]) -> None:
        for p in paths:
            rec = self._records.get(p)
            if rec is None:
                self._tree.remove_file(p)
            else:
                self._tree.set_file(p, rec.hash)
