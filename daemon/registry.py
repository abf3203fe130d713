"""The registered roots: `roots.json`, the open `RootIndex` and watcher of each, and the
roots that failed to open (kept registered and shown in status, so a passing failure
loses nothing, and opened again by the daemon after a backoff: `daemon.reopen`).

A root whose own state cannot be opened (truncated, damaged, another schema) is set
aside as `<id>.broken` and rebuilt from its files: the state is a cache of the tree.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from shlex import quote
from typing import TYPE_CHECKING

import structlog

from daemon.config import Config, root_dir
from daemon.dep_roots import DependencyRoots
from daemon.dep_sync import DependencySync
from daemon.indexer import Indexer
from daemon.reopen import FailedRoot, FailedRoots, retry_delay, why
from daemon.root import RootIndex, misplaced, root_id_for
from daemon.sqlite import is_damage
from daemon.sync import Cookies
from daemon.watcher import RootWatcher, WatchHub
from ipc.errors import BadRequest, NotFound, StateError

if TYPE_CHECKING:
    from daemon.graph import GraphSource

log = structlog.get_logger("rcmd.registry")


class Registry:
    def __init__(
        self, config: Config, model_id: str, dim: int, indexer: Indexer, cookies: Cookies
    ) -> None:
        self._config = config
        self._cookies = cookies
        self._model = (model_id, dim)
        self._indexer = indexer
        self._file = config.paths.state_dir / "roots.json"
        self._roots: dict[str, RootIndex] = {}
        self._watchers: dict[str, RootWatcher] = {}
        self._hub = WatchHub(config.index.debounce_ms, config.index.max_wait_ms)
        self._failed = FailedRoots()
        self._lock = threading.Lock()
        self.deps = DependencyRoots(config.paths.state_dir / "deps.json")
        self.dep_sync = DependencySync(self.deps, self.add_dependency, self.remove)

    # ---- reads ----
    def roots(self) -> list[RootIndex]:
        """Every open root in path order: the same order however they were registered, so
        a search over several roots breaks ties between them the same way every time."""
        return sorted(self._roots.values(), key=lambda r: str(r.path))

    def failed(self) -> dict[str, FailedRoot]:
        """Registered roots that could not be opened, with why and their next try."""
        return self._failed.snapshot()

    def watch_rescans(self, root: RootIndex) -> int:
        w = self._watchers.get(root.id)
        return w.rescans if w is not None else 0

    def find(self, raw: str) -> RootIndex:
        """The registered root that holds `raw` (the root itself or any path inside it)."""
        path = Path(raw).expanduser().resolve()
        best: RootIndex | None = None
        for root in self.roots():
            if (path == root.path or root.path in path.parents) and (
                best is None or len(str(root.path)) > len(str(best.path))
            ):
                best = root
        if best is None:
            raise NotFound(_not_indexed(path, [r.path for r in self.roots()]))
        return best

    def select(self, raw: str | None, deps: bool = False) -> list[RootIndex]:
        """The root holding `raw`, or every project root when `raw` is None (at least
        one); with `deps`, also the dependency roots of those (every one when None)."""
        if raw:
            roots = [self.find(raw)]
            if deps:
                wanted = set(self.deps.used_by(roots[0].path))
                roots += [r for r in self.roots() if r.path in wanted]
        else:
            roots = [r for r in self.roots() if deps or self.deps.crate_of(r.path) is None]
        if not roots:
            raise NotFound("no roots are indexed; add one with: rcmd index PATH")
        for root in roots:
            root.clock.touch()  # a parked dependency root stays open a while (parking)
        return roots

    @contextmanager
    def graph_readers(self, roots: list[RootIndex]) -> Iterator[list[GraphSource]]:
        """What `daemon.graph.navigate` reads of `roots` (as `select` gave them), each
        on a read connection lent for the block."""
        with ExitStack() as lent:
            yield [
                (
                    lent.enter_context(r.state.reading()),
                    str(r.path),
                    self.deps.crate_of(r.path),
                    r.crate_names(),
                )
                for r in roots
            ]

    def _opened(self, path: Path) -> RootIndex | None:
        """The open root at `path`, if any (called under `_lock`)."""
        return next((r for r in self._roots.values() if r.path == path), None)

    # ---- changes ----
    def load(self) -> None:
        """Open every registered root (at start), each under the lock as `add_dependency`
        opens its own: a project's first batch refreshed its crates (`daemon.dep_sync`)
        meanwhile and opened a crate root this loop then opened again, found locked by
        the first, and set aside as broken."""
        for path in self._read():
            with self._lock:
                if self._opened(Path(path)) is not None:
                    continue
                try:
                    self._open(Path(path))
                except Exception as exc:
                    retry = retry_delay(self._failed.failed(path, why(exc)).attempts)
                    log.error("root_open_failed", root=path, error=str(exc), retry_in_s=retry)

    def reopen_due(self) -> None:
        """Open again each failed root whose backoff is over (`daemon.reopen`), one at a
        time under the lock: a root removed meanwhile (`remove`) is not tried, and one
        `add` opened meanwhile is not opened twice. Called from the daemon's tick, off
        the event loop; a search never waits for it."""
        for path in self._failed.due():
            with self._lock:
                if self._opened(Path(path)) is None:
                    self._failed.retry(path, functools.partial(self._open, Path(path)))

    def add(self, path: Path) -> RootIndex:
        """Register and open `path`, or queue a rescan when it is registered already."""
        with self._lock:
            if (known := self._opened(path)) is not None:
                self._indexer.enqueue(known, None)
                return known
            try:
                root = self._open(path)  # a root that failed to open is tried at once
            except Exception as exc:
                if str(path) in self._failed:  # still registered, tried again later
                    self._failed.failed(str(path), why(exc))
                raise
            self._failed.forget(str(path))
            self._save()
        return root

    def add_dependency(self, path: Path, crate: str, user: Path) -> RootIndex:
        """Register the sources of `crate` (`name version`) at `path` as a dependency
        root of project `user` (not watched; shared with other users)."""
        self.deps.record(path, crate, user)
        with self._lock:
            if (known := self._opened(path)) is not None:
                return known
            root = self._open(path)
            self._failed.forget(str(path))
            self._save()
        return root

    def remove(self, path: Path) -> None:
        """Unregister `path`: stop its watcher and queued work, delete its state."""
        with self._lock:
            root = self._opened(path)
            # Never tried again once removed (open and failed: its watcher did not start).
            if self._failed.forget(str(path)) and root is None:
                # Its state first, as an open root's: on a full disk that makes the room
                # roots.json needs (a failed root was not removable there).
                _delete_state(root_dir(self._config.paths, root_id_for(path)))
                self._save()
                return
            if root is None:
                raise NotFound(f"{path} is not an indexed root")
            root.cancel()  # a running batch stops at its next step
            watcher = self._watchers.pop(root.id, None)
            if watcher is not None:
                watcher.stop()
            self.deps.forget(path)
            self._indexer.forget(root.id)
            del self._roots[root.id]
            with root.lock:
                root.destroy()
            self._save()

    def watcher_closers(self) -> list[tuple[str, Callable[[], None]]]:
        """Shutdown steps that stop new work coming in: the watchers."""
        return [("watchers", self._hub.stop)]

    def root_closers(self) -> list[tuple[str, Callable[[], None]]]:
        """Shutdown steps once no batch runs: commit and close each root's stores."""
        return [(f"root {r.path}", r.close) for r in self._roots.values()]

    # ---- internals ----
    def _read(self) -> list[str]:
        try:
            data = json.loads(self._file.read_text())
            if not isinstance(data, dict) or not isinstance(data.get("roots"), list):
                raise ValueError("not an object with a 'roots' list")
        except FileNotFoundError:  # with root folders left, every index was orphaned
            return self._rebuild("roots.json is missing") if any(_markers(self._file)) else []
        except (OSError, ValueError) as exc:
            return self._rebuild(str(exc))
        return [p for p in data["roots"] if isinstance(p, str)]

    def _rebuild(self, error: str) -> list[str]:
        """A damaged or missing roots.json: set it aside and find the roots again from
        their state folders (each holds `root.txt`), so no root is forgotten or orphaned."""
        aside = self._file.with_name(self._file.name + ".broken")
        if self._file.exists():
            os.replace(self._file, aside)
        found = []
        for marker in sorted(_markers(self._file)):
            try:
                found.append(marker.read_text().strip())
            except OSError:
                continue
        paths = sorted({p for p in found if p})
        log.error("registry_damaged_rebuilt", error=error, moved_to=str(aside), roots=len(paths))
        with contextlib.suppress(StateError):  # a full disk: found again at the next start
            _write(self._file, paths)
        return paths

    def _save(self) -> None:
        _write(self._file, sorted({str(r.path) for r in self._roots.values()} | set(self.failed())))

    def _open(self, path: Path) -> RootIndex:
        root = _open_index(self._config, self._model, path)
        self._roots[root.id] = root
        if self.deps.crate_of(path) is not None:
            # Registry sources do not change: one scan (stat fast path) per start.
            root.progress.set_watcher("not watched (dependency sources)")
            self._indexer.enqueue(root, None)  # forced while its graph is stale
            return root
        hold = self._indexer.hold(root.id)  # the first scan waits for the watch
        watcher = RootWatcher(
            self._hub,
            path,
            lambda paths: self._indexer.enqueue(root, paths),
            root.progress.set_watcher,
            self._config.index.poll_interval_s,
            lambda names: self._cookies.seen(path, names),
            lambda: self._indexer.release(root.id, hold),
            lambda: self._cookies.rescanned(path),
        )
        self._watchers[root.id] = watcher
        if path.is_dir():
            self._indexer.enqueue(root, None)  # forced while its graph is stale
        else:
            # An unmounted disk, a moved checkout: keep the index; rescanned when it is back.
            root.progress.set_watcher("root missing; waiting for it to return")
            log.warning("root_missing", root=str(path))
        try:
            watcher.start()
        except RuntimeError:  # no thread could start: the first scan must not wait for it
            self._indexer.release(root.id, hold)
            raise
        log.info("root_opened", root=str(path), id=root.id, files=len(root.ledger))
        return root

    def confine(self, raw: str, raw_root: str | None) -> tuple[RootIndex, Path, str]:
        """(root, real file, path relative to the root) for a `path` param, which may be
        absolute or relative to `root`; refuses anything that resolves outside every root
        (`..`, absolute paths elsewhere, symlinks pointing out)."""
        if raw_root:
            base = self.find(raw_root)
            candidate = base.path / raw
        else:
            candidate = Path(raw).expanduser()
            if not candidate.is_absolute():
                raise BadRequest("'path' must be absolute unless 'root' is given")
        real = candidate.resolve()
        root = self.find(str(real))
        if raw_root and root is not base:  # `../other-root/src/lib.rs`
            raise BadRequest(f"{raw} leads out of {base.path}; give it from its own root")
        if not real.is_file():
            raise NotFound(f"{real} is not a file")
        return root, real, real.relative_to(root.path).as_posix()


