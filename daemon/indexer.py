"""The indexer thread: a queue of per-root work, coalesced, run one batch at a time.

Events that arrive while a batch runs are merged into the root's pending path set, so a
burst (a branch switch) becomes a few large batches instead of thousands of small ones.
Embedding left pending by a lexical-first batch is the lowest-priority work: it runs a
step at a time and gives way as soon as file changes are queued for any root. Work
passed over `MAX_PASSED` times goes next whatever its tier, so none waits for good.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import Any

import structlog

from daemon.activity import Activity
from daemon.metrics import BatchReport, RunningTotals, rss_bytes, trim_heap
from daemon.parsing import forget_last_tree
from daemon.pipeline import MIN_RUN_BEFORE_YIELD_S, Collaborators, fill_vectors, run_batch
from daemon.root import RootIndex

log = structlog.get_logger("rcmd.indexer")

VACUUM_MIN_POINTS = 1000
VACUUM_FRACTION = 0.2
#: After a failed vacuum, wait this long before the next try.
VACUUM_RETRY_S = 3600.0
#: Going idle after embedding at least this many texts reloads the model to drop its arena.
RELEASE_AFTER_TEXTS = 256
#: Work passed over this many times goes next, whatever its tier: an editor saving
#: every 100 ms (each save queued while the last one's batch ran) kept the edit tier
#: busy for good, and another root's cold index or refresh waited until it stopped.
MAX_PASSED = 4
#: The caches are pruned when the indexer goes idle, at most this often (measuring
#: their size reads every row's size: not a cost for each save).
PRUNE_EVERY_S = 600.0


@dataclass
class _Work:
    paths: set[str] = field(default_factory=set)
    full: bool = False
    force: bool = False
    #: Paths a forced batch stopped before: checked, not rewritten blind (`run_batch`).
    check: set[str] = field(default_factory=set)
    #: Embed the chunks a lexical-first batch recorded as pending.
    vectors: bool = False
    #: Some of `paths` were named by events (edits), not left by a batch that gave way.
    edited: bool = False
    #: How many times other work was picked while this waited (`MAX_PASSED`).
    passed: int = 0

    def __bool__(self) -> bool:
        return bool(self.files or self.vectors)

    @property
    def files(self) -> bool:
        """Whether there is file work (which goes before any pending embedding)."""
        return bool(self.paths or self.full or self.force)

    @property
    def edits(self) -> bool:
        """Whether it is edits alone: they go before whole-root work (an upgrade's
        refresh of every root) and any batch's leftovers."""
        return self.edited and not (self.full or self.force)


#: The order work is taken in: edits, other file work, pending embedding.
_TIERS: tuple[Callable[[_Work], bool], ...] = (lambda w: w.edits, lambda w: w.files, bool)


def _pick(work: dict[str, _Work], held: Container[str]) -> str | None:
    """The root whose work goes next: edits first, then other file work (whole roots,
    a batch's leftovers); pending embedding only when no file work is left. Work
    passed over `MAX_PASSED` times goes first, so no tier waits for good."""
    ready = {rid: w for rid, w in work.items() if w and rid not in held}
    if not ready:
        return None
    oldest = max(ready, key=lambda rid: ready[rid].passed)
    if ready[oldest].passed < MAX_PASSED:
        oldest = next(rid for tier in _TIERS for rid, w in ready.items() if tier(w))
    for rid, w in ready.items():
        w.passed += rid != oldest
    return oldest


def _embedding_yields(indexer: Indexer, root: RootIndex, work: _Work) -> Callable[[], bool]:
    """When pending embedding gives way: to file work at once, unless it waited
    `MAX_PASSED` turns behind it (then after `MIN_RUN_BEFORE_YIELD_S`: it embedded one
    text a turn); to a stop, the root's removal or a lock wanted, at once."""
    turn = time.monotonic() + (MIN_RUN_BEFORE_YIELD_S if work.passed >= MAX_PASSED else 0.0)
    return lambda: (
        indexer.stopping
        or (time.monotonic() >= turn and indexer.files_waiting())
        or root.cancelled
        or root.lock_wanted.is_set()
        or indexer.collab.should_stop()
    )


