"""Watcher floods: a branch switch that rewrites 2,000 files while inotify's queue
overflows, and the inotify watch limit. Each ends with the index equal to the tree.

Both shrink a kernel limit (`fs.inotify.*`) for the moment the daemon's watch starts, so
they need root; they are skipped elsewhere. The limit is restored before the test goes on.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon, seed_cache, wait_until

pytestmark = pytest.mark.slow

INOTIFY = Path("/proc/sys/fs/inotify")
FILES = 2000


def _writable(name: str) -> bool:
    return os.access(INOTIFY / name, os.W_OK)


@contextmanager
def kernel_limit(name: str, value: int) -> Iterator[None]:
    """Set `fs.inotify.<name>` for the duration of the block."""
    knob = INOTIFY / name
    old = knob.read_text().strip()
    knob.write_text(str(value))
    try:
        yield
    finally:
        knob.write_text(old)


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


@pytest.mark.skipif(not _writable("max_queued_events"), reason="needs root to shrink inotify")
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
        # A 64-event queue: the rewrite below overflows it and events are lost.
        with kernel_limit("max_queued_events", 64):
            d.cli("index", str(tree), "--wait")
            wait_until(lambda: watching(d, tree))
        before = d.root_status(tree)["counters"]["watch_rescans"]

        # The branch switch: every file rewritten, 10% with new content, 50 deleted, 50 new.
        files = sorted((tree / "src").rglob("*.rs"))
        changed = set(rng.sample(range(FILES), FILES // 10))
        for i, path in enumerate(files):
            n = int(path.stem[1:])
            replace(path, flood_file(n, 1 if n in changed else 0))
            if i < 50:
                path.unlink()
                (path.parent / f"new{n}.rs").write_text(flood_file(n, 2))

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


@pytest.mark.skipif(not _writable("max_user_watches"), reason="needs root to shrink inotify")
def test_watch_limit_falls_back_to_polling(tmp_path: Path, crate: Path, warm_cache: Path) -> None:
    home = tmp_path / "home"
    seed_cache(home, warm_cache)
    d = Daemon(home, RCMD_INDEX_POLL_INTERVAL_S="0.5")
    d.start()
    src = crate / "src"
    try:
        with kernel_limit("max_user_watches", 1):
            d.cli("index", str(crate), "--wait")
            wait_until(lambda: d.root_status(crate)["watcher"].startswith("polling"))
            assert "watch limit" in d.root_status(crate)["watcher"]
            # Polling still follows edits.
            (src / "polled.rs").write_text("pub fn found_by_polling() {}\n")
            wait_until(lambda: top_symbol(d, "found_by_polling") == "polled::found_by_polling")
        # With room again the watch is retried and taken up.
        wait_until(lambda: watching(d, crate))
        (src / "watched.rs").write_text("pub fn found_by_the_watch() {}\n")
        wait_until(lambda: top_symbol(d, "found_by_the_watch") == "watched::found_by_the_watch")
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
