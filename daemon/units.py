"""Chunking a parsed file one top-level item at a time, so an edit re-chunks only the
items it touched (issue 20.2).

A *unit* is a top-level item with the comments and attributes attached to it. When no
row of the file is shared by two top-level nodes (and no top-level node is an ERROR),
`chunk_whole`'s output is exactly the concatenation, in row order, of each unit's chunks
and the `code` chunks of the rows between units (gaps) — each a function of those rows
alone. The file is kept as *pieces* (gap, unit, gap, …, gap) covering its bytes.

After an edit, pieces before it keep their chunks, pieces after it keep theirs moved by
the rows and bytes the edit added, and only the children of the root around the edit
(the *window*: what the edit and tree-sitter's `changed_ranges` touch, plus one unit on
each side, so attachment and row sharing are checked again) are scanned and cut; a unit
there whose bytes equal an old one's, outside the changed ranges and without a syntax
error, keeps its chunks too. Whatever breaks these conditions is cut from scratch.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import tree_sitter

from daemon.chunker import (
    MAX_CHUNKS_PER_FILE,
    Chunk,
    FileScope,
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
Ranges = Sequence[tuple[int, int]]


@dataclass(frozen=True, slots=True)
class Edit:
    """One contiguous replacement turning the old bytes into the new (as `Tree.edit`
    takes it): byte offsets and (row, byte column) points."""

    start_byte: int
    old_end_byte: int
    new_end_byte: int
    start_point: tuple[int, int]
    old_end_point: tuple[int, int]
    new_end_point: tuple[int, int]


class Piece(NamedTuple):
    """Rows `first..last` and bytes `start..end` (exclusive) of the version it was cut
    from: a unit (`key` set) or the rows between two units. A named tuple, not a
    dataclass: a save moves thousands of them, and a tuple is built ten times faster."""

    first: int
    last: int
    start: int
    end: int
    chunks: tuple[Chunk, ...]
    items: int
    key: UnitKey | None

    def shifted(self, rows: int, nbytes: int) -> Piece:
        """The same piece `rows` lines and `nbytes` bytes further down."""
        if rows == 0 and nbytes == 0:
            return self
        chunks = self.chunks if rows == 0 else tuple(_shifted(c, rows) for c in self.chunks)
        return Piece(
            self.first + rows,
            self.last + rows,
            self.start + nbytes,
            self.end + nbytes,
            chunks,
            self.items,
            self.key,
        )


@dataclass(frozen=True, slots=True)
class TreeChunks:
    chunks: list[Chunk]
    #: This version's pieces, for the next edit (empty: cut by the whole walk).
    pieces: tuple[Piece, ...]
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
    children: Sequence[tree_sitter.Node], members: Sequence[Member], n_lines: int
) -> list[tuple[int, int]] | None:
    """Each member's (first, last) row, or None when a member is an ERROR node or a row
    is shared: by two members, or by a member and another of `children`."""
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
    for child in children:
        if child.id not in mine and b"\x01" in claimed[child.start_point.row : end_row(child) + 1]:
            return None
    return spans


def _key(source: bytes, member: Member, first: int) -> tuple[UnitKey, int, int]:
    """The unit's key, and the byte range of its rows (without the last newline)."""
    node, kind, _, attached = member
    top = attached[0] if attached else node
    start = top.start_byte - top.start_point.column
    end = source.find(b"\n", node.end_byte)
    end = len(source) if end < 0 else end
    rows_above = node.start_point.row - first
    return (kind or "", rows_above, len(attached), source[start:end]), start, end


@dataclass(frozen=True, slots=True)
class _File:
    """What cutting any part of one version of a file needs."""

    rel: str
    source: bytes
    lines: list[str]
    prefix: tuple[str, ...]
    top: FileScope


def _cut(
    f: _File,
    members: Sequence[Member],
    spans: Sequence[tuple[int, int]],
    bounds: tuple[int, int, int, int],
    memo: dict[UnitKey, Piece],
    dirty: Ranges,
) -> tuple[list[Piece], int]:
    """Pieces for `members` (units) and the gaps around them, from row `bounds[0]` and
    byte `bounds[1]` up to row `bounds[2]` and byte `bounds[3]` (exclusive); a unit in
    `memo` outside `dirty` keeps its chunks. Also how many units were cut anew."""
    row, byte, end_row_, end_byte = bounds
    pieces: list[Piece] = []
    reparsed = 0
    for member, (first, last) in zip(members, spans, strict=True):
        key, start, end = _key(f.source, member, first)
        gap = loose_chunks(f.rel, f.lines, row, first - 1, f.top)
        pieces.append(Piece(row, first - 1, byte, start, tuple(gap), 0, None))
        old = memo.get(key)
        if old is None or member[0].has_error or any(a <= end and start <= b for a, b in dirty):
            chunks, n = item_chunks(f.rel, f.source, f.lines, member, f.prefix, f.top)
            pieces.append(Piece(first, last, start, end, tuple(chunks), n, key))
            reparsed += 1
        else:
            pieces.append(old.shifted(first - old.first, start - old.start))
        row, byte = last + 1, end
    gap = loose_chunks(f.rel, f.lines, row, end_row_, f.top)
    pieces.append(Piece(row, end_row_, byte, end_byte, tuple(gap), 0, None))
    return pieces, reparsed


def _flat(pieces: Sequence[Piece]) -> list[Chunk]:
    return [c for p in pieces for c in p.chunks]


