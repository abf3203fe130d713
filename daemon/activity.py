"""What a root is doing and has done: typed activity, progress, counters, last batch and
error, and the watcher's state, with the one `to_json()` that `status` shows.

Written by the indexer thread and the watcher, read by `status` on request threads
without a lock: each method replaces whole fields, and a status reply tolerates a torn
snapshot (a count one step ahead of another). Rates and ETAs exist only while the root
is active, so a finished or failed batch never leaves a stale rate behind.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any

from daemon.metrics import BatchReport


class Activity(StrEnum):
    IDLE = "idle"
    #: Nothing runs for the root, but work for it waits in the queue (shown, never idle).
    QUEUED = "queued"
    SCANNING = "scanning"
    INDEXING = "indexing"
    EMBEDDING = "embedding"
    VACUUMING = "vacuuming"
    FAILED = "failed"

    @property
    def active(self) -> bool:
        return self not in (Activity.IDLE, Activity.QUEUED, Activity.FAILED)


class RootProgress:
    """Progress of the current step and the root's history since the daemon started."""

    def __init__(self) -> None:
        self.activity = Activity.IDLE
        self.files_total = 0
        self.files_done = 0
        self.chunks_total = 0
        self.chunks_done = 0
        self.started_at = 0.0
        #: Summed over every batch since the daemon started.
        self.totals = BatchReport()
        self.batches = 0
        self.vacuums = 0
        self.last_batch: dict[str, Any] = {}
        self.last_error = ""
        #: What was found damaged when the root opened and what was done about it: kept
        #: until the daemon stops (a rebuild's own success clears `last_error`).
        self.repaired = ""
        self.watcher = "starting"
        #: An embedding run that gave way to file work: (chunks done, seconds it ran).
        self._paused_fill: tuple[int, float] | None = None

    # ---- the current step ----
    def begin(self, activity: Activity, *, files: int = 0, chunks: int = 0) -> None:
        """Start a new step: counters from zero, the clock from now."""
        self.started_at = time.time()
        self.files_total, self.files_done = files, 0
        self.chunks_total, self.chunks_done = chunks, 0
        self.activity = activity

    def begin_embedding(self, pending: int) -> None:
        """Start embedding `pending` chunks, or resume a run that gave way to file work:
        its count and its clock (less the time it waited) go on. Begun afresh, each
        save elsewhere put a cold index's bar back to 0 and its rate to "starting", and
        the ETA then came from the first slow seconds (114 s shown for 27 s left)."""
        done, ran = self._paused_fill or (0, 0.0)
        self._paused_fill = None
        self.begin(Activity.EMBEDDING, chunks=done + pending)
        self.chunks_done = done
        self.started_at -= ran

    def end_embedding(self, pending: int) -> None:
        """The run stopped; with `pending` chunks left it gave way and will resume."""
        if pending:
            self._paused_fill = (self.chunks_done, time.time() - self.started_at)
        self.end()

    def set_activity(self, activity: Activity) -> None:
        self.activity = activity

    def files_planned(self, total: int) -> None:
        self.files_total, self.files_done = total, 0

    def file_done(self, done: int) -> None:
        self.files_done = done

    def chunks_planned(self, more: int) -> None:
        self.chunks_total += more

    def chunks_embedded(self, more: int) -> None:
        self.chunks_done += more

    def end(self) -> None:
        self.activity = Activity.IDLE

    # ---- history ----
    def finished(self, report: BatchReport, summary: dict[str, Any]) -> None:
        """A batch (or an embedding run) ended well: count it and clear the last error."""
        self.totals.add(report)
        self.batches += 1
        self.last_batch = summary
        self.last_error = ""
        self.activity = Activity.IDLE

    def failed(self, error: str) -> None:
        self.last_error = error
        self.activity = Activity.FAILED

    def vacuumed(self) -> None:
        self.vacuums += 1

    def note_error(self, error: str) -> None:
        """An error that did not fail a batch (a vacuum, say): shown until the next batch."""
        self.last_error = error

    def set_watcher(self, text: str) -> None:
        self.watcher = text

    # ---- status ----
    def rates(self) -> dict[str, Any]:
        """The `progress` object of status: counts, and a rate and ETA only while active."""
        active = self.activity.active
        elapsed = max(time.time() - self.started_at, 1e-6) if self.started_at else 0.0
        rate = self.chunks_done / elapsed if active and elapsed else 0.0
        file_rate = self.files_done / elapsed if active and elapsed else 0.0
        remaining = max(self.chunks_total - self.chunks_done, 0)
        eta = None
        if active and self.files_done < self.files_total and file_rate > 0:
            eta = (self.files_total - self.files_done) / file_rate
        elif active and rate > 0:  # filling in pending vectors
            eta = remaining / rate
        return {
            "files_done": self.files_done,
            "files_total": self.files_total,
            "chunks_done": self.chunks_done,
            "chunks_total": self.chunks_total,
            "chunks_remaining": remaining,
            "chunks_per_s": round(rate, 1),
            "eta_s": round(eta, 1) if eta is not None else None,
        }

    def to_json(self, watch_rescans: int = 0, queued: bool = False) -> dict[str, Any]:
        """The root status fields this object owns (the caller adds the stores' figures);
        `queued`: work waits for the root, so an idle root shows as queued."""
        t = self.totals
        shown = Activity.QUEUED if queued and self.activity == Activity.IDLE else self.activity
        return {
            "activity": str(shown),
            "progress": self.rates(),
            "watcher": self.watcher,
            "last_error": self.last_error,
            "repaired": self.repaired,
            "counters": {
                "batches": self.batches,
                "files_statted": t.statted,
                "dirs_skipped": t.dirs_skipped,
                "files_read": t.read,
                "files_indexed": t.indexed,
                "files_deleted": t.deleted,
                "chunks_written": t.chunks_written,
                "lexical_worker_batches": t.lexical_worker,
                "vacuums": self.vacuums,
                "watch_rescans": watch_rescans,
                "stages_s": t.to_json()["stages"],
            },
            "last_batch": self.last_batch,
        }
