"""Search-quality evaluation: rcmd (a real daemon over its socket) against a naive baseline.

    python -m bench.quality                  # everything; writes docs/SEARCH_QUALITY.md
    python -m bench.quality --no-naive --no-doc -e RCMD_SEARCH_RRF_K=30   # a tuning run

Builds the doc-blanked corpus copy under --work (kept between runs, as is the daemon's
embedding cache, so re-runs that change only search knobs embed nothing), indexes it with
a daemon, runs the doc-comment set (dev and test halves), the hand-written set and the
identifier check in bm25, vector and hybrid modes, then does the same for the naive
baseline in-process. Results go to WORK/results.json and docs/SEARCH_QUALITY.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.quality.corpus import SUBSET, build_corpus, doc_queries, public_items
from bench.quality.evaluate import (
    MODES,
    Result,
    Searcher,
    hand_set,
    identifier_sample,
    run_doc,
    run_hand,
    run_identifiers,
)
from bench.quality.rcmd_side import REPO, RcmdDaemon
from bench.quality.report import write_report

DEFAULT_WORK = Path.home() / ".cache" / "rcmd-quality"
#: What decides the figures: a change here since the commit marks the report as dirty.
RANKING_FILES = (
    "daemon/chunker.py",
    "daemon/config.py",
    "daemon/fusion.py",
    "daemon/lexical.py",
    "daemon/query.py",
    "daemon/search.py",
    "daemon/tokenize.py",
    "daemon/embedder.py",
    "bench/quality",
)


def evaluate(search: Searcher, search_real: Searcher, label: str) -> dict[str, Any]:
    """Every set: the doc-comment halves on the doc-blanked index (`search`), the hand set
    on the real index with its doc comments (`search_real`) and on the blanked one."""
    queries = doc_queries()
    halves = {s: [q for q in queries if q.split == s] for s in ("dev", "test")}
    hand = hand_set()
    out: dict[str, Any] = {}
    for mode in MODES:
        t = time.perf_counter()
        for split, qs in halves.items():
            out.setdefault(split, {})[mode] = run_doc(search, qs, mode).to_json()
        for key, s in (("hand", search_real), ("hand_blanked", search)):
            hand_run = run_hand(s, hand, mode)
            out.setdefault(key, {})[mode] = hand_run.to_json()
            out.setdefault(f"{key}_ranks", {})[mode] = hand_run.ranks
        print(
            f"{label} {mode:6s} dev MRR {out['dev'][mode]['mrr@10']:.3f}  "
            f"test MRR {out['test'][mode]['mrr@10']:.3f}  "
            f"hand hit@10 {out['hand'][mode]['hit@10']:.3f} "
            f"(blanked {out['hand_blanked'][mode]['hit@10']:.3f})  "
            f"({time.perf_counter() - t:.0f}s)",
            flush=True,
        )
    sample = identifier_sample([it for it, _ in public_items()])
    out["identifiers"] = run_identifiers(search, sample)
    print(f"{label} identifiers {out['identifiers']['symbol_top3']:.3f}", flush=True)
    out["counts"] = {"dev": len(halves["dev"]), "test": len(halves["test"]), "hand": len(hand)}
    return out


def run_rcmd(
    work: Path, roots: tuple[Path, Path], env: dict[str, str], reindex: bool
) -> dict[str, Any]:
    """rcmd through a daemon holding both roots (doc-blanked, real); each query is
    narrowed to one root with the protocol's `root` parameter."""
    daemon = RcmdDaemon(work / "home", env)
    daemon.start()
    try:
        t = time.perf_counter()
        infos = [daemon.reindex(r) if reindex else daemon.index(r) for r in roots]
        index_s = time.perf_counter() - t
        emb = daemon.status()["embedding"]

        def searcher(root: Path) -> Searcher:
            def search(query: str, mode: str, limit: int) -> tuple[list[Result], float]:
                hits, ms = daemon.search(query, mode=mode, limit=limit, root=str(root))
                rs = [Result(h["path"], h["start_line"], h["end_line"], h["symbol"]) for h in hits]
                return rs, ms

            return search

        searcher(roots[0])("warm up", "hybrid", 10)
        out = evaluate(searcher(roots[0]), searcher(roots[1]), "rcmd ")
        out["index"] = {
            "files": infos[0]["files"],
            "chunks": infos[0]["chunks"],
            "real_chunks": infos[1]["chunks"],
            "seconds": round(index_s, 1),
            "cache_misses": emb["cache_misses"],
        }
        out["env"] = env
        return out
    finally:
        daemon.stop()


def run_naive(work: Path, roots: tuple[Path, Path]) -> dict[str, Any]:
    from bench.quality.naive import NaiveIndex
    from daemon.config import EmbeddingConfig
    from daemon.embedder import Embedder

    (work / "naive").mkdir(parents=True, exist_ok=True)
    embedder = Embedder(EmbeddingConfig(), work / "naive")
    t = time.perf_counter()
    indexes = [
        NaiveIndex(
            r, embedder.embed, embedder.embed_query, embedder.model_id, work / "naive" / "emb.db"
        )
        for r in roots
    ]
    build_s = time.perf_counter() - t

    def searcher(index: NaiveIndex) -> Searcher:
        def search(query: str, mode: str, limit: int) -> tuple[list[Result], float]:
            t = time.perf_counter()
            hits = index.search(query, mode, limit)
            ms = (time.perf_counter() - t) * 1000
            return [Result(h.path, h.start_line, h.end_line) for h in hits], ms

        return search

    searcher(indexes[0])("warm up", "hybrid", 10)
    out = evaluate(searcher(indexes[0]), searcher(indexes[1]), "naive")
    out["index"] = {
        "chunks": len(indexes[0].chunks),
        "real_chunks": len(indexes[1].chunks),
        "seconds": round(build_s, 1),
    }
    return out


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.strip()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--work", type=Path, default=DEFAULT_WORK, help="kept between runs")
    p.add_argument("--no-naive", action="store_true", help="reuse the naive figures on file")
    p.add_argument("--no-doc", action="store_true", help="do not rewrite docs/SEARCH_QUALITY.md")
    p.add_argument(
        "--reindex", action="store_true", help="force a rebuild (after a chunker change)"
    )
    p.add_argument("-e", "--env", action="append", default=[], help="KEY=VALUE for the daemon")
    p.add_argument("--out", type=Path, help="results JSON (default WORK/results.json)")
    args = p.parse_args()
    work: Path = args.work
    roots = (build_corpus(work).resolve(), build_corpus(work, blank=False).resolve())
    env = dict(kv.split("=", 1) for kv in args.env)
    previous: dict[str, Any] = {}
    results_path = args.out or work / "results.json"
    if (work / "results.json").exists():
        previous = json.loads((work / "results.json").read_text())
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--", *RANKING_FILES)),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "corpus": {"library": "Debian rust-src 1.63.0 (library/)", "subset": list(SUBSET)},
        "command": "python -m bench.quality " + " ".join(sys.argv[1:]),
    }
    results["rcmd"] = run_rcmd(work, roots, env, args.reindex)
    if args.no_naive and "naive" in previous:
        results["naive"] = previous["naive"]
        results["naive_from"] = previous.get("date")
    else:
        results["naive"] = run_naive(work, roots)
    results_path.write_text(json.dumps(results, indent=2))
    print(f"results: {results_path}")
    if not args.no_doc:
        doc = REPO / "docs" / "SEARCH_QUALITY.md"
        write_report(results, doc)
        print(f"report: {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
