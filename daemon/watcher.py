"""File events → debounced path sets for the indexer (watchfiles, inotify underneath).

watchfiles already coalesces: it yields once no event arrived for `step` ms, and at the
latest after `debounce` ms of a constant stream. Every event is treated as "reconcile
this path" by the pipeline, because renames and atomic saves arrive as bare add/delete
pairs. If the watcher fails (watch limit, root deleted), the root falls back to periodic
full rescans and says so in status.

inotify drops events when its queue (`fs.inotify.max_queued_events`) overflows, and
watchfiles swallows the overflow notice (measured: 1,916 of 2,000 rewrites reported with a
64-event queue, no error). Only a burst can overflow the queue, so a batch of at least
`BURST_PATHS` paths is turned into a full rescan: the stat fast path makes that cheap
(unchanged files cost one `stat`), and it finds whatever the lost events named.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import structlog

from daemon.ignore import ALWAYS_IGNORED_DIRS

log = structlog.get_logger("rcmd.watcher")

#: A watch batch this large is handled as a full rescan (see the module docstring).
BURST_PATHS = 256


def relevant(root: Path, path: str) -> str | None:
    """The root-relative posix path of an event worth reconciling, else None."""
    try:
        rel = Path(path).relative_to(root).as_posix()
    except ValueError:
        return None
    if rel == ".":
        return ""
    parts = rel.split("/")
    if any(p in ALWAYS_IGNORED_DIRS for p in parts):
        return None
    name = parts[-1]
    if name.endswith(("~", ".swp", ".swx", ".tmp")) or name.startswith(".#"):
        return None
    return rel


class RootWatcher:
    """A thread watching one root; calls `on_paths(set_of_rel_paths)` per batch, or
    `on_paths(None)` when a full rescan is due (the watcher failed, or the root came back).

    A watch on a deleted root goes silent (inotify loses the directory), so the root's
    disappearance ends the watch; the thread then waits for the root to return and
    starts watching again. A watcher that fails (watch limit, overflow) degrades to a
    full rescan every `poll_s` seconds and retries the watch each time.
    """

    def __init__(
        self,
        root: Path,
        on_paths: Callable[[set[str] | None], None],
        on_status: Callable[[str], None],
        debounce_ms: int,
        max_wait_ms: int,
        poll_s: float,
    ) -> None:
        self.root = root
        self._on_paths = on_paths
        self._on_status = on_status
        self._step = max(1, debounce_ms)
        self._max_wait = max(self._step, max_wait_ms)
        self._poll_s = poll_s
        #: Full rescans this watcher asked for (bursts, failures, the root's return).
        self.rescans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"rcmd-watch-{root.name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():  # never started for a missing root
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.root.is_dir():
                self._on_status("root missing; waiting for it to return")
                while not self.root.is_dir():
                    if self._stop.wait(self._poll_s):
                        return
                log.info("root_returned", root=str(self.root))
                self._rescan()
            reason = self._watch()
            if reason is None:
                continue  # stopped, or the root went away: the loop decides
            log.warning("watcher_failed", root=str(self.root), reason=reason)
            self._on_status(
                f"polling every {self._poll_s:g}s (watcher failed: {reason}); retrying it"
            )
            self._rescan()
            if self._stop.wait(self._poll_s):
                return

    def _rescan(self) -> None:
        self.rescans += 1
        self._on_paths(None)

    def _watch(self) -> str | None:
        """Watch until stopped or the root disappears (None), or fail (the reason)."""
        import watchfiles

        try:
            self._on_status("watching")
            for changes in watchfiles.watch(
                self.root,
                watch_filter=None,
                debounce=self._max_wait,
                step=self._step,
                stop_event=self._stop,
                rust_timeout=1000,
                yield_on_timeout=False,
                raise_interrupt=False,
            ):
                rels = {r for _change, p in changes if (r := relevant(self.root, p)) is not None}
                if len(rels) >= BURST_PATHS:  # build output (target/) is not counted
                    log.info("watch_burst_rescan", root=str(self.root), paths=len(rels))
                    self._rescan()
                elif rels:
                    self._on_paths(rels)
                if not self.root.is_dir():
                    return None
        except Exception as exc:  # inotify limits, overflow
            return f"{type(exc).__name__}: {exc}"
        return None if self._stop.is_set() else "the watch ended"
