"""The one definition of a snapshot's on-disk schema (`rcmd export`, `rcmd index --from`),
and the pure checks that a snapshot from anywhere must pass before a byte of it is used.

A snapshot is a gzip'd tar of regular files only, every name relative and from the list
below (nothing absolute, no `..`, no links or devices):

- `manifest.json` — format and rcmd versions, the layout the indexes were built under
  (model id, embedded-text version, chunk policy), creation time, the git commit of a
  checkout, the per-file records (path, size, blake3, chunks), the Merkle tree's node
  hashes, and each other member's size and blake3.
- `chunks.jsonl` — one `[id, path, start_line, end_line, symbol, kind, signature, text]`
  per chunk (state.db's chunk rows).
- `pending.jsonl` — one `[id, path, kind, embed_text]` per chunk whose vector was not
  written yet (a lexical-first batch's).
- `vectors.jsonl` + `vectors.f16` — one `[chunk id, embedding-cache key or null]` per
  vector, and the vectors themselves, float16 little-endian, row by row. The keys are
  informational: adoption puts a snapshot's vectors in its root's store only, never in
  the shared embedding cache (`daemon.snapshot_check`).

Paths in records are relative to the root; the snapshot names no absolute path.

The Tantivy index is not shipped: adoption writes it from the chunk rows of the files
that still match (a few seconds for rust-src's `library/alloc`), so the BM25 statistics
are those of a cold index of the same tree (a shipped index would carry the tombstones
of every file the catch-up rewrites, which shift BM25 scores until Tantivy happens to
merge them away), and no binary index file from elsewhere is ever opened.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from daemon.merkle import MerkleTree, ancestors
from daemon.state import ChunkRow, PendingVector
from ipc.errors import BadRequest
from ipc.kinds import KINDS

FORMAT = "rcmd-snapshot"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CHUNKS = "chunks.jsonl"
PENDING = "pending.jsonl"
VECTOR_IDS = "vectors.jsonl"
VECTORS = "vectors.f16"
DATA_MEMBERS = (CHUNKS, PENDING, VECTOR_IDS, VECTORS)

_HEX64 = re.compile(r"[0-9a-f]{64}")
_CHUNK_ID = re.compile(r"[0-9a-f]{32}")
_CACHE_KEY = re.compile(r"[0-9a-f]{32}")
#: C0 and C1 controls: no symbol, kind or signature the chunker makes holds one, and
#: one in a name shown on a terminal (an ANSI escape) could rewrite what it shows.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class Limits:
    """What an unpacked snapshot may hold: a tar whose headers or contents exceed these is
    refused while it is read, before it can fill the disk."""

    member_bytes: int = 4 << 30
    total_bytes: int = 16 << 30
    members: int = 100_000
    manifest_bytes: int = 512 << 20


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str
    size: int
    hash: bytes
    chunks: int


@dataclass(frozen=True, slots=True)
class MemberEntry:
    name: str
    size: int
    blake3: str


@dataclass(frozen=True, slots=True)
class Manifest:
    format_version: int
    rcmd_version: str
    created_at: float
    layout: tuple[tuple[str, str], ...]
    git_commit: str | None
    merkle_root: str
    tree: tuple[tuple[str, str], ...]
    files: tuple[FileEntry, ...]
    members: tuple[MemberEntry, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": self.format_version,
            "rcmd_version": self.rcmd_version,
            "created_at": self.created_at,
            "layout": dict(self.layout),
            "git_commit": self.git_commit,
            "merkle_root": self.merkle_root,
            "tree": dict(self.tree),
            "files": [[f.path, f.size, f.hash.hex(), f.chunks] for f in self.files],
            "members": {m.name: {"size": m.size, "blake3": m.blake3} for m in self.members},
        }


def tree_nodes(tree: MerkleTree, paths: Iterable[str]) -> dict[str, str]:
    """Every directory node hash of `tree` (the root is "")."""
    dirs = {d for p in paths for d in ancestors(p)} | {""}
    return {d: tree.dir_hash(d).hex() for d in sorted(dirs)}


# ---- members ----
def check_member(name: str, kind: str, size: int, limits: Limits) -> None:
    """Refuse a tar member that is not a regular file with an expected relative name, or
    that is larger than the limits allow; `kind` is "file", "dir", "symlink",
    "hardlink", "device" or "other"."""
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        raise BadRequest(f"snapshot member {name!r} has an absolute path; refusing the snapshot")
    if ".." in name.split("/"):
        raise BadRequest(f"snapshot member {name!r} climbs out with '..'; refusing the snapshot")
    if kind != "file":
        raise BadRequest(f"snapshot member {name!r} is a {kind}, not a file; refusing the snapshot")
    if name not in (MANIFEST, *DATA_MEMBERS):
        raise BadRequest(f"snapshot member {name!r} is not part of the format; refusing it")
    cap = limits.manifest_bytes if name == MANIFEST else limits.member_bytes
    if size < 0 or size > cap:
        raise BadRequest(f"snapshot member {name!r} is {size} bytes, over the {cap} allowed")


def check_members(manifest: Manifest, found: Mapping[str, tuple[int, str]]) -> None:
    """The unpacked members (name → (size, blake3)) are exactly the manifest's, with the
    sizes and hashes it states."""
    listed = {m.name: m for m in manifest.members}
    for name in sorted(set(found) - {MANIFEST}):
        entry = listed.get(name)
        if entry is None:
            raise BadRequest(f"snapshot member {name} is not listed in its manifest")
        size, digest = found[name]
        if size != entry.size:
            raise BadRequest(
                f"snapshot member {name} is {size} bytes; its manifest says {entry.size}"
            )
        if digest != entry.blake3:
            raise BadRequest(f"snapshot member {name} does not match the hash in its manifest")
    missing = sorted(set(listed) - set(found))
    if missing:
        raise BadRequest(f"snapshot lacks {', '.join(missing[:3])}, listed in its manifest")
    for required in DATA_MEMBERS:
        if required not in listed:
            raise BadRequest(f"snapshot lacks its {required}")


# ---- manifest ----
def _want(cond: bool, what: str) -> None:
    if not cond:
        raise BadRequest(f"snapshot manifest: {what}")


def check_rel_path(path: object) -> str:
    """A record's path: relative, `/`-separated, no empty, `.` or `..` part, no NUL."""
    _want(isinstance(path, str) and 0 < len(path) <= 4096, f"bad path {path!r}")
    assert isinstance(path, str)
    parts = path.split("/")
    ok = not path.startswith("/") and "\0" not in path and "" not in parts
    _want(
        ok and "." not in parts and ".." not in parts, f"path {path!r} is not a plain relative path"
    )
    return path


