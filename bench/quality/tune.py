"""Sweep search knobs on the dev half in-process, through the same `search_roots` the
daemon calls, on the index the harness's daemon built (stop it first). Query vectors are
computed once and reused, so a whole sweep takes seconds per setting.

    python -m bench.quality.tune                       # the built-in sweep
    python -m bench.quality.tune rrf_k=30 symbol_weight=2 dedupe=true   # one setting
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.quality.__main__ import DEFAULT_WORK
from bench.quality.corpus import build_corpus, doc_queries, public_items
from bench.quality.evaluate import (
    Result,
    hand_set,
    identifier_sample,
    run_doc,
    run_hand,
    run_identifiers,
)
from daemon.config import EmbeddingConfig, SearchConfig, load_config
from daemon.embedder import Embedder
from daemon.root import RootIndex
from daemon.search import search_roots
from ipc.requests import SearchRequest


def _parse(args: list[str]) -> dict[str, Any]:
    kinds: dict[str, Any] = {f.name: type(f.default) for f in dataclasses.fields(SearchConfig)}
    out: dict[str, Any] = {}
    for a in args:
        k, v = a.split("=", 1)
        out[k] = v.lower() in ("1", "true", "yes") if kinds[k] is bool else kinds[k](v)
    return out


#: Settings tried, each on top of the current defaults; tuning.md has what every round
#: found. This last sweep shows how the hand set on the real index (doc comments kept)
#: moves with the knobs tuned on the doc-blanked dev half.
BASE: dict[str, Any] = {}
SWEEP: list[dict[str, Any]] = [
    {},
    {"natural_content_boost": 1.0},
    {"natural_lexical_weight": 1.0},
    {"natural_content_boost": 1.0, "natural_lexical_weight": 1.0},
    {"natural_content_boost": 1.0, "natural_lexical_weight": 1.0, "rrf_k": 60},
]


def main() -> int:
    work = DEFAULT_WORK
    root_path = build_corpus(work).resolve()
    config = load_config({"RCMD_HOME": str(work / "home")})
    embedder = Embedder(EmbeddingConfig(), config.paths.cache_dir)
    root = RootIndex(root_path, config, embedder.model_id, embedder.dim)
    real = RootIndex(
        build_corpus(work, blank=False).resolve(), config, embedder.model_id, embedder.dim
    )
    memo: dict[str, npt.NDArray[np.float32]] = {}

    def embed_query(q: str) -> npt.NDArray[np.float32]:
        if q not in memo:
            memo[q] = embedder.embed_query(q)
        return memo[q]

    dev = [q for q in doc_queries() if q.split == "dev"]
    hand = hand_set()
    ids = identifier_sample([it for it, _ in public_items()])
    base = BASE
    single: dict[str, Any] = {}
    settings = [_parse(sys.argv[1:])] if sys.argv[1:] else SWEEP
    print("setting | dev bm25 | dev vec | dev hybrid MRR | hand hybrid MRR/hit10 | ident")
    for change in settings:
        cfg = dataclasses.replace(SearchConfig(), **{**base, **change})

        def search(
            q: str, mode: str, limit: int, cfg: SearchConfig = cfg, root: RootIndex = root
        ) -> Any:
            t = time.perf_counter()
            hits = search_roots(
                [root],
                SearchRequest(query=q, mode=mode, limit=limit),
                embed_query=embed_query,
                tuning=cfg,
            )
            ms = (time.perf_counter() - t) * 1000
            return [Result(h.path, h.start_line, h.end_line, h.symbol) for h in hits], ms

        # Fusion knobs leave the single modes alone: score those once.
        modes = ("bm25", "vector", "hybrid") if not single else ("hybrid",)
        d = {**single, **{m: run_doc(search, dev, m).scores for m in modes}}
        single = {m: d[m] for m in ("bm25", "vector")}
        h = run_hand(functools.partial(search, root=real), hand, "hybrid").scores
        ident = run_identifiers(search, ids)
        print(
            f"{change or 'defaults'} | {d['bm25'].mrr10:.3f} | {d['vector'].mrr10:.3f} | "
            f"{d['hybrid'].mrr10:.3f} (hit10 {d['hybrid'].hit10:.3f}) | "
            f"{h.mrr10:.3f}/{h.hit10:.3f} | {ident['symbol_top3']:.2f}",
            flush=True,
        )
    root.close()
    real.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
