"""What a watch covers: the directories of a root, listed without following symlinks,
and which event paths are worth reconciling.

Each directory is watched on its own (non-recursively), never through a symlink and
never into `target/` or `.git/`: notify's recursive mode follows links, which put
watches (and indexed files) outside the root, and build output would cost watches.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from daemon.ignore import ALWAYS_IGNORED_DIRS, printable_if_not_utf8


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


def watched_dirs(root: Path) -> list[str]:
    """The directories to watch: every one under `root`, never through a symlink and
    never into `target/` or `.git/`, so no watch (and no event) leads outside the root
    and build output costs no watches. A folder whose name is not UTF-8 is left out:
    watchfiles refuses such a path (UnicodeEncodeError), which failed the whole root's
    watch for good, and the index skips what it holds anyway (`non_utf8_name`)."""
    found = [str(root)]
    stack = [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for e in entries:
                    if (
                        e.name not in ALWAYS_IGNORED_DIRS
                        and printable_if_not_utf8(e.path) is None
                        and e.is_dir(follow_symlinks=False)
                        and os.access(e.path, os.R_OK | os.X_OK)  # else inotify refuses it
                    ):
                        found.append(e.path)
                        stack.append(e.path)
        except OSError:  # removed or unreadable meanwhile: its parent's watch sees it
            continue
    return found


def names_a_dir(root: Path, rels: set[str]) -> bool:
    """Whether an event names a real directory (created, or moved in or renamed: a
    watch follows its inode, so a renamed one must be watched again under its name)."""
    for rel in rels:
        try:
            if rel and stat.S_ISDIR(os.lstat(root / rel).st_mode):
                return True
        except OSError:
            continue
    return False
