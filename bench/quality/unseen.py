"""Crates outside the evaluation's dev and test splits: a check, on code nobody looked at
while tuning, that a search setting helps where it was not chosen. Two sets per crate,
each indexed in process (fresh home under --work), run with each value of the setting,
per mode: doc-comment queries on a doc-blanked copy, and the task-style questions of
`unseen_hand.json` on the crate as it is (a hit: a result whose symbol is an answer).

    python -m bench.quality.unseen                               # abbreviation_weight 0 vs 1
    python -m bench.quality.unseen --knob fusion --values adaptive,zscore
    python -m bench.quality.unseen --crates bstr-0.2.17,slab-0.4.4 --values 1   # others

Writes bench/results/quality-unseen.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.harness import save
from bench.quality.corpora import Corpus, copy_root, registry_crate
from bench.quality.corpus import doc_queries
from bench.quality.evaluate import (
    MODES,
    K,
    Result,
    Searcher,
    first_rank,
    run_doc,
    summary,
    symbol_matches,
)
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

HAND = Path(__file__).with_name("unseen_hand.json")
SETS = ("doc", "hand")

Ranks = dict[str, dict[str, dict[str, list[int | None]]]]  # value → set → mode → ranks


@dataclasses.dataclass(frozen=True, slots=True)
class SymbolQuestion:
    crate: str
    query: str
    expect: tuple[str, ...]  # symbols (or path suffixes) that answer it


def hand_questions(path: Path = HAND) -> list[SymbolQuestion]:
    return [
        SymbolQuestion(q["crate"], q["q"], tuple(q["expect"]))
        for q in json.loads(path.read_text())["questions"]
    ]


def run_symbol_questions(
    search: Searcher, questions: list[SymbolQuestion], mode: str
) -> list[int | None]:
    """The rank of the first result defining one of each question's answers."""
    ranks: list[int | None] = []
    for q in questions:
        results, _ms = search(q.query, mode, K)

        def answers(r: Result, q: SymbolQuestion = q) -> bool:
            return any(symbol_matches(r.symbol, e) for e in q.expect)

        ranks.append(first_rank(results, answers))
    return ranks


def _index(
    corpus: Corpus, work: Path, collab: Collaborators, model: tuple[str, int], blank: bool
) -> RootIndex:
    root = RootIndex(copy_root(corpus, work, blank=blank), collab.config, *model)
    run_batch(root, None, collab)
    while root.ledger.vectors_pending:
        fill_vectors(root, collab, lambda: False)
    return root


def run(
    work: Path,
    knob: str,
    values: list[str],
    adapter_file: Path,
    crates: tuple[tuple[str, str], ...] = UNSEEN,
    hand_file: Path = HAND,
) -> dict[str, Any]:
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
    hand = hand_questions(hand_file)
    model = (embedder.model_id, embedder.dim)
    for name, version in crates:
        corpus = registry_crate(name, version, "unseen", "")
        if not corpus.available:
            print(f"{name}-{version}: not installed (apt-get install librust-{name}-dev)")
            continue
        queries = doc_queries(corpus)
        mine = [q for q in hand if q.crate == name]
        per_crate[name] = {value: {} for value in values}
        for kind in SETS if mine else ("doc",):
            root = _index(corpus, work, collab, model, blank=kind == "doc")
            for value in values:
                cfg = dataclasses.replace(SearchConfig(), **parse_settings([f"{knob}={value}"]))
                search = searcher(root, cfg, embed, adapter)
                per_crate[name][value][kind] = {
                    m: run_doc(search, queries, m).ranks
                    if kind == "doc"
                    else run_symbol_questions(search, mine, m)
                    for m in MODES
                }
            root.close()
        print(f"{name}: {len(queries)} doc-comment queries, {len(mine)} questions", flush=True)
    chunks.close()
    return _figures(per_crate, values)


def _figures(per_crate: dict[str, Ranks], values: list[str]) -> dict[str, Any]:
    """MRR@10 per value, set and mode, pooled and per crate."""

    def mrr(ranks: list[int | None]) -> float:
        return round(float(summary(ranks)["mrr@10"]), 3)

    out: dict[str, Any] = {}
    for value in values:
        out[value] = {}
        for kind in SETS:
            rows = {n: c[value][kind] for n, c in per_crate.items() if kind in c[value]}
            pooled = {m: [r for row in rows.values() for r in row[m]] for m in MODES}
            out[value][kind] = {
                "queries": len(pooled["hybrid"]),
                "pooled": {m: mrr(pooled[m]) for m in MODES},
                "crates": {n: {m: mrr(row[m]) for m in MODES} for n, row in rows.items()},
            }
    return out


def _crate(spec: str) -> tuple[str, str]:
    """`bstr-0.2.17` → ("bstr", "0.2.17"): the version starts at the last dash before a digit."""
    name, _, version = spec.rpartition("-")
    while name and not version[:1].isdigit():
        name, _, head = name.rpartition("-")
        version = f"{head}-{version}"
    if not name:
        raise SystemExit(f"--crates: {spec!r} is not NAME-VERSION (e.g. bstr-0.2.17)")
    return name, version


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--work", type=Path, default=Path.home() / ".cache" / "rcmd-quality-unseen")
    p.add_argument("--knob", default="abbreviation_weight", help="a [search] setting")
    p.add_argument("--values", default="0,1", help="comma-separated values of the knob")
    p.add_argument("--adapter", type=Path, default=ADAPTER_FILE, help="query adapter file")
    p.add_argument(
        "--crates",
        help="comma-separated NAME-VERSION registry crates instead of the six "
        "(doc-comment queries only, unless the --hand file has questions for them)",
    )
    p.add_argument("--hand", type=Path, default=HAND, help="task questions (JSON)")
    args = p.parse_args()
    values = args.values.split(",")
    crates = tuple(_crate(c) for c in args.crates.split(",")) if args.crates else UNSEEN
    figures = run(args.work, args.knob, values, args.adapter, crates, args.hand)
    for value in values:
        for kind in SETS:
            f = figures[value][kind]
            cells = ", ".join(f"{m} {f['pooled'][m]:.3f}" for m in MODES)
            print(f"{args.knob}={value} {kind}: pooled {cells} (n={f['queries']})")
            for name, row in f["crates"].items():
                print(f"    {name:13} " + " ".join(f"{m} {row[m]:.3f}" for m in MODES))
    command = f"python -m bench.quality.unseen --knob {args.knob} --values {args.values}"
    if args.crates:
        command += f" --crates {args.crates}"
    if args.hand != HAND:
        command += f" --hand {args.hand}"
    if args.adapter != ADAPTER_FILE:
        command += f" --adapter {args.adapter}"
    save("quality-unseen", command, {"knob": args.knob, "crates": crates, "figures": figures})
    return 0


if __name__ == "__main__":
    sys.exit(main())
