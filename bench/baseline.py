"""An older checkout's daemon on this machine, timed as `bench cold` and `bench reindex`
time this one's: the "today" of an issue measured in the same sitting, not taken from a
figure another machine made.

    python -m bench baseline CHECKOUT crates:rayon,itertools --runs 3      # cold index
    python -m bench baseline CHECKOUT medium --reindex 3                   # forced rebuilds

CHECKOUT is a directory holding that commit's tree (`git worktree add /tmp/old <commit>`).
Each cold run is a fresh home; with `--reindex N`, one home indexes the corpus (its
embedding cache seeded with `--seed-cache`, when given: a run of this checkout's
`embeddings.db`, whose texts the older code shares in part) and then rebuilds it N
times. Idle is read from `status` (every daemon has it; the `wait` request is younger).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.cold import corpus_tree
from bench.harness import BenchDaemon, cpu_s, machine_state, save


def _idle(d: BenchDaemon, tree: Path, timeout: float) -> dict[str, Any]:
    """The root's status once `status` says idle twice in a row (a batch hands over to
    the next one through the queue)."""
    deadline, seen = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        roots = [r for r in d.status()["roots"] if r["path"] == str(tree)]
        seen = seen + 1 if roots and roots[0]["idle"] else 0
        if seen >= 2:
            return roots[0]  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise TimeoutError(f"{tree} not idle after {timeout:g}s")


def _daemon(home: Path, source: Path) -> BenchDaemon:
    d = BenchDaemon(home, {"PYTHONPATH": str(source)}, source=source)
    d.start()
    while not d.status()["embedding"]["loaded"]:  # a layout may be measured at load
        time.sleep(0.1)
    return d


def _cold(source: Path, tree: Path, home: Path) -> dict[str, Any]:
    d = _daemon(home, source)
    try:
        assert d.proc is not None
        cpu0, t = cpu_s(d.proc.pid), time.perf_counter()
        d.call("index", path=str(tree))
        root = _idle(d, tree, 7200)
        wall, cpu = time.perf_counter() - t, cpu_s(d.proc.pid) - cpu0
        peak = d.status().get("peak_rss_bytes", 0)
    finally:
        d.stop()
    return {
        "wall_s": round(wall, 1),
        "daemon_cpu_s": round(cpu, 1),
        "files": root["files"],
        "chunks": root["chunks"],
        "peak_rss_mb": round(peak / 2**20),
    }


def _reindex(source: Path, tree: Path, home: Path, runs: int, seed: str | None) -> list[float]:
    if seed:
        (home / "cache").mkdir(parents=True, exist_ok=True)
        shutil.copy(seed, home / "cache" / "embeddings.db")
    d = _daemon(home, source)
    try:
        d.call("index", path=str(tree))
        _idle(d, tree, 7200)
        out = []
        for _ in range(runs):
            t = time.perf_counter()
            d.call("reindex", path=str(tree), force=True)
            _idle(d, tree, 3600)
            out.append(round(time.perf_counter() - t, 2))
        return out
    finally:
        d.stop()


def run(args: argparse.Namespace) -> dict[str, Any]:
    source = Path(args.checkout).resolve()
    commit = subprocess.run(
        ["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    out: dict[str, Any] = {"checkout": str(source), "commit": commit, "corpus": args.corpus}
    out["machine_before"] = machine_state()
    with tempfile.TemporaryDirectory(prefix="rcmd-bench-baseline-") as tmp:
        tree = corpus_tree(args.corpus, Path(tmp) / "tree").resolve()
        if args.reindex:
            runs = _reindex(source, tree, Path(tmp) / "home", args.reindex, args.seed_cache)
            out["reindex_s"] = runs
            out["reindex_s_median"] = statistics.median(runs)
        else:
            cold = [_cold(source, tree, Path(tmp) / f"home-{i}") for i in range(args.runs)]
            out["cold_runs"] = cold
            out["cold_wall_s_median"] = statistics.median(r["wall_s"] for r in cold)
    out["machine_after"] = machine_state()
    what = f"--reindex {args.reindex}" if args.reindex else f"--runs {args.runs}"
    kind = "reindex" if args.reindex else "cold"
    name = f"baseline-{commit or source.name}-{kind}-{args.corpus.split(':')[0]}"
    save(name, f"python -m bench baseline {source} {args.corpus} {what}", out)
    return out
