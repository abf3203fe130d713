"""Adopt an unpacked snapshot as a root's index, then hand the catch-up to the pipeline.

`install` reads and checks every member (`daemon.snapshot_format`), diffs the snapshot's
Merkle tree against the files on disk, and builds the root's state folder beside the
snapshot from the files that still match: state.db from their records (stat data from
disk, so the first scan passes them by), Tantivy from their chunk rows, a fresh Qdrant
shard from their vectors. The caller renames the folder into place: a failure at any
step leaves no half root.

Before anything is written, the chunk rows of the matching files are checked against
those files and a sample of the vectors against the local model (`daemon.snapshot_check`).

Catch-up is the diff: changed and new files are all the first scan reads, chunks and
writes (deleted ones were never installed), and of their chunks only the texts the
embedding cache lacks go through the model. The snapshot's vectors go into the root's
own vector store only, never into the shared embedding cache.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from daemon.embed_groups import EmbedPolicy
from daemon.graph import GRAPH_REVISION_KEY, graph_layout, graph_of, graph_revision
from daemon.graph_rows import TableRows, rows_of
from daemon.ignore import IgnoreRules
from daemon.lexical import LexicalIndex
from daemon.lexical_writes import LexicalDoc
from daemon.merkle import MerkleDiff, MerkleTree, hash_bytes
from daemon.regular import read_regular
from daemon.snapshot import read_jsonl, read_manifest
from daemon.snapshot_check import (
    Embed,
    Sampled,
    check_file_rows,
    check_pending,
    check_vectors,
    pick,
)
from daemon.snapshot_format import (
    CHUNKS,
    MANIFEST,
    PENDING,
    VECTOR_IDS,
    VECTORS,
    Manifest,
    check_counts,
    check_layout,
    check_members,
    chunk_row,
    parse_manifest,
    pending_row,
    vector_row,
)
from daemon.state import ChunkRow, FileRecord, PendingVector, StateDB
from daemon.vectors import EdgeStore, VectorPoint
from ipc.errors import BadRequest

#: Points written to the new shard per update.
UPSERT_BATCH = 1000


@dataclass(frozen=True, slots=True)
class SeedReport:
    """Where a root's index came from and what the Merkle diff left to catch up."""

    source: str
    files_same: int
    files_changed: int
    files_added: int
    files_deleted: int

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class InstallContext:
    layout: Mapping[str, str]
    dim: int
    max_file_bytes: int
    policy: EmbedPolicy
    #: The daemon's embedder: a sample of the snapshot's vectors is made again with it.
    embed: Embed


@dataclass(frozen=True, slots=True)
class _Contents:
    manifest: Manifest
    chunks: dict[str, ChunkRow]
    pending: list[PendingVector]
    vector_ids: list[str]
    vectors: npt.NDArray[np.float16]


def _read_contents(
    snap: Path, found: Mapping[str, tuple[int, str]], ctx: InstallContext
) -> _Contents:
    """Every member parsed and checked: manifest, member hashes, rows, counts, vectors."""
    manifest = parse_manifest(read_manifest(snap / MANIFEST))
    check_layout(manifest, ctx.layout)
    check_members(manifest, found)
    files = {f.path: f for f in manifest.files}
    chunks: dict[str, ChunkRow] = {}
    for row in read_jsonl(snap / CHUNKS):
        c = chunk_row(row, files)
        if c.id in chunks:
            raise BadRequest(f"snapshot: chunk {c.id} appears twice")
        chunks[c.id] = c
    pending = [pending_row(r, chunks) for r in read_jsonl(snap / PENDING)]
    pairs = [vector_row(r) for r in read_jsonl(snap / VECTOR_IDS)]
    ids = [cid for cid, _key in pairs]
    check_counts(manifest.files, chunks, (p.id for p in pending), ids)
    vectors = np.fromfile(snap / VECTORS, dtype="<f2")
    if vectors.size != len(ids) * ctx.dim:
        raise BadRequest(f"snapshot: {VECTORS} does not hold {len(ids)} vectors of {ctx.dim}")
    vectors = vectors.reshape(len(ids), ctx.dim)
    if not np.isfinite(vectors).all():
        raise BadRequest(f"snapshot: {VECTORS} holds values that are not finite")
    return _Contents(manifest, chunks, pending, ids, vectors)


def _write_lexical(folder: Path, chunks: Iterable[ChunkRow]) -> None:
    index = LexicalIndex(folder)
    try:
        index.add(
            LexicalDoc(
                c.id, c.path, c.kind, c.symbol, c.signature, c.text, c.start_line, c.end_line
            )
            for c in chunks
        )
        index.commit()
    finally:
        index.close()


def _write_vectors(folder: Path, contents: _Contents, keep: set[str], dim: int) -> None:
    store = EdgeStore(folder, dim)
    try:
        rows = [i for i, cid in enumerate(contents.vector_ids) if contents.chunks[cid].path in keep]
        for start in range(0, len(rows), UPSERT_BATCH):
            points = []
            for i in rows[start : start + UPSERT_BATCH]:
                c = contents.chunks[contents.vector_ids[i]]
                vector = contents.vectors[i].astype(np.float32)
                points.append(VectorPoint(c.id, c.path, c.kind, vector))
            store.upsert(points)
        store.flush()
    finally:
        store.close()


