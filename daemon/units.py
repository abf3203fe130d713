"""Chunking a parsed file one top-level item at a time, so an edit re-chunks only the
items it touched (issue 20.2).

A *unit* is a top-level item with the comments and attributes attached to it. When no
row of the file is shared by two top-level nodes (and no top-level node is an ERROR),
`chunk_whole`'s output is exactly the concatenation, in row order, of each unit's chunks
and the `code` chunks of the rows between units — each a function of those rows alone.
A unit's chunks are then kept by the bytes of its rows (with its kind and attachment),
and a later version of the file reuses them, shifted to the unit's new first row, unless
the unit intersects a range the edit changed (the edited bytes and tree-sitter's
`changed_ranges`) or holds a syntax error. Anything else is cut by `chunk_whole`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import tree_sitter

from daemon.chunker import (
    MAX_CHUNKS_PER_FILE,
    Chunk,
    Member,
    chunk_whole,
    end_row,
    file_scope,
    item_chunks,
    loose_chunks,
    member_rows,
    source_lines,
    top_members,
)

#: (kind, rows of attached comments above the item, how many, the bytes of its rows).
UnitKey = tuple[str, int, int, bytes]


@dataclass(frozen=True, slots=True)
class Unit:
    """One unit's chunks as cut when its first line was row `first`."""

    first: int
    chunks: tuple[Chunk, ...]
    items: int


@dataclass(frozen=True, slots=True)
class TreeChunks:
    chunks: list[Chunk]
    #: This version's units, for the next edit.
    memo: dict[UnitKey, Unit]
    #: Top-level items chunked (not reused).
    items_reparsed: int


def _shifted(c: Chunk, rows: int) -> Chunk:
    return Chunk(
        c.path,
        c.start_line + rows,
        c.end_line + rows,
        c.symbol,
        c.kind,
        c.signature,
        c.doc,
        c.text,
        c.context,
        c.part,
    )


def exclusive_rows(
    tree: tree_sitter.Tree, members: Sequence[Member], n_lines: int
) -> list[tuple[int, int]] | None:
    """Each member's (first, last) row, or None when a member is an ERROR node or a row
    is shared: by two members, or by a member and another top-level node."""
    claimed = bytearray(n_lines)
    mine: set[int] = set()
    spans = []
    for member in members:
        node, kind, _first, attached = member
        if kind is None:
            return None
        first, last = member_rows(member)
        if b"\x01" in claimed[first : last + 1]:
            return None
        claimed[first : last + 1] = b"\x01" * (last + 1 - first)
        mine.add(node.id)
        mine.update(n.id for n in attached)
        spans.append((first, last))
    for child in tree.root_node.children:
        if child.id not in mine and b"\x01" in claimed[child.start_point.row : end_row(child) + 1]:
            return None
    return spans


def _key(source: bytes, member: Member, first: int) -> tuple[UnitKey, int, int]:
    """The unit's key, and the byte range of its rows."""
    node, kind, _, attached = member
    top = attached[0] if attached else node
    start = top.start_byte - top.start_point.column
    end = source.find(b"\n", node.end_byte)
    end = len(source) if end < 0 else end
    rows_above = node.start_point.row - first
    return (kind or "", rows_above, len(attached), source[start:end]), start, end


def chunk_tree(
    rel_path: str,
    source: bytes,
    tree: tree_sitter.Tree,
    memo: Mapping[UnitKey, Unit],
    dirty: Sequence[tuple[int, int]],
) -> TreeChunks:
    """The chunks of normalized `source` parsed as `tree` (equal to `chunk_whole`'s),
    reusing the units in `memo` that no `dirty` byte range touches."""
    lines = source_lines(source)
    if not lines:
        return TreeChunks([], {}, 0)
    prefix, top = file_scope(rel_path, lines)
    members = list(top_members(tree, source, top))
    spans = exclusive_rows(tree, members, len(lines))
    if spans is None:
        return TreeChunks(chunk_whole(rel_path, source, lines, tree), {}, len(members))
    out: list[Chunk] = []
    new_memo: dict[UnitKey, Unit] = {}
    reparsed = items = 0
    after = 0  # first row after the previous unit
    for member, (first, last) in zip(members, spans, strict=True):
        out.extend(loose_chunks(rel_path, lines, after, first - 1, top))
        after = last + 1
        key, start, end = _key(source, member, first)
        old = memo.get(key)
        if old is None or member[0].has_error or any(a <= end and start <= b for a, b in dirty):
            chunks, n = item_chunks(rel_path, source, lines, member, prefix, top)
            unit = Unit(first, tuple(chunks), n)
            reparsed += 1
        else:
            rows = first - old.first
            unit = (
                old
                if rows == 0
                else Unit(first, tuple(_shifted(c, rows) for c in old.chunks), old.items)
            )
        if not member[0].has_error:
            new_memo[key] = unit
        out.extend(unit.chunks)
        items += unit.items
    out.extend(loose_chunks(rel_path, lines, after, len(lines) - 1, top))
    if items >= MAX_CHUNKS_PER_FILE // 2 or len(out) > MAX_CHUNKS_PER_FILE:
        # Near the bounds: the whole walk raises TooComplex exactly where it would.
        return TreeChunks(chunk_whole(rel_path, source, lines, tree), {}, len(members))
    return TreeChunks(out, new_memo, reparsed)
