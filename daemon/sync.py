"""Fresh answers on request, as watchman's cookies do it: to be sure every change made
before a request is seen, write a cookie file into the root and wait until the watcher
reports it. inotify delivers events in order through one queue, so by then every
earlier event has been handed to the indexer; the caller then waits for that file work.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ipc.errors import StateError, Timeout

if TYPE_CHECKING:
    from daemon.indexer import Indexer
    from daemon.root import RootIndex

#: Cookie files start with this; the watcher reports them here and never indexes them.
COOKIE_PREFIX = ".rcmd-cookie-"


def is_cookie(rel: str) -> bool:
    return rel.rsplit("/", 1)[-1].startswith(COOKIE_PREFIX)


class Cookies:
    """Cookies written and not seen yet, per root; `seen` is the watcher's side."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[tuple[Path, str], threading.Event] = {}
        self._serial = itertools.count()
        self._closed = False

    def close(self) -> None:
        """The daemon is stopping: its watchers report no more cookies. A `--fresh`
        search waiting for one waited out `fresh_timeout_s` (30 s) and held the stop
        that long, then lost its reply; each wait ends now, unseen (the service tells
        its client the daemon is stopping: `daemon.service.told_when_stopping`)."""
        with self._lock:
            self._closed = True
            for event in self._waiting.values():
                event.set()

    def seen(self, root: Path, names: set[str]) -> None:
        """The watcher saw these cookie paths (root-relative) under `root`."""
        with self._lock:
            for name in names:
                event = self._waiting.get((root, name))
                if event is not None:
                    event.set()

    def rescanned(self, root: Path) -> None:
        """A full rescan of `root` was queued: it covers every cookie written so far."""
        with self._lock:
            for (where, _name), event in self._waiting.items():
                if where == root:
                    event.set()

    def sync(self, root: Path, timeout: float) -> bool:
        """Write a cookie into `root` and wait until the watcher reports it: True then,
        False at the deadline or once `close` ran. OSError when the root cannot be
        written (read-only)."""
        name = f"{COOKIE_PREFIX}{os.getpid()}-{next(self._serial)}"
        event = threading.Event()
        with self._lock:
            if self._closed:
                return False
            self._waiting[(root, name)] = event
        path = root / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            os.close(fd)
            return event.wait(timeout) and not self._closed
        finally:
            with self._lock:
                del self._waiting[(root, name)]
            path.unlink(missing_ok=True)


def bring_up_to_date(
    roots: list[RootIndex], cookies: Cookies, indexer: Indexer, timeout: float
) -> None:
    """Bring `roots` up to date with every change made before now (the module docstring):
    through the watcher's cookie when it watches, by a rescan when it polls or the
    root is read-only."""
    deadline = time.monotonic() + timeout
    for root in roots:
        synced = False
        if root.progress.watcher == "watching":
            with contextlib.suppress(OSError):
                synced = cookies.sync(root.path, max(deadline - time.monotonic(), 0))
                if not synced:
                    raise Timeout(
                        f"{root.path}: the watcher did not report a change within "
                        f"{timeout:g}s; search again, or without --fresh"
                    )
        if not synced:
            indexer.enqueue(root, None)
        if not indexer.wait_files_done(root.id, max(deadline - time.monotonic(), 0)):
            raise Timeout(
                f"{root.path} is still indexing after {timeout:g}s; "
                "search again, or without --fresh"
            )
        if (error := indexer.failures.error(root.id)) is not None:
            raise StateError(
                f"{root.path}: indexing the latest changes failed ({error}), so --fresh "
                "cannot answer; search without --fresh, or see: rcmd status"
            )
