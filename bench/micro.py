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
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import blake3

from bench.corpora import materialize, synthetic
from bench.harness import BenchDaemon, lexical_done, save, wait_for


def hashing(args: Any) -> dict[str, Any]:
    """blake3 (one thread, and multi-threaded for files ≥ 1 MiB) against sha256 on the
    corpus's files, read once into memory so the disk is out of the figure."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = materialize(args.corpus, Path(tmp) / "tree")
        blobs = [f.read_bytes() for f in sorted(tree.rglob("*.rs"))]
    total = sum(len(b) for b in blobs)
    out: dict[str, Any] = {"files": len(blobs), "mb": round(total / 2**20, 1)}
    big = b"x" * (64 << 20)
    hashers: list[tuple[str, Callable[[bytes], bytes]]] = [
        ("sha256", lambda b: hashlib.sha256(b).digest()),
        ("blake3", lambda b: blake3.blake3(b).digest()),
        ("blake3_auto_threads", lambda b: blake3.blake3(b, max_threads=-1).digest()),
    ]
    for name, fn in hashers:
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


def _lexical_root(d: BenchDaemon) -> dict[str, Any] | None:
    r = d.root()
    return r if lexical_done(r) else None


def scale(args: Any) -> dict[str, Any]:
    """Cold index time and peak RSS for synthetic trees of growing size, each in a fresh
    daemon and RCMD_HOME: the time until BM25 covers the tree (lexical pass) and, up to
    `--embed-up-to` files, until every vector is written; slopes per 1,000 files."""
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
            r = wait_for(partial(_lexical_root, d), 7200, 0.2)
            lexical_s = time.perf_counter() - t
            row: dict[str, Any] = {
                "files": n,
                "chunks": r["chunks"],
                "lexical_s": round(lexical_s, 1),
                "lexical_us_per_file": round(lexical_s / n * 1e6),
            }
            if n <= args.embed_up_to:
                r = d.wait(tree, 7200)
                seconds = time.perf_counter() - t
                row["total_s"] = round(seconds, 1)
                row["chunks_per_s"] = round(r["chunks"] / seconds, 1)
            status = d.call("status")
            row["peak_rss_mb"] = status["peak_rss_bytes"] >> 20
            rows.append(row)
            print(rows[-1], flush=True)
        finally:
            d.stop()

    def slopes(key: str) -> list[float]:
        return [
            round((b[key] - a[key]) / ((b["files"] - a["files"]) / 1000), 2)
            for a, b in itertools.pairwise(rows)
            if key in a and key in b
        ]

    out = {
        "rows": rows,
        "lexical_s_per_1000_files": slopes("lexical_s"),
        "total_s_per_1000_files": slopes("total_s"),
    }
    sizes = " ".join(str(n) for n in args.sizes)
    save("scale", f"python -m bench scale --sizes {sizes} --embed-up-to {args.embed_up_to}", out)
    shutil.rmtree(work, ignore_errors=True)
    return out


def startup(args: Any) -> dict[str, Any]:
    """No-change startup on a big tree: index it (the lexical pass is enough: the startup
    scan does not look at vectors), stop, start again, and time until the startup scan is
    done; how many files it read (should be none) and µs per file."""
    work = Path(args.work) / f"startup-{args.corpus}"
    tree = materialize(args.corpus, work / "tree")
    shutil.rmtree(work / "home", ignore_errors=True)
    d = BenchDaemon(work / "home")
    d.start()
    out: dict[str, Any] = {"corpus": args.corpus}
    try:
        t = time.perf_counter()
        d.call("index", path=str(tree))
        r = wait_for(lambda: _lexical_root(d), 7200, 0.5)
        out["lexical_pass_s"] = round(time.perf_counter() - t, 1)
        out["files"], out["chunks"] = r["files"], r["chunks"]
        out["vectors_pending_at_stop"] = r["vectors_pending"]
        d.stop()
        runs = []
        for _ in range(args.restarts):
            t = time.perf_counter()
            answer_s = d.start()
            r = wait_for(lambda: _scanned(d), 600, 0.01)
            seconds = time.perf_counter() - t
            c = r["counters"]
            runs.append(
                {
                    "seconds_to_up_to_date": round(seconds, 2),
                    "seconds_to_answer": round(answer_s, 2),
                    "files_statted": c["files_statted"],
                    "files_read": c["files_read"],
                    "scan_us_per_file": round(
                        c["stages_s"].get("scan", 0) / max(c["files_statted"], 1) * 1e6, 1
                    ),
                    "rss_mb": d.call("status")["rss_bytes"] >> 20,
                }
            )
            print(runs[-1], flush=True)
            d.stop()
        out["restarts"] = runs
    finally:
        d.stop()
    save(f"startup-{args.corpus}", f"python -m bench startup {args.corpus}", out)
    shutil.rmtree(work, ignore_errors=True)
    return out


def _scanned(d: BenchDaemon) -> dict[str, Any] | None:
    """The root once its startup scan finished (pending vectors may still fill in)."""
    r = d.root()
    return r if r["counters"]["batches"] >= 1 else None


def refactor(args: Any) -> dict[str, Any]:
    """Embedding-cache hit rate (3.4) on a forced reindex and on a refactor that moves
    free functions between files, on a synthetic tree indexed in-process."""
    import re

    from daemon.config import load_config
    from daemon.embed_cache import EmbedCache
    from daemon.embedder import Embedder
    from daemon.pipeline import Collaborators, run_batch
    from daemon.root import RootIndex

    work = Path(args.work) / "refactor"
    shutil.rmtree(work, ignore_errors=True)
    tree = work / "tree"
    synthetic(args.files, tree)
    # Embedding in the batch itself, so each batch's report holds its hits and misses.
    config = load_config(
        {"RCMD_HOME": str(work / "home"), "RCMD_INDEX_LEXICAL_FIRST_FILES": str(10**9)}
    )
    config.paths.cache_dir.mkdir(parents=True)
    cache = EmbedCache(config.paths.embed_cache)
    embedder = Embedder(config.embedding, config.paths.cache_dir)
    collab = Collaborators(config, embedder, cache)
    root = RootIndex(tree.resolve(), config, embedder.model_id, embedder.dim)
    out: dict[str, Any] = {"files": args.files}
    try:
        first = run_batch(root, None, collab)
        out["cold"] = {"chunks": first.chunks, "misses": first.cache_misses}
        forced = run_batch(root, None, collab, force=True)
        out["forced_reindex"] = {"hits": forced.cache_hits, "misses": forced.cache_misses}
        # Move the free function at the end of every tenth file into the next file.
        files = sorted(tree.rglob("*.rs"))
        moved = 0
        for a, b in zip(files[::10], files[1::10], strict=False):
            text = a.read_text()
            i = text.rfind("/// ")
            fn, rest = text[i:], text[:i]
            if re.search(r"^pub fn ", fn, re.M):
                a.write_text(rest)
                b.write_text(b.read_text() + "\n" + fn)
                moved += 1
        changed = run_batch(root, None, collab)
        out["refactor"] = {
            "functions_moved": moved,
            "files_rewritten": changed.indexed,
            "chunks_in_them": changed.chunks,
            "hits": changed.cache_hits,
            "misses": changed.cache_misses,
        }
    finally:
        root.close()
        cache.close()
        shutil.rmtree(work, ignore_errors=True)
    save("embed-cache-refactor", f"python -m bench refactor --files {args.files}", out)
    return out
