"""Which registered roots are dependency crates (read-only sources of one crate version),
and which projects use each: `deps.json` in the state dir, beside `roots.json`.

A dependency root is indexed like any root but not watched (registry sources do not
change), left out of searches unless `--deps` asks for them, and shared: two projects
that use serde 1.0.152 share its one index.
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
        self._roots: dict[str, dict[str, Any]] = self._read()
        #: Project -> why its last `index --deps` added no crates (a broken lock file),
        #: for status; kept in memory only: the next `index --deps` says it again.
        self._skipped: dict[str, str] = {}

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self._file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:  # a damaged file: the crates index as roots
            log.error("deps_file_unreadable", path=str(self._file), error=str(exc))
            return {}
        roots = data.get("roots") if isinstance(data, dict) else None
        if not isinstance(roots, dict):
            return {}
        return {
            p: {"crate": str(v.get("crate", "")), "used_by": sorted(set(v.get("used_by", [])))}
            for p, v in roots.items()
            if isinstance(p, str) and isinstance(v, dict)
        }

    def _write(self) -> None:
        tmp = self._file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"roots": self._roots}, indent=1))
        os.replace(tmp, self._file)

    def crate_of(self, path: Path) -> str | None:
        """`name version` when `path` is a dependency root, else None."""
        entry = self._roots.get(str(path))
        return entry["crate"] if entry is not None else None

    def used_by(self, project: Path) -> list[Path]:
        """The dependency roots `project` was indexed with (`index --deps`)."""
        return [Path(p) for p, v in self._roots.items() if str(project) in v["used_by"]]

    def note_skipped(self, project: Path, why: str | None) -> None:
        """Remember (or, with None, forget) why `project`'s dependencies were skipped."""
        with self._lock:
            if why is None:
                self._skipped.pop(str(project), None)
            else:
                self._skipped[str(project)] = why

    def skipped(self, project: Path) -> str | None:
        return self._skipped.get(str(project))

    def record(self, path: Path, crate: str, user: Path) -> None:
        with self._lock:
            entry = self._roots.setdefault(str(path), {"crate": crate, "used_by": []})
            entry["used_by"] = sorted({*entry["used_by"], str(user)})
            self._write()

    def forget(self, path: Path) -> None:
        """`path` is unregistered: as a dependency root, and as a user of others."""
        with self._lock:
            self._roots.pop(str(path), None)
            self._skipped.pop(str(path), None)
            for entry in self._roots.values():
                entry["used_by"] = [u for u in entry["used_by"] if u != str(path)]
            self._write()
