"""Doc-comment queries on crates outside the evaluation's dev and test splits: a check,
on code nobody looked at while tuning, that a search setting helps where it was not
chosen. Each crate is indexed in process from a doc-blanked copy (fresh home under
--work), then its queries run with each value of the setting, per mode.

    python -m bench.quality.unseen                               # abbreviation_weight 0 vs 1
    python -m bench.quality.unseen --knob fusion --values adaptive,zscore

Writes bench/results/quality-unseen.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.harness import save
from bench.quality.corpora import Corpus, copy_root, registry_crate
from bench.quality.corpus import doc_queries
from bench.quality.evaluate import MODES, run_doc, summary
from bench.quality.tune import parse_settings, searcher
from daemon.chunk_cache import ChunkCache
from daemon.config import SearchConfig, load_config
from daemon.embed_cache import open_cache
from daemon.embedder import Embedder
from daemon.pipeline import Collaborators, fill_vectors, run_batch
from daemon.query_adapter import ADAPTER_FILE, load_adapter
from daemon.root import RootIndex

#: Registry crates in neither split (Debian bookworm's versions), of different styles.
UNSEEN = (
    ("hashbrown", "0.12.3"),
    ("indexmap", "1.9.2"),
    ("petgraph", "0.6.2"),
    ("smallvec", "1.9.0"),
    ("rand", "0.8.5"),
    ("tracing-core", "0.1.30"),
)

Ranks = dict[str, dict[str, list[int | None]]]  # value → mode → first-answer ranks


def _index(corpus: Corpus, work: Path, collab: Collaborators, model: tuple[str, int]) -> RootIndex:
    root = RootIndex(copy_root(corpus, work, blank=True), collab.config, *model)
    run_batch(root, None, collab)
    while root.ledger.vectors_pending:
        fill_vectors(root, collab, lambda: False)
    return root


def run(work: Path, knob: str, values: list[str], adapter_file: Path) -> dict[str, Any]:
    config = load_config({"RCMD_HOME": str(work / "home")})
    config.paths.cache_dir.mkdir(parents=True, exist_ok=True)
    embedder = Embedder(config.embedding, config.paths.cache_dir)
    chunks = ChunkCache(config.paths.cache_dir / "chunks.db", 1 << 40)
    collab = Collaborators(
        config, embedder, open_cache(config.paths.embed_cache), chunk_cache=chunks
    )
    adapter = load_adapter(embedder.model_id, adapter_file)
    memo: dict[str, npt.NDArray[np.float32]] = {}

    def embed(q: str) -> npt.NDArray[np.float32]:
        if q not in memo:
            memo[q] = embedder.embed_query(q)
        return memo[q]

    per_crate: dict[str, Ranks] = {}
    for name, version in UNSEEN:
        corpus = registry_crate(name, version, "unseen", "")
        if not corpus.available:
            print(f"{name}-{version}: not installed (apt-get install librust-{name}-dev)")
            continue
        queries = doc_queries(corpus)
        root = _index(corpus, work, collab, (embedder.model_id, embedder.dim))
        per_crate[name] = {}
        for value in values:
            cfg = dataclasses.replace(SearchConfig(), **parse_settings([f"{knob}={value}"]))
            search = searcher(root, cfg, embed, adapter)
            per_crate[name][value] = {m: run_doc(search, queries, m).ranks for m in MODES}
        root.close()
        print(f"{name}: {len(queries)} queries", flush=True)
    chunks.close()
    return _figures(per_crate, values)


def _figures(per_crate: dict[str, Ranks], values: list[str]) -> dict[str, Any]:
    """MRR@10 per value and mode, pooled and per crate."""

    def mrr(ranks: list[int | None]) -> float:
        return round(float(summary(ranks)["mrr@10"]), 3)

    out: dict[str, Any] = {}
    for value in values:
        pooled = {m: [r for c in per_crate.values() for r in c[value][m]] for m in MODES}
        out[value] = {
            "queries": len(pooled["hybrid"]),
            "pooled": {m: mrr(pooled[m]) for m in MODES},
            "crates": {n: {m: mrr(c[value][m]) for m in MODES} for n, c in per_crate.items()},
        }
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--work", type=Path, default=Path.home() / ".cache" / "rcmd-quality-unseen")
    p.add_argument("--knob", default="abbreviation_weight", help="a [search] setting")
    p.add_argument("--values", default="0,1", help="comma-separated values of the knob")
    p.add_argument("--adapter", type=Path, default=ADAPTER_FILE, help="query adapter file")
    args = p.parse_args()
    values = args.values.split(",")
    figures = run(args.work, args.knob, values, args.adapter)
    for value in values:
        f = figures[value]
        cells = ", ".join(f"{m} {f['pooled'][m]:.3f}" for m in MODES)
        print(f"{args.knob}={value}: pooled {cells} (n={f['queries']})")
        for name, row in f["crates"].items():
            print(f"    {name:13} " + " ".join(f"{m} {row[m]:.3f}" for m in MODES))
    command = f"python -m bench.quality.unseen --knob {args.knob} --values {args.values}"
    if args.adapter != ADAPTER_FILE:
        command += f" --adapter {args.adapter}"
    save("quality-unseen", command, {"knob": args.knob, "crates": UNSEEN, "figures": figures})
    return 0


if __name__ == "__main__":
    sys.exit(main())
