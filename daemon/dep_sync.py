"""Keeps the dependency roots of a project indexed with `--deps` in step with its
Cargo.lock and Cargo.toml.

`cargo update` or a new dependency changes which crate versions the project uses; the
old index would go on answering `--deps` searches and navigation from versions the
project no longer builds with. After each file batch of such a project its manifests'
stat data is compared with what its crates were last read from (no read when they
agree); when it differs the crates are read again: new versions are registered and
indexed, and a version no project uses any more is unregistered. A manifest that
cannot be read keeps the crates of the last good one, and status says why.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog

from daemon.dep_roots import DependencyRoots
from daemon.deps import find_lock, register_dependencies

log = structlog.get_logger("rcmd.dep_sync")


def manifest_stat(project: Path) -> list[Any]:
    """[path, size, mtime_ns, ctime_ns] of the files `project`'s crates are read from
    (its lock file, its own or its workspace's, and its Cargo.toml); None for each
    figure of a file that is missing."""
    files = [f for f in (find_lock(project), project / "Cargo.toml") if f is not None]
    out: list[Any] = []
    for f in files:
        try:
            st = os.stat(f)
        except OSError:
            out.append([str(f), None, None, None])
            continue
        out.append([str(f), st.st_size, st.st_mtime_ns, st.st_ctime_ns])
    return out


class DependencySync:
    """Registers a project's dependency crates (`index --deps`) and refreshes them when
    its manifests change; `add(sources, "name version", project)` registers one crate
    root, `remove(sources)` unregisters one no project uses."""

    def __init__(
        self,
        deps: DependencyRoots,
        add: Callable[[Path, str, Path], object],
        remove: Callable[[Path], None],
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._deps = deps
        self._add = add
        self._remove = remove
        self._env = env

    def register(self, project: Path) -> dict[str, Any]:
        """Read `project`'s crates and register them; the reply of `index --deps`."""
        manifest = manifest_stat(project)
        before = set(self._deps.used_by(project))
        reply = register_dependencies(
            project, lambda dep, crate: self._add(dep, crate, project), self._env
        )
        skipped = reply.get("skipped")
        if skipped is None:
            for gone in before - {Path(r["path"]) for r in reply["roots"]}:
                self._release(gone, project)
        self._deps.note_project(project, manifest, skipped)
        return reply

    def refresh(self, project: Path) -> dict[str, Any] | None:
        """Register `project`'s crates again if it wants them and its manifests changed
        since they were read; the reply, or None when nothing was to do or it failed
        (logged: this runs on the indexer thread, after a batch, and must not raise)."""
        if not self._deps.wants_deps(project) or self._deps.crate_of(project) is not None:
            return None
        if manifest_stat(project) == self._deps.manifest(project):
            return None
        log.info("deps_manifest_changed", root=str(project))
        try:
            return self.register(project)
        except Exception:
            log.exception("deps_refresh_failed", root=str(project))
            return None

    def drop_project(self, project: Path) -> None:
        """`project` is being removed: its crates no other project uses go with it."""
        for dep in self._deps.used_by(project):
            self._release(dep, project)

    def _release(self, dep: Path, project: Path) -> None:
        if self._deps.release(dep, project):
            return
        log.info("deps_unused_removed", root=str(dep), project=str(project))
        try:
            self._remove(dep)
        except Exception:  # already gone: nothing to undo
            log.exception("deps_remove_failed", root=str(dep))
