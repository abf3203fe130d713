"""The names a root's crates go by in Rust paths, from their Cargo.toml.

Users write `either::Either` whatever folder they cloned the crate into (`rust-either`,
Debian's `either-1.6.1`), and a workspace member's package may be named otherwise than
its folder (`crates/core` holding `mylib-core`). The symbol graph's module paths put a
member's folder name first (`daemon.resolve.crate_prefix`); this maps each crate's name
to that prefix, so `rcmd def mylib_core::Parser` finds `core::Parser`.
"""

from __future__ import annotations

import fnmatch
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from daemon.regular import read_text
from daemon.resolve import crate_prefix

log = structlog.get_logger("rcmd.crates")

#: Workspace members read at most: each is a file read when the manifest changes.
MAX_MEMBERS = 512
#: A Cargo.toml larger than this is no manifest anyone wrote.
MAX_MANIFEST_BYTES = 1 << 20
#: Folder entries looked at, at most, expanding one of the members' globs, and all of
#: them (`*/*/*/*/*/*` over eight symlinks to `.` listed 8^6 folders; over more levels
#: it never ended): a glob past its bound matches nothing.
MAX_GLOB_ENTRIES = 10_000
MAX_GLOBS_ENTRIES = 100_000
#: A version at the end of a folder's name (`tokio-1.24.2`, `sval-1.0.0-alpha.5`).
_VERSIONED = re.compile(r"-\d+(\.\d+)*([-+][\w.]+)?$")


@dataclass(frozen=True, slots=True)
class CrateNames:
    """Crate name as code writes it (`proc_macro2`) -> the module prefix of that crate's
    items in the root's graph (`()` for the crate at the root, `("core",)` for the
    member in `crates/core`)."""

    prefixes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __contains__(self, name: object) -> bool:
        return name in self.prefixes

    def prefix(self, name: str) -> tuple[str, ...] | None:
        return self.prefixes.get(name)

    def of(self, rel_path: str) -> str:
        """The name of the crate a root-relative file belongs to."""
        prefix = crate_prefix(rel_path)
        names = [n for n, p in self.prefixes.items() if p == prefix]
        return names[0] if names else (prefix[0] if prefix else "")


def folder_names(folder: str) -> list[str]:
    """What a crate in a folder of this name is called, lacking its manifest: the name
    without a `-1.2.3` version, then as it is, `-` read as `_`."""
    return list(
        dict.fromkeys(n.replace("-", "_") for n in (_VERSIONED.sub("", folder), folder) if n)
    )


def manifest_name(data: dict[str, Any]) -> str | None:
    """The crate name a parsed Cargo.toml gives its library: `[lib] name`, else the
    package's name with `-` read as `_` (as cargo does); None for a virtual manifest."""
    lib, package = data.get("lib"), data.get("package")
    for table in (lib, package):
        name = table.get("name") if isinstance(table, dict) else None
        if isinstance(name, str) and name:
            return name.replace("-", "_")
    return None


def read_names(root: Path) -> CrateNames:
    """The crate names of `root`: its own package and its workspace members (by their
    manifests; a member without one, or a root without any, by its folder's name)."""
    prefixes: dict[str, tuple[str, ...]] = {}
    data = _manifest(root / "Cargo.toml")
    own = manifest_name(data) if data is not None else None
    if own is not None:
        prefixes[own] = ()
    for member in _members(root, data):
        found = _manifest(member / "Cargo.toml")
        name = manifest_name(found) if found is not None else None
        prefix = (member.name.replace("-", "_"),)
        if name is not None:
            prefixes.setdefault(name, prefix)
    for name in folder_names(root.name):
        prefixes.setdefault(name, ())
    return CrateNames(prefixes)


def _manifest(path: Path) -> dict[str, Any] | None:
    """A parsed Cargo.toml; None when absent, not a regular file (a FIFO would block the
    request that reads it), over `MAX_MANIFEST_BYTES`, not TOML, or nested deeper than
    the parser recurses (`a = [[[…]]]`: a RecursionError failed every request)."""
    try:
        return tomllib.loads(read_text(path, MAX_MANIFEST_BYTES))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as exc:
        log.warning("manifest_unreadable", path=str(path), error=str(exc) or type(exc).__name__)
        return None


def _members(root: Path, data: dict[str, Any] | None) -> list[Path]:
    """The member folders a workspace manifest lists (globs expanded), each once and
    inside `root` once symlinks are resolved: a member that is the root again, or a link
    to it, read the root's manifest (up to 1 MB) once per link."""
    workspace = data.get("workspace") if data is not None else None
    patterns = workspace.get("members") if isinstance(workspace, dict) else None
    if not isinstance(patterns, list):
        return []
    real_root = os.path.realpath(root)
    seen = {real_root}
    out: list[Path] = []
    budget = [MAX_GLOBS_ENTRIES]
    for pattern in dict.fromkeys(p for p in patterns if isinstance(p, str)):
        if pattern.startswith("/") or ".." in pattern:
            continue
        if "**" in pattern:  # cargo's members are folders a level or two down
            continue
        for member in _expand(root, pattern, budget):
            real = os.path.realpath(member)
            if real in seen or not real.startswith(real_root.rstrip("/") + "/"):
                continue
            seen.add(real)
            out.append(member)
            if len(out) >= MAX_MEMBERS:
                return out
    return out


def _expand(root: Path, pattern: str, budget: list[int]) -> list[Path]:
    """The folders `pattern` (a glob of `/`-separated segments) matches below `root`, in
    name order, looking at no more than `MAX_GLOB_ENTRIES` folder entries, nor more than
    `budget[0]` is left of all globs' (it is spent)."""
    level, left = [root], MAX_GLOB_ENTRIES
    for segment in (s for s in pattern.split("/") if s not in ("", ".")):
        if not any(c in segment for c in "*?["):
            level = [d / segment for d in level if (d / segment).is_dir()]
            continue
        deeper: list[Path] = []
        for folder in level:
            try:
                names = sorted(e.name for e in os.scandir(folder))
            except OSError:
                continue
            budget[0] -= len(names)
            left -= len(names)
            if budget[0] < 0 or left < 0:
                log.warning("members_glob_too_wide", root=str(root), pattern=pattern)
                return []
            deeper.extend(folder / n for n in names if fnmatch.fnmatchcase(n, segment))
        level = [d for d in deeper if d.is_dir()]
    return level if level != [root] else []


class CrateNamesCache:
    """A root's crate names, read again only when its Cargo.toml changes (a member's
    renamed package is seen with the next change of the workspace manifest)."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._key: tuple[int, int] | None = None
        self._names = CrateNames()

    def get(self) -> CrateNames:
        try:
            st = (self._root / "Cargo.toml").stat()
            key = (st.st_mtime_ns, st.st_size)
        except OSError:
            key = (0, 0)
        if key != self._key:
            self._names, self._key = read_names(self._root), key
        return self._names