def _open_index(config: Config, model: tuple[str, int], path: Path) -> RootIndex:
    """`path`'s index: opened, set aside and rebuilt when damaged, or an error that says
    what to fix when it is whole on a disk (or in a process) that failed."""
    where = root_dir(config.paths, root_id_for(path))
    reopen = functools.partial(RootIndex, path, config, *model)
    try:
        return reopen()
    except (OSError, StateError) as exc:
        if "WouldBlock" in str(exc):  # locked by a live user, not damaged: keep it
            raise StateError(
                f"the index of {path} is in use by another process ({exc}); "
                "stop it, then run: rcmd status"
            ) from exc
        wrong = misplaced(where)
        if not wrong and (isinstance(exc, OSError) or not is_damage(exc)):
            # Whole, on a disk that failed (full, read-only): never set aside.
            cause = exc.strerror if isinstance(exc, OSError) else None
            raise _disk_failed(where, path, cause or str(exc)) from exc
        cause = f"{exc}; the wrong kind: {', '.join(wrong)}" if wrong else str(exc)
        return _set_aside(path, where, cause, reopen)


def _write(file: Path, paths: list[str]) -> None:
    """Record `paths` as the registered roots. A disk that refuses (full) is a `state`
    error saying so: `rcmd remove` of a root on a full disk was an `internal` error."""
    tmp = file.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps({"roots": paths}))
        os.replace(tmp, file)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StateError(
            f"cannot record the indexed roots in {file}: {exc.strerror}; free some space, "
            "then run the command again"
        ) from exc


