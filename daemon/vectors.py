"""The vector side: one small store interface, two backends.

`EdgeStore` (default) runs Qdrant's engine in-process with its WAL and segments;
`ServerStore` talks to a Qdrant server through qdrant-client for users who outgrow one
machine. Point ids are the chunk ids (UUIDs derived from root, path and symbol), so a
replayed batch overwrites instead of duplicating.

Edge segments stay plain (no HNSW): `EdgeShard.optimize()` holds the GIL for its whole
run (seconds to minutes with HNSW) and would freeze the daemon, so it is never called in
the daemon's process; deleted points are vacuumed by a child process instead.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import structlog

from daemon.config import VectorStoreConfig

log = structlog.get_logger("rcmd.vectors")


@dataclass(frozen=True, slots=True)
class VectorPoint:
    chunk_id: str  # 32 hex digits
    path: str
    kind: str
    vector: npt.NDArray[np.float32]


def point_id(chunk_id: str) -> str:
    return str(uuid.UUID(hex=chunk_id))


def chunk_id_of(pid: Any) -> str:
    """The chunk id of a point id (Qdrant Edge gives a `uuid.UUID`, a server a string)."""
    return pid.hex if isinstance(pid, uuid.UUID) else uuid.UUID(str(pid)).hex


def _ids_by_path(scroll: Callable[[Any], tuple[Sequence[Any], Any]]) -> dict[str, set[str]]:
    """Page through every point (`scroll(offset)` → records, next offset) into path → ids."""
    out: dict[str, set[str]] = {}
    offset: Any = None
    while True:
        records, offset = scroll(offset)
        for r in records:
            out.setdefault(str((r.payload or {}).get("path")), set()).add(chunk_id_of(r.id))
        if offset is None:
            return out


class VectorStore(Protocol):
    def upsert(self, points: Sequence[VectorPoint]) -> None: ...
    def delete_paths(self, paths: Iterable[str]) -> None: ...
    def delete_ids(self, chunk_ids: Sequence[str]) -> None: ...
    def delete_all(self) -> None: ...
    def flush(self) -> None: ...
    def search(self, vector: npt.NDArray[np.float32], limit: int) -> list[tuple[str, float]]: ...
    def ids_by_path(self) -> dict[str, set[str]]: ...
    def dump(self) -> Iterator[tuple[str, list[float]]]: ...
    def count(self) -> int: ...
    def vacuum(self) -> float: ...
    def close(self) -> None: ...


#: Run in a child process: `optimize()` holds the GIL for its whole run, so vacuuming in
#: the daemon would freeze every request. With indexing disabled it only drops deleted
#: points (measured: 0.37 s for 30k points with 30k deletions; HNSW would take 16 s).
_VACUUM_SCRIPT = """
import sys
import qdrant_edge as qe
shard = qe.EdgeShard.load(sys.argv[1])
shard.optimize()
shard.flush()
shard.close()
"""


#: Search threads of each shard. Qdrant Edge starts 8 by default, for every shard: with a
#: root per dependency crate (`index --deps`), 30 crates were 248 idle threads. The
#: segments are plain (brute force over a few segments), so two threads keep a search of
#: medium (38k vectors) in milliseconds.
SEARCH_THREADS = 2
#: Points a page of ids: medium's 38,871 took 0.17 s in pages of 1,000, 0.07 s of 5,000.
ID_PAGE = 5000
#: Free bytes every Edge write must find on the state disk, beyond `BYTES_PER_DIM` a
#: dimension of each point written (measured: ~3 KB a 384-dim point, WAL record and
#: stored copy). Edge writes its WAL and segments through memory maps of sparse files,
#: and a page a full disk cannot give is a SIGBUS that kills the daemon, not an error
#: (regex's 2,220 vectors on an 8 MB state disk); refused before, the write fails the
#: batch as a full disk does elsewhere, and its retry lands once there is room.
WRITE_RESERVE_BYTES = 4 << 20
BYTES_PER_DIM = 16


class EdgeStore:
    """Qdrant Edge shard in a folder of the root's state dir.

    Segments stay plain (`indexing_threshold=0`: no HNSW), so `optimize()` is a vacuum of
    deleted points, and it runs in a child process (see `vacuum`).
    """

    def __init__(self, path: Path, dim: int) -> None:
        import qdrant_edge as qe

        self._qe = qe
        self.path = path
        self._dim = dim
        config = qe.EdgeConfig(
            # On disk: read through the page cache as touched. In RAM (the default), each
            # segment's first 32 MB storage chunk is populated when the shard loads, even
            # when nearly empty: 31 roots were 1 GB of RSS after a restart. Search speed
            # is the same (38k vectors: p50 2.0 ms either way).
            vectors=qe.EdgeVectorParams(
                size=dim,
                distance=qe.Distance.Cosine,
                datatype=qe.VectorStorageDatatype.Float16,
                on_disk=True,
            ),
            optimizers=qe.EdgeOptimizersConfig(indexing_threshold=0),
            max_search_threads=SEARCH_THREADS,
        )
        self._shard: Any
        if path.exists() and any(path.iterdir()):
            _need_room(path, 0)  # loading replays the WAL into memory-mapped segments
            try:  # the config given again: shards made before SEARCH_THREADS get it too
                self._shard = qe.EdgeShard.load(str(path), config)
            except Exception:
                log.warning("vector_config_not_updated", path=str(path), exc_info=True)
                self._shard = qe.EdgeShard.load(str(path))
        else:
            # The folder's own disk where it exists (an empty mount point of another,
            # full disk was checked on its parent's, and the create SIGBUSed).
            _need_room(path if path.is_dir() else path.parent, 0)
            self._shard = qe.EdgeShard.create(str(path), config)
            self._shard.update(
                qe.UpdateOperation.create_field_index("path", qe.PayloadSchemaType.Keyword)
            )
        #: Whether an update came since the last flush (a flush of nothing still costs
        #: tens of ms, and most saves write no vector: theirs is embedded afterwards).
        self._unflushed = True

    def _path_filter(self, path: str) -> Any:
        qe = self._qe
        return qe.Filter(must=[qe.FieldCondition(key="path", match=qe.MatchValue(path))])

    def upsert(self, points: Sequence[VectorPoint]) -> None:
        if not points:
            return
        qe = self._qe
        self._update(
            qe.UpdateOperation.upsert_points(
                [
                    qe.Point(
                        point_id(p.chunk_id),
                        p.vector.tolist(),
                        {"path": p.path, "kind": p.kind},
                    )
                    for p in points
                ]
            ),
            len(points),
        )

    def delete_paths(self, paths: Iterable[str]) -> None:
        for p in paths:
            self._update(self._qe.UpdateOperation.delete_points_by_filter(self._path_filter(p)))

    def delete_ids(self, chunk_ids: Sequence[str]) -> None:
        if chunk_ids:
            self._update(self._qe.UpdateOperation.delete_points([point_id(c) for c in chunk_ids]))

    def delete_all(self) -> None:
        self._update(self._qe.UpdateOperation.delete_points_by_filter(self._qe.Filter()))

    def _update(self, op: Any, points: int = 0) -> None:
        _need_room(self.path, points * self._dim * BYTES_PER_DIM)
        self._unflushed = True
        self._shard.update(op)

    def flush(self) -> None:
        if self._unflushed:
            self._shard.flush()
            self._unflushed = False

    def search(self, vector: npt.NDArray[np.float32], limit: int) -> list[tuple[str, float]]:
        """Nearest chunks; empty while a vacuum has the shard closed (hybrid then uses BM25)."""
        qe = self._qe
        shard = self._shard
        if shard is None:
            return []
        try:
            hits = shard.query(
                qe.QueryRequest(
                    limit=limit, query=qe.Query.Nearest(vector.tolist()), with_payload=False
                )
            )
        except Exception:
            if self._shard is None:  # closed under us by a vacuum
                return []
            raise
        return [(chunk_id_of(h.id), float(h.score)) for h in hits]

    def ids_by_path(self) -> dict[str, set[str]]:
        qe = self._qe
        return _ids_by_path(
            lambda offset: self._shard.scroll(
                qe.ScrollRequest(offset=offset, limit=ID_PAGE, with_payload=["path"])
            )
        )

    def dump(self) -> Iterator[tuple[str, list[float]]]:
        """Every (chunk id, vector) the shard holds, a page at a time (for a snapshot)."""
        qe = self._qe
        offset: Any = None
        while True:
            records, offset = self._shard.scroll(
                qe.ScrollRequest(offset=offset, limit=1000, with_payload=False, with_vector=True)
            )
            for r in records:
                yield chunk_id_of(r.id), list(r.vector)
            if offset is None:
                return

    def count(self) -> int:
        return int(self._shard.count(self._qe.CountRequest(exact=True)))

    def vacuum(self) -> float:
        """Drop deleted points in a child process; returns its seconds.

        The shard is closed meanwhile: the caller holds the root's lock (no writes), and
        vector searches return nothing until it reopens.
        """
        import subprocess
        import sys
        import time

        # Flushed while still attached: a flush a full disk refuses left the store
        # closed for good (vector searches found nothing, every write failed).
        self._shard.flush()
        shard, self._shard = self._shard, None
        t = time.perf_counter()
        try:
            shard.close()
            proc = subprocess.run(
                [sys.executable, "-c", _VACUUM_SCRIPT, str(self.path)],
                capture_output=True,
                text=True,
                timeout=3600,
            )
        finally:
            self._shard = self._qe.EdgeShard.load(str(self.path))  # raises: the store is broken
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"vacuum child exited with {proc.returncode}: {tail[0]}")
        return time.perf_counter() - t

    def close(self) -> None:
        if self._shard is not None:
            self._shard.flush()
            self._shard.close()
            self._shard = None


def _need_room(path: Path, size: int) -> None:
    """Raise ENOSPC unless `path`'s disk has `size` bytes free beyond WRITE_RESERVE_BYTES."""
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    if free < size + WRITE_RESERVE_BYTES:
        raise OSError(
            errno.ENOSPC,
            f"No space left on device ({free >> 10} KiB free; vector writes keep "
            f"{WRITE_RESERVE_BYTES >> 20} MiB free)",
            str(path),
        )


