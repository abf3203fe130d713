"""Reciprocal rank fusion: pure functions over ranked id lists."""

from __future__ import annotations

import statistics
from collections.abc import Hashable, Sequence
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def rrf(
    rankings: Sequence[Sequence[K]],
    k: int = 60,
    weights: Sequence[float] | None = None,
    ranks: Sequence[Sequence[int]] | None = None,
) -> list[tuple[K, float]]:
    """Fuse best-first lists: score(d) = Σ w_i / (k + rank_i(d)), ranks from 1, or each
    list's `ranks` where given (see `tied_ranks`).

    Ties are broken by the first list a document appears in and then its rank there, so
    the order is stable for equal inputs.
    """
    if weights is None:
        weights = [1.0] * len(rankings)
    if len(weights) != len(rankings) or (ranks is not None and len(ranks) != len(rankings)):
        raise ValueError("one weight (and one rank list) per ranking")
    scores: dict[K, float] = {}
    first_seen: dict[K, tuple[int, int]] = {}
    for li, (ranking, w) in enumerate(zip(rankings, weights, strict=True)):
        positions = ranks[li] if ranks is not None else range(1, len(ranking) + 1)
        for rank, key in zip(positions, ranking, strict=True):
            scores[key] = scores.get(key, 0.0) + w / (k + rank)
            first_seen.setdefault(key, (li, rank))
    return sorted(scores.items(), key=lambda kv: (-kv[1], first_seen[kv[0]]))


def tied_ranks(scores: Sequence[float]) -> list[int]:
    """Ranks from 1 of best-first `scores`, equal scores sharing the best rank of their
    run (0.9, 0.5, 0.5, 0.2 → 1, 2, 2, 4). A list that cannot tell two candidates apart
    then ranks them alike, and their order comes from the other lists rather than from
    which of them a store happened to write first."""
    out: list[int] = []
    for i, score in enumerate(scores):
        out.append(out[-1] if i and score == scores[i - 1] else i + 1)
    return out


#: How many candidates past the depth a store is asked for, so that a run of equal scores
#: reaching the depth is seen whole and cut in file order, not in the store's order.
TIE_MARGIN = 32


def through_ties(scores: Sequence[float], n: int) -> int:
    """How many of best-first `scores` to look at for the best `n`: n, and those after it
    that tie with the n-th, so a run of equal scores is taken whole before it is cut."""
    end = min(n, len(scores))
    while 0 < end < len(scores) and scores[end] == scores[end - 1]:
        end += 1
    return end


def standout(scores: Sequence[float], top: int = 20) -> float:
    """How far a list's best score stands above the rest of its `top`, in standard
    deviations of the rest: large when one candidate is clearly the answer, near 0
    when the list is a plateau of equally weak matches. Scale-free, so BM25 scores and
    cosines compare; 0 for lists too short to tell."""
    best = sorted(scores, reverse=True)[:top]
    if len(best) < 3:
        return 0.0
    rest = best[1:]
    spread = statistics.pstdev(rest)
    if spread == 0:
        return 0.0
    return max(0.0, (best[0] - statistics.fmean(rest)) / spread)


def keep_leaders(
    fused: list[tuple[K, float]], leaders: Sequence[K], place: int
) -> list[tuple[K, float]]:
    """`fused` with each of `leaders` (a list's best candidate, where that list is sure
    of it) within the first `place` (1-based) where there is room beside fusion's own
    first, at the score of the candidate it passes: a list sure of its answer may be
    outvoted, but not buried under the other list's runners-up (weighted RRF put a
    BM25-only first candidate below every vector-only candidate up to the 21st).

    Leaders are placed together: lifting one to `place` must not push another, lifted
    or already there, out (regex's `captures_iter`, BM25's first, went from third to
    fourth when the vector side's first was lifted after it)."""
    wanted = set(leaders)
    pending = [key for key, _ in fused if key in wanted]
    out: list[tuple[K, float]] = []
    for key, score in fused:
        if key in wanted:
            if key in pending:
                out.append((key, score))
                pending.remove(key)
            continue
        if out and pending and place - len(out) <= len(pending):
            out.extend((lead, score) for lead in pending)
            pending.clear()
        out.append((key, score))
    out.extend((key, dict(fused)[key]) for key in pending)
    return out


def confidence_weighted(
    weights: Sequence[float], standouts: Sequence[float], lean: float = 1.0
) -> tuple[float, ...]:
    """`weights` leaned towards the lists whose best candidate stands out more: each is
    scaled by 1 + lean·(n·share − 1), its share being its standout over their sum, so
    equal standouts keep the weights and a list that is a plateau loses up to `lean`
    of its weight to the others."""
    total = sum(standouts)
    if total <= 0:
        return tuple(weights)
    n = len(weights)
    pairs = zip(weights, standouts, strict=True)
    return tuple(w * max(0.0, 1 + lean * (n * s / total - 1)) for w, s in pairs)


def zscore_sum(
    lists: Sequence[Sequence[tuple[K, float]]], weights: Sequence[float] | None = None
) -> list[tuple[K, float]]:
    """Fuse scored lists by the sum of each candidate's standard score in every list
    (its distance from that list's mean, in that list's standard deviations), scaled to
    [0, 1] over the result. A candidate a list did not return counts as that list's
    lowest. Scale-free like `standout`: BM25 and cosines add up without a weight, and a
    list whose best stands far above its rest counts for more than a plateau."""
    standard: list[dict[K, float]] = []
    ws: list[float] = []
    for ranked, w in zip(lists, weights or [1.0] * len(lists), strict=True):
        if not ranked:
            continue
        ws.append(w)
        scores = [s for _, s in ranked]
        mean, spread = statistics.fmean(scores), statistics.pstdev(scores) or 1.0
        standard.append({key: (s - mean) / spread for key, s in ranked})
    if not standard:
        return []
    floors = [min(z.values()) for z in standard]
    keys = list(dict.fromkeys(key for z in standard for key in z))
    total = {
        key: sum(w * z.get(key, lo) for z, lo, w in zip(standard, floors, ws, strict=True))
        for key in keys
    }
    lo, hi = min(total.values()), max(total.values())
    span = (hi - lo) or 1.0
    return sorted(((key, (v - lo) / span) for key, v in total.items()), key=lambda kv: -kv[1])
