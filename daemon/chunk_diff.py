"""What an edit changed in a file's chunk list, so a save rewrites only that (issue 20.1).

Chunk ids come from (root, path, symbol, kind, part, occurrence), never from line
numbers, so a chunk that an edit did not touch keeps its id. Against the chunks the
indexes hold for the file, each new chunk is:

* changed: new, or its embedded text differs: a vector and a Tantivy doc are written;
* moved: same embedded text, but its lines (or attributes, which the model does not
  see) differ: its Tantivy doc and state row are rewritten, its vector is left alone
  (the vector's payload holds no position);
* kept: identical: nothing is written.

Old ids that are no longer produced are removed. A forced reindex (`check_stored`)
compares a file's chunks with what state.db and the vector store hold for it instead,
so a damaged row or a lost point is written again and nothing else. Pure functions only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass

from daemon.chunker import Chunk
from daemon.state import ChunkRow, FileRecord

IdChunk = tuple[str, Chunk]


@dataclass(frozen=True, slots=True)
class ChunkDiff:
    changed: tuple[IdChunk, ...]
    moved: tuple[IdChunk, ...]
    removed: tuple[str, ...]
    kept: int

    @property
    def rewritten(self) -> tuple[IdChunk, ...]:
        """Chunks whose Tantivy doc and state row are written again."""
        return self.changed + self.moved

    @property
    def lexical_deletes(self) -> tuple[str, ...]:
        """Ids whose Tantivy doc goes (Tantivy has no update: rewritten docs go too)."""
        return tuple(cid for cid, _ in self.rewritten) + self.removed


@dataclass(frozen=True, slots=True)
class FileWrite:
    """One file's new chunks, and what differs from the chunks the indexes hold
    (`diff` None: the file is written whole)."""

    record: FileRecord
    chunks: list[IdChunk]
    diff: ChunkDiff | None
    #: Embedded text by chunk id, for the chunks that share a vector (`embed_groups`).
    shared: dict[str, str]
    #: Checked against the indexes (a forced reindex): every Tantivy doc of the file is
    #: written again, and `diff` says which state rows and vectors differ from its chunks.
    checked: bool = False

    def embed_text(self, cid: str, c: Chunk) -> str:
        return self.shared.get(cid) or c.embed_text()

    @property
    def lexical_whole(self) -> bool:
        """Whether every Tantivy doc of the file is written again (its path's docs go)."""
        return self.checked or self.diff is None

    @property
    def docs(self) -> list[IdChunk]:
        """Chunks whose Tantivy doc is written."""
        return self.chunks if self.lexical_whole else self.rows

    @property
    def rows(self) -> list[IdChunk]:
        """Chunks whose state row is written."""
        return self.chunks if self.diff is None else list(self.diff.rewritten)

    @property
    def embeds(self) -> list[IdChunk]:
        """Chunks whose vector is written."""
        return self.chunks if self.diff is None else list(self.diff.changed)


def _doc_fields(c: Chunk) -> tuple[object, ...]:
    """What the Tantivy doc and the state row of a chunk hold."""
    return (c.symbol, c.kind, c.signature, c.text, c.start_line, c.end_line)


def row_fields(row: ChunkRow) -> tuple[object, ...]:
    """`_doc_fields` of the chunk a state row was written from."""
    return (row.symbol, row.kind, row.signature, row.text, row.start_line, row.end_line)


def _embed_fields(c: Chunk) -> tuple[object, ...]:
    """Everything `Chunk.embed_text` is made of: equal fields, equal embedded text."""
    return (c.symbol, c.kind, c.context, c.signature, c.part, c.text)


_NONE: Mapping[str, str] = {}


def _embedded_differs(o: Chunk, c: Chunk, was: str | None, now: str | None) -> bool:
    if was is not None or now is not None:
        return (was or o.embed_text()) != (now or c.embed_text())
    return _embed_fields(o) != _embed_fields(c) and o.embed_text() != c.embed_text()


def diff_chunks(
    old: Sequence[IdChunk],
    new: Sequence[IdChunk],
    old_shared: Mapping[str, str] = _NONE,
    new_shared: Mapping[str, str] = _NONE,
) -> ChunkDiff:
    """Sort `new` into changed, moved and kept against `old` (both with their ids); a
    chunk in `*_shared` is embedded as that text (one vector with others), and is
    changed when that text is."""
    before = dict(old)
    changed: list[IdChunk] = []
    moved: list[IdChunk] = []
    kept = 0
    for cid, c in new:
        o = before.get(cid)
        was, now = old_shared.get(cid), new_shared.get(cid)
        if o is c and was == now:  # reused as is by the parse cache
            kept += 1
            continue
        if o is None or _embedded_differs(o, c, was, now):
            changed.append((cid, c))
        elif _doc_fields(o) != _doc_fields(c):
            moved.append((cid, c))
        else:
            kept += 1
    ids = {cid for cid, _ in new}
    removed = tuple(cid for cid, _ in old if cid not in ids)
    return ChunkDiff(tuple(changed), tuple(moved), removed, kept)


def check_stored(
    new: Sequence[IdChunk],
    rows: Mapping[str, tuple[object, ...]],
    points: Set[str],
    pending: Set[str],
) -> ChunkDiff:
    """What a forced reindex must write for a file whose content is as recorded, against
    what the indexes hold for it: its state rows (`row_fields` by id), the ids of its
    vector points and of its chunks still waiting for one (state.db's pending rows). A
    chunk whose row differs or is missing, or whose vector is missing or pending, is
    changed (written again, vector included); every id held anywhere and no longer
    produced is removed."""
    changed = tuple(
        (cid, c)
        for cid, c in new
        if rows.get(cid) != _doc_fields(c) or cid not in points or cid in pending
    )
    ids = {cid for cid, _ in new}
    removed = tuple(sorted((rows.keys() | points | pending) - ids))
    return ChunkDiff(changed, (), removed, len(new) - len(changed))
