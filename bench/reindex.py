"""`reindex --force` of the tree an earlier `python -m bench index CORPUS` run left in the
work dir (issue 20's measure): the daemon of this checkout waits until the root is idle,
then rebuilds it `--runs` times; each figure is the time from the request to idle, with
the last batch's stages (where a forced rebuild spends its time).

    python -m bench reindex medium --runs 3
    python -m bench reindex medium --runs 3 --checkout ../old   # another checkout's daemon
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from bench.harness import REPO, BenchDaemon, save


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work) / args.corpus.replace(":", "_")
    tree, home = work / "tree", work / "home"
    if not (tree.is_dir() and home.is_dir()):
        raise SystemExit(f"run `python -m bench index {args.corpus}` first ({tree})")
    source = Path(args.checkout).resolve() if args.checkout else REPO
    d = BenchDaemon(home, {"PYTHONPATH": str(source)}, source=source)
    d.start()
    try:
        d.wait(tree, timeout=3600)
        runs: list[float] = []
        for _ in range(args.runs):
            t = time.perf_counter()
            d.call("reindex", path=str(tree), force=True)
            d.wait(tree, timeout=3600)
            runs.append(round(time.perf_counter() - t, 2))
        status = d.status()
    finally:
        d.stop()
    last = status.get("last_batch") or {}
    out = {
        "corpus": args.corpus,
        "checkout": str(source),
        "runs_s": runs,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "chunks": last.get("chunks"),
        "chunks_written": last.get("chunks_written"),
        "chunks_kept": last.get("chunks_kept"),
        "points_dropped": last.get("points_dropped"),
        "parse": last.get("parse"),
        "stages_s": last.get("stages"),
    }
    name = f"reindex-{args.corpus}" + ("-baseline" if args.checkout else "")
    flag = f" --checkout {args.checkout}" if args.checkout else ""
    save(name, f"python -m bench reindex {args.corpus} --runs {args.runs}{flag}", out)
    return out
