"""The frozen query sets: doc-comment queries and identifier samples per corpus, kept in
doc_queries.json so the questions stay the same while the chunker they were drawn with
changes (a re-draw is a deliberate act: `python -m bench.quality.queries`).

    python -m bench.quality.queries            # re-draw every installed corpus's sets
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.quality.corpora import CORPORA, Corpus
from bench.quality.corpus import DocQuery, Item, doc_queries, public_items

DOC_QUERIES = Path(__file__).with_name("doc_queries.json")
#: Identifier names sampled per corpus (the rust-src slice keeps its old 100).
IDENTIFIERS = {"library": 100}
IDENTIFIERS_PER_CRATE = 50
SEED = 4


def identifier_sample(items: Sequence[Item], n: int, seed: int = SEED) -> list[Item]:
    """`n` public items with distinct `Type::method` / bare names, sampled once."""
    by_name: dict[str, Item] = {}
    for it in items:
        by_name.setdefault(it.owner_name(), it)
    names = sorted(by_name)
    return [by_name[x] for x in random.Random(seed).sample(names, min(n, len(names)))]


def draw(corpus: Corpus) -> dict[str, list[dict[str, Any]]]:
    """One corpus's doc-comment queries and identifier sample, as JSON."""
    n = IDENTIFIERS.get(corpus.name, IDENTIFIERS_PER_CRATE)
    sample = identifier_sample([it for it, _ in public_items(corpus)], n)
    return {
        "doc": [{"query": q.query, **asdict(q.item)} for q in doc_queries(corpus)],
        "identifiers": [asdict(it) for it in sample],
    }


def load(corpus: Corpus) -> tuple[list[DocQuery], list[Item]]:
    """The frozen sets of `corpus` (drawn now, unsaved, when the file lacks it)."""
    frozen = json.loads(DOC_QUERIES.read_text()) if DOC_QUERIES.exists() else {}
    data = frozen.get(corpus.name) or draw(corpus)
    docs = [DocQuery(str(d["query"]), _item(d), corpus.name) for d in data["doc"]]
    return docs, [_item(d) for d in data["identifiers"]]


def _item(d: dict[str, Any]) -> Item:
    return Item(d["path"], d["symbol"], d["kind"], int(d["decl_line"]), int(d["end_line"]))


def main() -> int:
    out = {c.name: draw(c) for c in CORPORA if c.available}
    with DOC_QUERIES.open("w") as f:  # one query a line: diffs stay readable
        f.write("{\n")
        for i, (name, sets) in enumerate(out.items()):
            f.write(f"  {json.dumps(name)}: {{\n")
            for j, (key, rows) in enumerate(sets.items()):
                body = ",\n".join("      " + json.dumps(r) for r in rows)
                f.write(f'    "{key}": [\n{body}\n    ]' + (",\n" if j == 0 else "\n"))
            f.write("  }" + (",\n" if i < len(out) - 1 else "\n"))
        f.write("}\n")
    for name, sets in out.items():
        print(f"{name}: {len(sets['doc'])} doc-comment queries, {len(sets['identifiers'])} names")
    return 0


if __name__ == "__main__":
    sys.exit(main())
