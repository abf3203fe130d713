"""Sweep search knobs in-process on the dev split, through the same `search_roots` the
daemon calls, on the indexes the harness's daemons built (stop them first: run
`python -m bench.quality` once, it stops its daemons when done). Query vectors are
computed once and reused, so a sweep takes seconds per setting and corpus.

    python -m bench.quality.tune                              # the built-in sweep, dev
    python -m bench.quality.tune rrf_k=30 symbol_weight=2     # one setting
    python -m bench.quality.tune --corpora serde,rayon rrf_k=30
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.quality.__main__ import DEFAULT_WORK
from bench.quality.corpora import copy_root, select
from bench.quality.evaluate import MODES, Result, Searcher, run_doc, run_hand, summary
from bench.quality.runs import CorpusSets
from daemon.config import EmbeddingConfig, SearchConfig, load_config
from daemon.embedder import Embedder
from daemon.query_adapter import ADAPTER_FILE, QueryAdapter, load_adapter
from daemon.root import RootIndex
from daemon.search import search_roots
from ipc.requests import SearchRequest

#: Settings tried, each on top of the current defaults (the log is in notes.md).
SWEEP: list[dict[str, Any]] = [
    {},
    {"natural_lexical_weight": 1.0},
    {"rrf_k": 60},
]


def parse_settings(args: list[str]) -> dict[str, Any]:
    kinds: dict[str, Any] = {f.name: type(f.default) for f in dataclasses.fields(SearchConfig)}
    out: dict[str, Any] = {}
    for a in args:
        k, v = a.split("=", 1)
        out[k] = v.lower() in ("1", "true", "yes") if kinds[k] is bool else kinds[k](v)
    return out


def searcher(
    root: RootIndex,
    cfg: SearchConfig,
    embed: Callable[[str], npt.NDArray[np.float32]],
    adapter: QueryAdapter | None = None,
) -> Searcher:
    def search(q: str, mode: str, limit: int) -> tuple[list[Result], float]:
        t = time.perf_counter()
        req = SearchRequest(query=q, mode=mode, limit=limit)
        hits = search_roots([root], req, embed_query=embed, tuning=cfg, adapter=adapter)
        ms = (time.perf_counter() - t) * 1000
        return [Result(h.path, h.start_line, h.end_line, h.symbol, h.score) for h in hits], ms

    return search


def _open(work: Path, sets: list[CorpusSets], model: tuple[str, int]) -> list[RootIndex]:
    """(blank, real) RootIndex of every corpus, from the harness daemons' homes."""
    out: list[RootIndex] = []
    for blank, home in ((True, "home"), (False, "home-real")):
        config = load_config({"RCMD_HOME": str(work / home)})
        for s in sets:
            out.append(RootIndex(copy_root(s.corpus, work, blank=blank), config, *model))
    return out


Ranks = dict[str, dict[str, list[int | None]]]  # set → mode → first-answer ranks


def _corpus_ranks(s: CorpusSets, blank: Searcher, real: Searcher) -> Ranks:
    return {
        "doc": {m: run_doc(blank, s.doc, m).ranks for m in MODES},
        "hand": {m: run_hand(real, s.hand, m).ranks for m in MODES},
    }


def _report(sets: list[CorpusSets], ranks: dict[str, Ranks]) -> list[str]:
    """Pooled MRR@10 per split, set and mode, and the corpora where hybrid trails the
    better single mode by more than 0.01 (issue 18's rule)."""
    lines = []
    for split in sorted({s.corpus.split for s in sets}):
        names = [s.corpus.name for s in sets if s.corpus.split == split]
        for kind in ("doc", "hand"):
            pooled = {m: summary([r for n in names for r in ranks[n][kind][m]]) for m in MODES}
            behind = [
                n
                for n in names
                if (mrr := {m: summary(ranks[n][kind][m])["mrr@10"] for m in MODES})["hybrid"]
                < max(mrr["bm25"], mrr["vector"]) - 0.01
            ]
            cells = " ".join(f"{m} {pooled[m]['mrr@10']:.3f}" for m in MODES)
            lines.append(f"{split:4} {kind:4} {cells} | hybrid behind: {', '.join(behind) or '-'}")
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--work", type=Path, default=DEFAULT_WORK)
    p.add_argument("--corpora")
    p.add_argument("--split", choices=("dev", "test", "all"), default="dev")
    p.add_argument("--adapter", type=Path, default=ADAPTER_FILE, help="query adapter file")
    p.add_argument("settings", nargs="*", help="KNOB=VALUE of [search]")
    args = p.parse_args()
    sets = [
        CorpusSets.load(c)
        for c in select(args.corpora.split(",") if args.corpora else None, args.split)
        if c.available
    ]
    embedder = Embedder(EmbeddingConfig(), args.work / "home" / "cache")
    memo: dict[str, npt.NDArray[np.float32]] = {}

    def embed(q: str) -> npt.NDArray[np.float32]:
        if q not in memo:
            memo[q] = embedder.embed_query(q)
        return memo[q]

    adapter = load_adapter(embedder.model_id, args.adapter)
    roots = _open(args.work, sets, (embedder.model_id, embedder.dim))
    blank, real = roots[: len(sets)], roots[len(sets) :]
    for change in [parse_settings(args.settings)] if args.settings else SWEEP:
        cfg = dataclasses.replace(SearchConfig(), **change)
        ranks = {
            s.corpus.name: _corpus_ranks(
                s, searcher(b, cfg, embed, adapter), searcher(r, cfg, embed, adapter)
            )
            for s, b, r in zip(sets, blank, real, strict=True)
        }
        print(f"== {change or 'defaults'}")
        for line in _report(sets, ranks):
            print(line, flush=True)
    for root in roots:
        root.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
