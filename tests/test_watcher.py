"""The watcher thread on its own, on a real inotify watch (watchfiles)."""

from __future__ import annotations

import os
import queue
import threading
import time
from pathlib import Path

from daemon.sync import Cookies
from daemon.watcher import RootWatcher, WatchHub


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

    hub = WatchHub(20, 200)
    w = RootWatcher(hub, tmp_path, calls.put, statuses.append, 30.0, on_ready=ready)
    w.start()
    try:
        assert calls.get(timeout=10) == {"a.rs"}
        assert readies == [["watching"]]
        assert w.rescans == 0
    finally:
        hub.stop()
    assert readies == [["watching"]]  # once


def test_ready_comes_for_a_missing_root_too(tmp_path: Path) -> None:
    """A root missing at start has no scan to hold back: ready at once, not when (or if)
    the root returns."""
    ready = threading.Event()
    statuses: list[str] = []
    hub = WatchHub(20, 200)
    w = RootWatcher(
        hub, tmp_path / "gone", lambda _p: None, statuses.append, 30.0, on_ready=ready.set
    )
    w.start()
    try:
        assert ready.wait(10)
        assert statuses == ["root missing; waiting for it to return"]
    finally:
        hub.stop()


class _Root:
    """A root watched through `hub`, its deliveries in a queue (None: a rescan)."""

    def __init__(self, hub: WatchHub, path: Path, poll_s: float = 30.0) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.calls: queue.Queue[set[str] | None] = queue.Queue()
        self.statuses: list[str] = []
        self.ready = threading.Event()
        self.watcher = RootWatcher(
            hub, path, self.calls.put, self.statuses.append, poll_s, on_ready=self.ready.set
        )
        self.watcher.start()
        assert self.ready.wait(10)

    def next(self, timeout: float = 10) -> set[str] | None:
        return self.calls.get(timeout=timeout)

    def seen(self, rel: str, timeout: float = 10) -> None:
        """Wait until a delivery names `rel` (saves can come as several batches)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.calls.get(timeout=max(0.01, deadline - time.monotonic()))
            if got is not None and rel in got:
                return


def test_one_hub_delivers_each_root_only_its_own_events(tmp_path: Path) -> None:
    hub = WatchHub(20, 200)
    try:
        a, b = _Root(hub, tmp_path / "a"), _Root(hub, tmp_path / "ab")  # a prefix of the other
        (b.path / "lib.rs").write_text("fn b() {}\n")
        b.seen("lib.rs")
        (a.path / "main.rs").write_text("fn a() {}\n")
        a.seen("main.rs")
        assert a.calls.empty() and b.calls.empty()
        assert a.statuses == b.statuses == ["watching"]
    finally:
        hub.stop()


def test_a_removed_root_hears_nothing_and_the_other_goes_on(tmp_path: Path) -> None:
    hub = WatchHub(20, 200)
    try:
        a, b = _Root(hub, tmp_path / "a"), _Root(hub, tmp_path / "b")
        a.watcher.stop()
        (a.path / "x.rs").write_text("fn x() {}\n")
        (b.path / "y.rs").write_text("fn y() {}\n")
        b.seen("y.rs")
        assert a.calls.empty()
    finally:
        hub.stop()


def test_a_new_folder_is_watched_and_the_other_root_still_is(tmp_path: Path) -> None:
    """`mkdir -p` then a file at once: the top new folder is delivered (the pipeline
    walks it, so what was written inside before its watch is found), the watch is
    re-opened over every new folder, and later edits inside are seen."""
    hub = WatchHub(20, 200)
    try:
        a, b = _Root(hub, tmp_path / "a"), _Root(hub, tmp_path / "b")
        deep = a.path / "src" / "net" / "http"
        deep.mkdir(parents=True)
        (deep / "client.rs").write_text("fn c() {}\n")
        a.seen("src")
        (deep / "client.rs").write_text("fn c2() {}\n")
        a.seen("src/net/http/client.rs")
        (b.path / "z.rs").write_text("fn z() {}\n")
        b.seen("z.rs")
    finally:
        hub.stop()


def test_a_missing_root_comes_back_and_is_rescanned_while_another_is_watched(
    tmp_path: Path,
) -> None:
    hub = WatchHub(20, 200)
    try:
        a, b = _Root(hub, tmp_path / "a"), _Root(hub, tmp_path / "b")
        a.path.rmdir()
        deadline = time.monotonic() + 10
        while "root missing; waiting for it to return" not in a.statuses:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        (b.path / "y.rs").write_text("fn y() {}\n")
        b.seen("y.rs")
        a.path.mkdir()
        while a.next() is not None:  # events of the folder's return, then the rescan
            pass
        assert a.watcher.rescans == 1 and a.statuses[-1] == "watching"
        (a.path / "back.rs").write_text("fn back() {}\n")
        a.seen("back.rs")
    finally:
        hub.stop()


def test_stop_is_prompt_and_later_roots_are_ready_at_once(tmp_path: Path) -> None:
    hub = WatchHub(20, 200)
    _Root(hub, tmp_path / "a")
    started = time.monotonic()
    hub.stop()
    assert time.monotonic() - started < 5
    late = _Root(hub, tmp_path / "late")  # asserts its ready came
    assert late.statuses == []


def test_a_file_named_in_no_utf8_costs_a_rescan_not_the_watch(tmp_path: Path) -> None:
    """watchfiles cannot decode `f\\xff.rs` and drops the batch it came in, for every
    root. That once failed every root to polling (`poll_interval_s`, 30 s): edits in
    any root went unseen that long. Now the watch is opened again at once, every root
    rescanned (the lost batch may have held anything), and later edits are seen."""
    hub = WatchHub(20, 200)
    try:
        a = _Root(hub, tmp_path / "a", poll_s=3600)
        b = _Root(hub, tmp_path / "b", poll_s=3600)
        with open(bytes(a.path) + b"/f\xff.rs", "wb") as f:
            f.write(b"fn f() {}\n")
        assert a.next() is None and b.next() is None  # the rescans
        (b.path / "y.rs").write_text("fn y() {}\n")
        b.seen("y.rs")
        assert a.statuses == b.statuses == ["watching"]
    finally:
        hub.stop()


def test_a_folder_named_in_no_utf8_is_left_out_of_the_watch(tmp_path: Path) -> None:
    """watchfiles refuses a path that is not UTF-8 (UnicodeEncodeError), so a root
    holding such a folder could never be watched: it polled for good. The index skips
    that folder; the watch leaves it out and covers the rest."""
    root = tmp_path / "r"
    os.makedirs(bytes(root) + b"/d\xff")
    hub = WatchHub(20, 200)
    try:
        r = _Root(hub, root, poll_s=3600)
        assert r.statuses == ["watching"]
        (root / "x.rs").write_text("fn x() {}\n")
        r.seen("x.rs")
    finally:
        hub.stop()


def test_a_rescan_answers_the_cookies_waiting_for_its_root(tmp_path: Path) -> None:
    """A cookie whose event was in a lost batch was never reported: `search --fresh`
    waited out its timeout. A full rescan queued after the cookie was written covers
    it: the wait ends, after the rescan is queued."""
    cookies = Cookies()
    calls: list[set[str] | None] = []
    w = RootWatcher(
        WatchHub(20, 200),
        tmp_path,
        calls.append,
        lambda _s: None,
        30.0,
        on_rescan=lambda: cookies.rescanned(tmp_path),
    )
    answer: list[bool] = []
    waiter = threading.Thread(target=lambda: answer.append(cookies.sync(tmp_path, 60)))
    waiter.start()
    deadline = time.monotonic() + 10
    while not any(tmp_path.iterdir()):  # the cookie is written (no watch reports it)
        assert time.monotonic() < deadline
        time.sleep(0.01)
    w.rescan()
    waiter.join(10)
    assert answer == [True] and calls == [None]