def _markers(registry: Path) -> Iterator[Path]:
    """The `root.txt` of each root folder beside `registry`: each names its root. A
    folder set aside (`<id>.broken`) names none: it outlives its root's removal, and a
    rebuilt roots.json brought the removed root back from it."""
    return (m for m in registry.parent.glob("roots/*/root.txt") if "." not in m.parent.name)


def _delete_state(where: Path) -> None:
    """Delete the state folder of a failed root the user removed, `root.txt` first (as
    `RootIndex.destroy` does): left behind, a roots.json rebuilt from the markers
    brought the removed root back. What cannot be deleted (an unreadable folder) stays,
    named in the log."""
    try:
        (where / "root.txt").unlink(missing_ok=True)
    except OSError as exc:
        log.warning("removed_root_state_kept", folder=str(where), error=str(exc))
    shutil.rmtree(where, ignore_errors=True)


def _set_aside(path: Path, where: Path, error: str, reopen: Callable[[], RootIndex]) -> RootIndex:
    """Move the unusable state folder `where` of root `path` aside as `<id>.broken` and
    open the root anew (rebuilt from its files); status says so until the daemon stops."""
    aside = where.with_name(where.name + ".broken")
    log.error("root_state_unusable_rebuilding", root=str(path), error=error, moved_to=str(aside))
    shutil.rmtree(aside, ignore_errors=True)
    where.rename(aside)
    root = reopen()
    root.progress.repaired = f"unusable ({error}); set aside as {aside.name}, rebuilt"
    return root


def _disk_failed(where: Path, path: Path, why: str) -> StateError:
    """The error of a root whose index in `where` is whole but its disk failed (full)."""
    return StateError(
        f"cannot use the index of {path} in {where}: {why}; free some space or fix "
        f"its permissions, then run: rcmd index {quote(str(path))}"
    )


def _not_indexed(path: Path, roots: list[Path]) -> str:
    """The error for a path no root holds, naming a next command that works: `rcmd
    index FILE` fails (not a directory), and a folder holding roots needs `--yes`
    where one of its roots was meant."""
    if not path.exists():
        return f"{path} does not exist; see the indexed roots with: rcmd status"
    head = f"{path} is not inside an indexed root"
    below = sorted(str(r) for r in roots if path in r.parents)
    if below:
        more = f" (and {len(below) - 3} more: rcmd status)" if len(below) > 3 else ""
        return f"{head}; give one of the roots in it: {', '.join(below[:3])}{more}"
    if path.is_dir():
        return f"{head}; add it with: rcmd index {quote(str(path))}"
    project = next((d for d in path.parents if (d / "Cargo.toml").is_file()), path.parent)
    return f"{head}; add its project with: rcmd index {quote(str(project))}"
