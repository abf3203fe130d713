"""Which files under a root are indexed: `.gitignore`/`.ignore` rules (nested, with
negations), the always-ignored `target/` and `.git/`, and only `*.rs` files.

Rules are matched the way git does: a file is tested against every ignore file from the
root down to its own directory, and the deepest matching pattern wins.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pathspec

from daemon.mounts import kernel_mounts_below
from daemon.regular import read_regular

IGNORE_FILES = (".gitignore", ".ignore")
ALWAYS_IGNORED_DIRS = frozenset({".git", "target", ".hg", ".svn", ".jj"})
#: An ignore file larger than this is not read (it is surely not a list of patterns).
MAX_IGNORE_FILE_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class _Layer:
    base: str  # directory of the ignore file, relative to the root ("" for the root)
    spec: pathspec.GitIgnoreSpec


def _load_layer(root: Path, rel_dir: str, listing: set[str] | None = None) -> _Layer | None:
    """The rules of `rel_dir`'s own ignore files; `listing` (the directory's names, when
    the caller has them) spares trying to open files that are not there: a walk of a
    22k-file tree spent most of its time on 7,000 failed opens."""
    lines: list[str] = []
    for name in IGNORE_FILES:
        if listing is not None and name not in listing:
            continue
        try:  # as git does since 2.32: a symlinked ignore file is not followed
            data, _st = read_regular(os.path.join(root, rel_dir, name), MAX_IGNORE_FILE_BYTES)
        except OSError:
            continue
        if data is not None:
            lines.extend(data.decode("utf-8", "replace").splitlines())
    if not lines:
        return None
    return _Layer(rel_dir, pathspec.GitIgnoreSpec.from_lines(lines))


def _ignored(layers: tuple[_Layer, ...], rel: str, is_dir: bool) -> bool:
    verdict = False
    probe_suffix = "/" if is_dir else ""
    for layer in layers:
        sub = rel[len(layer.base) + 1 :] if layer.base else rel
        result = layer.spec.check_file(sub + probe_suffix)
        if result.include is not None:
            verdict = result.include
    return verdict


def printable_if_not_utf8(rel: str) -> str | None:
    """None for a valid UTF-8 name; else a printable form of it (`bad\\xff.rs`), since
    SQLite, Tantivy and JSON all need UTF-8 and such files can only be reported."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return None


def is_indexable_name(name: str) -> bool:
    return name.endswith(".rs") and not name.startswith(".")


class IgnoreRules:
    """Ignore decisions for one root, with each directory's rule files read once."""

    def __init__(self, root: Path, kernel_mounts: list[Path] | None = None) -> None:
        self.root = root
        self._layers: dict[str, tuple[_Layer, ...]] = {}
        # Folders a walk never enters (`/proc` under a root of `/`: `daemon.mounts`).
        self._skipped = kernel_mounts_below(root, kernel_mounts or [])

    def layers_for(self, rel_dir: str, listing: set[str] | None = None) -> tuple[_Layer, ...]:
        cached = self._layers.get(rel_dir)
        if cached is not None:
            return cached
        parent = () if rel_dir == "" else self.layers_for(os.path.dirname(rel_dir))
        own = _load_layer(self.root, rel_dir, listing)
        layers = (*parent, own) if own else parent
        self._layers[rel_dir] = layers
        return layers

    def forget(self, rel_dir: str) -> None:
        """Drop cached rules at and below `rel_dir` (an ignore file there changed)."""
        prefix = rel_dir + "/" if rel_dir else ""
        for key in [k for k in self._layers if k == rel_dir or k.startswith(prefix)]:
            del self._layers[key]

    def is_ignored(self, rel: str, is_dir: bool) -> bool:
        """Whether `rel` (posix, relative to the root) or a directory above it is ignored."""
        parts = rel.split("/")
        if any(p in ALWAYS_IGNORED_DIRS for p in (parts if is_dir else parts[:-1])):
            return True
        for i in range(1, len(parts)):
            if _ignored(self.layers_for("/".join(parts[: i - 1])), "/".join(parts[:i]), True):
                return True
        return _ignored(self.layers_for("/".join(parts[:-1])), rel, is_dir)

    def walk(
        self,
        rel_dir: str = "",
        not_utf8: set[str] | None = None,
        unreadable: set[str] | None = None,
    ) -> Iterator[tuple[str, os.stat_result]]:
        """Every indexable file at or below `rel_dir` with its lstat, in a stable order.

        Symlinks are not followed, so a link cannot lead the index outside the root. Names
        that are not valid UTF-8 are left out and added, printable, to `not_utf8`; folders
        that may not be listed (EACCES) are added to `unreadable`, to be reported.
        """
        stack = [rel_dir]
        while stack:
            current = stack.pop()
            try:
                with os.scandir(os.path.join(self.root, current)) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except PermissionError:
                if unreadable is not None:
                    unreadable.add(current)
                continue
            except OSError:
                continue
            layers = self.layers_for(current, {e.name for e in entries})
            subdirs: list[str] = []
            for entry in entries:
                rel = f"{current}/{entry.name}" if current else entry.name
                shown = printable_if_not_utf8(rel)
                if shown is not None:
                    if not_utf8 is not None:
                        not_utf8.add(shown)
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if (
                            entry.name not in ALWAYS_IGNORED_DIRS
                            and rel not in self._skipped
                            and not _ignored(layers, rel, True)
                        ):
                            subdirs.append(rel)
                    elif (
                        entry.is_file(follow_symlinks=False)
                        and is_indexable_name(entry.name)
                        and not _ignored(layers, rel, False)
                    ):
                        yield rel, entry.stat(follow_symlinks=False)
                except OSError:
                    continue
            stack.extend(reversed(subdirs))


def through_link(root: Path | str, rel: str) -> bool:
    """Whether a directory on the way from `root` to `rel` is a symlink (or is gone).

    `lstat` follows every component but the last, so a path under `root/link/` would
    name a file outside the root; callers treat such a path as absent.
    """
    parts = rel.split("/")[:-1]
    current = str(root)
    for part in parts:
        current = os.path.join(current, part)
        try:
            if not stat.S_ISDIR(os.lstat(current).st_mode):
                return True
        except OSError:
            return True
    return False
