"""What git says about a folder: whether it is the top of a checkout, which repository it
belongs to (its common git dir, its root commits) and its HEAD.

Asked of `git` itself, in a subprocess with a timeout, rather than by reading `.git`:
worktrees (`.git` is a file naming another folder), clones, submodules and shared
object stores have layouts that only git resolves without guesswork, and a git that
hangs (a lock, a slow network file system) must not hold a daemon thread for ever.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger("rcmd.gitinfo")

#: Longest one git call may take; past it the folder counts as no checkout.
GIT_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class GitCheckout:
    """A folder that is the top of a git checkout (a clone or a worktree)."""

    top: Path
    #: The repository's common git dir: shared by a repository and its worktrees.
    common_dir: Path
    #: Commits without parents reachable from HEAD: shared by clones of one history.
    root_commits: frozenset[str]
    head: str

    def same_repository(self, other: GitCheckout) -> bool:
        """Whether `other` is a worktree of this repository or a clone of its history."""
        return self.common_dir == other.common_dir or bool(self.root_commits & other.root_commits)


def _git(path: Path, *args: str) -> str | None:
    """`git -C path ARGS` stdout, or None when git fails, is missing or takes too long.
    GIT_DIR and friends are dropped so the daemon's environment cannot redirect git."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    try:
        proc = subprocess.run(
            ["git", "-c", "core.fsmonitor=false", "-C", str(path), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("git_unavailable", path=str(path), error=str(exc))
        return None
    return proc.stdout if proc.returncode == 0 else None


def checkout_of(path: Path) -> GitCheckout | None:
    """The checkout whose top is `path`; None for a folder inside one, a bare repository,
    a repository without commits, or no repository at all."""
    out = _git(path, "rev-parse", "--show-toplevel", "--git-common-dir", "HEAD")
    if out is None:
        return None
    lines = out.splitlines()
    if len(lines) != 3:
        return None
    top = Path(lines[0]).resolve()
    if top != path.resolve():
        return None
    roots = _git(path, "rev-list", "--max-parents=0", "HEAD")
    if not roots:
        return None
    common = Path(lines[1])
    common = (path / common).resolve() if not common.is_absolute() else common.resolve()
    return GitCheckout(top, common, frozenset(roots.split()), lines[2].strip())
