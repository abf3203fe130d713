"""Run the query sets against a searcher and score them; shared by the harness and tuning."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.quality.corpus import DocQuery, Item
from bench.quality.metrics import Scores, gains, percentile, score

HAND_SET = Path(__file__).with_name("hand_set.json")
MODES = ("bm25", "vector", "hybrid")
K = 10


@dataclass(frozen=True, slots=True)
class Result:
    path: str
    start_line: int
    end_line: int
    symbol: str = ""


#: (query, mode, limit) -> (results best first, latency ms)
Searcher = Callable[[str, str, int], tuple[list[Result], float]]


def holds(r: Result, item: Item) -> bool:
    """A result hits an item when it is in the item's file and its lines hold the
    item's declaration line (a split part that holds only the body does not count)."""
    return r.path == item.path and r.start_line <= item.decl_line <= r.end_line


def hand_set() -> list[tuple[str, list[str]]]:
    data = json.loads(HAND_SET.read_text())
    return [(q["q"], list(q["files"])) for q in data["questions"]]


def symbol_matches(symbol: str, name: str) -> bool:
    """`alloc::vec::Vec::with_capacity` matches `Vec::with_capacity` and `with_capacity`."""
    return symbol == name or symbol.endswith("::" + name)


def identifier_sample(items: Sequence[Item], n: int = 100, seed: int = 4) -> list[Item]:
    """`n` public items with distinct `Type::method` / bare names, sampled once."""
    by_name: dict[str, Item] = {}
    for it in items:
        by_name.setdefault(it.owner_name(), it)
    names = sorted(by_name)
    return [by_name[x] for x in random.Random(seed).sample(names, min(n, len(names)))]


@dataclass
class ModeRun:
    scores: Scores
    latencies_ms: list[float]
    ranks: list[int | None]

    def to_json(self) -> dict[str, Any]:
        return {
            **self.scores.to_json(),
            "p50_ms": round(percentile(self.latencies_ms, 50), 2),
            "p90_ms": round(percentile(self.latencies_ms, 90), 2),
        }


def run_doc(search: Searcher, queries: Sequence[DocQuery], mode: str) -> ModeRun:
    per: list[tuple[list[int], int]] = []
    lat: list[float] = []
    ranks: list[int | None] = []
    for q in queries:
        results, ms = search(q.query, mode, K)
        g = gains(results, [q.item], holds)
        per.append((g, 1))
        lat.append(ms)
        ranks.append(next((i + 1 for i, x in enumerate(g) if x), None))
    return ModeRun(score(per), lat, ranks)


def run_hand(search: Searcher, questions: Sequence[tuple[str, list[str]]], mode: str) -> ModeRun:
    per: list[tuple[list[int], int]] = []
    lat: list[float] = []
    ranks: list[int | None] = []
    for q, files in questions:
        results, ms = search(q, mode, K)
        g = gains(results, files, lambda r, f: r.path == f)
        per.append((g, len(files)))
        lat.append(ms)
        ranks.append(next((i + 1 for i, x in enumerate(g) if x), None))
    return ModeRun(score(per), lat, ranks)


def run_identifiers(
    search: Searcher, items: Sequence[Item], mode: str = "hybrid"
) -> dict[str, Any]:
    """Share of item names whose exact symbol (and whose item) is in the top 3."""
    by_symbol = by_item = 0
    misses: list[str] = []
    lat: list[float] = []
    for it in items:
        name = it.owner_name()
        results, ms = search(name, mode, 3)
        lat.append(ms)
        sym = any(symbol_matches(r.symbol, name) for r in results)
        by_symbol += sym
        by_item += any(holds(r, it) for r in results)
        if not sym:
            misses.append(name)
    n = max(len(items), 1)
    return {
        "n": len(items),
        "symbol_top3": round(by_symbol / n, 3),
        "item_top3": round(by_item / n, 3),
        "p50_ms": round(percentile(lat, 50), 2),
        "misses": misses,
    }
