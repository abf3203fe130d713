"""Symlinks never lead the index, or the watcher, outside a root.

The initial walk is covered in test_ignore.py; these drive a real daemon, because the
leak was in the watcher: an event under `root/link/` (a link to a directory elsewhere)
was reconciled like any path of the root, and every directory behind the link was
watched.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import Daemon, wait_until

SECRET = "zqxsecretfn"


def _outside(tmp_path: Path, subdirs: int = 0) -> Path:
    out = tmp_path / "outside"
    out.mkdir()
    (out / "seed.rs").write_text("pub fn outside_seed() {}\n")
    for i in range(subdirs):
        (out / f"d{i}").mkdir()
    return out


def _inotify_watches(pid: int) -> int:
    """Watches held by `pid`'s inotify instances, from /proc (Linux)."""
    total = 0
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            if os.readlink(fd) != "anon_inode:inotify":
                continue
            info = (Path(f"/proc/{pid}/fdinfo") / fd.name).read_text()
        except OSError:
            continue
        total += sum(1 for line in info.splitlines() if line.startswith("inotify wd:"))
    return total


def _sync(daemon: Daemon, crate: Path, word: str) -> None:
    """Write a file inside the root and wait until it is searchable: inotify events come
    in order through one queue, so everything written before it has been handled."""
    (crate / "src" / f"{word}.rs").write_text(f"pub fn {word}() {{}}\n")
    wait_until(
        lambda: any(
            h["symbol"].split("::")[-1] == word for h in daemon.search(word, "--mode", "bm25")
        ),
        timeout=60,
    )
    daemon.wait_idle(crate)


def _assert_nothing_outside(daemon: Daemon, crate: Path) -> None:
    hits = daemon.search(SECRET, "--mode", "bm25", "--limit", "50")
    assert not [h for h in hits if SECRET in h["snippet"] or h["path"].startswith("link")]
    assert not daemon.search("outside_seed", "--mode", "bm25", "--symbol", "outside_seed")
    assert daemon.verify()["ok"]


@pytest.mark.slow
def test_link_present_at_start_is_not_followed(daemon: Daemon, crate: Path, tmp_path: Path) -> None:
    outside = _outside(tmp_path, subdirs=50)
    (crate / "link").symlink_to(outside, target_is_directory=True)
    daemon.cli("index", str(crate))
    daemon.wait_idle(crate)
    before = _inotify_watches(daemon.proc.pid) if daemon.proc else 0
    (outside / "x.rs").write_text(f"pub fn {SECRET}() {{ let token = 1; }}\n")
    (outside / "d0" / "y.rs").write_text(f"pub fn {SECRET}_two() {{}}\n")
    _sync(daemon, crate, "after_outside_edit")
    _assert_nothing_outside(daemon, crate)
    if Path(f"/proc/{os.getpid()}/fdinfo").is_dir():
        # The crate has a handful of directories; the 50 behind the link are not watched.
        assert 0 < before < 50


@pytest.mark.slow
def test_link_added_while_watching_is_not_followed(
    daemon: Daemon, crate: Path, tmp_path: Path
) -> None:
    daemon.cli("index", str(crate))
    daemon.wait_idle(crate)
    outside = _outside(tmp_path)
    (crate / "link").symlink_to(outside, target_is_directory=True)
    (crate / "src" / "linked").symlink_to(outside / "seed.rs")
    _sync(daemon, crate, "after_link_added")
    (outside / "x.rs").write_text(f"pub fn {SECRET}() {{}}\n")
    _sync(daemon, crate, "after_outside_edit")
    _assert_nothing_outside(daemon, crate)
