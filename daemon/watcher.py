"""File events → debounced path sets for the indexer (watchfiles, inotify underneath).

watchfiles already coalesces: it yields once no event arrived for `step` ms, and at the
latest after `debounce` ms of a constant stream. Every event is treated as "reconcile
this path" by the pipeline, because renames and atomic saves arrive as bare add/delete
pairs. If the watcher fails (watch limit, root deleted), the root falls back to periodic
full rescans and says so in status.

Each directory of the root is watched on its own (non-recursively), listed without
following symlinks and without `target/` or `.git/`: notify's recursive mode follows
links, which put watches (and indexed files) outside the root. A new directory restarts
the watch on the new set, the new watches in place before the old ones are dropped.

inotify drops events when its queue (`fs.inotify.max_queued_events`) overflows, and
watchfiles swallows the overflow notice (measured: 1,916 of 2,000 rewrites reported with a
64-event queue, no error). Only a burst can overflow the queue, so a batch of at least
`BURST_PATHS` paths is turned into a full rescan: the stat fast path makes that cheap
(unchanged files cost one `stat`), and it finds whatever the lost events named.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from daemon.ignore import ALWAYS_IGNORED_DIRS
from daemon.sync import is_cookie

if TYPE_CHECKING:
    from watchfiles._rust_notify import RustNotify

log = structlog.get_logger("rcmd.watcher")

#: A watch batch this large is handled as a full rescan (see the module docstring).
BURST_PATHS = 256
#: Listings tried when directories vanish or appear while a watch is set up.
OPEN_ATTEMPTS = 5


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
        on_cookies: Callable[[set[str]], None] = lambda _names: None,
        on_ready: Callable[[], None] = lambda: None,
    ) -> None:
        self.root = root
        #: Called once, when the first watch is in place, has failed, or cannot start
        #: (the root is missing, or the watcher stops): the root's first scan waits for
        #: it, so nothing changes unseen between that scan and the watch.
        self._on_ready: Callable[[], None] | None = on_ready
        self._on_paths = on_paths
        self._on_status = on_status
        self._on_cookies = on_cookies
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

    def _ready(self) -> None:
        ready, self._on_ready = self._on_ready, None
        if ready is not None:
            ready()

    def _run(self) -> None:
        try:
            self._watch_loop()
        finally:
            self._ready()

    def _watch_loop(self) -> None:
        #: Whether files may have changed unseen since the last full scan: the root was
        #: gone, or the watch failed. The rescan for it runs once the new watch is in
        #: place, so nothing changed between that scan and the watch goes unseen.
        gap = False
        while not self._stop.is_set():
            if not self.root.is_dir():
                self._on_status("root missing; waiting for it to return")
                self._ready()
                while not self.root.is_dir():
                    if self._stop.wait(self._poll_s):
                        return
                log.info("root_returned", root=str(self.root))
                gap = True
            reason = self._watch(rescan_when_watching=gap)
            if reason is None:
                gap = False
                continue  # stopped, or the root went away: the loop decides
            log.warning("watcher_failed", root=str(self.root), reason=reason)
            self._ready()
            self._on_status(
                f"polling every {self._poll_s:g}s (watcher failed: {reason}); retrying it"
            )
            self._rescan()
            gap = True
            if self._stop.wait(self._poll_s):
                return

    def _rescan(self) -> None:
        self.rescans += 1
        self._on_paths(None)

    def _watch(self, *, rescan_when_watching: bool) -> str | None:
        """Watch until stopped or the root disappears (None), or fail (the reason)."""
        try:
            notify, caught = _open_notify(self.root)
        except Exception as exc:  # inotify limits, directories that keep vanishing
            return f"{type(exc).__name__}: {exc}"
        try:
            self._on_status("watching")
            self._ready()
            if rescan_when_watching:
                self._rescan()
            elif caught:
                self._deliver(caught)
            while not self._stop.is_set():
                raw = notify.watch(self._max_wait, self._step, 1000, self._stop)
                if raw == "stop":
                    return None
                if isinstance(raw, str):  # timeout, or a signal for the main thread
                    if not self.root.is_dir():
                        return None
                    continue
                rels = {r for _change, p in raw if (r := relevant(self.root, p)) is not None}
                if _new_dirs(self.root, rels):
                    notify, drained = _rewatch(self.root, notify)
                    rels |= drained
                self._deliver(rels)
                if not self.root.is_dir():
                    return None
        except Exception as exc:  # inotify limits, overflow
            return f"{type(exc).__name__}: {exc}"
        finally:
            notify.close()
        return None

    def _deliver(self, rels: set[str]) -> None:
        """Hand the paths to the indexer, then report cookies: a cookie is seen only once
        every event before it is queued (see daemon/sync.py)."""
        cookies = {r for r in rels if is_cookie(r)}
        rels -= cookies
        if len(rels) >= BURST_PATHS:  # build output (target/) is not counted
            log.info("watch_burst_rescan", root=str(self.root), paths=len(rels))
            self._rescan()
        elif rels:
            self._on_paths(rels)
        if cookies:
            self._on_cookies(cookies)


def watched_dirs(root: Path) -> list[str]:
    """The directories to watch: every one under `root`, never through a symlink and
    never into `target/` or `.git/`, so no watch (and no event) leads outside the root
    and build output costs no watches."""
    found = [str(root)]
    stack = [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for e in entries:
                    if (
                        e.name not in ALWAYS_IGNORED_DIRS
                        and e.is_dir(follow_symlinks=False)
                        and os.access(e.path, os.R_OK | os.X_OK)  # else inotify refuses it
                    ):
                        found.append(e.path)
                        stack.append(e.path)
        except OSError:  # removed or unreadable meanwhile: its parent's watch sees it
            continue
    return found


def _open_notify(root: Path) -> tuple[RustNotify, set[str]]:
    """A watch on every directory of `root`, and the paths to reconcile that it may have
    missed while it was set up.

    Setting up races the tree: a directory listed may be gone before its watch is added
    (listed again, up to `OPEN_ATTEMPTS` times: a rename during `cp -r` or a checkout is
    no failure), and one made before its parent's watch was added sends no event (the
    listing is repeated after the watch is in place; such directories are watched by a
    next instance and returned, so the pipeline walks what was written into them)."""
    from watchfiles._rust_notify import RustNotify

    notify: RustNotify | None = None
    caught: set[str] = set()
    error: OSError | None = None
    for _ in range(OPEN_ATTEMPTS):
        dirs = watched_dirs(root)
        try:
            # Non-recursive watches on a listed set: notify's recursive mode follows
            # symlinks. ignore_permission_denied stays off: it also hides the watch limit.
            new = RustNotify(dirs, False, False, 300, False, False)
        except (FileNotFoundError, NotADirectoryError) as exc:
            error = exc
            continue
        if notify is not None:
            caught |= _drain(root, notify)
        notify = new
        appeared = set(watched_dirs(root)) - set(dirs)
        caught |= {rel for d in appeared if (rel := relevant(root, d)) is not None}
        if not appeared:
            break
    if notify is None:
        assert error is not None
        raise error
    return notify, caught


def _drain(root: Path, old: RustNotify) -> set[str]:
    """What `old` caught and not yet reported, as paths to reconcile; `old` is closed."""
    raw = old.watch(1, 1, 1, None)
    old.close()
    if isinstance(raw, str):
        return set()
    return {r for _c, p in raw if (r := relevant(root, p)) is not None}


def _new_dirs(root: Path, rels: set[str]) -> bool:
    """Whether an event names a real directory (created, or moved in or renamed: a
    watch follows its inode, so a renamed one must be watched again under its name)."""
    for rel in rels:
        try:
            if rel and stat.S_ISDIR(os.lstat(root / rel).st_mode):
                return True
        except OSError:
            continue
    return False


def _rewatch(root: Path, old: RustNotify) -> tuple[RustNotify, set[str]]:
    """Watch the current directory set; the new watches are in place before the old
    ones go, and whatever the old instance caught meanwhile is returned, so nothing
    falls between the two."""
    new, caught = _open_notify(root)
    return new, caught | _drain(root, old)