def chunk_tree(
    rel_path: str,
    source: bytes,
    tree: tree_sitter.Tree,
    old: Sequence[Piece] = (),
    edit: Edit | None = None,
    changed: Ranges = (),
) -> TreeChunks:
    """The chunks of normalized `source` parsed as `tree` (equal to `chunk_whole`'s).
    With the `old` pieces of the version that `edit` turned into this one (and the
    `changed` ranges of `old_tree.changed_ranges(tree)`), only what the edit touched is
    cut again."""
    lines = source_lines(source)
    if not lines:
        return TreeChunks([], (), 0)
    prefix, top = file_scope(rel_path, lines)
    f = _File(rel_path, source, lines, prefix, top)
    result = None
    if old and edit is not None:
        result = _cut_window(f, tree, old, edit, changed)
    if result is None:
        result = _cut_all(f, tree, old, changed)
    if result is not None:
        pieces, reparsed = result
        chunks = _flat(pieces)
        items = sum(p.items for p in pieces)
        if items < MAX_CHUNKS_PER_FILE // 2 and len(chunks) <= MAX_CHUNKS_PER_FILE:
            return TreeChunks(chunks, tuple(pieces), reparsed)
    # Rows shared, an ERROR at the top, or near the bounds (where the whole walk raises
    # TooComplex exactly as `chunk_source` does): the whole walk.
    items = sum(
        1 for _ in top_members(tree.root_node.children, source, file_scope(rel_path, lines)[1])
    )
    return TreeChunks(chunk_whole(rel_path, source, lines, tree), (), items)


def _cut_all(
    f: _File, tree: tree_sitter.Tree, old: Sequence[Piece], dirty: Ranges
) -> tuple[list[Piece], int] | None:
    """Every top-level child scanned; units of `old` with the same bytes outside `dirty`
    keep their chunks. None when rows are shared or a top-level node is an ERROR."""
    children = tree.root_node.children
    members = list(top_members(children, f.source, f.top))
    spans = exclusive_rows(children, members, len(f.lines))
    if spans is None:
        return None
    memo = {p.key: p for p in old if p.key is not None}
    bounds = (0, 0, len(f.lines) - 1, len(f.source))
    return _cut(f, members, spans, bounds, memo, dirty)


def _window(old: Sequence[Piece], edit: Edit, changed: Ranges) -> tuple[int, int]:
    """Indexes of the first and last old piece to cut again: those the edit or a changed
    range touches, plus one unit on each side; it starts at a gap and ends at a unit
    (or the end of the file)."""
    lo_b, hi_b = edit.start_byte, edit.old_end_byte
    shift = edit.new_end_byte - edit.old_end_byte
    for a, b in changed:  # new offsets to old ones (inside the edit: its start)
        lo_b = min(lo_b, a if a <= edit.start_byte else max(a - shift, edit.start_byte))
        hi_b = max(hi_b, b if b <= edit.start_byte else max(b - shift, edit.start_byte))
    lo = bisect.bisect_left([p.end for p in old], lo_b)
    hi = bisect.bisect_right([p.start for p in old], hi_b) - 1
    lo = max(0, lo - 2)
    lo -= lo % 2  # gaps are at even indexes: gap, unit, gap, ..., gap
    hi = min(len(old) - 1, hi + 2)
    if hi % 2 == 0 and hi < len(old) - 1:
        hi += 1
    return lo, hi


def _cut_window(
    f: _File, tree: tree_sitter.Tree, old: Sequence[Piece], edit: Edit, changed: Ranges
) -> tuple[list[Piece], int] | None:
    """Old pieces before and after the window kept (those after moved), the window's
    children scanned and cut; None when its edges do not line up with the new tree."""
    lo, hi = _window(old, edit, changed)
    rows = edit.new_end_point[0] - edit.old_end_point[0]
    nbytes = edit.new_end_byte - edit.old_end_byte
    to_end = hi == len(old) - 1
    w_row, w_byte = old[lo].first, old[lo].start
    end_row_, end_byte = (
        (len(f.lines) - 1, len(f.source)) if to_end else (old[hi].last + rows, old[hi].end + nbytes)
    )
    children = tree.root_node.children
    k0 = bisect.bisect_left(children, w_byte, key=lambda c: c.start_byte)
    k1 = bisect.bisect_left(children, end_byte, key=lambda c: c.start_byte)
    inside = children[k0:k1]
    last_end = old[lo - 1].last if lo else -1
    if (k0 and children[k0 - 1].end_byte > w_byte) or any(
        c.end_byte > end_byte for c in inside[-1:]
    ):
        return None  # a node across an edge of the window
    if inside and inside[0].start_point.row <= last_end:
        return None  # shares a row with the unit before the window
    members = list(top_members(inside, f.source, f.top, last_end))
    spans = exclusive_rows(inside, members, len(f.lines))
    if spans is None or (not to_end and not members):
        return None
    memo = {p.key: p for p in old[lo : hi + 1] if p.key is not None}
    bounds = (w_row, w_byte, end_row_, end_byte)
    cut, reparsed = _cut(f, members, spans, bounds, memo, changed)
    if not to_end:
        tail, unit = cut.pop(), cut[-1]
        if tail.start != tail.end or (unit.last, unit.end) != (end_row_, end_byte):
            return None  # the window's last unit does not end where the next gap starts
    after = [p.shifted(rows, nbytes) for p in old[hi + 1 :]]
    return [*old[:lo], *cut, *after], reparsed
