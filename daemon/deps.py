"""A Cargo project's dependency crates, and where their sources lie on this machine.

`Cargo.lock` (the project's own, or its workspace's above it) names each package with
its exact version; without a lock, `Cargo.toml`'s dependency tables name the crates and
the highest version found locally is taken. Sources are looked for where cargo and
distributions put them, never downloaded: `$CARGO_HOME/registry/src/*/<name>-<version>`
(what `cargo fetch` unpacks), the project's `vendor/` (`cargo vendor`), and Debian's
`/usr/share/cargo/registry/<name>-<version>` (`apt-get install librust-<name>-dev`).
Each crate version becomes one read-only root, shared by every project that uses it.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from daemon.regular import read_text
from ipc.errors import BadRequest

log = structlog.get_logger("rcmd.deps")

DEBIAN_REGISTRY = Path("/usr/share/cargo/registry")
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)")
#: What cargo allows in a package name and a semver version: nothing that walks paths.
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SEMVER = re.compile(r"^[0-9A-Za-z.+-]{1,64}$")


@dataclass(frozen=True, slots=True)
class DepCrate:
    name: str
    version: str
    #: Its sources on this machine; None when none of the places holds them.
    path: Path | None


def find_lock(project: Path) -> Path | None:
    """The Cargo.lock that governs `project`: its own, else its workspace's above it."""
    for folder in (project, *project.parents):
        lock = folder / "Cargo.lock"
        if lock.is_file():
            return lock
    return None


class ManifestError(ValueError):
    """A lock file or manifest that cargo itself would refuse: its dependencies are
    skipped (the project still indexes), and the reply says which file and why."""


def _table(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ManifestError(f"{what} is not a table")
    return value


def locked_packages(lock_text: str) -> list[tuple[str, str]]:
    """(name, version) of every package a lock file takes from a registry (workspace
    members and git checkouts have no registry source)."""
    packages = tomllib.loads(lock_text).get("package", [])
    if not isinstance(packages, list):
        raise ManifestError("`package` is not an array of [[package]] tables")
    out = []
    for pkg in packages:
        pkg = _table(pkg, "a [[package]] entry")
        source = pkg.get("source", "")
        if isinstance(source, str) and source.startswith(("registry+", "sparse+")):
            name, version = pkg.get("name"), pkg.get("version")
            if not isinstance(name, str) or not isinstance(version, str):
                raise ManifestError(f"a registry [[package]] without a name and version ({name!r})")
            out.append((name, version))
    return sorted(set(out))


def declared_crates(manifest_text: str) -> list[str]:
    """Crate names of a Cargo.toml's dependency tables (a renamed one by its `package`)."""
    data = tomllib.loads(manifest_text)
    kinds = ("dependencies", "dev-dependencies", "build-dependencies")
    tables = [_table(data.get(k, {}), f"[{k}]") for k in kinds]
    for name, target in _table(data.get("target", {}), "[target]").items():
        target = _table(target, f"[target.{name}]")
        tables += [_table(target.get(k, {}), f"[target.{name}.{k}]") for k in kinds[:2]]
    names = set()
    for table in tables:
        for key, spec in table.items():
            if isinstance(spec, dict) and (spec.get("path") or spec.get("git")):
                continue  # not from a registry
            package = spec.get("package", key) if isinstance(spec, dict) else key
            if not isinstance(package, str):
                raise ManifestError(f"dependency {key}: `package` is not a string")
            names.add(package)
    return sorted(names)


#: A lock file or manifest larger than this is not one cargo wrote (a big workspace's
#: Cargo.lock is a few MB).
MAX_MANIFEST_BYTES = 64 << 20


def _wanted(project: Path) -> list[tuple[str, str | None]]:
    """(name, locked version or None) of what `project` depends on; a lock file or
    manifest that cannot be read or parsed is a BadRequest naming it and the problem."""
    lock = find_lock(project)
    manifest = project / "Cargo.toml"
    file = lock if lock is not None else manifest
    try:
        if lock is not None:
            return list(locked_packages(read_text(lock, MAX_MANIFEST_BYTES)))
        if manifest.is_file():
            return [(n, None) for n in declared_crates(read_text(manifest, MAX_MANIFEST_BYTES))]
    except OSError as exc:
        raise BadRequest(f"{file}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadRequest(f"{file}: not valid TOML: {exc}") from None
    except ValueError as exc:  # ManifestError, UnicodeDecodeError
        raise BadRequest(f"{file}: {exc}") from None
    except RecursionError:  # `a = [[[…]]]`: tomllib recurses once a level
        raise BadRequest(f"{file}: not valid TOML: nested too deeply") from None
    return []


def source_dirs(project: Path, env: Mapping[str, str]) -> list[Path]:
    """Folders that hold `<name>-<version>` source trees, in the order they are tried."""
    cargo_home = Path(env.get("CARGO_HOME") or Path(env.get("HOME", "~")) / ".cargo")
    registry = sorted((cargo_home.expanduser() / "registry" / "src").glob("*"))
    return [*registry, project / "vendor", DEBIAN_REGISTRY]


def _version_key(folder: Path, name: str) -> tuple[int, ...]:
    m = _VERSION.match(folder.name[len(name) + 1 :])
    return tuple(int(x) for x in m.groups()) if m else (-1,)


def find_source(name: str, version: str | None, dirs: Iterable[Path]) -> Path | None:
    """The source folder of crate `name` at `version` (the highest found when None).
    A lock file is input from whoever wrote the repository: a name or version that is
    not cargo's (`../../home/me`), or a folder that leads out of where it was looked for
    (a symlink in `vendor/`), finds nothing."""
    if not _NAME.match(name) or (version is not None and not _SEMVER.match(version)):
        return None
    for folder in dirs:
        if version is not None:
            found = [folder / f"{name}-{version}"]
        else:
            found = sorted(folder.glob(f"{name}-[0-9]*"), key=lambda p: _version_key(p, name))
        for p in reversed(found):
            if (p / "Cargo.toml").is_file() and p.resolve().is_relative_to(folder.resolve()):
                return p
    return None


def dependencies(project: Path, env: Mapping[str, str] | None = None) -> list[DepCrate]:
    """The dependency crates of `project` with their local sources (see the module doc)."""
    env = os.environ if env is None else env
    dirs = source_dirs(project, env)
    out = []
    for name, version in _wanted(project):
        path = find_source(name, version, dirs)
        shown = version or (path.name[len(name) + 1 :] if path is not None else "?")
        out.append(DepCrate(name, shown, path.resolve() if path is not None else None))
    return out


def register_dependencies(
    project: Path, add: Callable[[Path, str], object], env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """`add(sources, "name version")` for each dependency crate of `project` found here;
    the reply of `index --deps`: the crates added, and those found nowhere. A broken lock
    file or manifest adds none and says why in `skipped` (the project itself is indexed
    all the same: its code does not depend on the lock file being readable)."""
    found, missing = [], []
    try:
        deps = dependencies(project, env)
    except BadRequest as exc:
        log.warning("deps_skipped", root=str(project), error=str(exc))
        return {"roots": [], "missing": [], "skipped": str(exc)}
    for dep in deps:
        crate = f"{dep.name} {dep.version}"
        if dep.path is None:
            missing.append(crate)
            continue
        add(dep.path, crate)
        found.append({"crate": crate, "path": str(dep.path)})
    log.info("deps_registered", root=str(project), found=len(found), missing=len(missing))
    return {"roots": found, "missing": missing}
