"""The watcher thread on its own, on a real inotify watch (watchfiles)."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

from daemon.watcher import RootWatcher


def test_ready_comes_once_the_watch_is_in_place_so_an_edit_then_is_seen(tmp_path: Path) -> None:
    """A root's first scan waits for `on_ready`: an edit made after the scan read a file
    must be caught by the watch. So when `on_ready` runs, the watch already exists: a
    file written from inside it is delivered."""
    calls: queue.Queue[set[str] | None] = queue.Queue()
    statuses: list[str] = []
    readies: list[list[str]] = []

    def ready() -> None:
        readies.append(list(statuses))
        (tmp_path / "a.rs").write_text("fn a() {}\n")

    w = RootWatcher(tmp_path, calls.put, statuses.append, 20, 200, 30.0, on_ready=ready)
    w.start()
    try:
        assert calls.get(timeout=10) == {"a.rs"}
        assert readies == [["watching"]]
        assert w.rescans == 0
    finally:
        w.stop()
    assert readies == [["watching"]]  # once


def test_ready_comes_for_a_missing_root_too(tmp_path: Path) -> None:
    """A root missing at start has no scan to hold back: ready at once, not when (or if)
    the root returns."""
    ready = threading.Event()
    statuses: list[str] = []
    w = RootWatcher(
        tmp_path / "gone", lambda _p: None, statuses.append, 20, 200, 30.0, on_ready=ready.set
    )
    w.start()
    try:
        assert ready.wait(10)
        assert statuses == ["root missing; waiting for it to return"]
    finally:
        w.stop()
