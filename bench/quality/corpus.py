"""Doc-comment queries: the first sentence of a public item's doc comment, drawn from the
original sources of a corpus; the indexed copy has every `///` and `//!` line blanked
(line numbers kept), so the query text cannot be found lexically and the ranking has to
come from the code itself. The query sets are frozen in doc_queries.json (see
bench/quality/queries.py) so that a chunker change cannot change the questions.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass

from bench.quality.corpora import Corpus
from daemon.chunker import chunk_source

_PUBLIC = re.compile(r"pub\s")  # `pub(crate)` and friends are not public
_QUERY_KINDS = frozenset(
    {"fn", "method", "struct", "enum", "union", "trait", "type", "const", "static"}
)


@dataclass(frozen=True, slots=True)
class Item:
    """A public item: where it is, and the line of its declaration (after docs/attrs)."""

    path: str
    symbol: str
    kind: str
    decl_line: int
    end_line: int

    @property
    def name(self) -> str:
        return self.symbol.rsplit("::", 1)[-1]

    def owner_name(self) -> str:
        """`Type::method` for methods, the bare name for everything else."""
        parts = self.symbol.split("::")
        return "::".join(parts[-2:]) if self.kind == "method" and len(parts) > 1 else parts[-1]


@dataclass(frozen=True, slots=True)
class DocQuery:
    query: str
    item: Item
    corpus: str

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def decl_line(lines: list[str], start: int, end: int) -> int:
    """1-based line of an item's declaration: the first line from `start` that is not a
    doc/plain comment, blank, or part of an attribute (attributes may span lines)."""
    depth = 0
    for n in range(start, end + 1):
        s = lines[n - 1].strip()
        if depth > 0:
            depth += s.count("[") - s.count("]")
            continue
        if not s or s.startswith("//"):
            continue
        if s.startswith("#["):
            depth = s.count("[") - s.count("]")
            continue
        return n
    return start


_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")  # [text](url)
_REF = re.compile(r"\[([^\]]*)\]\[[^\]]*\]")  # [text][ref]
_BRACKET = re.compile(r"\[([^\]]*)\]")  # [`Foo`]
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def first_sentence(doc: str) -> str:
    """The doc's first sentence with markdown links, code marks and emphasis removed."""
    para: list[str] = []
    for line in doc.splitlines():
        s = line.strip()
        if not s:
            if para:
                break
            continue
        if s.startswith(("#", "```", "<")):
            break
        para.append(s)
    text = " ".join(para)
    text = _LINK.sub(r"\1", text)
    text = _REF.sub(r"\1", text)
    text = _BRACKET.sub(r"\1", text)
    text = text.replace("`", "").replace("**", "").replace("*", "")
    text = _SENTENCE_END.split(text, maxsplit=1)[0].strip()
    return " ".join(text.split())


def mentions_name(sentence: str, name: str) -> bool:
    """Whether the sentence names the item: the identifier, inflected too when it is at
    least three letters long (`push` in "Pushes", `len` in "length"), or its words in
    order (`with_capacity` in "with capacity")."""
    low = sentence.lower()
    tail = r"\w*" if len(name) >= 3 else r"\b"
    if re.search(rf"\b{re.escape(name.lower())}{tail}", low):
        return True
    words = [w for w in re.split(r"_|(?<=[a-z])(?=[A-Z])", name) if w]
    if len(words) > 1:
        phrase = r"\W+".join(re.escape(w.lower()) for w in words)
        return re.search(rf"\b{phrase}\b", low) is not None
    return False


def public_items(corpus: Corpus) -> list[tuple[Item, str]]:
    """(item, its doc comment) for every public item of the corpus, from the original."""
    out: list[tuple[Item, str]] = []
    for f in corpus.files():
        rel = corpus.rel(f)
        src = f.read_bytes()
        lines = src.decode("utf-8", "replace").split("\n")
        chunks = chunk_source(rel, src)
        for i, c in enumerate(chunks):
            if c.part != 0 or c.kind not in _QUERY_KINDS or not _PUBLIC.match(c.signature):
                continue
            # A long doc comment can fill part 0 alone: the item ends with its last part.
            end = c.end_line
            for nxt in chunks[i + 1 :]:
                if nxt.part == 0:
                    break
                end = nxt.end_line
            d = decl_line(lines, c.start_line, end)
            out.append((Item(rel, c.symbol, c.kind, d, end), c.doc))
    return out


def doc_queries(corpus: Corpus) -> list[DocQuery]:
    """The doc-comment set: one query per public item whose first doc sentence is at least
    four words, does not name the item (see `mentions_name`), and is not shared with
    another item."""
    candidates: list[tuple[str, Item]] = []
    for item, doc in public_items(corpus):
        if not doc:
            continue
        sentence = first_sentence(doc)
        if len(sentence.split()) < 4 or mentions_name(sentence, item.name):
            continue
        candidates.append((sentence, item))
    counts = Counter(s.lower() for s, _ in candidates)
    return [DocQuery(s, item, corpus.name) for s, item in candidates if counts[s.lower()] == 1]
