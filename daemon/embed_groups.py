"""Which chunks share one vector (issue 24.2): the embedding model costs per token, and
a third of them went to texts that a vector of their own does not help.

* **Later parts** of an item cut to fit the model's window share the vector of the
  item's first part (its doc comment, signature and first lines: what a question in
  words matches). They keep their own Tantivy docs, so a word deep in a long body is
  still found. On five crates later parts were 32% of the chunks; with the grouped
  fragments they were 31% of the tokens the model ran (docs/PERFORMANCE.md).
* **Small fragments** (a `const`, a type alias, a marker `impl`, a `use` run: see
  `GROUPED_KINDS`) are embedded together with their neighbours: runs of them are
  packed into groups that fit the window, and one left alone joins a whole neighbour
  that has room. A vector of three lines is close to every question.

Every member stays its own chunk (its lines, symbol, BM25 doc, graph rows) and its own
vector point, holding the group's vector; the search side folds a group's points back
into one hit, its best-matching member (`daemon.search`). Pure functions only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from daemon.chunker import Chunk
from daemon.config import EmbeddingConfig
from daemon.state import ChunkRow
from daemon.tokenize import index_terms
from ipc.kinds import FRAGMENT_KINDS

#: Kinds whose small chunk shares its neighbours' vector: the fragment kinds, less
#: `trait`, whose chunk is the trait's own declaration (what a question about it asks
#: for). A short fn, method or type is a whole answer and keeps its own: grouping those
#: too cut the doc-comment queries' hybrid MRR@10 on the test crates from 0.315 to 0.289
#: (they are what those queries ask for) while it took hand-written questions from
#: 0.413 to 0.439 and the share of 3-line results from 0.16 to 0.10 (docs/PERFORMANCE.md).
GROUPED_KINDS = FRAGMENT_KINDS - {"trait"}


@dataclass(frozen=True, slots=True)
class EmbedPolicy:
    #: A chunk whose embedded text is shorter (characters) is embedded with its
    #: neighbours; 0: never.
    small_chars: int = 200
    #: Most characters of embedded text one group holds: ~240 of the model's 256 tokens
    #: at the 2.9 characters a token measured on Rust code.
    group_chars: int = 700
    #: Whether parts after an item's first get vectors of their own.
    later_parts: bool = False

    def layout(self) -> str:
        """Recorded with each root: a root embedded under another policy is rebuilt."""
        parts = "all" if self.later_parts else "first"
        return f"groups {self.small_chars}/{self.group_chars} v2, parts {parts}"


def policy_of(cfg: EmbeddingConfig) -> EmbedPolicy:
    return EmbedPolicy(cfg.group_small_chars, cfg.group_max_chars, cfg.later_parts)


def shared_texts(chunks: Sequence[Chunk], policy: EmbedPolicy) -> list[str | None]:
    """For each chunk of one file (in file order), the text embedded for it when it shares
    a vector; None when it embeds its own `embed_text()`."""
    out: list[str | None] = [None] * len(chunks)
    if not policy.later_parts:
        for i in range(1, len(chunks)):
            if _continues(chunks[i - 1], chunks[i]):
                out[i] = out[i - 1] or chunks[i - 1].embed_text()
    for group in _groups(chunks, policy, out):
        text = "\n".join(chunks[i].embed_text() for i in group)
        for i in group:
            out[i] = text
    return out


def embedded_texts(chunks: Sequence[Chunk], policy: EmbedPolicy) -> list[str]:
    """The text the model embeds for each chunk of one file (in file order)."""
    shared = shared_texts(chunks, policy)
    return [s or c.embed_text() for c, s in zip(chunks, shared, strict=True)]


def _continues(prev: Chunk, c: Chunk) -> bool:
    """`c` is the part of an item right after `prev`."""
    return c.part == prev.part + 1 and c.symbol == prev.symbol and c.kind == prev.kind


def _embedded_chars(c: Chunk) -> int:
    """About the length of `c.embed_text()`, without building it: the text and a header
    naming its symbol, kind and context."""
    return len(c.text) + len(c.symbol) + len(c.kind) + len(c.context) + 16


def _whole(chunks: Sequence[Chunk], i: int) -> bool:
    """Chunk `i` is an item (or loose run) in one part."""
    return chunks[i].part == 0 and not (i + 1 < len(chunks) and chunks[i + 1].part > 0)


def _groups(
    chunks: Sequence[Chunk], policy: EmbedPolicy, shared: list[str | None]
) -> list[list[int]]:
    """Indexes of the chunks embedded together, each group of two or more. Only the
    fragments and their neighbours are measured: a save of a 3,000-item file runs this
    twice (old and new chunks)."""
    if policy.small_chars <= 0:
        return []
    small = [
        i
        for i, c in enumerate(chunks)
        if c.kind in GROUPED_KINDS and _whole(chunks, i) and _embedded_chars(c) < policy.small_chars
    ]
    packed: list[list[int]] = []
    used = 0  # embedded characters of the last group
    for i in small:
        size = _embedded_chars(chunks[i])
        if packed and packed[-1][-1] == i - 1 and used + size <= policy.group_chars:
            packed[-1].append(i)
            used += size
        else:
            packed.append([i])
            used = size
    taken = {j for g in packed if len(g) > 1 for j in g}
    for g in packed:
        if len(g) == 1:
            _join_neighbour(g, chunks, policy, taken, shared)
    return [g for g in packed if len(g) > 1]


def _join_neighbour(
    group: list[int],
    chunks: Sequence[Chunk],
    policy: EmbedPolicy,
    taken: set[int],
    shared: list[str | None],
) -> None:
    """A small chunk alone joins its previous whole neighbour, else its next, when that
    one is free and the two fit together."""
    (i,) = group
    for j in (i - 1, i + 1):
        free = 0 <= j < len(chunks) and j not in taken and shared[j] is None
        if not free or not _whole(chunks, j):
            continue
        if _embedded_chars(chunks[i]) + _embedded_chars(chunks[j]) <= policy.group_chars:
            group[:] = sorted((i, j))
            taken.update(group)
            return


Ranked = list[tuple[str, float]]


def shared_runs(ranked: Ranked) -> list[Ranked]:
    """A vector search's (id, score) list, best first, cut into runs of equal score: the
    points of one shared vector score exactly alike (the same stored floats), and two
    different texts practically never do."""
    runs: list[Ranked] = []
    for cid, score in ranked:
        if runs and runs[-1][0][1] == score:
            runs[-1].append((cid, score))
        else:
            runs.append([(cid, score)])
    return runs


def fold_shared(runs: list[Ranked], rows: Mapping[str, ChunkRow], words: frozenset[str]) -> Ranked:
    """One point per run: the parts of a long item count as its first part (whose text
    the vector is); of several items, the one holding most of the query's (stemmed)
    `words`, then the longest, then the first in file order (path, line), so the same
    member is reported whatever order the store returned the run in."""

    def preference(kv: tuple[str, float]) -> tuple[int, int, int, str, int]:
        row = rows.get(kv[0])
        if row is None:
            return (1, 0, 0, "", 0)
        held = len(words.intersection(index_terms(row.text)))
        return (0, -held, row.start_line - row.end_line, row.path, row.start_line)

    def pick(run: Ranked) -> tuple[str, float]:
        return run[0] if len(run) == 1 else min(_first_parts(run, rows), key=preference)

    return [pick(run) for run in runs]


def _first_parts(run: Ranked, rows: Mapping[str, ChunkRow]) -> Ranked:
    """`run` with each item's later parts left out (its earliest part stays)."""
    first: dict[tuple[str, str, str], tuple[int, tuple[str, float]]] = {}
    for kv in run:
        row = rows.get(kv[0])
        if row is None:
            continue
        key = (row.path, row.symbol, row.kind)
        if key not in first or row.start_line < first[key][0]:
            first[key] = (row.start_line, kv)
    return [kv for _, kv in first.values()] or run
