"""Symbol graphs of big batches from a worker process (daemon.graph_pool): the same rows
as in process, the worker gone when the batch ends, and a dead worker costing nothing
but the in-process extraction."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from daemon.graph import graph_of, navigate
from daemon.graph_pool import GraphPool, extract
from daemon.graph_rows import rows_of
from daemon.pipeline import _collect_graphs, _Pending, run_batch
from daemon.state import FileRecord


def _with_pool(collab: Any, pool: GraphPool) -> Any:
    """The collaborators with `pool`, taking every batch of one file or more."""
    index = dataclasses.replace(collab.config.index, graph_worker_files=1)
    config = dataclasses.replace(collab.config, index=index)
    return dataclasses.replace(collab, config=config, graph_pool=pool)


def _rows(root: Any) -> list[tuple[Any, ...]]:
    with root.state.reading() as db:
        return sorted(
            db.execute(
                "SELECT f.path, r.name, r.written, r.kind, r.enclosing, r.targets, r.lines "
                "FROM sym_refs r JOIN sym_files f ON f.id = r.file"
            )
        )


def test_a_workers_graph_is_the_one_extracted_in_process(crate: Path) -> None:
    src = (crate / "src" / "net" / "retry.rs").read_bytes()
    rows, blob = extract("src/net/retry.rs", src)
    assert rows == rows_of(graph_of("src/net/retry.rs", src))
    assert blob


def test_a_big_batch_writes_the_same_graph_through_the_worker(setup: Any) -> None:
    crate, collab, open_root = setup
    root = open_root()
    run_batch(root, None, collab)
    in_process = _rows(root)
    pool = GraphPool()
    run_batch(root, None, _with_pool(collab, pool), force=True)
    assert _rows(root) == in_process and in_process
    assert not pool.running  # the worker ends with the batch
    with root.state.reading() as conn:
        hits = navigate([(conn, str(crate), None, root.crate_names())], "def", "MemoryStore", 5)
    assert [h["kind"] for h in hits["results"]] == ["struct"]


def test_a_dead_worker_leaves_the_graph_to_the_pipeline(setup: Any) -> None:
    _crate, collab, open_root = setup
    root = open_root()
    pool = GraphPool()
    job = pool.submit("src/lib.rs", b"fn a() {}\n")
    assert job is not None and job.result()
    for child in multiprocessing.active_children():
        os.kill(child.pid or 0, signal.SIGKILL)
    with_pool = _with_pool(collab, pool)
    run_batch(root, None, with_pool)
    assert _rows(root)  # extracted in process once the pool refused the first file
    assert not pool.running


def test_a_failed_job_is_extracted_in_process(setup: Any) -> None:
    crate, _collab, open_root = setup
    root = open_root()
    src = (crate / "src" / "net" / "retry.rs").read_bytes()
    job: Future[Any] = Future()
    job.set_exception(BrokenProcessPool("worker killed"))
    pending = _Pending(GraphPool())
    pending.graph_jobs.append(("src/net/retry.rs", b"digest", src, job))
    _collect_graphs(root, pending, None)
    assert not pending.graph_jobs
    record = FileRecord("src/net/retry.rs", len(src), 1, 1, b"digest", 0)
    staged = root.ledger._take_graphs([record], [])  # what its commit would write
    assert staged == {"src/net/retry.rs": rows_of(graph_of("src/net/retry.rs", src))}


_PARENT = """
import multiprocessing, sys, time
from daemon.graph_pool import GraphPool
pool = GraphPool()
pool.submit("src/lib.rs", b"fn a() {}").result()
print(multiprocessing.active_children()[0].pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting for its reaper has ended)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\\nState:\\tZ" not in status


def test_the_worker_ends_when_the_daemon_is_killed() -> None:
    """A daemon killed outright closes nothing its worker reads from: the worker must
    notice on its own, not wait for work forever."""
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        assert _alive(worker)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 30
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker)
