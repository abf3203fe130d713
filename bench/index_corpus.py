"""Index a corpus with a real daemon and report what the foundation issue asks for.

    python -m bench.index_corpus /usr/lib/rustlib/src/rust/library/alloc [--edits 5]

Copies the corpus to a temp dir, starts a daemon with a fresh RCMD_HOME (empty embedding
cache), and measures: cold index (files, chunks, seconds, chunks/s), a forced reindex
with the warm cache (seconds, hits, misses), edit-to-searchable latency over N edits,
and the daemon's RSS. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ipc.client import call, is_running
from ipc.paths import runtime_paths


def _wait(pred: Any, timeout: float, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("benchmark step did not finish in time")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--edits", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rcmd-bench-"))
    tree = work / args.corpus.name
    shutil.copytree(args.corpus, tree, symlinks=True)
    env = {**os.environ, "RCMD_HOME": str(work / "home")}
    paths = runtime_paths(env)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "daemon"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    out: dict[str, Any] = {"corpus": str(args.corpus)}
    try:
        _wait(lambda: is_running(paths), 120)

        def root() -> dict[str, Any]:
            return call(paths, "status")["roots"][0]  # type: ignore[no-any-return]

        def idle_after(batches: int) -> dict[str, Any] | None:
            r = root()
            return r if r["idle"] and r["counters"]["batches"] >= batches else None

        status_ms: list[float] = []

        def sampled_idle() -> dict[str, Any] | None:
            t = time.perf_counter()
            r = idle_after(1)
            status_ms.append((time.perf_counter() - t) * 1000)
            return r

        t = time.perf_counter()
        call(paths, "index", path=str(tree))
        cold = _wait(sampled_idle, args.timeout, 0.1)
        cold_s = time.perf_counter() - t
        status_ms.sort()
        status = call(paths, "status")
        out["cold"] = {
            "files": cold["files"],
            "chunks": cold["chunks"],
            "seconds": round(cold_s, 2),
            "chunks_per_s": round(cold["chunks"] / cold_s, 1),
            "cache_misses": status["embedding"]["cache_misses"],
            "stages": status["last_batch"].get("stages"),
            "peak_rss_mb": status["peak_rss_bytes"] >> 20,
            "status_latency_ms_while_indexing": {
                "n": len(status_ms),
                "p50": round(status_ms[len(status_ms) // 2], 1),
                "p99": round(status_ms[int(len(status_ms) * 0.99)], 1),
                "max": round(status_ms[-1], 1),
            },
        }
        hits0 = status["embedding"]["cache_hits"]
        misses0 = status["embedding"]["cache_misses"]

        t = time.perf_counter()
        call(paths, "reindex", path=str(tree), force=True)
        warm = _wait(lambda: idle_after(2), args.timeout, 0.05)
        warm_s = time.perf_counter() - t
        status = call(paths, "status")
        out["reindex_force"] = {
            "seconds": round(warm_s, 2),
            "cache_hits": status["embedding"]["cache_hits"] - hits0,
            "cache_misses": status["embedding"]["cache_misses"] - misses0,
            "chunks": warm["chunks"],
            "speedup_vs_cold": round(cold_s / warm_s, 1),
        }

        files = sorted(tree.rglob("*.rs"))
        latencies = []
        for i in range(args.edits):
            target = files[(i * 7919) % len(files)]
            word = f"edit_marker_{i}_{int(time.time())}"
            text = target.read_text(errors="replace")
            t = time.perf_counter()
            target.write_text(text + f"\npub fn {word}() {{}}\n")

            def found(w: str = word) -> bool:
                hits = call(paths, "search", query=w, mode="bm25", limit=1)["results"]
                return bool(hits) and w in hits[0]["symbol"]

            _wait(found, 60, 0.01)
            latencies.append(time.perf_counter() - t)
        out["edit_to_searchable_s"] = {
            "n": len(latencies),
            "median": round(statistics.median(latencies), 3) if latencies else None,
            "max": round(max(latencies), 3) if latencies else None,
        }
        status = call(paths, "status")
        out["rss_mb_after"] = status["rss_bytes"] >> 20
        out["peak_rss_mb"] = status["peak_rss_bytes"] >> 20
        out["verify_ok"] = call(paths, "verify")["ok"]
    finally:
        if is_running(paths):
            call(paths, "stop")
        daemon.wait(60)
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
