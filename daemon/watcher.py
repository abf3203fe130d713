"""File events → debounced path sets for the indexer (watchfiles, inotify underneath).

One thread and one watchfiles instance serve every watched root (`WatchHub`): the wait
loop of watchfiles wakes every `step` ms and takes the GIL to look for a stop request,
so an instance per root cost each idle root ~50 wake-ups a second (19 roots: 1,057
wake-ups/s and 1.2% of a CPU, `python -m bench idle`). `RootWatcher` is one root's side.

watchfiles already coalesces: it yields once no event arrived for `step` ms, and at the
latest after `debounce` ms of a constant stream. Every event is treated as "reconcile
this path" by the pipeline, because renames and atomic saves arrive as bare add/delete
pairs. Each directory is watched on its own (`daemon.watch_dirs`); a new directory
re-opens the watch on the new set, the new watches in place before the old ones are
dropped, and what the old instance caught meanwhile is delivered.

A root that disappears goes silent (inotify loses its directories): it waits for the
root to return and is rescanned once watched again. If the watch cannot be set up (the
inotify watch limit), the root that was being added (else the one with the most
directories) falls back to a full rescan every `poll_s` seconds, retrying the watch each
time, and the others stay watched; an error of the running watch does that to every root.
One error is no broken watch: an event naming a path that is not UTF-8 (a file saved under
such a name in any root) makes watchfiles drop the batch it was in, for every root. The
watch is then opened again at once and every root rescanned; past `MAX_LOSSES` losses
within `LOSS_WINDOW_S` it polls, so no file rewritten again and again keeps every root
rescanning.

inotify drops events when its queue (`fs.inotify.max_queued_events`) overflows, and
watchfiles swallows the overflow notice (measured: 1,916 of 2,000 rewrites reported with a
64-event queue, no error). Only a burst can overflow the queue, so a batch of at least
`BURST_PATHS` paths of a root is turned into a full rescan of it: the stat fast path
makes that cheap (unchanged files cost one `stat`), and it finds whatever was lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from daemon.sync import is_cookie
from daemon.watch_dirs import names_a_dir, relevant, watched_dirs

if TYPE_CHECKING:
    from watchfiles._rust_notify import RustNotify

log = structlog.get_logger("rcmd.watcher")

#: A watch batch this large is handled as a full rescan (see the module docstring).
BURST_PATHS = 256
#: Listings tried when directories vanish or appear while a watch is set up.
OPEN_ATTEMPTS = 5
#: Waits before a root watched until now is blamed for a watch that cannot be set up:
#: the watches of the attempt that failed are released by the kernel a moment later.
RELEASE_WAITS_S = (0.02, 0.05, 0.1, 0.2)
#: Longest a wait for events lasts: how soon a root added, removed, gone or back is seen.
TICK_MS = 100
#: How often a missing root is looked for.
MISSING_CHECK_S = 1.0
#: watchfiles' error for an event whose path is not UTF-8 (the batch is lost, not the watch).
UNDECODABLE = "Unable to decode path"
#: More lost batches than this within `LOSS_WINDOW_S` seconds fail the watch to polling.
MAX_LOSSES = 5
LOSS_WINDOW_S = 60.0

PENDING, WATCHING, MISSING, POLLING = "pending", "watching", "missing", "polling"

Events = Iterable[tuple[int, str]]


class RootWatcher:
    """One root's side of the shared watch: `on_paths(rels)` per batch, `on_paths(None)`
    when a full rescan is due (bursts, a failed watch, the root's return). `on_ready` is
    called once, when its watch is in place, has failed, or cannot start (the root is
    missing, or the hub stops): the root's first scan waits for it, so nothing changes
    unseen between that scan and the watch. `on_rescan` runs after each full rescan is
    queued: a cookie written before it is covered by it, even if its event was lost
    (else a `--fresh` search waited out its timeout). Only the hub's thread calls the
    methods other than `start` and `stop`."""

    def __init__(
        self,
        hub: WatchHub,
        root: Path,
        on_paths: Callable[[set[str] | None], None],
        on_status: Callable[[str], None],
        poll_s: float,
        on_cookies: Callable[[set[str]], None] = lambda _names: None,
        on_ready: Callable[[], None] = lambda: None,
        on_rescan: Callable[[], None] = lambda: None,
    ) -> None:
        self.root = root
        self._on_rescan = on_rescan
        self._hub = hub
        self._on_paths = on_paths
        self._on_status = on_status
        self._on_cookies = on_cookies
        self._on_ready: Callable[[], None] | None = on_ready
        self.poll_s = poll_s
        #: Full rescans this watcher asked for (bursts, failures, the root's return).
        self.rescans = 0
        self.state = PENDING
        #: The directories its watch covers, as last listed; `relist` asks for a listing.
        self.dirs: list[str] = []
        self.relist = True
        #: Whether files may have changed unseen since the last full scan (the root was
        #: gone, or the watch failed): it is rescanned once watched again.
        self.gap = False
        #: When a missing root is looked for again, or a failed watch retried.
        self.due = 0.0

    def start(self) -> None:
        self._hub.add(self)

    def stop(self) -> None:
        """Stop watching; no callback runs after this returns (from another thread)."""
        self._hub.remove(self)

    def ready(self) -> None:
        ready, self._on_ready = self._on_ready, None
        if ready is not None:
            ready()

    def watching(self, caught: set[str]) -> None:
        """Its watches are in place; `caught`: paths that may have been missed meanwhile."""
        if self.state != WATCHING:
            self.state = WATCHING
            self._on_status("watching")
            self.ready()
        if self.gap:
            self.gap = False
            self.rescan()
        elif caught:
            self.deliver(caught)

    def went_missing(self) -> None:
        self.state, self.gap, self.relist = MISSING, True, True
        self.due = time.monotonic() + MISSING_CHECK_S
        self._on_status("root missing; waiting for it to return")
        self.ready()

    def failed(self, reason: str) -> None:
        """Its watch could not be set up or broke: rescan now and every `poll_s`."""
        log.warning("watcher_failed", root=str(self.root), reason=reason)
        self.state, self.gap, self.relist = POLLING, True, True
        self.due = time.monotonic() + self.poll_s
        self.ready()
        self._on_status(f"polling every {self.poll_s:g}s (watcher failed: {reason}); retrying it")
        self.rescan()

    def rescan(self) -> None:
        self.rescans += 1
        self._on_paths(None)
        self._on_rescan()

    def lost(self) -> None:
        """Events may have been lost: watch again (listed afresh) and rescan then."""
        self.gap = self.relist = True

    def deliver(self, rels: set[str]) -> None:
        """Hand the paths to the indexer, then report cookies: a cookie is seen only once
        every event before it is queued (see daemon/sync.py)."""
        cookies = {r for r in rels if is_cookie(r)}
        rels = rels - cookies
        if len(rels) >= BURST_PATHS:  # build output (target/) is not counted
            log.info("watch_burst_rescan", root=str(self.root), paths=len(rels))
            self.rescan()
        elif rels:
            self._on_paths(rels)
        if cookies:
            self._on_cookies(cookies)


class WatchHub:
    """The one thread and watchfiles instance that watch every root (module docstring).
    Roots are added and removed by request; the thread takes requests between waits,
    which last at most `TICK_MS` without events."""

    def __init__(self, debounce_ms: int, max_wait_ms: int) -> None:
        self._step = max(1, debounce_ms)
        self._max_wait = max(self._step, max_wait_ms)
        self._lock = threading.Lock()
        self._requests: list[tuple[bool, RootWatcher, threading.Event]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: The thread's own state from here on.
        self._watchers: list[RootWatcher] = []
        self._notify: RustNotify | None = None
        self._dirty = False
        self._losses: list[float] = []

    def add(self, watcher: RootWatcher) -> None:
        self._request(True, watcher)

    def remove(self, watcher: RootWatcher) -> None:
        done = self._request(False, watcher)
        if threading.current_thread() is not self._thread:
            done.wait(5)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(5)

    def _request(self, add: bool, watcher: RootWatcher) -> threading.Event:
        done = threading.Event()
        with self._lock:
            if self._stop.is_set():  # shutting down: nothing will be watched
                watcher.ready()
                done.set()
                return done
            self._requests.append((add, watcher, done))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="rcmd-watch", daemon=True)
                self._thread.start()
        return done

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._take_requests()
                self._check_roots()
                if self._dirty:
                    self._dispatch(self._reopen(), reopen=False)
                if self._notify is None:
                    self._stop.wait(TICK_MS / 1000)
                    continue
                try:
                    raw = self._notify.watch(self._max_wait, self._step, TICK_MS, self._stop)
                except Exception as exc:  # the running watch broke (queue, internal error)
                    self._broken(exc)
                    continue
                if not isinstance(raw, str):  # else stopped, timed out, or a signal
                    self._dispatch(raw, reopen=True)
        finally:
            self._close()

    def _take_requests(self) -> None:
        with self._lock:
            requests, self._requests = self._requests, []
        for add, watcher, done in requests:
            if add and watcher not in self._watchers:
                watcher.state, watcher.relist = PENDING, True
                self._watchers.append(watcher)
            elif not add and watcher in self._watchers:
                self._watchers.remove(watcher)
                watcher.ready()
            self._dirty = True
            done.set()

    def _check_roots(self) -> None:
        """Roots that went away, came back, or whose failed watch is due a retry."""
        now = time.monotonic()
        for w in self._watchers:
            if w.state in (PENDING, WATCHING) and not w.root.is_dir():
                w.went_missing()
                self._dirty = True
            elif w.state == MISSING and now >= w.due:
                if w.root.is_dir():
                    log.info("root_returned", root=str(w.root))
                    w.state, self._dirty = PENDING, True
                else:
                    w.due = now + MISSING_CHECK_S
            elif w.state == POLLING and now >= w.due:
                w.state, self._dirty = PENDING, True

    def _reopen(self) -> list[tuple[int, str]]:
        """Watch the directories of every root that wants a watch with a new instance,
        in place before the old one goes; what the old one caught is returned. A root
        the watch cannot take (the watch limit) is failed, and the rest tried again."""
        self._dirty = False
        want = [w for w in self._watchers if w.state in (PENDING, WATCHING)]
        new: RustNotify | None = None
        caught: dict[RootWatcher, set[str]] = {}
        waited = 0
        while want:
            try:
                new, caught = _open(want)
                break
            except Exception as exc:  # inotify limits, directories that keep vanishing
                culprit = _culprit(want)
                if culprit.state == WATCHING and waited < len(RELEASE_WAITS_S):
                    # The kernel frees a failed instance's watches a moment after it
                    # closes: a root watched until now is tried again before it is
                    # blamed (a root over the limit made the one beside it poll).
                    time.sleep(RELEASE_WAITS_S[waited])
                    waited += 1
                    continue
                want.remove(culprit)
                culprit.failed(f"{type(exc).__name__}: {exc}")
        old, self._notify = self._notify, new
        drained = _drain(old) if old is not None else []
        for w in want:
            w.watching(caught.get(w, set()))
        return drained

    def _dispatch(self, raw: Events, *, reopen: bool) -> None:
        """Deliver events to the roots they fall in; a new directory re-opens the watch
        first (when `reopen`; else at the next turn), its catch delivered too."""
        by_root = _by_root(self._watchers, raw)
        grown = [w for w, rels in by_root.items() if names_a_dir(w.root, rels)]
        if grown:
            for w in grown:
                w.relist = True
            if not reopen:
                self._dirty = True
            else:
                _merge(by_root, _by_root(self._watchers, self._reopen()))
        for w, rels in by_root.items():
            if w.state == WATCHING:
                w.deliver(rels)

    def _broken(self, exc: Exception) -> None:
        """The running watch raised: a lost batch (module docstring) re-opens the watch at
        once and rescans every root; anything else, or too many losses of late, polls."""
        reason = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        self._losses = [t for t in self._losses if now - t < LOSS_WINDOW_S] + [now]
        if UNDECODABLE not in str(exc) or len(self._losses) > MAX_LOSSES:
            self._fail_all(reason)
            return
        log.warning("watch_events_lost", reason=reason)
        self._drop_notify()
        for w in self._watchers:
            if w.state == WATCHING:
                w.lost()
        self._dirty = True

    def _fail_all(self, reason: str) -> None:
        self._drop_notify()
        for w in self._watchers:
            if w.state == WATCHING:
                w.failed(reason)

    def _drop_notify(self) -> None:
        if self._notify is not None:
            self._notify.close()
            self._notify = None

    def _close(self) -> None:
        self._drop_notify()
        with self._lock:
            requests, self._requests = self._requests, []
        for w in self._watchers + [w for _add, w, _done in requests]:
            w.ready()
        for _add, _w, done in requests:
            done.set()


def _open(watchers: list[RootWatcher]) -> tuple[RustNotify, dict[RootWatcher, set[str]]]:
    """A watch on every directory of `watchers`' roots, and per root the paths it may
    have missed while it was set up.

    Setting up races the tree: a directory listed may be gone before its watch is added
    (listed again, up to `OPEN_ATTEMPTS` times: a rename during `cp -r` or a checkout is
    no failure), and one made before its parent's watch was added sends no event (the
    roots just listed are listed again once the watch is in place; such directories are
    watched by a next instance and returned, so the pipeline walks what was written into
    them). Roots not asked to `relist` keep their listing: their events name any new
    directory."""
    from watchfiles._rust_notify import RustNotify

    fresh = [w for w in watchers if w.relist]
    for w in fresh:
        w.dirs, w.relist = watched_dirs(w.root), False
    notify: RustNotify | None = None
    caught: dict[RootWatcher, set[str]] = {}
    error: OSError | None = None
    for _ in range(OPEN_ATTEMPTS):
        dirs = sorted({d for w in watchers for d in w.dirs})
        try:
            # Non-recursive watches on a listed set: notify's recursive mode follows
            # symlinks. ignore_permission_denied stays off: it also hides the watch limit.
            new = RustNotify(dirs, False, False, 300, False, False)
        except (FileNotFoundError, NotADirectoryError) as exc:
            error = exc
            for w in watchers:
                w.dirs = watched_dirs(w.root)
            continue
        if notify is not None:
            _merge(caught, _by_root(watchers, _drain(notify)))
        notify = new
        appeared = False
        for w in fresh:
            listed = watched_dirs(w.root)
            extra = set(listed) - set(w.dirs)
            if extra:
                appeared, w.dirs = True, listed
                _merge(caught, _by_root([w], ((0, d) for d in extra)))
        if not appeared:
            break
    if notify is None:
        assert error is not None
        raise error
    return notify, caught


def _by_root(watchers: list[RootWatcher], raw: Events) -> dict[RootWatcher, set[str]]:
    """The paths of `raw` worth reconciling, by every root of `watchers` they fall in."""
    tops = [(w, str(w.root), str(w.root) + "/") for w in watchers]
    by_root: dict[RootWatcher, set[str]] = {}
    for _change, path in raw:
        for w, top, prefix in tops:
            if (path == top or path.startswith(prefix)) and (
                rel := relevant(w.root, path)
            ) is not None:
                by_root.setdefault(w, set()).add(rel)
    return by_root


def _merge(into: dict[RootWatcher, set[str]], more: dict[RootWatcher, set[str]]) -> None:
    for w, rels in more.items():
        into.setdefault(w, set()).update(rels)


def _culprit(want: list[RootWatcher]) -> RootWatcher:
    """The root to leave out when the watch cannot be set up: one being added (else any)
    with the most directories."""
    pending = [w for w in want if w.state != WATCHING] or want
    return max(pending, key=lambda w: len(w.dirs))


def _drain(old: RustNotify) -> list[tuple[int, str]]:
    """What `old` caught and not yet reported; `old` is closed."""
    raw = old.watch(1, 1, 1, None)
    old.close()
    return [] if isinstance(raw, str) else list(raw)
