"""Dependency roots let go of their open stores while nobody asks them.

A project indexed with `--deps` brings one root per crate version (200–400 for a real
service), read-only and searched only when `--deps` is given. Open, each kept a Tantivy
index (its meta.json watcher thread polls twice a second) and a Qdrant Edge shard (two
search threads, a descriptor): 50 crates were 151 idle threads and ~150 wake-ups a
second (`python -m bench depscale`, docs/PERFORMANCE.md). A dependency root unused for
`[index] dependency_idle_s` is parked: both stores are closed, and opened again by the
next search or batch that needs them (~10 ms a root, nearly all of it the shard's load,
so a session of `--deps` searches pays it once). Project roots never park.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import structlog

from daemon.vectors import VectorPoint, VectorStore
from ipc.errors import StateError

if TYPE_CHECKING:
    from daemon.indexer import Indexer
    from daemon.registry import Registry

log = structlog.get_logger("rcmd.parking")

#: Why a parked store is not opened again: its files were deleted meanwhile, and Tantivy
#: and Edge would make new, empty ones there (the next start finds them missing and
#: rebuilds them from the files).
GONE_WHILE_PARKED = (
    "is gone since the root was parked; restart the daemon (rcmd stop) to rebuild it"
)


class ParkableVectors:
    """A vector store opened by `opener`, closed by `park` while no call is inside it and
    opened again by the next call. The first open is made here, so a damaged store is
    found when the root opens, as before (`opener(True)`; a reopen is `opener(False)`)."""

    def __init__(self, opener: Callable[[bool], VectorStore]) -> None:
        self._opener = opener
        self._lock = threading.Lock()
        self._store: VectorStore | None = opener(True)
        self._users = 0
        self._closed = False

    @contextmanager
    def _use(self) -> Iterator[VectorStore]:
        with self._lock:
            if self._closed:
                raise StateError("the vector store is closed (its root was removed)")
            if self._store is None:
                self._store = self._opener(False)
            self._users += 1
            store = self._store
        try:
            yield store
        finally:
            with self._lock:
                self._users -= 1

    @property
    def parked(self) -> bool:
        return self._store is None

    def park(self) -> bool:
        """Close the store unless a call is inside it; whether it was closed now. Closed
        under the lock: a call that reopens it meanwhile would find the shard still
        held by the one closing. A close that fails (its flush, on a full disk) keeps
        the store, still attached and in use: dropped, it was loaded again beside the
        shard it still held, and `parked` said it was closed."""
        with self._lock:
            if self._store is None or self._users:
                return False
            self._store.close()
            self._store = None
            return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            store, self._store = self._store, None
            if store is not None:
                store.close()

    def upsert(self, points: Sequence[VectorPoint]) -> None:
        with self._use() as s:
            s.upsert(points)

    def delete_paths(self, paths: Iterable[str]) -> None:
        with self._use() as s:
            s.delete_paths(paths)

    def delete_ids(self, chunk_ids: Sequence[str]) -> None:
        with self._use() as s:
            s.delete_ids(chunk_ids)

    def delete_all(self) -> None:
        with self._use() as s:
            s.delete_all()

    def flush(self) -> None:
        with self._lock:
            store = self._store
        if store is not None:  # a parked store was flushed when it closed
            with self._use() as s:
                s.flush()

    def search(self, vector: npt.NDArray[np.float32], limit: int) -> list[tuple[str, float]]:
        with self._use() as s:
            return s.search(vector, limit)

    def ids_by_path(self) -> dict[str, set[str]]:
        with self._use() as s:
            return s.ids_by_path()

    def dump(self) -> Iterator[tuple[str, list[float]]]:
        with self._use() as s:
            yield from s.dump()

    def count(self) -> int:
        with self._use() as s:
            return s.count()

    def vacuum(self) -> float:
        with self._use() as s:
            return s.vacuum()


class IdleClock:
    """When a root was last used (a search, a navigation, a batch), for `park`."""

    def __init__(self) -> None:
        self._at = time.monotonic()

    def touch(self) -> None:
        self._at = time.monotonic()

    def idle_for(self) -> float:
        return time.monotonic() - self._at


def park_idle(registry: Registry, indexer: Indexer, idle_s: float) -> int:
    """Park every dependency root that nothing has used for `idle_s` and that has no
    work queued; how many were parked now. Called on the daemon's status tick."""
    parked = 0
    try:
        roots = registry.roots()  # a root added meanwhile: the next tick sees it
    except RuntimeError:
        return 0
    for root in roots:
        if registry.deps.crate_of(root.path) is None:
            continue  # a parked root is parked again: a status call read its state.db
        try:
            if root.clock.idle_for() >= idle_s and indexer.idle(root.id):
                parked += root.park()
        except Exception:  # a store that fails to close stays open; tried again later
            log.exception("park_failed", root=str(root.path))
    if parked:
        log.info("dependency_roots_parked", roots=parked)
    return parked
