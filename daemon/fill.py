"""Background embedding: the vectors of chunks a lexical-first batch left pending.

Steps run back to back on the model: while one step embeds (on the embedder's own
threads, which release the GIL), this thread writes the step before it to the vector
store and clears its pending rows. Its vectors go to the embedding cache first, before
the next step looks its texts up there. Writing each step after it had embedded, with
both CPUs idle meanwhile, cost 4–5% of a cold index. The next step is read past a
(path, id) cursor, because the rows of steps written but not yet flushed are still
pending.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from daemon.activity import Activity
from daemon.embed_cache import Vector
from daemon.metrics import BatchReport
from daemon.pipeline import Collaborators, Lookup, crash_point, embedded, look_up
from daemon.root import RootIndex
from daemon.state import PendingVector
from daemon.vectors import VectorPoint


@dataclass(frozen=True, slots=True)
class _Step:
    todo: list[PendingVector]
    look: Lookup
    running: Future[dict[int, Vector]]


def fill_vectors(
    root: RootIndex, collab: Collaborators, should_yield: Callable[[], bool]
) -> BatchReport:
    """Embed the chunks recorded as pending, a step at a time, until none is left or
    `should_yield` says newer work waits (checked before each text, so an edit
    elsewhere waits for the texts running, not a step). A step's points are written when
    it ends (searchable) and flushed at most every `commit_interval_s`, as Tantivy
    commits; pending rows are cleared only after their flush, so a crash repeats at most
    one interval's steps (their texts come back from the embedding cache)."""
    report = BatchReport()
    root.progress.begin(Activity.EMBEDDING, chunks=root.ledger.vectors_pending)
    unflushed: list[str] = []
    flushed_at = time.monotonic()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rcmd-fill") as model:
        start = functools.partial(_start, root, collab, report, model, should_yield)
        step = None if should_yield() else start(None)
        while step is not None:
            vectors = embedded(step.look, step.running.result(), collab, report)
            done = [v for v in step.todo if v.id in vectors]
            after = (step.todo[-1].path, step.todo[-1].id)
            complete = len(done) == len(step.todo)  # else stopped for newer work
            step = start(after) if complete and not should_yield() else None
            _write(root, done, vectors, report)
            unflushed += [v.id for v in done]
            if time.monotonic() - flushed_at >= collab.config.index.commit_interval_s:
                _flush(root, unflushed, report)
                unflushed, flushed_at = [], time.monotonic()
        _flush(root, unflushed, report)
    root.progress.end()
    return report


def _start(
    root: RootIndex,
    collab: Collaborators,
    report: BatchReport,
    model: ThreadPoolExecutor,
    should_yield: Callable[[], bool],
    after: tuple[str, str] | None,
) -> _Step | None:
    """The next step's rows past `after`, looked up in the cache (the step before is
    stored in it by then), its misses handed to the model."""
    todo = root.state.pending_vectors(collab.config.index.chunks_per_step, after)
    if not todo:
        return None
    look = look_up({v.id: v.embed_text for v in todo}, collab, report)

    def run() -> dict[int, Vector]:
        if not look.misses:
            return {}
        with report.timed("embed"):
            return collab.embedder.embed_until(look.texts, should_yield)

    return _Step(todo, look, model.submit(run))


def _write(
    root: RootIndex, done: list[PendingVector], vectors: dict[str, Vector], report: BatchReport
) -> None:
    with report.timed("vectors"):
        root.vectors.upsert([VectorPoint(v.id, v.path, v.kind, vectors[v.id]) for v in done])
    root.progress.chunks_embedded(len(done))
    report.vectors_filled += len(done)


def _flush(root: RootIndex, ids: list[str], report: BatchReport) -> None:
    """Flush the points written for `ids`, then clear their pending rows."""
    if not ids:
        return
    with report.timed("vector_flush"):
        root.vectors.flush()
    crash_point("before_vectors_recorded")
    root.ledger.vectors_written(ids)
