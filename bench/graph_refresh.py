"""What an upgrade that changes the symbol graph's extraction (GRAPH_REVISION) costs at
start: every root's files read again by a forced batch (`RootIndex.graph_stale`), against
a plain start, on registry crates indexed once.

One daemon home: the crates are indexed (embedded) once, then the daemon is restarted
`--runs` times each way, interleaved: with every root's recorded revision set back (as an
older rcmd left it) and as it is. Each start is timed from the `start` call until every
root is idle. A stale start extracts every graph anew (the graph cache is keyed by the
revision): before each stale start the cached graphs of the roots' files are
deleted, as an upgrade finds none of its revision.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import apsw

from bench.harness import BenchDaemon, machine_state, save
from daemon.chunk_cache import graph_key
from daemon.graph import GRAPH_REVISION_KEY, graph_revision

REGISTRY = Path("/usr/share/cargo/registry")
CRATES = ("regex-1.7.1", "serde_json-1.0.87", "http-0.2.7", "toml-0.5.11", "clap-4.0.32")


def set_revision(home: Path, value: str) -> None:
    """Record `value` as every root's graph revision (the daemon stopped)."""
    for db in home.rglob("state.db"):
        conn = apsw.Connection(str(db))
        conn.execute("INSERT OR REPLACE INTO meta VALUES(?, ?)", (GRAPH_REVISION_KEY, value))
        conn.close()


def forget_graphs(home: Path) -> int:
    """Delete the cached graphs of every root's files (chunks stay cached); how many."""
    cache = apsw.Connection(str(next(home.rglob("chunks.db"))))
    gone = 0
    for db in home.rglob("state.db"):
        conn = apsw.Connection(str(db))
        for path, digest in conn.execute("SELECT path, hash FROM files"):
            cache.execute("DELETE FROM chunks WHERE key = ?", (graph_key(path, bytes(digest)),))
            gone += cache.changes()
        conn.close()
    cache.close()
    return gone


def timed_start(d: BenchDaemon) -> float:
    """Seconds from starting the daemon until every root is idle."""
    t = time.perf_counter()
    d.start()
    while not all(r["idle"] for r in d.status()["roots"]):
        time.sleep(0.05)
    return time.perf_counter() - t


def run(args: argparse.Namespace) -> None:
    crates = [c for c in CRATES if (REGISTRY / c).is_dir()]
    with tempfile.TemporaryDirectory(prefix="rcmd-bench-refresh-") as tmp:
        work = Path(tmp)
        d = BenchDaemon(work / "home")
        d.start()
        trees = [shutil.copytree(REGISTRY / c, work / "roots" / c) for c in crates]
        for tree in trees:
            d.call("index", path=str(tree))
        for tree in trees:
            d.wait(tree, timeout=3600)
        chunks = sum(r["chunks"] for r in d.status()["roots"])
        d.stop()
        before = machine_state()
        samples: dict[str, list[float]] = {"stale": [], "current": []}
        forgotten: list[int] = []
        for i in range(args.runs):
            for kind in samples:
                set_revision(d.home, "0" if kind == "stale" else graph_revision())
                if kind == "stale":
                    forgotten.append(forget_graphs(d.home))
                samples[kind].append(round(timed_start(d), 2))
                d.stop()
                print(f"run {i + 1} {kind:7s}: {samples[kind][-1]} s", flush=True)
    out: dict[str, Any] = {
        "crates": crates,
        "chunks": chunks,
        "graphs_forgotten": forgotten,
        "runs": args.runs,
        "state_before": before,
        "state_after": machine_state(),
        "results": {k: {"median_s": statistics.median(v), "runs_s": v} for k, v in samples.items()},
    }
    print(save("graph-refresh", f"python -m bench refresh --runs {args.runs}", out))
