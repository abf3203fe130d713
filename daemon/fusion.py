"""Reciprocal rank fusion: pure functions over ranked id lists."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def rrf(
    rankings: Sequence[Sequence[K]], k: int = 60, weights: Sequence[float] | None = None
) -> list[tuple[K, float]]:
    """Fuse best-first lists: score(d) = Σ w_i / (k + rank_i(d)), ranks from 1.

    Ties are broken by the first list a document appears in and then its rank there, so
    the order is stable for equal inputs.
    """
    if weights is None:
        weights = [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError("one weight per ranking")
    scores: dict[K, float] = {}
    first_seen: dict[K, tuple[int, int]] = {}
    for li, (ranking, w) in enumerate(zip(rankings, weights, strict=True)):
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + w / (k + rank)
            first_seen.setdefault(key, (li, rank))
    return sorted(scores.items(), key=lambda kv: (-kv[1], first_seen[kv[0]]))
