"""Symbol graphs of a big batch, extracted in a worker process.

The graph of a file costs about as much as its chunks, and the pipeline is one thread
held by the GIL: on a cold index of ~1,000 files the graph added ~45% to the time until
BM25 covered the tree. A worker process extracts it on another CPU while the pipeline
chunks and writes, and hands back the graph as its rows (with their encoding for the
chunk cache), so the main thread only writes them. The rows still land in the
commit that records the file's chunks: the pipeline collects a commit's graphs before
it records them.

Only for batches of many files and only with a second CPU to run on; an edit's graph is
extracted in process, from the tree its incremental parse made. The worker starts with
the first file sent and stops when the batch ends. A worker that dies leaves the pool
failed for the rest of the batch: its files' graphs are extracted in process.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor

import structlog

from daemon.graph import graph_of
from daemon.graph_rows import TableRows, encode_rows, rows_of

log = structlog.get_logger("rcmd.graph_pool")

#: How often a worker checks that the daemon that started it is still there.
_PARENT_POLL_S = 0.5


def exit_with_parent(parent: int) -> None:
    """Worker start-up: end the worker when the daemon is gone. A daemon killed outright
    (SIGKILL, OOM) closes nothing the worker reads, and it would wait for work forever."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL_S)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def extract(rel_path: str, data: bytes) -> tuple[TableRows, bytes]:
    """The worker's job: a file's graph as its rows (they unpickle in a fifth of the
    time the records take), and encoded as the chunk cache keeps them."""
    rows = rows_of(graph_of(rel_path, data))
    return rows, encode_rows(rows)


class GraphPool:
    """One worker process, started on demand and stopped by `release`."""

    def __init__(self) -> None:
        self._executor: ProcessPoolExecutor | None = None
        self._failed = False

    @property
    def running(self) -> bool:
        return self._executor is not None

    def submit(self, rel_path: str, data: bytes) -> Future[tuple[TableRows, bytes]] | None:
        """The future graph of one file; None when the worker cannot take it (the caller
        then extracts it itself)."""
        if self._failed:
            return None
        try:
            if self._executor is None:
                # Spawned, not forked: the daemon runs threads (server, watcher, model).
                context = multiprocessing.get_context("spawn")
                self._executor = ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=context,
                    initializer=exit_with_parent,
                    initargs=(os.getpid(),),
                )
            return self._executor.submit(extract, rel_path, data)
        except Exception:  # a broken pool, or no process could be started
            self.fail()
            return None

    def fail(self) -> None:
        """Stop sending work for this batch (the worker died or refused a file)."""
        if not self._failed:
            log.warning("graph_worker_failed")
        self._failed = True

    def release(self) -> None:
        """End the batch: stop the worker (a later batch starts another) and forget a
        failure."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self._failed = False
