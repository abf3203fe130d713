"""Which registered roots are dependency crates (read-only sources of one crate version),
and which projects use each: `deps.json` in the state dir, beside `roots.json`.

A dependency root is indexed like any root but not watched (registry sources do not
change), left out of searches unless `--deps` asks for them, and shared: two projects
that use serde 1.0.152 share its one index.

The file also keeps the projects indexed with `--deps`: the stat data of the manifests
their crates were read from (so a changed Cargo.lock is noticed, `daemon.dep_sync`) and
why their last reading added none, if it failed (shown in status across restarts).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("rcmd.dep_roots")


class DependencyRoots:
    def __init__(self, file: Path) -> None:
        self._file = file
        self._lock = threading.Lock()
        data = self._read()
        self._roots: dict[str, dict[str, Any]] = _roots_of(data)
        #: Project -> {"manifest": stat data its crates were read from, "skipped": why
        #: the last reading added none, or None}.
        self._projects: dict[str, dict[str, Any]] = _projects_of(data)
        for entry in self._roots.values():  # a file from before projects were kept
            for user in entry["used_by"]:
                self._projects.setdefault(user, {"manifest": [], "skipped": None})

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self._file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:  # a damaged file: the crates index as roots
            log.error("deps_file_unreadable", path=str(self._file), error=str(exc))
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self) -> None:
        tmp = self._file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"roots": self._roots, "projects": self._projects}, indent=1))
        os.replace(tmp, self._file)

    def crate_of(self, path: Path) -> str | None:
        """`name version` when `path` is a dependency root, else None."""
        entry = self._roots.get(str(path))
        return entry["crate"] if entry is not None else None

    def used_by(self, project: Path) -> list[Path]:
        """The dependency roots `project` was indexed with (`index --deps`)."""
        return [Path(p) for p, v in self._roots.items() if str(project) in v["used_by"]]

    def note_project(self, project: Path, manifest: list[Any], skipped: str | None) -> None:
        """`project` was indexed with its dependencies, read from files whose stat data is
        `manifest`; `skipped` says why none was added (a broken lock file), else None."""
        with self._lock:
            self._projects[str(project)] = {"manifest": manifest, "skipped": skipped}
            self._write()

    def wants_deps(self, project: Path) -> bool:
        return str(project) in self._projects

    def manifest(self, project: Path) -> list[Any] | None:
        entry = self._projects.get(str(project))
        return entry["manifest"] if entry is not None else None

    def skipped(self, project: Path) -> str | None:
        entry = self._projects.get(str(project))
        return entry["skipped"] if entry is not None else None

    def release(self, path: Path, user: Path) -> bool:
        """`user` no longer uses the dependency root `path`; whether another one does."""
        with self._lock:
            entry = self._roots.get(str(path))
            if entry is None:
                return False
            entry["used_by"] = [u for u in entry["used_by"] if u != str(user)]
            self._write()
            return bool(entry["used_by"])

    def record(self, path: Path, crate: str, user: Path) -> None:
        with self._lock:
            entry = self._roots.setdefault(str(path), {"crate": crate, "used_by": []})
            entry["used_by"] = sorted({*entry["used_by"], str(user)})
            self._write()

    def forget(self, path: Path) -> None:
        """`path` is unregistered: as a dependency root, and as a user of others."""
        with self._lock:
            self._roots.pop(str(path), None)
            self._projects.pop(str(path), None)
            for entry in self._roots.values():
                entry["used_by"] = [u for u in entry["used_by"] if u != str(path)]
            self._write()


def _roots_of(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    roots = data.get("roots")
    if not isinstance(roots, dict):
        return {}
    return {
        p: {"crate": str(v.get("crate", "")), "used_by": sorted(set(v.get("used_by", [])))}
        for p, v in roots.items()
        if isinstance(p, str) and isinstance(v, dict)
    }


def _projects_of(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    projects = data.get("projects")
    if not isinstance(projects, dict):
        return {}
    return {
        p: {
            "manifest": v.get("manifest") if isinstance(v.get("manifest"), list) else [],
            "skipped": v["skipped"] if isinstance(v.get("skipped"), str) else None,
        }
        for p, v in projects.items()
        if isinstance(p, str) and isinstance(v, dict)
    }
