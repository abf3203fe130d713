"""Watcher floods: a branch switch that rewrites 2,000 files while inotify's queue
overflows, and the inotify watch limit. Each ends with the index equal to the tree.

Neither touches the host's settings: the overflow comes from the daemon being paused
(SIGSTOP) while the branch switch makes more events than inotify queues by default, and
the watch limit is set inside a user namespace of the daemon's own
(`/proc/sys/user/max_inotify_watches` is per namespace; the host's stays as it was).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import OWN_USERNS, Daemon, needs_userns, seed_cache, wait_until

pytestmark = pytest.mark.slow

FILES = 2000


def set_watch_limit(pid: int, value: int) -> None:
    """Set the inotify watch limit of `pid`'s user namespace (never the host's)."""
    knob = "/proc/sys/user/max_inotify_watches"
    subprocess.run(
        [
            "nsenter",
            "--user",
            "--target",
            str(pid),
            "--preserve-credentials",
            "sh",
            "-c",
            f"echo {value} > {knob}",
        ],
        check=True,
    )


def flood_file(i: int, version: int) -> str:
    return f"pub fn flood_{i}_v{version}(x: u32) -> u32 {{\n    x.wrapping_add({i})\n}}\n"


def replace(path: Path, text: str) -> None:
    """Write as git checkout does: a new file renamed over the old one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def watching(d: Daemon, root: Path) -> bool:
    return bool(d.root_status(root)["watcher"] == "watching")


def top_symbol(d: Daemon, query: str) -> str | None:
    """The best BM25 hit's symbol: identifier parts match other names too."""
    hits = d.search(query, "--mode", "bm25")
    return hits[0]["symbol"] if hits else None


def matches_disk(d: Daemon, files: int) -> dict[str, Any] | None:
    """The verify report once every file is recorded and every vector is in (a big batch
    goes lexical-first: verify is ok while its vectors are still pending)."""
    report = d.verify()["roots"][0]
    done = report["ok"] and report["files_recorded"] == files and not report["vectors_pending"]
    return report if done else None