def disk_hashes(root: Path, max_bytes: int) -> dict[str, tuple[os.stat_result, bytes]]:
    """(stat, blake3) of every indexable file under `root` (links not followed; files
    over `max_bytes` left for the pipeline to skip)."""
    out: dict[str, tuple[os.stat_result, bytes]] = {}
    for rel, _st in IgnoreRules(root).walk(""):
        try:
            data, st = read_regular(root / rel, max_bytes)
        except OSError:
            continue
        if data is not None:
            out[rel] = (st, hash_bytes(data))
    return out


def catch_up_records(
    manifest: Manifest, disk: Mapping[str, tuple[os.stat_result, bytes]]
) -> tuple[list[FileRecord], MerkleDiff]:
    """The records of the snapshot's files whose content is on disk unchanged, with their
    stat data from disk, and the Merkle diff from the snapshot's tree to the disk's."""
    theirs = MerkleTree({f.path: f.hash for f in manifest.files})
    diff = theirs.diff(MerkleTree({p: h for p, (_st, h) in disk.items()}))
    differs = set(diff.changed) | set(diff.deleted)
    records = []
    for f in manifest.files:
        if f.path not in differs:
            records.append(FileRecord.of(f.path, disk[f.path][0], f.hash, f.chunks))
    return records, diff


def disk_graphs(
    root: Path,
    records: list[FileRecord],
    check: Callable[[str, bytes], None],
    sampled: set[str],
) -> tuple[dict[str, TableRows], dict[str, bytes]]:
    """The symbol graph of each recorded file whose bytes on disk still hash as
    recorded (a snapshot holds no graph: it is a function of the files, rebuilt here),
    after `check(path, bytes)` of what the snapshot says of it; and the bytes of the
    `sampled` files, whose vectors are checked next."""
    out: dict[str, TableRows] = {}
    kept: dict[str, bytes] = {}
    for rec in records:
        try:
            data, _st = read_regular(root / rec.path, rec.size)
        except OSError:
            continue
        if data is not None and hash_bytes(data) == rec.hash:
            check(rec.path, data)
            out[rec.path] = rows_of(graph_of(rec.path, data))
            if rec.path in sampled:
                kept[rec.path] = data
    return out, kept


def _file_checks(contents: _Contents, policy: EmbedPolicy) -> Callable[[str, bytes], None]:
    """What is checked of each file adopted, given its bytes: its chunk rows hold its
    lines, and its pending vectors name its chunks' texts."""
    rows: dict[str, list[ChunkRow]] = {}
    for c in contents.chunks.values():
        rows.setdefault(c.path, []).append(c)
    waiting: dict[str, list[tuple[ChunkRow, str]]] = {}
    for v in contents.pending:
        waiting.setdefault(v.path, []).append((contents.chunks[v.id], v.embed_text))

    def check(path: str, data: bytes) -> None:
        check_file_rows(path, data, rows.get(path, ()))
        check_pending(data, waiting.get(path, ()), policy)

    return check


def _sample(contents: _Contents, paths: set[str]) -> list[Sampled]:
    """A random few of the vectors of the chunks of `paths` (the files adopted)."""
    chunks, ids = contents.chunks, contents.vector_ids
    return pick(
        [
            Sampled(chunks[c], contents.vectors[i])
            for i, c in enumerate(ids)
            if chunks[c].path in paths
        ]
    )


def _write_state(
    path: Path,
    contents: _Contents,
    records: list[FileRecord],
    ctx: InstallContext,
    report: SeedReport,
    graphs: dict[str, TableRows],
) -> None:
    keep = {r.path for r in records}
    tree = MerkleTree({r.path: r.hash for r in records})
    state = StateDB(path)
    try:
        # Every graph row is made here, by this extraction: the revision is current.
        current = {**ctx.layout, **graph_layout(), GRAPH_REVISION_KEY: graph_revision()}
        for key, value in current.items():
            state.set_meta(key, value)
        state.record(
            records,
            (c for c in contents.chunks.values() if c.path in keep),
            [],
            {},
            (p for p in contents.pending if p.path in keep),
            tree.root_hash,
            graphs=graphs,
        )
        state.set_meta("seeded_from", report.source)
        state.set_meta("seed", json.dumps(report.to_json()))
    finally:
        state.close()


def install(
    snap: Path,
    found: Mapping[str, tuple[int, str]],
    build: Path,
    root: Path,
    ctx: InstallContext,
    source: str,
) -> SeedReport:
    """Check the unpacked snapshot in `snap` and build the state folder of `root` in
    `build` (which must not exist) from what of it matches the files on disk."""
    contents = _read_contents(snap, found, ctx)
    records, diff = catch_up_records(contents.manifest, disk_hashes(root, ctx.max_file_bytes))
    report = SeedReport(source, len(records), len(diff.changed), len(diff.added), len(diff.deleted))
    sample = _sample(contents, {r.path for r in records})
    check = _file_checks(contents, ctx.policy)
    graphs, data = disk_graphs(root, records, check, {s.row.path for s in sample})
    records = [r for r in records if r.path in graphs]  # changed since hashed: index it again
    keep = {r.path for r in records}
    check_vectors([s for s in sample if s.row.path in keep], data, ctx.policy, ctx.embed)
    build.mkdir()
    _write_lexical(build / "tantivy", (c for c in contents.chunks.values() if c.path in keep))
    _write_vectors(build / "qdrant", contents, keep, ctx.dim)
    _write_state(build / "state.db", contents, records, ctx, report, graphs)
    (build / "root.txt").write_text(str(root) + "\n")
    return report