def release_writers(roots: list[RootIndex]) -> None:
    """Close idle roots' Tantivy writers: each holds ~6 threads and its memory budget,
    which a root written once (a dependency crate) would keep for good. A root that
    another thread holds (export, verify, removal) keeps its writer this time."""
    for root in roots:
        if not root.lock.acquire(blocking=False):
            continue
        try:
            root.lexical.release_writer()
        except Exception:  # a writer that fails to close is dropped at the next write
            log.exception("writer_release_failed", root=str(root.path))
        finally:
            root.lock.release()


def settle(collab: Collaborators, roots: list[RootIndex], *, prune: bool) -> None:
    """Give memory back once every queue is empty: a big batch leaves onnxruntime's
    arena and freed heap behind, which an idle daemon has no use for; with `prune`,
    bound the caches too. The heap is trimmed after every batch, not only after a model
    reload: a few huge files (a 1 MB one-line fn, 100k nested parens) free ~100 MB of
    trees and token buffers while embedding a handful of texts."""
    reloaded = False
    try:
        reloaded = collab.embedder.release_memory(RELEASE_AFTER_TEXTS)
    except Exception:  # the old model keeps working; only memory is at stake
        log.exception("memory_release_failed")
    forget_last_tree()
    release_writers(roots)
    if prune:
        _prune(collab)
    trim_heap()
    if reloaded:
        log.info("memory_released", rss_mb=rss_bytes() >> 20)


def _prune(collab: Collaborators) -> None:
    try:
        if collab.chunk_cache is not None and (n := collab.chunk_cache.prune()):
            log.info("chunk_cache_pruned", entries=n)
        cfg = collab.config.index
        collab.cache.prune(cfg.embed_cache_mb << 20, cfg.cache_max_age_days * 86_400)
    except Exception:  # a cache that cannot be pruned only grows
        log.exception("cache_prune_failed")


