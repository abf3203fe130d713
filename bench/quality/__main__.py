"""Search-quality evaluation over several corpora: rcmd (real daemons over their socket)
against a naive baseline, per corpus and per split (whole crates are dev or test).

    python -m bench.quality                               # everything; rewrites the doc
    python -m bench.quality --split dev --no-naive --no-doc -e RCMD_SEARCH_RRF_K=30
    python -m bench.quality --corpora serde,nom           # a subset

Each corpus (bench/quality/corpora.py) is copied under --work twice: doc comments
blanked (the doc-comment queries and identifier queries run there) and as it is (the
hand-written questions run there, on the index a user has). One daemon holds every
blanked root, a second every real root (both share the embedding cache, kept between
runs: a re-run that changes only search knobs embeds nothing). Each set runs once per
corpus with the `root` filter, and once with no filter (every selected root at once).
The naive baseline (bench/quality/naive.py) is built in-process from the same copies.
Results go to WORK/results.json (or --out); a run over every corpus also rewrites
docs/SEARCH_QUALITY.md and bench/results/quality.json (unless --no-doc).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.quality.corpora import CORPORA, Corpus, copy_root, select
from bench.quality.evaluate import MODES, Searcher
from bench.quality.rcmd_side import REPO
from bench.quality.report import write_report
from bench.quality.runs import CorpusSets, evaluate_corpus, run_naive, run_rcmd

DEFAULT_WORK = Path.home() / ".cache" / "rcmd-quality-multi"
#: What decides the figures: a change here since the commit marks the report as dirty.
RANKING_FILES = (
    "daemon/chunker.py",
    "daemon/config.py",
    "daemon/fusion.py",
    "daemon/lexical.py",
    "daemon/lexical_writes.py",
    "daemon/query.py",
    "daemon/search.py",
    "daemon/tokenize.py",
    "daemon/embedder.py",
    "daemon/query_adapter.py",
    "daemon/model/query_adapter.npz",
    "bench/quality",
)

__all__ = ["DEFAULT_WORK", "MODES", "Searcher", "evaluate_corpus", "main"]


def dump(results: dict[str, Any]) -> str:
    """Indented JSON with lists of numbers kept on one line (per-query ranks, scores)."""
    text = json.dumps(results, indent=1)
    return re.sub(
        r"\[\s*([-\d.enull, \n]*?)\s*\]", lambda m: "[" + " ".join(m[1].split()) + "]", text
    )


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.strip()


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.quality",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    p.add_argument("--work", type=Path, default=DEFAULT_WORK, help="kept between runs")
    p.add_argument(
        "--corpora",
        help="comma-separated corpus names (default: all installed): "
        + ", ".join(f"{c.name} ({c.split})" for c in CORPORA),
    )
    p.add_argument("--split", choices=("dev", "test", "all"), default="all")
    p.add_argument("--no-naive", action="store_true", help="reuse the naive figures on file")
    p.add_argument("--no-doc", action="store_true", help="do not rewrite docs/SEARCH_QUALITY.md")
    p.add_argument("--no-all-roots", action="store_true", help="skip the unfiltered run")
    p.add_argument(
        "--reindex", action="store_true", help="force a rebuild (after a chunker change)"
    )
    p.add_argument("-e", "--env", action="append", default=[], help="KEY=VALUE for the daemons")
    p.add_argument("--out", type=Path, help="results JSON (default WORK/results.json)")
    return p.parse_args()


def _corpora(args: argparse.Namespace) -> list[Corpus]:
    names = args.corpora.split(",") if args.corpora else None
    chosen = select(names, args.split)
    missing = [c for c in chosen if not c.available]
    for c in missing:
        print(f"skipped {c.name}: not installed (apt-get install {c.package})", flush=True)
    chosen = [c for c in chosen if c.available]
    if not chosen:
        raise SystemExit("no corpus to evaluate")
    return chosen


def _header(args: argparse.Namespace, corpora: list[Corpus]) -> dict[str, Any]:
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--", *RANKING_FILES)),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "command": "python -m bench.quality " + " ".join(sys.argv[1:]),
        "corpora": {
            c.name: {
                "split": c.split,
                "style": c.style,
                "source": str(c.source),
                "include": list(c.include),
                "exclude": list(c.exclude),
                "package": c.package,
                "files": len(c.files()),
                "lines": sum(f.read_bytes().count(b"\n") for f in c.files()),
            }
            for c in corpora
        },
    }


def main() -> int:
    args = _args()
    work: Path = args.work
    corpora = _corpora(args)
    env = dict(kv.split("=", 1) for kv in args.env)
    results_path = args.out or work / "results.json"
    previous: dict[str, Any] = {}
    if results_path.exists():
        previous = json.loads(results_path.read_text())
    sets = [CorpusSets.load(c) for c in corpora]
    for s in sets:
        c = s.corpus
        copy_root(c, work, blank=True)
        copy_root(c, work, blank=False)
        print(f"{c.name} ({c.split}): {s.counts()}", flush=True)
    results = _header(args, corpora)
    results["env"] = env
    flags = {"reindex": args.reindex, "all_roots": not args.no_all_roots}
    results["rcmd"] = run_rcmd(work, sets, env, **flags)
    if args.no_naive and "naive" in previous:
        results["naive"] = previous["naive"]
        results["naive_from"] = previous.get("date")
    else:
        results["naive"] = run_naive(work, sets)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(dump(results))
    print(f"results: {results_path}")
    if len(corpora) < len(CORPORA) and not args.no_doc:
        print("docs/SEARCH_QUALITY.md left alone: it reports every corpus (this run had a subset)")
    elif not args.no_doc:
        doc = REPO / "docs" / "SEARCH_QUALITY.md"
        write_report(results, doc)
        (REPO / "bench" / "results" / "quality.json").write_text(dump(results))
        print(f"report: {doc} (results: bench/results/quality.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
