"""Fresh answers on request (issue 17.10): a client that edits and then searches with
`--fresh` sees its edit, never the old text; hits from files changed since they were
indexed say `stale`. A file swapped for a directory of its name in one batch leaves the
records whole, and a same-size edit whose mtime was set back is seen."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon, running, seed_cache, wait_until

pytestmark = pytest.mark.slow


def test_fresh_search_sees_the_edit_just_made(daemon: Daemon, crate: Path) -> None:
    daemon.cli("index", str(crate), "--wait")
    src = crate / "src"
    for i in range(5):  # edit, then search at once: no wait, no poll
        old = src / f"renamed_{i - 1}.rs" if i else src / "store.rs"
        new = src / f"renamed_{i}.rs"
        os.replace(old, new)
        new.write_text(new.read_text() + f"\npub fn fresh_marker_{i}() {{}}\n")
        hits = daemon.search(f"fresh_marker_{i}", "--mode", "bm25", "--fresh")
        assert hits and hits[0]["path"] == f"src/renamed_{i}.rs", hits[:2]
        paths = {h["path"] for h in daemon.search("store", "--mode", "bm25", "--fresh")}
        assert str(old.relative_to(crate)) not in paths  # the old path is gone at once
    assert not list(crate.rglob(".rcmd-cookie-*"))  # cookies are cleaned up


def test_stale_hits_and_a_fresh_search_that_cannot_be_met(
    tmp_path: Path, crate: Path, warm_cache: Path
) -> None:
    """A watcher that holds its events for ten minutes: an edit is not indexed, so its
    file's hits say `stale`, and `--fresh` fails with a clear error at its deadline
    instead of answering from the old index."""
    home = tmp_path / "home"
    seed_cache(home, warm_cache)
    held = {"RCMD_INDEX_DEBOUNCE_MS": "600000", "RCMD_INDEX_MAX_WAIT_MS": "600000"}
    d = Daemon(home, RCMD_SEARCH_FRESH_TIMEOUT_S="2", **held)
    d.start()
    try:
        d.cli("index", str(crate), "--wait")
        hits = d.search("fetch_with_retry", "--mode", "bm25")
        assert hits and not any(h["stale"] for h in hits)
        target = crate / hits[0]["path"]
        target.write_text("// moved down\n" + target.read_text())
        again = d.search("fetch_with_retry", "--mode", "bm25")
        assert again[0]["path"] == hits[0]["path"] and again[0]["stale"] is True
        shown = d.cli("search", "fetch_with_retry", "--mode", "bm25").stdout.splitlines()
        assert shown[0].endswith("[changed since indexed]"), shown[0]
        # `similar` flags the same way: touch its nearest hit's file (at the end, so the
        # probe's lines stay as they are) and only the edited files' hits are stale.
        probe = {"path": str(crate / "src/lib.rs"), "start_line": 1, "end_line": 3, "limit": 10}
        first = d.call("similar", **probe)["results"][0]["path"]
        (crate / first).write_text((crate / first).read_text() + "// touched\n")
        near = d.call("similar", **probe)["results"]
        assert near[0]["path"] == first and near[0]["stale"] is True, near[0]
        assert all(h["stale"] is (h["path"] in {first, hits[0]["path"]}) for h in near), near
        out = d.cli("search", "fetch_with_retry", "--fresh", check=False)
        assert out.returncode == 1 and "--fresh" in out.stderr, out.stderr
    finally:
        d.stop()
        d.kill()


def test_a_file_swapped_for_a_directory_of_its_name_in_one_batch(
    daemon: Daemon, crate: Path
) -> None:
    """`src/swap.rs` becomes a directory holding `inner.rs` (one watcher batch), then a
    file again while the daemon is stopped (its startup scan's batch): each time the new
    code is found and `verify` holds. The batch records the new path before dropping
    the old one, which once unlisted the name from the Merkle trees."""
    daemon.cli("index", str(crate), "--wait")
    swap = crate / "src" / "swap.rs"
    swap.write_text("pub fn swap_file_marker() {}\n")
    assert daemon.search("swap_file_marker", "--mode", "bm25", "--fresh")
    swap.unlink()
    swap.mkdir()
    (swap / "inner.rs").write_text("pub fn swap_dir_marker() {}\n")
    hits = daemon.search("swap_dir_marker", "--mode", "bm25", "--fresh")
    assert hits and hits[0]["path"] == "src/swap.rs/inner.rs", hits[:2]
    assert daemon.verify()["ok"], daemon.verify()
    assert daemon.stop() == 0
    shutil.rmtree(swap)
    swap.write_text("pub fn swap_back_marker() {}\n")
    daemon.start()
    hits = daemon.search("swap_back_marker", "--mode", "bm25", "--fresh")
    assert hits and hits[0]["path"] == "src/swap.rs", hits[:2]
    gone = daemon.search("swap_dir_marker", "--mode", "bm25")
    assert all(h["path"] == "src/swap.rs" for h in gone), gone
    assert daemon.verify()["ok"], daemon.verify()


def test_a_same_size_edit_with_its_mtime_set_back_is_indexed(daemon: Daemon, crate: Path) -> None:
    """Same size, same inode, atime and mtime restored (`cp -p`, `tar x`, `touch -r`):
    only the inode change time differs, live and across a restart (the startup scan's
    stat diff), and the edit is found."""
    daemon.cli("index", str(crate), "--wait")
    target = crate / "src" / "same_size.rs"
    target.write_text("pub fn heron_quill() {}\n")
    assert daemon.search("heron_quill", "--mode", "bm25", "--fresh")
    for new, restart in (("otter_plank", False), ("lemur_gravy", True)):
        if restart:
            assert daemon.stop() == 0
        before = target.stat()
        target.write_text(f"pub fn {new}() {{}}\n")  # truncated in place: same inode
        os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
        after = target.stat()
        assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
            before.st_size,
            before.st_mtime_ns,
            before.st_ino,
        )
        if restart:
            daemon.start()
        hits = daemon.search(new, "--mode", "bm25", "--fresh")
        assert hits and hits[0]["path"] == "src/same_size.rs", (new, hits[:2])
    assert daemon.verify()["ok"], daemon.verify()


def test_a_file_named_in_no_utf8_keeps_every_root_watched(
    tmp_path: Path, crate: Path, warm_cache: Path
) -> None:
    """A file saved as `f\\xff.rs` in one root once failed the shared watch of every
    root to polling (`poll_interval_s`): edits in another root went unseen meanwhile.
    Now it is skipped (said in status), every root stays watched, and a later edit
    elsewhere is searchable without `--fresh`."""
    other = tmp_path / "other"
    shutil.copytree(crate, other)
    home = tmp_path / "home"
    seed_cache(home, warm_cache)
    with running(Daemon(home, RCMD_INDEX_POLL_INTERVAL_S="3600")) as d:
        d.cli("index", str(crate), "--wait")
        d.cli("index", str(other), "--wait")
        with open(bytes(crate / "src") + b"/f\xff.rs", "wb") as f:
            f.write(b"pub fn undecodable_name() {}\n")
        wait_until(lambda: _root(d, crate)["skipped"]["by_reason"].get("non_utf8_name"))
        (other / "src" / "later.rs").write_text("pub fn later_edit_marker() {}\n")
        wait_until(
            lambda: any(
                h["path"] == "src/later.rs"
                for h in d.search("later_edit_marker", "--mode", "bm25", "--root", str(other))
            )
        )
        assert _root(d, crate)["watcher"] == _root(d, other)["watcher"] == "watching"
        assert d.verify()["ok"]


def _root(d: Daemon, path: Path) -> dict[str, Any]:
    roots: list[dict[str, Any]] = d.status()["roots"]
    return next(r for r in roots if r["path"] == str(path.resolve()))
