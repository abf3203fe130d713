"""Trees of recently parsed files, so a save re-parses and re-chunks what it changed
(issue 20.2).

For each file the cache keeps the bytes it parsed, the tree-sitter tree and its pieces
(`daemon.units`: top-level items and the rows between them, with their chunks), least
recently used first out past `max_bytes`. On a change the edit is derived from the old
and new bytes (common prefix and suffix), applied to the old tree (`Tree.edit`), and the
new bytes are parsed with it: tree-sitter reuses every subtree the edit did not touch.
Only the items that the edit and `changed_ranges` touch are chunked again; the rest keep
their chunks, moved to their new rows.

A text with a syntax error is parsed afresh (tree-sitter's error recovery from an old tree
can choose differently from a fresh parse, found by the property test).

Memory: a tree costs about 46 bytes per source byte (measured: 32 MB for a 0.69 MB file
of 3,000 items), the pieces and chunks a few more (an entry for a 0.97 MB file grew the
RSS by 51 MB), so an entry is counted as `ENTRY_BYTES_PER_SOURCE_BYTE` times its size, or
`ENTRY_BYTES_PER_NODE` times its tree's nodes when that is more (sources dense in nodes).
Used by the indexer thread only.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import tree_sitter

from daemon.chunker import Chunk, language, normalize
from daemon.graph_edit import GraphMemo
from daemon.graph_edit import extract as edited_graph
from daemon.symbols import FileGraph
from daemon.units import Edit, Piece, TreeChunks, chunk_tree

#: The tree (~46x), the bytes, the pieces and their chunks (~7x): measured 53x.
ENTRY_BYTES_PER_SOURCE_BYTE = 56
#: A tree's cost per node, with margin: a source dense in nodes costs more than the
#: per-byte figure says (120k nested blocks in 240 KB: 480k nodes, 46 MB of tree, 200
#: bytes a source byte; 100k nested parens: 98 bytes a node), and two such entries held
#: 95 MB under a 64 MB budget. Code has 0.2-0.37 nodes a byte (45-90 bytes a node), where
#: the bytes still decide, so its entries are counted as before.
ENTRY_BYTES_PER_NODE = 150
#: Prefix/suffix comparison step: slices this long are compared in C, then bytes one by one.
_BLOCK = 4096

Point = tuple[int, int]
#: (root id, root-relative path): two roots may hold the same path.
FileKey = tuple[str, str]


def _point(data: bytes, offset: int) -> Point:
    row = data.count(b"\n", 0, offset)
    return row, offset - (data.rfind(b"\n", 0, offset) + 1)


def _common_prefix(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    i = 0
    while i + _BLOCK <= n and a[i : i + _BLOCK] == b[i : i + _BLOCK]:
        i += _BLOCK
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _common_suffix(a: bytes, b: bytes, limit: int) -> int:
    """Length of the common suffix, at most `limit` (so it never overlaps the prefix)."""
    i = 0
    la, lb = len(a), len(b)
    while i + _BLOCK <= limit and a[la - i - _BLOCK : la - i] == b[lb - i - _BLOCK : lb - i]:
        i += _BLOCK
    while i < limit and a[la - i - 1] == b[lb - i - 1]:
        i += 1
    return i


def derive_edit(old: bytes, new: bytes) -> Edit | None:
    """The smallest single edit from `old` to `new` (None when they are equal)."""
    if old == new:
        return None
    start = _common_prefix(old, new)
    suffix = _common_suffix(old, new, min(len(old), len(new)) - start)
    old_end, new_end = len(old) - suffix, len(new) - suffix
    return Edit(
        start,
        old_end,
        new_end,
        _point(new, start),
        _point(old, old_end),
        _point(new, new_end),
    )


@dataclass(slots=True)
class _Entry:
    source: bytes
    tree: tree_sitter.Tree
    pieces: tuple[Piece, ...]
    digest: bytes
    chunks: list[Chunk]
    #: What the last symbol graph of the file found per top-level item (daemon.graph_edit).
    graph: GraphMemo = field(default_factory=GraphMemo)
    #: Estimated bytes held, fixed when stored (an edit changes the tree in place).
    size: int = field(init=False)

    def __post_init__(self) -> None:
        by_bytes = max(len(self.source), 1) * ENTRY_BYTES_PER_SOURCE_BYTE
        self.size = max(by_bytes, self.tree.root_node.descendant_count * ENTRY_BYTES_PER_NODE)


@dataclass(frozen=True, slots=True)
class Parsed:
    chunks: list[Chunk]
    #: Whether an earlier tree of the file was reused (tree-sitter's incremental parse).
    incremental: bool
    #: Top-level items chunked again (the others' chunks were reused).
    items_reparsed: int


class ParseCache:
    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._entries: OrderedDict[FileKey, _Entry] = OrderedDict()
        self._size = 0
        self._parser = tree_sitter.Parser(language())
        self.incremental = 0
        self.full = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """Estimated bytes held (see `ENTRY_BYTES_PER_SOURCE_BYTE`)."""
        return self._size

    def chunks_for(self, key: FileKey, digest: bytes) -> list[Chunk] | None:
        """The chunks last cut for a file, when they were cut from content `digest`."""
        entry = self._entries.get(key)
        return entry.chunks if entry is not None and entry.digest == digest else None

    def tree_for(self, key: FileKey, digest: bytes) -> tuple[bytes, tree_sitter.Tree] | None:
        """The normalized source and tree last parsed for a file, when of content
        `digest`: the symbol graph reads the tree the chunker's incremental parse made."""
        entry = self._entries.get(key)
        return (entry.source, entry.tree) if entry is not None and entry.digest == digest else None

    def graph(self, key: FileKey, digest: bytes) -> FileGraph | None:
        """The symbol graph of the file's content `digest` when its tree is here: only
        the items an edit changed are read again (daemon.graph_edit)."""
        entry = self._entries.get(key)
        if entry is None or entry.digest != digest:
            return None
        return edited_graph(key[1], entry.source, entry.tree, entry.graph)

    def chunk(self, key: FileKey, data: bytes, digest: bytes) -> Parsed:
        """Chunk `data` (raw file bytes, content hash `digest`) as `chunk_source` would,
        from the file's previous tree when the cache holds one."""
        rel = key[1]
        source = normalize(data)
        entry = self._pop(key)
        reparsed = None if entry is None else self._reparse(rel, entry, source)
        if reparsed is None:
            tree = self._parser.parse(source)
            result = chunk_tree(rel, source, tree)
            self.full += 1
        else:
            tree, result = reparsed
            self.incremental += 1
        memo = entry.graph if entry is not None else GraphMemo()
        self._put(key, _Entry(source, tree, result.pieces, digest, result.chunks, memo))
        return Parsed(result.chunks, reparsed is not None, result.items_reparsed)

    def _reparse(
        self, rel: str, entry: _Entry, source: bytes
    ) -> tuple[tree_sitter.Tree, TreeChunks] | None:
        """The new tree from the old one, and its chunks; None when the new text has a
        syntax error: error recovery from an old tree may differ from a fresh parse's,
        and the chunks must be those of a fresh parse."""
        edit = derive_edit(entry.source, source)
        old = entry.tree
        if edit is None:  # the same bytes (a save that changed nothing the chunker sees)
            return old, TreeChunks(entry.chunks, entry.pieces, 0)
        old.edit(
            edit.start_byte,
            edit.old_end_byte,
            edit.new_end_byte,
            edit.start_point,
            edit.old_end_point,
            edit.new_end_point,
        )
        tree = self._parser.parse(source, old)
        if tree.root_node.has_error:
            return None
        # Units outside these ranges have the same syntax as before; those whose bytes
        # are also the same (an edit inside a string changes no syntax) keep their chunks.
        changed = [(r.start_byte, r.end_byte) for r in old.changed_ranges(tree)]
        return tree, chunk_tree(rel, source, tree, entry.pieces, edit, changed)

    def _pop(self, key: FileKey) -> _Entry | None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._size -= entry.size
        return entry

    def _put(self, key: FileKey, entry: _Entry) -> None:
        if entry.size > self._max:
            return  # would evict everything and still not fit
        self._entries[key] = entry
        self._size += entry.size
        while self._size > self._max:
            _rel, old = self._entries.popitem(last=False)
            self._size -= old.size
            self.evicted += 1
