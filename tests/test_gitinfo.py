"""Which repository a folder belongs to, asked of the real git (issue 21.3)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from daemon.gitinfo import checkout_of
from tests.conftest import require_tools


def git(*args: str, cwd: Path) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@rcmd.invalid", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_worktrees_and_clones_share_a_repository(tmp_path: Path) -> None:
    require_tools("git")
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "lib.rs").write_text("pub fn one() {}\n")
    git("init", "-q", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "one", cwd=repo)
    git("worktree", "add", "-q", "-b", "other", str(tmp_path / "wt"), cwd=repo)
    git("clone", "-q", str(repo), str(tmp_path / "clone"), cwd=tmp_path)

    main, wt, clone = (checkout_of(tmp_path / n) for n in ("repo", "wt", "clone"))
    assert main is not None and wt is not None and clone is not None
    assert main.top == repo.resolve() and len(main.head) == 40
    assert wt.common_dir == main.common_dir and wt.same_repository(main)
    assert clone.common_dir != main.common_dir and clone.same_repository(main)

    unrelated = tmp_path / "unrelated"
    unrelated.mkdir()
    (unrelated / "a.rs").write_text("fn a() {}\n")
    git("init", "-q", cwd=unrelated)
    git("add", "-A", cwd=unrelated)
    git("commit", "-q", "-m", "a", cwd=unrelated)
    other = checkout_of(unrelated)
    assert other is not None and not other.same_repository(main)


def test_no_checkout_top_is_no_checkout(tmp_path: Path) -> None:
    require_tools("git")
    plain = tmp_path / "plain"
    plain.mkdir()
    assert checkout_of(plain) is None  # not a repository
    git("init", "-q", cwd=plain)
    assert checkout_of(plain) is None  # no commit yet
    (plain / "src").mkdir()
    (plain / "src" / "lib.rs").write_text("\n")
    git("add", "-A", cwd=plain)
    git("commit", "-q", "-m", "x", cwd=plain)
    assert checkout_of(plain) is not None
    assert checkout_of(plain / "src") is None  # inside a checkout, not its top
