"""Choose the low-confidence floors (`[search] low_confidence_cosine` and
`low_confidence_adapted_cosine`): for each space a question's vector can be in (as
embedded, and after the query adapter), the highest cosine, to 0.01, under which at most
5% of the dev split's answerable hand-written questions have their best vector hit.
The absent-answer questions are what the floor is for; how many it catches on dev and
test is reported, not chosen on. Runs in process on the indexes `python -m bench.quality`
built (run that once first; it stops its daemons when done).

    python -m bench.quality.threshold

Writes bench/results/quality-threshold.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.harness import save
from bench.quality.__main__ import DEFAULT_WORK
from bench.quality.corpora import select
from bench.quality.runs import CorpusSets
from bench.quality.tune import _open
from daemon.config import EmbeddingConfig, SearchConfig
from daemon.embedder import Embedder
from daemon.query_adapter import load_adapter
from daemon.root import RootIndex
from daemon.search import question_vector

SHARE = 0.05  # of answerable questions a floor may flag
STEP = 0.01

#: The config key of each space's floor, and whether the adapter is on in it.
SPACES = {"low_confidence_cosine": False, "low_confidence_adapted_cosine": True}


def highest_floor(answerable: Sequence[float], share: float = SHARE, step: float = STEP) -> float:
    """The highest multiple of `step` that puts at most `share` of `answerable` strictly
    below it: the (k+1)-th lowest score, k the flags allowed, rounded down."""
    if not answerable:
        raise ValueError("no answerable questions to choose a floor on")
    edge = sorted(answerable)[int(len(answerable) * share)]
    return round(math.floor(edge / step + 1e-9) * step, 10)


def flagged(scores: Sequence[float], floor: float) -> int:
    return sum(s < floor for s in scores)


def best_cosines(
    sets: list[CorpusSets], roots: list[RootIndex], embedder: Embedder, adapted: bool
) -> dict[str, list[float]]:
    """The best vector hit's cosine of every answerable and absent hand-written question,
    searched on the index with doc comments as the daemon would."""
    tuning = dataclasses.replace(SearchConfig(), query_adapter=adapted)
    adapter = load_adapter(embedder.model_id, dim=embedder.dim)
    out: dict[str, list[float]] = {"answerable": [], "absent": []}
    for s, root in zip(sets, roots, strict=True):
        for kind, questions in (("answerable", s.hand), ("absent", s.absent)):
            for q in questions:
                vector, _ = question_vector(q.query, embedder.embed_query, adapter, tuning)
                hits = root.vectors.search(vector, 1)
                out[kind].append(hits[0][1] if hits else 0.0)
    return out


def run(work: Path) -> dict[str, Any]:
    embedder = Embedder(EmbeddingConfig(), work / "home" / "cache")
    cosines: dict[str, dict[str, dict[str, list[float]]]] = {}
    for split in ("dev", "test"):
        sets = [CorpusSets.load(c) for c in select(None, split) if c.available]
        roots = _open(work, sets, (embedder.model_id, embedder.dim))
        real = roots[len(sets) :]
        cosines[split] = {key: best_cosines(sets, real, embedder, on) for key, on in SPACES.items()}
        for root in roots:
            root.close()
    figures: dict[str, Any] = {}
    for key in SPACES:
        floor = highest_floor(cosines["dev"][key]["answerable"])
        figures[key] = {
            "floor": floor,
            **{
                f"{split} {kind} flagged": f"{flagged(c[key][kind], floor)} of {len(c[key][kind])}"
                for split, c in cosines.items()
                for kind in ("answerable", "absent")
            },
        }
    return figures


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--work", type=Path, default=DEFAULT_WORK)
    args = p.parse_args()
    figures = run(args.work)
    for key, row in figures.items():
        print(key, row)
    save("quality-threshold", "python -m bench.quality.threshold", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
