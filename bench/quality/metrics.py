"""Ranking metrics: pure functions over per-result relevance.

Relevance is defined once, here: a result is relevant when it is the first result to hit
a target (one not hit by any earlier result), so duplicates of an already-found answer
earn nothing. Each target counts once; nDCG's ideal ranking puts every target first.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def gains(results: Sequence[R], targets: Sequence[T], hits: Callable[[R, T], bool]) -> list[int]:
    """1 for each result that hits a target no earlier result hit, else 0."""
    found: set[int] = set()
    out: list[int] = []
    for r in results:
        new = [i for i, t in enumerate(targets) if i not in found and hits(r, t)]
        found.update(new)
        out.append(1 if new else 0)
    return out


def first_rank(gain: Sequence[int]) -> int | None:
    """1-based rank of the first relevant result, or None."""
    return next((i + 1 for i, g in enumerate(gain) if g), None)


def ndcg(gain: Sequence[int], n_targets: int, k: int = 10) -> float:
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gain[:k]))
    ideal = sum(1 / math.log2(i + 2) for i in range(min(n_targets, k)))
    return dcg / ideal if ideal else 0.0


@dataclass(frozen=True, slots=True)
class Scores:
    n: int
    hit1: float
    hit10: float
    mrr10: float
    ndcg10: float

    def row(self) -> list[str]:
        return [f"{self.hit1:.3f}", f"{self.hit10:.3f}", f"{self.mrr10:.3f}", f"{self.ndcg10:.3f}"]

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "hit@1": round(self.hit1, 4),
            "hit@10": round(self.hit10, 4),
            "mrr@10": round(self.mrr10, 4),
            "ndcg@10": round(self.ndcg10, 4),
        }


def score(per_query: Sequence[tuple[Sequence[int], int]]) -> Scores:
    """Aggregate (gain list, number of targets) over queries."""
    n = len(per_query)
    if not n:
        return Scores(0, 0.0, 0.0, 0.0, 0.0)
    h1 = h10 = rr = nd = 0.0
    for gain, n_targets in per_query:
        rank = first_rank(gain[:10])
        h1 += rank == 1
        h10 += rank is not None
        rr += 1 / rank if rank else 0.0
        nd += ndcg(gain, n_targets)
    return Scores(n, h1 / n, h10 / n, rr / n, nd / n)


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return 0.0
    if p == 50:
        return float(statistics.median(values))
    s = sorted(values)
    return float(s[min(len(s) - 1, int(len(s) * p / 100))])


def paired_interval(
    a: Sequence[int | None],
    b: Sequence[int | None],
    compare: Callable[[float, float], float],
    *,
    level: float = 0.9,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """A percentile-bootstrap interval of `compare(MRR@10 of a, MRR@10 of b)` over the
    same queries (resampled together, so each comparison is paired): how much of a
    per-corpus difference one might see from which questions happened to be asked.
    `a` and `b` are first-answer ranks of one query set in the same order."""
    if len(a) != len(b) or not a:
        raise ValueError("two rank lists of one query set are needed")
    import random

    rnd = random.Random(seed)
    ra = [1 / r if r else 0.0 for r in a]
    rb = [1 / r if r else 0.0 for r in b]
    n = len(ra)
    stats = []
    for _ in range(resamples):
        pick = [rnd.randrange(n) for _ in range(n)]
        stats.append(compare(sum(ra[i] for i in pick) / n, sum(rb[i] for i in pick) / n))
    stats.sort()
    tail = (1 - level) / 2
    return stats[int(tail * resamples)], stats[min(resamples - 1, int((1 - tail) * resamples))]