class ServerStore:
    """A collection on a Qdrant server (`[vector_store] url = ...`)."""

    def __init__(self, cfg: VectorStoreConfig, root_id: str, dim: int) -> None:
        from qdrant_client import QdrantClient, models

        self._m = models
        # `location` takes a URL, or ":memory:" for qdrant-client's in-process mode (tests).
        self._client = QdrantClient(location=cfg.url, api_key=cfg.api_key or None)
        self.collection = f"{cfg.collection_prefix}_{root_id}"
        if not self._client.collection_exists(self.collection):
            self._client.create_collection(
                self.collection,
                vectors_config=models.VectorParams(
                    size=dim, distance=models.Distance.COSINE, datatype=models.Datatype.FLOAT16
                ),
            )
            self._client.create_payload_index(
                self.collection, "path", models.PayloadSchemaType.KEYWORD
            )

    def _path_selector(self, path: str | None) -> Any:
        m = self._m
        must = (
            [] if path is None else [m.FieldCondition(key="path", match=m.MatchValue(value=path))]
        )
        return m.FilterSelector(filter=m.Filter(must=must))

    def upsert(self, points: Sequence[VectorPoint]) -> None:
        if points:
            self._client.upsert(
                self.collection,
                [
                    self._m.PointStruct(
                        id=point_id(p.chunk_id),
                        vector=p.vector.tolist(),
                        payload={"path": p.path, "kind": p.kind},
                    )
                    for p in points
                ],
                wait=True,
            )

    def delete_paths(self, paths: Iterable[str]) -> None:
        for p in paths:
            self._client.delete(self.collection, self._path_selector(p), wait=True)

    def delete_ids(self, chunk_ids: Sequence[str]) -> None:
        if chunk_ids:
            self._client.delete(
                self.collection,
                self._m.PointIdsList(points=[point_id(c) for c in chunk_ids]),
                wait=True,
            )

    def delete_all(self) -> None:
        self._client.delete(self.collection, self._path_selector(None), wait=True)

    def flush(self) -> None:
        """Writes are acknowledged with wait=True; nothing is buffered here."""

    def search(self, vector: npt.NDArray[np.float32], limit: int) -> list[tuple[str, float]]:
        hits = self._client.query_points(
            self.collection, query=vector.tolist(), limit=limit, with_payload=False
        ).points
        return [(chunk_id_of(h.id), float(h.score)) for h in hits]

    def ids_by_path(self) -> dict[str, set[str]]:
        return _ids_by_path(
            lambda offset: self._client.scroll(
                self.collection, limit=ID_PAGE, offset=offset, with_payload=["path"]
            )
        )

    def dump(self) -> Iterator[tuple[str, list[float]]]:
        """Every (chunk id, vector) of the collection, a page at a time (for a snapshot)."""
        offset: Any = None
        while True:
            records, offset = self._client.scroll(
                self.collection, limit=1000, offset=offset, with_payload=False, with_vectors=True
            )
            for r in records:
                yield chunk_id_of(r.id), list(r.vector)  # type: ignore[arg-type]
            if offset is None:
                return

    def count(self) -> int:
        return int(self._client.count(self.collection, exact=True).count)

    def vacuum(self) -> float:
        """The server's own optimizers vacuum its segments."""
        return 0.0

    def close(self) -> None:
        self._client.close()


def open_store(
    cfg: VectorStoreConfig, path: Path, root_id: str, dim: int, *, check: bool = True
) -> VectorStore:
    """The root's store; with `check`, an in-process one's files are read through first
    (`read_through`): not when a parked store is opened again, which this
    daemon closed itself (a first `--deps` search reopens hundreds)."""
    if cfg.url:
        return ServerStore(cfg, root_id, dim)
    store = EdgeStore(path, dim)
    try:
        if check:
            read_through(store)
    except Exception:
        with contextlib.suppress(Exception):
            store.close()
        raise
    return store


def read_through(store: VectorStore) -> dict[str, set[str]]:
    """The store's ids by path, once every stored vector has been read (one search with
    a stored vector: the segments are plain) and every payload: ids and payloads can be
    whole while the vectors are not. At open, damaged files are found where the root is
    rebuilt from its files, and in `verify` they are named (a truncated vector file
    failed every search in words, of every root, while verify said ok)."""
    first = next(iter(store.dump()), None)
    if first is not None:
        store.search(np.asarray(first[1], dtype=np.float32), 1)
    return store.ids_by_path()
