"""Small measurements that need no daemon: hashing throughput (3.5) and the scale curve.

python -m bench hash [--corpus medium]
python -m bench scale [--sizes 1000 5000 20000]
"""

from __future__ import annotations

import hashlib
import itertools
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import blake3

from bench.corpora import materialize, synthetic
from bench.harness import BenchDaemon, save, wait_for


def hashing(args: Any) -> dict[str, Any]:
    """blake3 (one thread, and multi-threaded for files ≥ 1 MiB) against sha256 on the
    corpus's files, read once into memory so the disk is out of the figure."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = materialize(args.corpus, Path(tmp) / "tree")
        blobs = [f.read_bytes() for f in sorted(tree.rglob("*.rs"))]
    total = sum(len(b) for b in blobs)
    out: dict[str, Any] = {"files": len(blobs), "mb": round(total / 2**20, 1)}
    big = b"x" * (64 << 20)
    for name, fn in (
        ("sha256", lambda b: hashlib.sha256(b).digest()),
        ("blake3", lambda b: blake3.blake3(b).digest()),
        ("blake3_auto_threads", lambda b: blake3.blake3(b, max_threads=-1).digest()),
    ):
        t = time.perf_counter()
        for _ in range(3):
            for b in blobs:
                fn(b)
        seconds = (time.perf_counter() - t) / 3
        t = time.perf_counter()
        fn(big)
        big_s = time.perf_counter() - t
        out[name] = {
            "corpus_mb_per_s": round(total / 2**20 / seconds),
            "us_per_file": round(seconds / len(blobs) * 1e6, 1),
            "one_64mb_file_mb_per_s": round(64 / big_s),
        }
    save("hashing", f"python -m bench hash --corpus {args.corpus}", out)
    return out


def scale(args: Any) -> dict[str, Any]:
    """Cold index time and peak RSS for synthetic trees of growing size, each in a fresh
    daemon and RCMD_HOME; the slope is seconds per 1,000 files between sizes."""
    rows = []
    work = Path(args.work) / "scale"
    for n in args.sizes:
        shutil.rmtree(work, ignore_errors=True)
        tree = work / "tree"
        synthetic(n, tree)
        d = BenchDaemon(work / "home")
        d.start()
        try:
            t = time.perf_counter()
            d.call("index", path=str(tree))
            r = wait_for(lambda d=d: d.idle_after(1), 7200, 0.2)
            seconds = time.perf_counter() - t
            status = d.call("status")
            rows.append(
                {
                    "files": n,
                    "chunks": r["chunks"],
                    "seconds": round(seconds, 1),
                    "chunks_per_s": round(r["chunks"] / seconds, 1),
                    "peak_rss_mb": status["peak_rss_bytes"] >> 20,
                    "stages_s": r["counters"]["stages_s"],
                }
            )
            print(rows[-1], flush=True)
        finally:
            d.stop()
    slopes = [
        round((b["seconds"] - a["seconds"]) / ((b["files"] - a["files"]) / 1000), 2)
        for a, b in itertools.pairwise(rows)
    ]
    out = {"rows": rows, "seconds_per_1000_files_between_sizes": slopes}
    sizes = " ".join(str(n) for n in args.sizes)
    save("scale", f"python -m bench scale --sizes {sizes}", out)
    shutil.rmtree(work, ignore_errors=True)
    return out
