"""Figures for status and logs: what batches did (per stage), and process memory."""

from __future__ import annotations

import dataclasses
import os
import resource
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


def _current_rss() -> int | None:
    """Current resident set size from /proc; None where it is missing (macOS)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def rss_bytes() -> int:
    """Current resident set size; falls back to the peak where /proc is missing."""
    current = _current_rss()
    return peak_rss_bytes() if current is None else current


def trim_heap() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them otherwise); no-op elsewhere."""
    if sys.platform != "linux":
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_rss_bytes() -> int:
    """The most resident memory so far, never below the current: Linux updates
    `ru_maxrss` lazily, and status showed a peak under the RSS beside it."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = peak if sys.platform == "darwin" else peak * 1024
    return max(peak, _current_rss() or 0)


@dataclass
class BatchReport:
    """Counts and per-stage seconds of one batch, or summed over many (`add`)."""

    statted: int = 0
    read: int = 0
    indexed: int = 0
    deleted: int = 0
    unchanged: int = 0
    #: Directories a whole-root scan skipped as a whole: every entry agreed with its record.
    dirs_skipped: int = 0
    skipped: int = 0
    chunks: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    #: Texts the model embedded: fewer than the misses where chunks share a vector.
    texts_embedded: int = 0
    #: Vectors written for chunks a lexical-first batch left pending.
    vectors_filled: int = 0
    #: Vector points deleted (rewritten or removed files): garbage until a vacuum.
    points_dropped: int = 0
    #: Batches stopped before their last file (a stop, a removal, another root's edits).
    interrupted: int = 0
    #: Files parsed with tree-sitter, and files whose chunks came from the chunk cache.
    files_parsed: int = 0
    chunk_cache_hits: int = 0
    #: Files parsed incrementally (an earlier tree of theirs was kept), and the top-level
    #: items of those files chunked again (the others' chunks were reused).
    files_reparsed: int = 0
    items_reparsed: int = 0
    #: Chunks whose Tantivy doc was written (`chunks`: whose vector was), and chunks of
    #: edited files left alone (`kept`) or rewritten only for their lines (`moved`).
    chunks_written: int = 0
    chunks_moved: int = 0
    chunks_kept: int = 0
    #: Batches whose Tantivy documents were made in a worker process (`lexical_writes`).
    lexical_worker: int = 0
    stages: dict[str, float] = field(default_factory=dict)

    def time(self, stage: str, seconds: float) -> None:
        self.stages[stage] = self.stages.get(stage, 0.0) + seconds

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Add the wall time of the `with` body to `stage`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.time(stage, time.perf_counter() - start)

    def add(self, other: BatchReport) -> None:
        for f in dataclasses.fields(self):
            if f.name != "stages":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        for stage, seconds in other.stages.items():
            self.time(stage, seconds)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = dataclasses.asdict(self)
        out["stages"] = {k: round(v, 4) for k, v in self.stages.items()}
        return out


class RunningTotals:
    """The reports of finished work summed, and the running one's counts so far: a
    cold index embeds for minutes in one fill, and figures taken only when work ends
    showed 0 until then."""

    COUNTED = ("cache_hits", "cache_misses", "texts_embedded")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = BatchReport()
        self._live: BatchReport | None = None

    @property
    def done(self) -> BatchReport:
        """The finished work's reports, summed."""
        return self._done

    def start(self) -> BatchReport:
        """A new report for the work starting now, to count into as it goes."""
        with self._lock:
            self._live = BatchReport()
            return self._live

    def finish(self, report: BatchReport) -> None:
        with self._lock:
            self._done.add(report)
            self._live = None

    def counts(self) -> dict[str, int]:
        """`COUNTED` figures, the running work's included (read unlocked by its thread:
        each is an int, so a figure is at worst one step behind)."""
        with self._lock:
            parts = [self._done] if self._live is None else [self._done, self._live]
            return {name: sum(getattr(p, name) for p in parts) for name in self.COUNTED}
