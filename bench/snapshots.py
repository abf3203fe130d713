"""Index once, adopt everywhere (issue 21), with real daemons on a private corpus copy.

    python -m bench snapshots [small] [--runs 3 --worktree-files 20]

1. A cold index of the corpus (a git checkout, fresh RCMD_HOME, empty embedding cache):
   seconds until BM25 covers it and until idle, chunks embedded.
2. `export` of that root, `--runs` times: seconds and snapshot bytes.
3. `index --from` the snapshot on a copy with 1% of the files changed, each run in a
   fresh RCMD_HOME with an empty embedding cache (another machine): seconds until the
   reply, until BM25 covers it and until idle; files read and chunks embedded.
4. A git worktree differing in `--worktree-files` files, seeded from the first root in
   the same daemon: seconds until idle and chunks embedded, each run a new worktree
   (they accumulate); the state dir of each root on disk and the total after each one,
   which says how disk grows with the number of worktrees.

Writes bench/results/snapshots-<corpus>.json.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.corpora import materialize
from bench.harness import BenchDaemon, lexical_done, save, wait_for

#: A function appended to a file to change it; unique per tag so no cache holds it.
EDIT = (
    "\n/// Bench edit {tag}: folds the input.\n"
    "pub fn bench_edit_{tag}(x: u64) -> u64 {{ x ^ {n} }}\n"
)
LONG_S = 7200.0


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@rcmd.invalid", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        timeout=300,
    )


def _edit(tree: Path, count: int, tag: str) -> list[str]:
    """Append a new function to `count` files spread over the tree; their paths."""
    files = sorted(p for p in tree.rglob("*.rs") if ".git" not in p.parts)
    step = max(len(files) // max(count, 1), 1)
    chosen = files[::step][:count]
    for k, f in enumerate(chosen):
        f.write_text(f.read_text() + EDIT.format(tag=f"{tag}_{k}", n=k))
    return [str(f.relative_to(tree)) for f in chosen]


def _index_timed(d: BenchDaemon, path: Path, **params: Any) -> dict[str, Any]:
    """`index` a root and time it: the reply, BM25 covering the tree, idle."""
    misses = d.status()["embedding"]["cache_misses"]
    t = time.perf_counter()
    reply = d.call("index", timeout=LONG_S, path=str(path), **params)
    answered = time.perf_counter() - t
    wait_for(lambda: lexical_done(d.root_status(path)), LONG_S, 0.05)
    bm25 = time.perf_counter() - t
    r = d.wait(path, LONG_S)
    idle = time.perf_counter() - t
    return {
        "reply_s": round(answered, 2),
        "bm25_s": round(bm25, 2),
        "idle_s": round(idle, 2),
        "files": r["files"],
        "chunks": r["chunks"],
        "files_read": r["counters"]["files_read"],
        "chunks_embedded": d.status()["embedding"]["cache_misses"] - misses,
        "seeded_from": "snapshot" if params.get("snapshot") else reply.get("seeded_from"),
    }


def _disk_mb(d: BenchDaemon, path: Path) -> float:
    """Bytes on disk of a root's state dir (Tantivy, vectors, state.db), in MB."""
    root_id = str(d.root_status(path)["id"])
    folder = d.paths.state_dir / "roots" / root_id
    used = sum(f.stat().st_blocks * 512 for f in folder.rglob("*") if f.is_file())
    return round(used / 1e6, 1)


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return round(float(statistics.median(r[key] for r in runs)), 2)


def _source_phase(args: Any, work: Path, tree: Path) -> dict[str, Any]:
    """Cold index, exports and seeded worktrees, all in one daemon."""
    d = BenchDaemon(work / "home-source")
    d.start()
    try:
        cold = _index_timed(d, tree)
        cold["state_mb"] = _disk_mb(d, tree)
        print({"cold": cold}, flush=True)
        exports = []
        for _ in range(args.runs):
            t = time.perf_counter()
            out = d.call("export", timeout=LONG_S, path=str(tree), file=str(work / "snap.tar.gz"))
            exports.append({"seconds": round(time.perf_counter() - t, 2), "bytes": out["bytes"]})
            print({"export": exports[-1]}, flush=True)
        worktrees = []
        for i in range(args.runs):
            wt = work / f"worktree-{i}"
            _git(tree, "worktree", "add", "-q", "-b", f"bench-{i}", str(wt))
            _edit(wt, args.worktree_files, f"wt{i}")
            worktrees.append(_index_timed(d, wt))
            worktrees[-1]["state_mb"] = _disk_mb(d, wt)
            worktrees[-1]["all_roots_mb"] = round(
                cold["state_mb"] + sum(w["state_mb"] for w in worktrees), 1
            )
            print({"worktree": worktrees[-1]}, flush=True)
    finally:
        d.stop()
    return {"cold": cold, "exports": exports, "worktrees": worktrees}


def _adopt_phase(args: Any, work: Path, tree: Path) -> list[dict[str, Any]]:
    """`index --from` on a copy with 1% of files changed, each run a fresh home."""
    other = work / "elsewhere"
    shutil.copytree(tree, other, ignore=shutil.ignore_patterns(".git"))
    files = sum(1 for _ in other.rglob("*.rs"))
    _edit(other, max(1, round(files * 0.01)), "adopt")
    runs = []
    for i in range(args.runs):
        d = BenchDaemon(work / f"home-adopt-{i}")
        d.start()
        try:
            runs.append(_index_timed(d, other, snapshot=str(work / "snap.tar.gz")))
        finally:
            d.stop()
        print({"adopt": runs[-1]}, flush=True)
    return runs


def run(args: Any) -> dict[str, Any]:
    work = Path(args.work) / f"snapshots-{args.corpus}"
    shutil.rmtree(work, ignore_errors=True)
    tree = materialize(args.corpus, work / "tree")
    _git(tree, "init", "-q")
    _git(tree, "add", "-A")
    _git(tree, "commit", "-q", "-m", "corpus")
    source = _source_phase(args, work, tree)
    adopts = _adopt_phase(args, work, tree)
    out: dict[str, Any] = {
        "corpus": args.corpus,
        "runs": args.runs,
        "cold_index": source["cold"],
        "export_median": {
            "seconds": _median(source["exports"], "seconds"),
            "snapshot_mb": round(source["exports"][0]["bytes"] / 1e6, 2),
        },
        "adopt_1pct_median": {k: _median(adopts, k) for k in ("reply_s", "bm25_s", "idle_s")}
        | {"files_read": adopts[0]["files_read"], "chunks_embedded": adopts[0]["chunks_embedded"]},
        "worktree_median": {k: _median(source["worktrees"], k) for k in ("bm25_s", "idle_s")}
        | {
            "chunks_embedded": _median(source["worktrees"], "chunks_embedded"),
            "state_mb": _median(source["worktrees"], "state_mb"),
        },
        "adopt_runs": adopts,
        "worktree_runs": source["worktrees"],
    }
    save(f"snapshots-{args.corpus}", f"python -m bench snapshots {args.corpus}", out)
    shutil.rmtree(work, ignore_errors=True)
    return out