@pytest.mark.timeout(900)
def test_branch_switch_with_an_overflowing_event_queue(tmp_path: Path) -> None:
    rng = random.Random(2000)
    tree = tmp_path / "tree"
    for i in range(FILES):
        sub = tree / "src" / f"m{i % 40}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i}.rs").write_text(flood_file(i, 0))
    home = tmp_path / "home"
    home.mkdir()
    d = Daemon(home)
    d.start()
    try:
        d.cli("index", str(tree), "--wait")
        wait_until(lambda: watching(d, tree))
        before = d.root_status(tree)["counters"]["watch_rescans"]

        # The branch switch: every file rewritten three times, the last with new content
        # for 10%, 50 deleted, 50 new. Paused, the daemon reads no event meanwhile: the
        # ~30,000 events overflow inotify's default queue (16,384) and some are lost.
        files = sorted((tree / "src").rglob("*.rs"))
        changed = set(rng.sample(range(FILES), FILES // 10))
        assert d.proc is not None
        os.kill(d.proc.pid, signal.SIGSTOP)
        try:
            for rewrite in range(3):
                for path in files:
                    n = int(path.stem[1:])
                    replace(path, flood_file(n, 1 if n in changed and rewrite == 2 else 0))
            for path in files[:50]:
                path.unlink()
                (path.parent / f"new{int(path.stem[1:])}.rs").write_text(
                    flood_file(int(path.stem[1:]), 2)
                )
        finally:
            os.kill(d.proc.pid, signal.SIGCONT)

        report = wait_until(lambda: matches_disk(d, FILES), timeout=180, interval=0.5)
        assert d.root_status(tree)["counters"]["watch_rescans"] > before
        probe = next(iter(changed - set(range(50))))
        assert (top_symbol(d, f"flood_{probe}_v1") or "").endswith(f"::flood_{probe}_v1")

        fresh_home = tmp_path / "fresh"
        seed_cache(fresh_home, home / "cache" / "embeddings.db")
        fresh = Daemon(fresh_home)
        fresh.start()
        try:
            fresh.cli("index", str(tree), "--wait")
            theirs = fresh.verify()["roots"][0]
        finally:
            fresh.stop()
            fresh.kill()
        for key in ("files_recorded", "chunks_recorded", "tantivy_docs", "qdrant_points"):
            assert report[key] == theirs[key], key
    finally:
        d.stop()
        d.kill()


def _userns_daemon(tmp_path: Path, warm_cache: Path, poll_s: str) -> Daemon:
    """A started daemon in its own user namespace (its watch limit can be set), with a
    warm embedding cache and failed watches retried every `poll_s` seconds."""
    home = tmp_path / "home"
    seed_cache(home, warm_cache)
    d = Daemon(home, prefix=OWN_USERNS, RCMD_INDEX_POLL_INTERVAL_S=poll_s)
    d.start()
    return d


@needs_userns
def test_watch_limit_falls_back_to_polling(tmp_path: Path, crate: Path, warm_cache: Path) -> None:
    d = _userns_daemon(tmp_path, warm_cache, poll_s="0.5")
    assert d.proc is not None
    src = crate / "src"
    host_limit = Path("/proc/sys/user/max_inotify_watches").read_text()
    try:
        set_watch_limit(d.proc.pid, 1)
        d.cli("index", str(crate), "--wait")
        wait_until(lambda: d.root_status(crate)["watcher"].startswith("polling"))
        assert "watch limit" in d.root_status(crate)["watcher"]
        # Polling still follows edits.
        (src / "polled.rs").write_text("pub fn found_by_polling() {}\n")
        wait_until(lambda: top_symbol(d, "found_by_polling") == "polled::found_by_polling")
        assert Path("/proc/sys/user/max_inotify_watches").read_text() == host_limit
        # With room again the watch is retried and taken up.
        set_watch_limit(d.proc.pid, 100_000)
        wait_until(lambda: watching(d, crate))
        (src / "watched.rs").write_text("pub fn found_by_the_watch() {}\n")
        wait_until(lambda: top_symbol(d, "found_by_the_watch") == "watched::found_by_the_watch")
        assert d.verify()["ok"], d.verify()["roots"][0]["problems"]
    finally:
        d.stop()
        d.kill()


@needs_userns
def test_a_root_over_the_watch_limit_polls_alone(
    tmp_path: Path, crate: Path, warm_cache: Path
) -> None:
    """One watchfiles instance watches every root: a root whose directories do not fit
    the watch limit polls (retrying its watch), and the roots already watched stay so,
    never rescanned for it."""
    big = tmp_path / "big"
    for i in range(60):
        (big / "src" / f"m{i}").mkdir(parents=True)
    (big / "src" / "lib.rs").write_text("pub fn big_root_marker() {}\n")
    d = _userns_daemon(tmp_path, warm_cache, poll_s="0.5")
    assert d.proc is not None
    try:
        set_watch_limit(d.proc.pid, 20)  # the crate's 3 directories fit; big's 62 do not
        d.cli("index", str(crate), "--wait")
        wait_until(lambda: watching(d, crate))
        rescans = d.root_status(crate)["counters"]["watch_rescans"]
        d.cli("index", str(big), "--wait")
        wait_until(lambda: d.root_status(big)["watcher"].startswith("polling"))
        assert "watch limit" in d.root_status(big)["watcher"]
        wait_until(lambda: d.root_status(big)["counters"]["watch_rescans"] >= 3)  # retried
        (crate / "src" / "still.rs").write_text("pub fn still_watched_marker() {}\n")
        wait_until(lambda: top_symbol(d, "still_watched_marker") == "still::still_watched_marker")
        assert watching(d, crate)
        assert d.root_status(crate)["counters"]["watch_rescans"] == rescans
        set_watch_limit(d.proc.pid, 100_000)
        wait_until(lambda: watching(d, big))
        (big / "src" / "m7" / "late.rs").write_text("pub fn big_watched_marker() {}\n")
        wait_until(
            lambda: (top_symbol(d, "big_watched_marker") or "").endswith("::big_watched_marker")
        )
        assert watching(d, crate)
    finally:
        d.stop()
        d.kill()


@pytest.mark.timeout(600)
def test_what_changed_while_the_watch_was_down_is_found_once_it_is_back(
    tmp_path: Path, crate: Path, warm_cache: Path
) -> None:
    """A failed watch polls: a full rescan, then a wait of `poll_interval_s` before the
    watch is tried again. A file written during that wait was lost for good when the
    retry succeeded (no scan after it; found in a chaos run where a directory renamed
    during the watch's setup failed it). Now a rescan follows the new watch."""
    d = _userns_daemon(tmp_path, warm_cache, poll_s="4")
    assert d.proc is not None
    try:
        set_watch_limit(d.proc.pid, 1)
        d.cli("index", str(crate), "--wait")
        wait_until(lambda: d.root_status(crate)["watcher"].startswith("polling"))
        d.wait_idle(crate)  # the failure's rescan is done; the retry is seconds away
        (crate / "src" / "gap.rs").write_text("pub fn written_while_unwatched() {}\n")
        set_watch_limit(d.proc.pid, 100_000)
        wait_until(lambda: watching(d, crate))
        wait_until(
            lambda: top_symbol(d, "written_while_unwatched") == "gap::written_while_unwatched"
        )
        assert d.verify()["ok"], d.verify()["roots"][0]["problems"]
    finally:
        d.stop()
        d.kill()


def test_editor_backup_and_swap_files_are_not_indexed(daemon: Daemon, crate: Path) -> None:
    daemon.cli("index", str(crate), "--wait")
    src = crate / "src"
    for name in ("lib.rs~", ".lib.rs.swp", "#lib.rs#", ".#lib.rs", "4913"):
        (src / name).write_text("pub fn backup_marker() {}\n")
    (src / "saved.rs").write_text("pub fn saved_marker() {}\n")
    wait_until(lambda: top_symbol(daemon, "saved_marker") == "saved::saved_marker")
    hits = daemon.search("backup_marker", "--mode", "bm25")
    assert hits and all(h["path"] == "src/saved.rs" for h in hits)
    assert daemon.verify()["ok"]