def _int(value: object, what: str, lo: int = 0) -> int:
    _want(type(value) is int and value >= lo, f"{what} must be an integer >= {lo}")
    assert isinstance(value, int)
    return value


def _file_entry(row: object) -> FileEntry:
    _want(
        isinstance(row, list) and len(row) == 4, "a file record must be [path, size, hash, chunks]"
    )
    assert isinstance(row, list)
    path, size, digest, chunks = row
    _want(
        isinstance(digest, str) and _HEX64.fullmatch(digest) is not None, f"bad hash for {path!r}"
    )
    return FileEntry(
        check_rel_path(path), _int(size, "size"), bytes.fromhex(digest), _int(chunks, "chunks")
    )


def _str_map(value: object, what: str) -> tuple[tuple[str, str], ...]:
    _want(isinstance(value, dict), f"{what} must be an object")
    assert isinstance(value, dict)
    _want(
        all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()), f"{what}: strings"
    )
    return tuple(sorted(value.items()))


def _member_entries(value: object) -> tuple[MemberEntry, ...]:
    _want(isinstance(value, dict), "members must be an object")
    assert isinstance(value, dict)
    out = []
    for name, info in value.items():
        _want(isinstance(info, dict), f"member {name!r} must be an object")
        digest = info.get("blake3")
        _want(
            isinstance(digest, str) and _HEX64.fullmatch(digest) is not None,
            f"bad hash of {name!r}",
        )
        out.append(MemberEntry(str(name), _int(info.get("size"), f"size of {name!r}"), digest))
    return tuple(sorted(out, key=lambda m: m.name))


def parse_manifest(data: object) -> Manifest:
    """The manifest, checked field by field (types, paths, hashes) and against itself:
    its Merkle root and every node hash must be those of its file records."""
    _want(isinstance(data, dict), "not a JSON object")
    assert isinstance(data, dict)
    _want(data.get("format") == FORMAT, f"not an {FORMAT} file")
    version = data.get("format_version")
    _want(
        version == FORMAT_VERSION, f"format version {version!r}; this rcmd reads {FORMAT_VERSION}"
    )
    files_raw = data.get("files")
    _want(isinstance(files_raw, list), "files must be a list")
    assert isinstance(files_raw, list)
    files = tuple(_file_entry(r) for r in files_raw)
    _want(len({f.path for f in files}) == len(files), "a path is recorded twice")
    commit = data.get("git_commit")
    _want(commit is None or isinstance(commit, str), "git_commit must be a string or null")
    created = data.get("created_at")
    _want(isinstance(created, int | float), "created_at must be a number")
    assert isinstance(created, int | float)
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        rcmd_version=str(data.get("rcmd_version", "")),
        created_at=float(created),
        layout=_str_map(data.get("layout"), "layout"),
        git_commit=commit,
        merkle_root=str(data.get("merkle_root", "")),
        tree=_str_map(data.get("tree"), "tree"),
        files=files,
        members=_member_entries(data.get("members")),
    )
    check_tree(manifest)
    return manifest


