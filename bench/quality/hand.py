"""The hand-written questions (hand_multi.json): questions in a developer's own words,
each with the item(s) that answer it, or `absent: true` when the corpus has no answer.

An expected answer is a file, optionally narrowed to an item by `symbol` (resolved here
with tree-sitter, independently of rcmd's chunker, so a chunker change cannot move the
targets) or by explicit `lines`. A result answers when it is in the file and, for an
item, its lines overlap the item's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import tree_sitter
import tree_sitter_rust

from bench.quality.corpora import BY_NAME, Corpus

HAND_MULTI = Path(__file__).with_name("hand_multi.json")
_NAMED = frozenset(
    {
        "function_item",
        "function_signature_item",
        "struct_item",
        "enum_item",
        "union_item",
        "trait_item",
        "type_item",
        "const_item",
        "static_item",
        "macro_definition",
        "mod_item",
    }
)


@dataclass(frozen=True, slots=True)
class Target:
    """A file, or the line span of an item in it (`start` = 0: the whole file)."""

    path: str
    start: int = 0
    end: int = 0

    def hit(self, path: str, start: int, end: int) -> bool:
        if path != self.path:
            return False
        return self.start == 0 or (start <= self.end and end >= self.start)


@dataclass(frozen=True, slots=True)
class Question:
    corpus: str
    query: str
    #: Any of these answers it (several spans of one item count as one target).
    targets: tuple[Target, ...]
    absent: bool = False
    kind: str = "words"  # "words" or "identifier"
    #: When it was written (hand_multi.json's `batch`): each batch was committed before
    #: any evaluation read it, so a later batch is a fresh sample of the same crates.
    batch: int = 1


def _type_name(node: tree_sitter.Node) -> str:
    """`Foo` for `Foo<T>`, `a::Foo`, `&'a mut Foo`: the last path segment without
    generics, references or their lifetimes."""
    if node.type in ("reference_type", "pointer_type"):
        inner = node.child_by_field_name("type")
        if inner is not None:
            return _type_name(inner)
    text = (node.text or b"").decode()
    return text.split("<", 1)[0].rsplit("::", 1)[-1].strip("&* ")


def _items(node: tree_sitter.Node, owner: str, out: list[tuple[str, int, int]]) -> None:
    for child in node.children:
        if child.type in ("impl_item", "trait_item"):
            field = "type" if child.type == "impl_item" else "name"
            t = child.child_by_field_name(field)
            name = _type_name(t) if t is not None else ""
            if child.type == "trait_item":
                out.append((name, child.start_point.row + 1, child.end_point.row + 1))
            body = child.child_by_field_name("body")
            if body is not None:
                _items(body, name, out)
        elif child.type in _NAMED:
            n = child.child_by_field_name("name")
            name = (n.text or b"").decode() if n is not None else ""
            start, end = _rows(child)
            out.append((f"{owner}::{name}" if owner else name, start, end))
            body = child.child_by_field_name("body")
            if child.type == "mod_item" and body is not None:
                _items(body, "", out)
        elif child.type in ("declaration_list", "ERROR"):
            _items(child, owner, out)


def _rows(node: tree_sitter.Node) -> tuple[int, int]:
    return node.start_point.row + 1, node.end_point.row + 1


@cache
def file_items(path: Path) -> tuple[tuple[str, int, int], ...]:
    """(name, start, end) of every named item of a file; methods as `Type::name`."""
    lang = tree_sitter.Language(tree_sitter_rust.language())
    tree = tree_sitter.Parser(lang).parse(path.read_bytes())
    out: list[tuple[str, int, int]] = []
    _items(tree.root_node, "", out)
    return tuple(out)


def resolve(corpus: Corpus, path: str, symbol: str) -> list[Target]:
    """Spans of the items of `path` named `symbol` (or ending in `::symbol`)."""
    return [
        Target(path, s, e)
        for name, s, e in file_items(corpus.source / path)
        if name == symbol or name.endswith("::" + symbol)
    ]


def _targets(corpus: Corpus, expect: list[dict[str, Any]]) -> tuple[Target, ...]:
    out: list[Target] = []
    for e in expect:
        if "symbol" in e:
            found = resolve(corpus, e["path"], e["symbol"])
            if not found:
                raise ValueError(f"{corpus.name}: no item {e['symbol']} in {e['path']}")
            out.extend(found)
        elif "lines" in e:
            out.append(Target(e["path"], *e["lines"]))
        else:
            out.append(Target(e["path"]))
    return tuple(out)


def load_questions(path: Path = HAND_MULTI) -> list[Question]:
    """Every question of the file, targets resolved against the installed sources
    (corpora that are not installed are skipped)."""
    out: list[Question] = []
    for q in json.loads(path.read_text())["questions"]:
        corpus = BY_NAME[q["corpus"]]
        if not corpus.available:
            continue
        absent = bool(q.get("absent", False))
        targets = () if absent else _targets(corpus, q["expect"])
        kind, batch = q.get("kind", "words"), q.get("batch", 1)
        out.append(Question(corpus.name, q["q"], targets, absent, kind, batch))
    return out