class Indexer:
    def __init__(self, collab: Collaborators) -> None:
        self.collab = collab
        self._cond = threading.Condition()
        self._work: dict[str, _Work] = {}
        self._roots: dict[str, RootIndex] = {}
        self._running: str | None = None
        #: Whether the running work is file work (not pending embedding).
        self._running_files = False
        self._stopping = False
        self.totals = RunningTotals()
        self.batches = 0
        self.last_batch: dict[str, Any] = {}
        #: Roots whose queued work waits for their watch to be set up (`hold`), each
        #: with the token of its hold.
        self._held: dict[str, object] = {}
        #: Clients blocked in `wait_idle` (shown in status).
        self.waiters = 0
        self.failures = FailedWork()
        self._pruned_at = -PRUNE_EVERY_S
        self._thread = threading.Thread(target=self._loop, name="rcmd-indexer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> bool:
        """Ask the running batch to stop at its next step and wait; False if it did not
        end within `timeout`."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def enqueue(
        self,
        root: RootIndex,
        paths: set[str] | None = None,
        *,
        force: bool = False,
        vectors: bool = False,
        check: set[str] | None = None,
        resumed: bool = False,
    ) -> None:
        """Queue `paths` of `root` (None: the whole root, forced while its graph is stale:
        a root back after missing at start too); `force` rebuilds it (`check`: what a
        forced batch did not reach); `resumed`: a batch's leftovers, not edits; `vectors`
        (alone) embeds what the root has pending."""
        with self._cond:
            self._roots[root.id] = root
            work = self._work.setdefault(root.id, _Work())
            if vectors:
                work.vectors = True
            elif force or (paths is None and root.graph_stale):
                work.force = True
            elif paths is None:
                work.full = True
            else:
                work.paths |= paths
                work.check |= check or set()
                work.edited |= bool(paths) and not resumed
            self._cond.notify_all()

    def hold(self, root_id: str) -> object:
        """Keep the root's work from starting until `release` (its first scan waits for
        its watch, so no edit falls between). Held work is queued (the root is not idle),
        but no batch gives way to it. The token releases this hold and no later one (a
        removed root's watcher, ending late, must not release its re-added successor)."""
        token = object()
        with self._cond:
            self._held[root_id] = token
        return token

    def release(self, root_id: str, token: object) -> None:
        with self._cond:
            if self._held.get(root_id) is token:
                del self._held[root_id]
                self._cond.notify_all()

    def forget(self, root_id: str) -> None:
        """Drop queued work for a root and wait until no batch runs on it."""
        with self._cond:
            self._work.pop(root_id, None)
            self._held.pop(root_id, None)
            while self._running == root_id:
                self._cond.wait(0.1)
            self._roots.pop(root_id, None)
            self._cond.notify_all()  # waiters on the root see it gone

    def queued(self, root_id: str) -> int:
        with self._cond:
            w = self._work.get(root_id)
            if not w:
                return 0
            return len(w.paths) + (1 if w.full or w.force else 0)

    def idle(self, root_id: str) -> bool:
        """Nothing queued, running or left to embed for the root: it is up to date."""
        with self._cond:
            root = self._roots.get(root_id)
            return (
                self._running != root_id
                and not self._work.get(root_id)
                and (root is None or root.ledger.vectors_pending == 0)
            )

    def _others_waiting(self, root_id: str) -> bool:
        """Whether another root has file work queued (a batch gives way to it)."""
        with self._cond:
            return any(
                w.files for rid, w in self._work.items() if rid != root_id and rid not in self._held
            )

    def files_pending(self, root_id: str) -> bool:
        """Whether file work for the root is queued or running: until it ends, BM25 and
        the graph miss the files it has not read (a new root's first scan)."""
        with self._cond:
            return self._files_pending(root_id)

    def _files_pending(self, root_id: str) -> bool:
        work = self._work.get(root_id)
        running = self._running == root_id and self._running_files
        return running or (work is not None and work.files)

    def wait_files_done(self, root_id: str, timeout: float) -> bool:
        """Block until no file work is queued or running for the root (pending vectors
        may remain: BM25 answers for every file by then); False at the deadline."""

        def done() -> bool:
            if self._stopping or self.failures.error(root_id) is not None:
                return True
            return not self._files_pending(root_id)

        with self._cond:
            return bool(self._cond.wait_for(done, timeout=timeout)) and not self._stopping

    def wait_idle(self, root_id: str, timeout: float) -> bool:
        """Block until the root is `idle` (True), or False at the deadline or when the
        indexer stops. No polling: every change that can make a root idle (a batch ending,
        work dropped) notifies the condition, and queued work counts as not idle, so a
        wait that follows an enqueue never sees the moment before its batch starts."""
        with self._cond:
            self.waiters += 1
            try:
                done = self._cond.wait_for(
                    lambda: self._stopping or self.idle(root_id), timeout=timeout
                )
                return bool(done) and not self._stopping
            finally:
                self.waiters -= 1

    def files_waiting(self) -> bool:
        with self._cond:
            return self._stopping or any(
                w.files for rid, w in self._work.items() if rid not in self._held
            )

    def _next(self) -> tuple[RootIndex, _Work] | None:
        with self._cond:
            while not self._stopping:
                if (rid := _pick(self._work, self._held)) is not None:
                    work = self._work.pop(rid)
                    self._running = rid
                    self._running_files = work.files
                    return self._roots[rid], work
                self._cond.wait()
            return None

    def _loop(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            root, work = item
            try:
                self._run(root, work)
            except Exception as exc:  # a failed batch must not kill the indexer
                root.lexical.rollback()
                retry = self.collab.config.index.retry_after_s
                error = f"{type(exc).__name__}: {exc} (retrying in {retry:g}s)"
                root.progress.failed(error)
                if work.files:
                    self.failures.failed(root.id, error)
                log.exception("batch_failed", root=str(root.path), retry_in_s=retry)
                requeue_later(self, root, work, self.collab.config.index.retry_after_s)
            finally:
                root.clock.touch()
                with self._cond:
                    self._running = None
                    self._cond.notify_all()
                    all_done = not any(self._work.values())
            if all_done:
                self._settle()

    def _settle(self) -> None:
        with self._cond:
            roots = list(self._roots.values())
        prune = time.monotonic() - self._pruned_at >= PRUNE_EVERY_S
        if prune:
            self._pruned_at = time.monotonic()
        settle(self.collab, roots, prune=prune)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def _run(self, root: RootIndex, work: _Work) -> None:
        t0 = time.perf_counter()
        live = self.totals.start()
        if work.files:
            with root.lock:
                paths = None if (work.full or work.force) else work.paths
                unchecked: list[str] = []
                report = run_batch(
                    root,
                    paths,
                    self.collab,
                    force=work.force,
                    check=work.check,
                    should_yield=lambda: self._others_waiting(root.id),
                    unchecked=unchecked.extend,
                    report=live,
                )
            if report.interrupted and not (root.cancelled or self.collab.should_stop()):
                # It gave way to another root: what it did not write is still in flight.
                self.enqueue(root, root.state.inflight(), check=set(unchecked), resumed=True)
        else:
            with root.lock:
                report = fill_vectors(root, self.collab, _embedding_yields(self, root, work), live)
        self._account(root, report, time.perf_counter() - t0, work)
        if work.files and not root.cancelled:
            self.collab.after_files(root)
        if root.ledger.vectors_pending and not root.cancelled:
            self.enqueue(root, vectors=True)
        maybe_vacuum(root, report.points_dropped, queued=self.queued(root.id) > 0)

    def _account(self, root: RootIndex, report: BatchReport, seconds: float, work: _Work) -> None:
        self.totals.finish(report)
        self.batches += 1
        summary = {
            "root": str(root.path),
            "kind": _work_kind(work),
            "seconds": round(seconds, 4),
            "parse": _parse_kind(report),
            **report.to_json(),
        }
        root.progress.finished(report, summary)
        self.last_batch = summary
        log.info("batch_done", **summary)


class FailedWork:
    """Roots whose last batch of file work failed and waits for its retry
    (`requeue_later`). That work is out of the queue meanwhile, so a `fresh` search
    must not take the root for up to date: it is told why instead."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._errors: dict[str, str] = {}

    def failed(self, root_id: str, error: str) -> None:
        with self._lock:
            self._errors[root_id] = error

    def retried(self, root_id: str) -> None:
        with self._lock:
            self._errors.pop(root_id, None)

    def error(self, root_id: str) -> str | None:
        """Why the root's file work failed, while its retry is still to come."""
        with self._lock:
            return self._errors.get(root_id)


def requeue_later(
    indexer: Indexer, root: RootIndex, work: _Work, delay_s: float
) -> threading.Timer:
    """A timer that queues a failed batch's `work` of `root` again after `delay_s` (a full
    disk, a server that is down: the daemon recovers by itself once the cause is gone),
    unless the indexer is stopping or the root was removed meanwhile."""

    def again() -> None:
        if not (indexer.stopping or root.cancelled):
            if work.force or work.full:
                indexer.enqueue(root, None, force=work.force)
            elif work.paths:
                indexer.enqueue(root, work.paths)
            if work.vectors:
                indexer.enqueue(root, vectors=True)
        indexer.failures.retried(root.id)  # after the work is back in the queue

    timer = threading.Timer(delay_s, again)
    timer.daemon = True
    timer.start()
    return timer


def _work_kind(work: _Work) -> str:
    if work.force:
        return "force"
    return "full" if work.full else "paths" if work.paths else "vectors"


def _parse_kind(report: BatchReport) -> str:
    """How the batch got its chunks: `full` (a file parsed from scratch), `incremental`
    (every parsed file from its previous tree), `cached` (every file from the chunk
    cache), or `none` (nothing to chunk)."""
    if report.files_parsed:
        return "full"
    if report.files_reparsed:
        return "incremental"
    return "cached" if report.chunk_cache_hits else "none"


def maybe_vacuum(root: RootIndex, dropped: int, *, queued: bool) -> None:
    """Vacuum deleted vector points once they are a fifth of the live ones (Qdrant's own
    default), and only when no more work is queued for the root (`queued`)."""
    garbage = int(root.state.get_meta("vector_garbage") or 0) + dropped
    if dropped:
        root.state.set_meta("vector_garbage", str(garbage))
    if garbage < max(VACUUM_MIN_POINTS, VACUUM_FRACTION * root.state.counts()[1]):
        return
    if queued:
        return
    failed_at = float(root.state.get_meta("vacuum_failed_at") or 0)
    if time.time() - failed_at < VACUUM_RETRY_S:
        return
    with root.lock:
        root.progress.set_activity(Activity.VACUUMING)
        try:
            seconds = root.vectors.vacuum()
        except Exception as exc:  # searches still work; try again later, not every batch
            root.state.set_meta("vacuum_failed_at", repr(time.time()))
            root.progress.note_error(f"vacuum failed (retried in an hour): {exc}")
            log.exception("vacuum_failed", root=str(root.path))
            return
        finally:
            root.progress.end()
        root.state.set_meta("vector_garbage", "0")
    root.progress.vacuumed()
    log.info("vectors_vacuumed", root=str(root.path), points=garbage, seconds=round(seconds, 3))
