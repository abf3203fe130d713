"""Snapshots end to end (issue 21): `rcmd export`, `rcmd index --from`, and git worktrees
and clones seeded from the root of their repository, through a real daemon and git."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

from daemon.chunker import chunk_source
from daemon.embed_groups import EmbedPolicy, embedded_texts
from tests.conftest import Daemon, require_tools, write_new_code

EDIT = (
    "\n/// Counts the retries left.\npub fn retries_left(n: u32) -> u32 { n.saturating_sub(1) }\n"
)


QUERIES = [
    ("retry failed http requests with backoff", "hybrid"),
    ("retries_left", "bm25"),
    ("store a value", "vector"),
]


def hit_key(hit: dict[str, Any]) -> tuple[Any, ...]:
    return (hit["path"], hit["start_line"], hit["end_line"], hit["symbol"], hit["score"])


def git(*args: str, cwd: Path) -> str:
    """git with an identity of its own for commits (no global config is changed)."""
    proc = subprocess.run(
        ["git", "-c", "user.name=rcmd test", "-c", "user.email=test@rcmd.invalid", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return proc.stdout


def root_of(daemon: Daemon, path: Path) -> dict[str, Any]:
    return daemon.root_status(path.resolve())


def edit(tree: Path) -> None:
    target = tree / "src" / "net" / "retry.rs"
    target.write_text(target.read_text() + EDIT)


def test_export_then_index_from_the_file_elsewhere(
    daemon: Daemon, crate: Path, tmp_path: Path
) -> None:
    """Export from one daemon; another, with a home of its own and an empty embedding
    cache (another machine), starts from the file and embeds only the changed file."""
    daemon.cli("index", str(crate), "--wait")
    file = tmp_path / "demo.rcmd.tar.gz"
    out = daemon.cli("export", str(crate), str(file)).stdout
    assert out.startswith(f"exported {crate.resolve()} to {file}")
    assert file.stat().st_mode & 0o777 == 0o600  # it holds the code, as the state does
    files = root_of(daemon, crate)["files"]
    other = tmp_path / "elsewhere" / "demo_crate"
    shutil.copytree(crate, other)
    edit(other)
    leftover = tmp_path / "home2" / "state" / "tmp" / "cut-short" / "build"
    leftover.mkdir(parents=True)  # what a crash in the middle of an adoption leaves
    fresh = Daemon(tmp_path / "home2")
    fresh.start()
    assert not leftover.parent.exists()
    try:
        shown = fresh.cli("index", str(other), "--from", str(file), "--wait").stdout
        assert "seeded from" in shown and "1 to index" in shown
        status = root_of(fresh, other)
        assert status["seeded_from"] == str(file)
        assert status["counters"]["files_read"] == 1  # only the changed file was read
        assert status["files"] == files
        # Only the changed file's texts: the snapshot's vectors stay out of this cache.
        changed = other / "src" / "net" / "retry.rs"
        texts = embedded_texts(
            chunk_source("src/net/retry.rs", changed.read_bytes()), EmbedPolicy()
        )
        assert fresh.status()["embedding"]["cache_misses"] == len(texts)
        hits = fresh.search("retries_left", "--root", str(other), "--mode", "bm25")
        assert hits and hits[0]["symbol"].endswith("retries_left")
        assert fresh.verify()["ok"]
        assert f"seeded from {file}" in fresh.cli("status").stdout
    finally:
        fresh.stop()
        fresh.kill()


def test_export_writes_only_a_new_or_regular_file(
    daemon: Daemon, crate: Path, tmp_path: Path
) -> None:
    """A snapshot replaces its path whole: a pipe (or a link to one), a folder or a
    device such as /dev/null must be refused and left as they were, not turned into a
    file."""
    daemon.cli("index", str(crate), "--wait")
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    link = tmp_path / "link"
    link.symlink_to(pipe)
    folder = tmp_path / "folder"
    folder.mkdir()
    for target, says in (
        (pipe, "not a regular file"),
        (link, "not a regular file"),
        (folder, "is a directory"),
        (tmp_path / "no" / "x", "not a directory"),
    ):
        proc = daemon.cli("export", str(crate), str(target), check=False)
        assert proc.returncode == 1 and says in proc.stderr, proc.stderr
        assert "internal" not in proc.stderr and "Traceback" not in proc.stderr
    assert stat.S_ISFIFO(pipe.lstat().st_mode) and link.is_symlink() and folder.is_dir()
    assert not list(folder.iterdir())
    again = tmp_path / "again.rcmd.tar.gz"
    again.write_text("an older snapshot")
    daemon.cli("export", str(crate), str(again))
    assert again.stat().st_size > 100


def test_export_during_a_batch_is_consistent(daemon: Daemon, tmp_path: Path) -> None:
    """An export asked for while a root is being indexed is taken between batches: the
    root adopted from it verifies, and fills in whatever vectors it lacked."""
    tree = tmp_path / "busy"
    write_new_code(tree / "src", "busy", files=20, fns=8)
    daemon.call("index", path=str(tree))
    file = tmp_path / "busy.rcmd.tar.gz"
    daemon.cli("export", str(tree), str(file))
    copy = tmp_path / "copy" / "busy"
    shutil.copytree(tree, copy)
    daemon.cli("index", str(copy), "--from", str(file), "--wait")
    daemon.wait_idle(tree)
    assert root_of(daemon, copy)["chunks"] == root_of(daemon, tree)["chunks"]
    check = daemon.verify()
    assert check["ok"], check


def test_index_from_a_bad_snapshot_fails_in_one_line(
    daemon: Daemon, crate: Path, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a snapshot")
    proc = daemon.cli("index", str(crate), "--from", str(junk), check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rcmd: ")
    assert "not a readable rcmd snapshot" in lines[0] and f"rcmd index {crate}" in lines[0]
    assert daemon.status()["roots"] == []
    assert not list((daemon.home / "state" / "roots").glob("*"))


def test_worktree_and_clone_are_seeded_from_the_repository_root(
    daemon: Daemon, crate: Path, tmp_path: Path
) -> None:
    require_tools("git")
    repo = crate
    git("init", "-q", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "demo", cwd=repo)
    daemon.cli("index", str(repo), "--wait")
    exported = daemon.call("export", path=str(repo), file=str(tmp_path / "repo.tar.gz"))
    assert exported["git_commit"] == git("rev-parse", "HEAD", cwd=repo).strip()

    worktree = tmp_path / "wt"
    git("worktree", "add", "-q", "-b", "feature", str(worktree), cwd=repo)
    edit(worktree)
    daemon.cli("index", str(worktree), "--wait")
    status = root_of(daemon, worktree)
    assert status["seeded_from"] == str(repo.resolve())
    assert status["seed"]["files_changed"] == 1 and status["seed"]["files_added"] == 0
    assert status["counters"]["files_read"] == 1
    assert f"seeded from {repo.resolve()}" in daemon.cli("status").stdout

    clone = tmp_path / "clone"
    git("clone", "-q", str(repo), str(clone), cwd=tmp_path)
    daemon.cli("index", str(clone), "--wait")
    assert root_of(daemon, clone)["seeded_from"] == str(repo.resolve())
    assert root_of(daemon, clone)["counters"]["files_read"] == 0

    plain = tmp_path / "plain"
    shutil.copytree(worktree, plain, ignore=shutil.ignore_patterns(".git"))
    daemon.cli("index", str(plain), "--wait")
    assert root_of(daemon, plain)["seeded_from"] is None  # never seeded by guesswork
    assert daemon.verify()["ok"]
    # The seeded worktree answers as the cold index of the same files does.
    for query, mode in QUERIES:
        seeded = daemon.search(query, "--root", str(worktree), "--mode", mode)
        cold = daemon.search(query, "--root", str(plain), "--mode", mode)
        assert [hit_key(h) for h in seeded] == [hit_key(h) for h in cold], query
