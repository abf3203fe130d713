"""Roots that failed to open, and when the daemon tries each again by itself.

A registered root fails to open for causes that pass without the user: its state disk
full, its folder unreadable for a while, the process out of descriptors, a vector server
down (`daemon.sqlite` NOT_DAMAGE / DISK_ERRNOS: damage is set aside and rebuilt at once,
it never lands here). It stayed failed until someone ran `rcmd index PATH`, even once the
disk had room again. Now the daemon's periodic tick opens it again after a backoff:
FIRST_RETRY_S after the failure, doubling up to MAX_RETRY_S. The first retry comes soon
because the usual cause (a disk freed by hand) is gone by the time the user looks; the
doubling keeps a root that fails for good (a disk that stays full) at one attempt, one
state.db open and one log line per MAX_RETRY_S, ~12 an hour, instead of one every tick.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from shlex import quote
from typing import Any

import structlog

log = structlog.get_logger("rcmd.reopen")

#: Seconds from a root's first failure to the daemon's first try again.
FIRST_RETRY_S = 5.0
#: Longest wait between two tries (the delay doubles until it reaches this).
MAX_RETRY_S = 300.0


def why(exc: BaseException) -> str:
    """A failed open's error as status shows it."""
    return f"{type(exc).__name__}: {exc}"


def retry_delay(attempts: int) -> float:
    """Seconds until the next try after `attempts` (1 or more) failed opens."""
    return min(FIRST_RETRY_S * 2.0 ** min(attempts - 1, 32), MAX_RETRY_S)


@dataclass(frozen=True, slots=True)
class FailedRoot:
    error: str
    #: Opens tried and failed so far: the one at start, the daemon's, `rcmd index`'s.
    attempts: int
    #: When the next try is due: `time.monotonic()` for the tick, `time.time()` for status.
    due: float
    due_wall: float

    def to_json(self, path: str) -> dict[str, Any]:
        """The entry of `status`'s `failed_roots`."""
        wait = max(0, round(self.due_wall - time.time()))
        return {
            "path": path,
            "error": self.error,
            "attempts": self.attempts,
            "next_retry_at": round(self.due_wall, 1),
            "next": f"tried again by itself in {wait}s (attempt {self.attempts + 1}; see the "
            f"log); to try now: rcmd index {quote(path)} (or forget it: rcmd remove "
            f"{quote(path)})",
        }


class FailedRoots:
    """The registered roots that failed to open, with their backoff; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._roots: dict[str, FailedRoot] = {}

    def failed(self, path: str, error: str) -> FailedRoot:
        """Record one more failed open of `path`; its next try is due a backoff later."""
        with self._lock:
            known = self._roots.get(path)
            attempts = known.attempts + 1 if known else 1
            delay = retry_delay(attempts)
            entry = FailedRoot(error, attempts, time.monotonic() + delay, time.time() + delay)
            self._roots[path] = entry
            return entry

    def retry(self, path: str, opener: Callable[[], object]) -> None:
        """The daemon's next try of `path` (`opener`, under the registry's lock), unless it
        was forgotten meanwhile; each try is logged, with the wait for the next one."""
        entry = self.get(path)
        if entry is None:
            return
        attempt = entry.attempts + 1
        try:
            opener()
        except Exception as exc:
            delay = retry_delay(self.failed(path, why(exc)).attempts)
            log.warning(
                "root_reopen_failed", root=path, attempt=attempt, error=str(exc), retry_in_s=delay
            )
            return
        self.forget(path)
        log.info("root_reopened", root=path, attempt=attempt)

    def forget(self, path: str) -> bool:
        """Drop `path` (opened, or removed by the user); whether it was failed."""
        with self._lock:
            return self._roots.pop(path, None) is not None

    def get(self, path: str) -> FailedRoot | None:
        with self._lock:
            return self._roots.get(path)

    def due(self) -> list[str]:
        """The failed roots whose next try is due now, in path order."""
        now = time.monotonic()
        with self._lock:
            return sorted(p for p, f in self._roots.items() if f.due <= now)

    def snapshot(self) -> dict[str, FailedRoot]:
        with self._lock:
            return dict(self._roots)

    def __contains__(self, path: object) -> bool:
        with self._lock:
            return path in self._roots
