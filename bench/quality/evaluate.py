"""Run the query sets of one corpus against a searcher and record, per query, the rank of
the first answer; shared by the harness and tuning. Aggregates come from the ranks
(`summary`), so corpora can be pooled into per-split figures afterwards."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.quality.corpus import DocQuery, Item
from bench.quality.hand import Question
from bench.quality.metrics import percentile
from ipc.kinds import FRAGMENT_KINDS

MODES = ("bm25", "vector", "hybrid")
K = 10
#: A result of at most this many lines is a fragment (issue 24 asks for their share).
FRAGMENT_LINES = 3
#: An editor opened at a result's first line shows this many lines: a hit "on screen"
#: puts the answer's first line among them. Overlap alone counts a 3,000-line item that
#: contains the answer somewhere, which no reader can use (issue 18's complaint about
#: whole-macro ranges); both are recorded.
SCREEN_LINES = 60


@dataclass(frozen=True, slots=True)
class Result:
    path: str
    start_line: int
    end_line: int
    symbol: str = ""
    score: float = 0.0
    #: The corpus the result came from, when several are searched at once ("" = the one
    #: searched).
    corpus: str = ""
    kind: str = ""

    def fragment(self) -> bool:
        """At most `FRAGMENT_LINES` lines."""
        return self.end_line - self.start_line + 1 <= FRAGMENT_LINES

    def fragment_of_kind(self) -> bool:
        """A fragment that is no fn, method or type: an `impl` header, a `const`, a type
        alias, loose lines (`ipc.kinds.FRAGMENT_KINDS`): what issue 24 names."""
        return self.fragment() and self.kind in FRAGMENT_KINDS


#: (query, mode, limit) -> (results best first, latency ms)
Searcher = Callable[[str, str, int], tuple[list[Result], float]]


def holds(r: Result, item: Item) -> bool:
    """A result hits an item when it is in the item's file and its lines hold the
    item's declaration line (a split part that holds only the body does not count)."""
    return r.path == item.path and r.start_line <= item.decl_line <= r.end_line


def on_screen(r: Result, first_line: int) -> bool:
    """The answer starting at `first_line` (0: a whole file) shows when `r` is opened."""
    return first_line == 0 or first_line - r.start_line < SCREEN_LINES


def symbol_matches(symbol: str, name: str) -> bool:
    """`alloc::vec::Vec::with_capacity` matches `Vec::with_capacity` and `with_capacity`."""
    return symbol == name or symbol.endswith("::" + name)


def first_rank(results: Sequence[Result], hit: Callable[[Result], bool]) -> int | None:
    return next((i + 1 for i, r in enumerate(results[:K]) if hit(r)), None)


#: A result's verdict against a query's answers: (overlaps one, one shows on screen).
Verdict = Callable[[Result], tuple[bool, bool]]


def ranks_of(results: Sequence[Result], verdict: Verdict) -> tuple[int | None, int | None]:
    """The first-answer rank by overlap, and by an answer on the opening screen."""
    marks = [verdict(r) for r in results[:K]]
    first = next((i + 1 for i, (hit, _) in enumerate(marks) if hit), None)
    screen = next((i + 1 for i, (_, seen) in enumerate(marks) if seen), None)
    return first, screen


@dataclass
class SetRun:
    """One query set in one mode: first-answer ranks (None: not in the top 10), the
    latencies, the result sizes seen, and each query's top score."""

    ranks: list[int | None]
    latencies_ms: list[float]
    #: The first rank whose result shows an answer on its first screen (`on_screen`).
    screen_ranks: list[int | None] = field(default_factory=list)
    fragments: int = 0
    kind_fragments: int = 0
    results: int = 0
    top_scores: list[float | None] | None = None
    symbol_top3: list[bool] | None = None

    def add(
        self, results: Sequence[Result], ms: float, rank: int | None, screen: int | None
    ) -> None:
        self.ranks.append(rank)
        self.screen_ranks.append(screen)
        self.latencies_ms.append(ms)
        self.results += len(results[:K])
        self.fragments += sum(r.fragment() for r in results[:K])
        self.kind_fragments += sum(r.fragment_of_kind() for r in results[:K])
        if self.top_scores is not None:
            self.top_scores.append(results[0].score if results else None)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            **summary(self.ranks),
            "p50_ms": round(percentile(self.latencies_ms, 50), 2),
            "fragments": [self.fragments, self.results],
            "kind_fragments": [self.kind_fragments, self.results],
            "ranks": self.ranks,
            "screen": summary(self.screen_ranks),
            "screen_ranks": self.screen_ranks,
        }
        if self.top_scores is not None:
            out["top_scores"] = [None if s is None else round(s, 5) for s in self.top_scores]
        if self.symbol_top3 is not None:
            out["symbol_top3"] = round(sum(self.symbol_top3) / max(len(self.symbol_top3), 1), 4)
        return out


def summary(ranks: Sequence[int | None]) -> dict[str, Any]:
    """n, hit@1, hit@10 and MRR@10 of a list of first-answer ranks."""
    n = len(ranks)
    if not n:
        return {"n": 0, "hit@1": 0.0, "hit@10": 0.0, "mrr@10": 0.0}
    return {
        "n": n,
        "hit@1": round(sum(r == 1 for r in ranks) / n, 4),
        "hit@10": round(sum(r is not None for r in ranks) / n, 4),
        "mrr@10": round(sum(1 / r for r in ranks if r) / n, 4),
    }


def _here(r: Result, corpus: str) -> bool:
    return r.corpus in ("", corpus)


def _item_verdict(corpus: str, item: Item) -> Verdict:
    def verdict(r: Result) -> tuple[bool, bool]:
        hit = _here(r, corpus) and holds(r, item)
        return hit, hit and on_screen(r, item.decl_line)

    return verdict


def run_doc(search: Searcher, queries: Sequence[DocQuery], mode: str) -> SetRun:
    run = SetRun([], [])
    for q in queries:
        results, ms = search(q.query, mode, K)
        run.add(results, ms, *ranks_of(results, _item_verdict(q.corpus, q.item)))
    return run


def run_identifiers(search: Searcher, corpus: str, items: Sequence[Item], mode: str) -> SetRun:
    """Exact identifier queries (`Type::method` / bare name) → the defining item; also
    whether a result among the top 3 has the exact symbol."""
    run = SetRun([], [], symbol_top3=[])
    for it in items:
        name = it.owner_name()
        results, ms = search(name, mode, K)
        run.add(results, ms, *ranks_of(results, _item_verdict(corpus, it)))
        assert run.symbol_top3 is not None
        run.symbol_top3.append(
            any(_here(r, corpus) and symbol_matches(r.symbol, name) for r in results[:3])
        )
    return run


def run_hand(search: Searcher, questions: Sequence[Question], mode: str) -> SetRun:
    """Hand-written questions: the rank of the first result overlapping a target, and
    of the first showing one on screen (for absent questions, None always; their top
    scores are what counts)."""
    run = SetRun([], [], top_scores=[])
    for q in questions:
        results, ms = search(q.query, mode, K)
        run.add(results, ms, *ranks_of(results, _target_verdict(q)))
    return run


def _target_verdict(q: Question) -> Verdict:
    def verdict(r: Result) -> tuple[bool, bool]:
        if not _here(r, q.corpus):
            return False, False
        hits = [t for t in q.targets if t.hit(r.path, r.start_line, r.end_line)]
        return bool(hits), any(on_screen(r, t.start) for t in hits)

    return verdict
