"""Crash consistency: SIGKILL the daemon at random moments of indexing, restart it, and
check that state.db, Tantivy and Qdrant agree and hold exactly what a clean index holds.

Trials are seeded and printed; RCMD_CRASH_TRIALS sets how many (CI runs a few; run
`RCMD_CRASH_TRIALS=25 python -m pytest tests/test_crash.py -s` for the full count).
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon, run_daemon_once, seed_cache, wait_until

pytestmark = pytest.mark.slow

TRIALS = int(os.environ.get("RCMD_CRASH_TRIALS", "4"))
SEED = int(os.environ.get("RCMD_CRASH_SEED", "20261127"))


def write_tree(src: Path, rng: random.Random, files: int, version: int) -> None:
    src.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        body = "\n".join(
            f"/// Step {i}.{j} of version {version}.\n"
            f"pub fn step_{i}_{j}_v{version}(x: u32) -> u32 "
            f"{{ x.wrapping_add({rng.randrange(1000)}) }}\n"
            for j in range(3)
        )
        (src / f"m{i}.rs").write_text(body)


def indexed(d: Daemon, root: Path) -> tuple[int, int]:
    r = d.wait_idle(root, timeout=300)
    return r["files"], r["chunks"]


def test_sigkill_during_indexing_loses_nothing(tmp_path: Path, warm_cache: Path) -> None:
    rng = random.Random(SEED)
    tree = tmp_path / "tree"
    home = tmp_path / "home"
    seed_cache(home, warm_cache)
    env = {"RCMD_INDEX_COMMIT_INTERVAL_S": "0.05", "RCMD_INDEX_CHUNKS_PER_STEP": "6"}
    d = Daemon(home, **env)
    files = 24
    mid_batch = 0
    try:
        for trial in range(TRIALS):
            # New content each trial, so there is real work (embedding) to interrupt.
            # Even trials go lexical-first; every fourth is killed while vectors fill in.
            write_tree(tree / "src", rng, files, trial)
            lexical_first = trial % 2 == 0
            in_vectors = trial % 4 == 2
            d.env["RCMD_INDEX_LEXICAL_FIRST_FILES"] = "8" if lexical_first else "1000"
            d.start()
            d.cli("index", str(tree))
            target = rng.randrange(0, files)
            pending = rng.randrange(1, 3 * files)
            when = f"{pending} vectors pending" if in_vectors else f"{target} files"
            print(f"trial {trial}: seed {SEED}, lexical-first {lexical_first}, kill at {when}")

            def progressed(
                t: int = target, v: int = pending, vec: bool = in_vectors
            ) -> dict[str, Any] | None:
                r = d.root_status(tree)
                if vec:
                    return r if (r["idle"] or 0 < r["vectors_pending"] <= v) else None
                return r if (r["idle"] or r["progress"]["files_done"] >= t) else None

            seen = wait_until(progressed, timeout=300, interval=0.01)
            d.kill()
            # The kill follows a status that saw the batch (or its embedding) still running.
            mid_batch += not seen["idle"]
            d.start()
            got = indexed(d, tree)
            verify = d.verify()
            assert verify["ok"], (trial, verify)
            assert got[0] == files
            d.stop()

        print(f"{mid_batch} of {TRIALS} kills landed mid-batch")
        assert mid_batch >= (TRIALS + 1) // 2, "most kills must interrupt a running batch"
        # The end state equals a fresh index of the same tree.
        fresh_home = tmp_path / "fresh"
        shutil.copytree(home / "cache", fresh_home / "cache")
        fresh = Daemon(fresh_home)
        fresh.start()
        try:
            fresh.cli("index", str(tree), "--wait")
            assert indexed(fresh, tree) == got
            d.start()
            ours = d.call("verify")["roots"][0]
            theirs = fresh.call("verify")["roots"][0]
            for key in ("files_recorded", "chunks_recorded", "tantivy_docs", "qdrant_points"):
                assert ours[key] == theirs[key], key
        finally:
            fresh.stop()
            fresh.kill()
    finally:
        d.stop()
        d.kill()


@pytest.mark.parametrize(
    "point", ["after_tantivy_commit", "before_state_record", "before_vectors_recorded"]
)
def test_crash_between_consistency_steps(tmp_path: Path, warm_cache: Path, point: str) -> None:
    """Die right after the Tantivy commit (Qdrant not flushed, state not recorded), after
    both index writes but before the state record, or after pending vectors are flushed
    but before state.db hears of it; the restart must repair it."""
    rng = random.Random(SEED)
    tree = tmp_path / "tree"
    write_tree(tree / "src", rng, 6, 0)
    home = tmp_path / "home"
    seed_cache(home, warm_cache)
    # Pending vectors exist only after a lexical-first batch.
    crashing = Daemon(home, RCMD_TEST_CRASH_AT=point, RCMD_INDEX_LEXICAL_FIRST_FILES="2")
    crashing.start()
    crashing.cli("index", str(tree))
    assert crashing.proc is not None
    assert crashing.proc.wait(timeout=300) == 137
    d = Daemon(home)
    d.start()
    try:
        files, _chunks = indexed(d, tree)
        assert files == 6
        assert d.verify()["ok"], d.verify()
        # an incremental batch crashing the same way
        d.stop()
        write_tree(tree / "src", rng, 6, 1)
        # The startup scan finds the changes and dies at the same point.
        restarted = run_daemon_once(crashing.env, timeout=300)
        assert restarted.returncode == 137
        d.start()
        indexed(d, tree)
        assert d.verify()["ok"], d.verify()
        hits = d.search("step_0_0_v1", "--mode", "bm25")
        assert hits and hits[0]["symbol"] == "m0::step_0_0_v1"
    finally:
        d.stop()
        d.kill()