def check_tree(manifest: Manifest) -> None:
    """The stated Merkle root and node hashes are those of the file records."""
    tree = MerkleTree({f.path: f.hash for f in manifest.files})
    if tree.root_hash != manifest.merkle_root:
        raise BadRequest("snapshot manifest: its Merkle root does not match its file records")
    if tree_nodes(tree, (f.path for f in manifest.files)) != dict(manifest.tree):
        raise BadRequest("snapshot manifest: its Merkle node hashes do not match its file records")


def check_layout(manifest: Manifest, layout: Mapping[str, str]) -> None:
    """Refuse a snapshot built under another embedding model, text layout or chunk policy:
    its vectors and chunks would not be what this daemon makes. The lexical version does
    not matter: adoption writes Tantivy afresh from the chunk rows."""
    theirs = dict(manifest.layout)
    for key, mine in layout.items():
        if key != "lexical" and theirs.get(key) != mine:
            raise BadRequest(
                f"snapshot was made with {key} {theirs.get(key)!r}, this daemon uses {mine!r}; "
                "index the folder without --from"
            )


# ---- data rows ----
def _row_want(cond: bool, what: str) -> None:
    if not cond:
        raise BadRequest(f"snapshot {CHUNKS}: {what}; refusing the snapshot")


def chunk_row(row: object, files: Mapping[str, FileEntry]) -> ChunkRow:
    _want(isinstance(row, list) and len(row) == 8, "a chunk row must have 8 fields")
    assert isinstance(row, list)
    cid, path, start, end, symbol, kind, signature, text = row
    _want(isinstance(cid, str) and _CHUNK_ID.fullmatch(cid) is not None, f"bad chunk id {cid!r}")
    _want(isinstance(path, str) and path in files, f"chunk of an unrecorded path {path!r}")
    _want(all(isinstance(s, str) for s in (symbol, kind, signature, text)), "chunk text fields")
    _row_want(kind in KINDS, f"chunk {cid} has the unknown kind {kind!r}")
    _row_want(
        not any(_CONTROL.search(s) for s in (symbol, signature)),
        f"chunk {cid} has a control character in its symbol or signature",
    )
    first, last = _int(start, "start_line", 1), _int(end, "end_line", 1)
    _row_want(first <= last, f"chunk {cid} starts at line {first}, after its end {last}")
    return ChunkRow(cid, path, first, last, symbol, kind, signature, text)


def pending_row(row: object, chunks: Mapping[str, ChunkRow]) -> PendingVector:
    _want(isinstance(row, list) and len(row) == 4, "a pending row must have 4 fields")
    assert isinstance(row, list)
    cid, path, kind, text = row
    chunk = chunks.get(cid) if isinstance(cid, str) else None
    _want(chunk is not None and chunk.path == path, f"pending vector of an unknown chunk {cid!r}")
    _want(isinstance(kind, str) and isinstance(text, str), "pending row text fields")
    assert chunk is not None
    _want(kind == chunk.kind, f"pending vector of {cid} is of another kind than its chunk")
    return PendingVector(cid, path, kind, text)


def vector_row(row: object) -> tuple[str, bytes | None]:
    _want(isinstance(row, list) and len(row) == 2, "a vector row must be [chunk id, key]")
    assert isinstance(row, list)
    cid, key = row
    _want(isinstance(cid, str) and _CHUNK_ID.fullmatch(cid) is not None, f"bad chunk id {cid!r}")
    ok_key = key is None or (isinstance(key, str) and _CACHE_KEY.fullmatch(key) is not None)
    _want(ok_key, f"bad cache key for {cid}")
    return cid, bytes.fromhex(key) if key is not None else None


def check_counts(
    files: Iterable[FileEntry],
    chunks: Mapping[str, ChunkRow],
    pending: Iterable[str],
    vectors: list[str],
) -> None:
    """Each file has as many chunk rows as its record says, and every chunk has exactly one
    of a vector or a pending row."""
    per_path: dict[str, int] = {}
    for c in chunks.values():
        per_path[c.path] = per_path.get(c.path, 0) + 1
    for f in files:
        if per_path.get(f.path, 0) != f.chunks:
            raise BadRequest(
                f"snapshot: {f.path} records {f.chunks} chunks, holds {per_path.get(f.path, 0)}"
            )
    waiting = set(pending)
    have = set(vectors)
    if len(have) != len(vectors) or have & waiting or have | waiting != set(chunks):
        raise BadRequest("snapshot: its vectors and pending rows do not cover its chunks once each")
