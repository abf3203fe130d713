"""Snapshots on disk: stage a root's committed index as the members of the format
(`daemon.snapshot_format`), pack a staged folder into one file, and unpack a file from
anywhere into a private folder, refusing whatever the format does not allow as it reads.
"""

from __future__ import annotations

import json
import os
import stat
import tarfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import blake3
import numpy as np

from daemon.chunk_cache import ChunkCache
from daemon.embed_cache import cache_key
from daemon.embed_groups import EmbedPolicy, embedded_texts
from daemon.merkle import MerkleTree
from daemon.root import RootIndex, build_layout
from daemon.snapshot_format import (
    CHUNKS,
    FORMAT_VERSION,
    MANIFEST,
    PENDING,
    VECTOR_IDS,
    VECTORS,
    FileEntry,
    Limits,
    Manifest,
    MemberEntry,
    check_counts,
    check_member,
    tree_nodes,
)
from daemon.state import ChunkRow, StateDB
from ipc import __version__
from ipc.errors import BadRequest, NotFound, StateError

#: Chunk rows read from state.db per query (SQLite caps the parameters of one query).
ROWS_PER_QUERY = 5000
_COPY_BYTES = 1 << 20


def write_jsonl(path: Path, rows: Iterable[list[Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")


def read_jsonl(path: Path) -> Iterator[object]:
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                yield json.loads(line)
            except ValueError:
                raise BadRequest(f"snapshot {path.name} line {n} is not JSON") from None
            except RecursionError:
                raise BadRequest(f"snapshot {path.name} line {n} nests too deeply") from None


def file_digest(path: Path) -> tuple[int, str]:
    h = blake3.blake3()
    size = 0
    with path.open("rb") as f:
        while block := f.read(_COPY_BYTES):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


def all_chunk_rows(state: StateDB) -> dict[str, ChunkRow]:
    ids = sorted(cid for group in state.chunk_ids_by_path().values() for cid in group)
    rows: dict[str, ChunkRow] = {}
    for start in range(0, len(ids), ROWS_PER_QUERY):
        rows.update(state.chunk_rows(ids[start : start + ROWS_PER_QUERY]))
    return rows


def _cache_keys(
    rows: dict[str, ChunkRow],
    files: dict[str, FileEntry],
    chunks: ChunkCache,
    model_id: str,
    policy: EmbedPolicy,
) -> dict[str, str]:
    """Embedding-cache key (hex) by chunk id, for the chunks whose embedded text the chunk
    cache still knows (it holds chunk lists by file content); matched by place and name,
    since ids depend on the root a chunk was first written under."""
    by_path: dict[str, list[ChunkRow]] = {}
    for row in rows.values():
        by_path.setdefault(row.path, []).append(row)
    keys: dict[str, str] = {}
    for path, group in by_path.items():
        listed = chunks.get(path, files[path].hash)
        if listed is None:
            continue
        embedded = embedded_texts(listed, policy)
        texts = {
            (c.start_line, c.end_line, c.symbol, c.kind): text
            for c, text in zip(listed, embedded, strict=True)
        }
        for row in group:
            text = texts.get((row.start_line, row.end_line, row.symbol, row.kind))
            if text is not None:
                keys[row.id] = cache_key(model_id, text).hex()
    return keys


def _write_vectors(
    root: RootIndex, stage: Path, wanted: set[str], keys: dict[str, str], dim: int
) -> list[str]:
    ids: list[str] = []
    with (stage / VECTORS).open("wb") as out:
        for cid, vector in root.vectors.dump():
            if cid not in wanted:
                continue
            if len(vector) != dim:
                raise StateError(f"{root.path}: a vector of {len(vector)} dimensions, not {dim}")
            out.write(np.asarray(vector, dtype="<f2").tobytes())
            ids.append(cid)
    write_jsonl(stage / VECTOR_IDS, ([cid, keys.get(cid)] for cid in ids))
    return ids


def stage_export(
    root: RootIndex,
    stage: Path,
    model: tuple[str, int],
    chunk_cache: ChunkCache | None,
    git_commit: str | None,
) -> Manifest:
    """Write `root`'s committed index into the empty folder `stage` as snapshot members,
    manifest last. The caller holds the root's lock, so no batch writes meanwhile."""
    model_id, dim = model
    root.vectors.flush()
    records = root.state.files()
    files = {p: FileEntry(p, r.size, r.hash, r.chunks) for p, r in sorted(records.items())}
    rows = all_chunk_rows(root.state)
    write_jsonl(stage / CHUNKS, ([*_row_fields(r)] for r in sorted(rows.values(), key=_order)))
    pending = root.state.pending_vectors(1 << 62)
    write_jsonl(stage / PENDING, ([v.id, v.path, v.kind, v.embed_text] for v in pending))
    keys = {}
    if chunk_cache is not None:
        keys = _cache_keys(rows, files, chunk_cache, model_id, root.policy)
    waiting = {v.id for v in pending}
    ids = _write_vectors(root, stage, set(rows) - waiting, keys, dim)
    try:
        check_counts(files.values(), rows, waiting, ids)
    except BadRequest as exc:
        raise StateError(
            f"{root.path}'s index is inconsistent ({exc}); run: rcmd status --verify"
        ) from None
    tree = MerkleTree({p: f.hash for p, f in files.items()})
    members = [MemberEntry(p.name, *file_digest(p)) for p in sorted(stage.iterdir())]
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        rcmd_version=__version__,
        created_at=time.time(),
        layout=tuple(sorted(build_layout(model_id, dim, root.policy).items())),
        git_commit=git_commit,
        merkle_root=tree.root_hash,
        tree=tuple(tree_nodes(tree, files).items()),
        files=tuple(files.values()),
        members=tuple(members),
    )
    (stage / MANIFEST).write_text(json.dumps(manifest.to_json(), separators=(",", ":")))
    return manifest


def _row_fields(r: ChunkRow) -> tuple[Any, ...]:
    return (r.id, r.path, r.start_line, r.end_line, r.symbol, r.kind, r.signature, r.text)


def _order(r: ChunkRow) -> tuple[str, int, str]:
    return (r.path, r.start_line, r.id)


def check_export_target(out: Path) -> None:
    """Refuse any target but a new or regular file in an existing folder: a snapshot
    replaces its path whole (written beside it, then renamed over it), which would turn
    a device such as /dev/null, a pipe, a socket or a folder into a file. `out` is
    resolved, so a link to one of those is refused as well."""
    if not out.parent.is_dir():
        raise NotFound(f"{out.parent} is not a directory; give a file in an existing one")
    try:
        mode = out.stat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise BadRequest(f"cannot write {out}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise BadRequest(f"{out} is {kind}; give the path of a new snapshot file")


def pack(stage: Path, out: Path) -> int:
    """Pack a staged snapshot into `out` (gzip'd tar, manifest first, no owner names or
    modes of this machine), atomically; its size in bytes. The file is private (0600),
    like the state it comes from: it holds the code's text."""
    names = [MANIFEST, *sorted(p.name for p in stage.iterdir() if p.name != MANIFEST)]
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as tar,
        ):
            for name in names:
                info = tar.gettarinfo(str(stage / name), arcname=name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o644
                with (stage / name).open("rb") as f:
                    tar.addfile(info, f)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out.stat().st_size


def _kind(m: tarfile.TarInfo) -> str:
    if m.isreg():
        return "file"
    if m.isdir():
        return "dir"
    if m.issym():
        return "symlink"
    if m.islnk():
        return "hardlink"
    if m.ischr() or m.isblk() or m.isfifo():
        return "device"
    return "other"


def _extract_one(src: IO[bytes], target: Path, size: int) -> str:
    """Copy exactly `size` bytes into a new file (never through a link); their blake3."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    h = blake3.blake3()
    left = size
    with os.fdopen(fd, "wb") as out:
        while left > 0:
            block = src.read(min(_COPY_BYTES, left))
            if not block:
                raise BadRequest(f"snapshot member {target.name} is truncated")
            h.update(block)
            out.write(block)
            left -= len(block)
    return h.hexdigest()


def read_manifest(path: Path) -> object:
    """The manifest's JSON (checked by `parse_manifest`)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("snapshot manifest is not JSON") from None
    except RecursionError:  # json nests a level per bracket, on the C stack's budget
        raise BadRequest("snapshot manifest nests too deeply") from None


def declared_sizes(manifest: object) -> dict[str, int]:
    """Each member's size as the manifest states it: no other member is unpacked past
    that (a gzip bomb is refused by its header, before a byte of it is inflated)."""
    members = manifest.get("members") if isinstance(manifest, dict) else None
    if not isinstance(members, dict):
        raise BadRequest("snapshot manifest: members must be an object")
    return {
        str(name): info["size"]
        for name, info in members.items()
        if isinstance(info, dict) and type(info.get("size")) is int
    }


def _check_declared(m: tarfile.TarInfo, declared: dict[str, int] | None) -> None:
    """The manifest comes first, and every later member is the size it declares."""
    if declared is None:
        if m.name != MANIFEST:
            raise BadRequest(f"snapshot starts with {m.name}, not its {MANIFEST}")
        return
    size = declared.get(m.name)
    if size is None:
        raise BadRequest(f"snapshot member {m.name} is not listed in its manifest")
    if m.size != size:
        raise BadRequest(f"snapshot member {m.name} is {m.size} bytes; its manifest says {size}")


def unpack(file: Path, dest: Path, limits: Limits) -> dict[str, tuple[int, str]]:
    """Unpack snapshot `file` into the empty folder `dest`, checking each member before a
    byte of it is written (the manifest first, then each member at its declared size);
    name → (size, blake3) of what was written."""
    found: dict[str, tuple[int, str]] = {}
    declared: dict[str, int] | None = None
    total = 0
    try:
        with tarfile.open(file, "r|gz") as tar:
            for m in tar:
                if len(found) >= limits.members:
                    raise BadRequest(f"snapshot has more than {limits.members} members")
                check_member(m.name, _kind(m), m.size, limits)
                if m.name in found:
                    raise BadRequest(f"snapshot member {m.name} appears twice")
                _check_declared(m, declared)
                total += m.size
                if total > limits.total_bytes:
                    raise BadRequest(f"snapshot unpacks to over {limits.total_bytes} bytes")
                src = tar.extractfile(m)
                assert src is not None  # a regular file, checked above
                found[m.name] = (m.size, _extract_one(src, dest / m.name, m.size))
                if declared is None:
                    declared = declared_sizes(read_manifest(dest / MANIFEST))
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise BadRequest(f"{file} is not a readable rcmd snapshot: {exc}") from None
    if MANIFEST not in found:
        raise BadRequest(f"{file} has no {MANIFEST}; it is not an rcmd snapshot")
    return found
