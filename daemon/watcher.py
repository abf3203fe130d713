"""File events → debounced path sets for the indexer (watchfiles, inotify underneath).

watchfiles already coalesces: it yields once no event arrived for `step` ms, and at the
latest after `debounce` ms of a constant stream. Every event is treated as "reconcile
this path" by the pipeline, because renames and atomic saves arrive as bare add/delete
pairs. If the watcher fails (watch limit, overflow, root deleted), the root falls back to
periodic full rescans and says so in status.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import structlog

from daemon.ignore import ALWAYS_IGNORED_DIRS

log = structlog.get_logger("rcmd.watcher")

#: How often a root whose watcher failed is rescanned in full.
POLL_FALLBACK_S = 30.0


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
    """A thread watching one root; calls `on_paths(set_of_rel_paths)` per batch,
    or `on_paths(None)` when it must fall back to a full rescan."""

    def __init__(
        self,
        root: Path,
        on_paths: Callable[[set[str] | None], None],
        on_status: Callable[[str], None],
        debounce_ms: int,
        max_wait_ms: int,
    ) -> None:
        self.root = root
        self._on_paths = on_paths
        self._on_status = on_status
        self._step = max(1, debounce_ms)
        self._max_wait = max(self._step, max_wait_ms)
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
                if rels:
                    self._on_paths(rels)
            if self._stop.is_set():
                return
            reason = "watch ended (root removed?)"
        except Exception as exc:  # inotify limits, overflow, vanished root
            reason = f"{type(exc).__name__}: {exc}"
        log.warning("watcher_failed", root=str(self.root), reason=reason)
        self._on_status(f"polling every {POLL_FALLBACK_S:.0f}s (watcher failed: {reason})")
        self._on_paths(None)
        while not self._stop.wait(POLL_FALLBACK_S):
            self._on_paths(None)
