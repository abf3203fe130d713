"""The BM25 side: one Tantivy index per root.

Text is tokenized in Python (`daemon.tokenize`) and stored pre-split, so Tantivy only
splits on whitespace; queries are built from term queries, never from the query parser,
so no user input can be a syntax error. Tantivy's commit and searches release the GIL.
The writes of a big batch are made in a worker process (`daemon.lexical_writes`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

import tantivy

from daemon.abbrev import abbreviations
from daemon.fusion import TIE_MARGIN, through_ties
from daemon.lexical_writes import LexicalDoc, LocalWrites, Writes, start_worker
from daemon.parking import GONE_WHILE_PARKED
from daemon.tokenize import query_tokens, stem, stems
from ipc.errors import StateError

#: How the indexed terms are made (recorded per root; a root built under another
#: version is rebuilt): 2 = English stems of the code tokens; 3 = doc comments also
#: in a field of their own.
LEXICAL_VERSION = "3"
#: Field → boost used when scoring a query against it. `doc_t` (the doc comments, also
#: part of `content_t`) is searched by questions in words only (`[search]
#: natural_doc_boost`).
FIELD_BOOSTS = {
    "symbol_t": 3.0,
    "signature_t": 1.5,
    "path_t": 1.0,
    "content_t": 1.0,
    "doc_t": 0.0,
}


def schema() -> tantivy.Schema:
    b = tantivy.SchemaBuilder()
    b.add_text_field("chunk_id", stored=True, tokenizer_name="raw")
    b.add_text_field("path", stored=True, tokenizer_name="raw")
    b.add_text_field("kind", stored=True, tokenizer_name="raw")
    b.add_unsigned_field("start_line", stored=True)
    b.add_unsigned_field("end_line", stored=True)
    for name in FIELD_BOOSTS:
        b.add_text_field(name, stored=False, tokenizer_name="whitespace")
    return b.build()


def query_terms(
    query: str, drop: frozenset[str], emphasis: dict[str, float], abbreviation_weight: float
) -> dict[str, float]:
    """Stem → weight of what `query` searches for: each token's stem at the most emphasis
    of its tokens, then the stems of their abbreviations (at `abbreviation_weight`, unless
    the query names them itself)."""
    terms: dict[str, float] = {}
    shorts: list[str] = []
    for tok in query_tokens(query):
        if tok not in drop:
            term = stem(tok)
            terms[term] = max(terms.get(term, 0.0), emphasis.get(tok, 1.0))
            shorts.extend(abbreviations(tok))
    if abbreviation_weight > 0:
        for short in shorts:
            terms.setdefault(stem(short), abbreviation_weight)
    return terms


class LexicalIndex:
    """One writer (the indexer thread), many concurrent searchers."""

    def __init__(self, path: Path, heap_bytes: int = 64 << 20, threads: int = 1) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.schema = schema()
        #: Guards opening and letting go of `_index` (`park`, searches on many threads).
        self._lock = threading.Lock()
        self._index: tantivy.Index | None = tantivy.Index(self.schema, str(path), reuse=True)
        self._closed = False
        self._heap = heap_bytes
        self._threads = threads
        self._writes: Writes | None = None
        #: Whether this batch's writes go to a worker process (`write_in_worker`).
        self._in_worker = False
        self.pending = 0

    @property
    def index(self) -> tantivy.Index:
        """The open index, opened again (~0.5 ms) when `park` let it go."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.path}: the lexical index is closed")
            if self._index is None:
                # Tantivy makes a new, empty index where meta.json is missing: a parked
                # root's, deleted meanwhile, found nothing silently for good.
                if not (self.path / "meta.json").is_file():
                    raise StateError(f"{self.path / 'meta.json'} {GONE_WHILE_PARKED}")
                self._index = tantivy.Index(self.schema, str(self.path), reuse=True)
            return self._index

    def park(self) -> bool:
        """Let go of the index while no writer is open: its reader's thread, which polls
        meta.json twice a second, ends with it (once running searches drop their
        searchers). Whether it was let go now."""
        with self._lock:
            if self._index is None or self._writes is not None or self.pending:
                return False
            self._index = None
            return True

    @property
    def parked(self) -> bool:
        return self._index is None

    def _w(self) -> Writes:
        if self._writes is None:
            self._writes = LocalWrites(self.index, self._heap, self._threads)
        return self._writes

    def delete_paths(self, paths: Iterable[str]) -> None:
        values = list(paths)
        if values:
            self._w().delete("path", values)
            self.pending += len(values)

    def delete_ids(self, chunk_ids: Iterable[str]) -> None:
        """Delete single chunks (an edit rewrites only the chunks it changed or moved)."""
        values = list(chunk_ids)
        if values:
            self._w().delete("chunk_id", values)
            self.pending += len(values)

    def add(self, docs: Iterable[LexicalDoc]) -> None:
        batch = list(docs)
        if batch:
            self._w().add(batch)
            self.pending += len(batch)

    def delete_all(self) -> None:
        self._w().delete_all()
        self.pending += 1

    def commit(self) -> None:
        """Make pending writes durable and visible to new searches."""
        if self._writes is None or not self.pending:
            return
        self._writes.commit()
        self.pending = 0
        self.index.reload()

    def rollback(self) -> None:
        """Drop uncommitted writes and the writer itself (a batch failed half way; its
        paths stay in-flight). A writer whose commit failed, on a full disk say, refuses
        all further work, so the next batch opens a fresh one."""
        writes, self._writes = self._writes, None
        self.pending = 0
        self._in_worker = False
        if writes is not None:
            writes.rollback()
            del writes

    def release_writer(self) -> bool:
        """Let go of the writer once nothing is pending: its indexing and merge threads
        and its memory budget (up to `heap_bytes`) go back; the next write opens one
        again (~1 ms). Whether a writer was released."""
        if self._writes is None or self.pending:
            return False
        writes, self._writes = self._writes, None
        self._in_worker = False
        writes.close()
        return True

    def write_in_worker(self) -> bool:
        """Send the writes of a big batch to a worker process on another CPU
        (`daemon.lexical_writes`) until `write_here`. False, and the writes stay here,
        when some are pending here or no worker could start."""
        if self.pending:
            return False
        self.release_writer()
        worker = start_worker(str(self.path), self._heap, self._threads)
        if worker is None:
            return False
        self._writes, self._in_worker = worker, True
        return True

    def write_here(self) -> None:
        """End a batch's worker: it lets the writer go (dropping what a failed batch did
        not commit), and later writes are made in this process again. The index is
        opened again: Tantivy keeps the list of files it may delete (`.managed.json`) in
        memory, from when the index was opened, and a writer of the old one would write
        that list back without the worker's files, which would then never be removed."""
        if not self._in_worker:
            return
        if self.pending:
            self.rollback()
        else:
            self.release_writer()
        with self._lock:
            self._index = tantivy.Index(self.schema, str(self.path), reuse=True)

    def close(self) -> None:
        """Commit, then let go of the index: its searcher maps segment files, which a
        removed root's deleted directory would otherwise keep on disk."""
        if self._writes is not None:
            self.commit()
            self.release_writer()
        with self._lock:
            self._closed = True
            self._index = None

    def search(
        self,
        query: str,
        limit: int,
        drop: frozenset[str] = frozenset(),
        boosts: dict[str, float] | None = None,
        emphasis: dict[str, float] | None = None,
        abbreviation_weight: float = 0.0,
    ) -> list[tuple[str, float]]:
        """(chunk id, BM25 score) best first; an empty list when no token is searchable.
        Tokens in `drop` (stopwords of a question in words) are not searched for; `boosts`
        replaces some of FIELD_BOOSTS; `emphasis` multiplies the weight of some tokens
        (an identifier's whole form over its parts); the short forms code uses for a
        word (`daemon.abbrev`: "length" → `len`) are searched with `abbreviation_weight`."""
        terms = query_terms(query, drop, emphasis or {}, abbreviation_weight)
        if not terms:
            return []
        clauses = []
        for field, boost in {**FIELD_BOOSTS, **(boosts or {})}.items():
            if boost <= 0:
                continue
            for term, emphasised in terms.items():
                q = tantivy.Query.term_query(self.schema, field, term)
                weight = boost * emphasised
                clauses.append((tantivy.Occur.Should, tantivy.Query.boost_query(q, weight)))
        return self._ranked(tantivy.Query.boolean_query(clauses), limit)

    def _ranked(self, query: tantivy.Query, limit: int) -> list[tuple[str, float]]:
        """(chunk id, score) of `query`'s best `limit` documents, best first and equal
        scores in file order (path, first line). Tantivy orders a tie by where each
        document was written, which depends on how batches happened to finish, so the
        same query would list tied chunks differently after every rebuild; a tie that
        reaches `limit` is read whole (up to `TIE_MARGIN` more) before it is cut."""
        searcher = self.index.searcher()
        hits = searcher.search(query, limit + TIE_MARGIN, count=False).hits
        placed = []
        for score, address in hits[: through_ties([s for s, _ in hits], limit)]:
            doc = searcher.doc(address)
            place = (str(doc["path"][0]), int(doc["start_line"][0]))
            placed.append((-float(score), place, str(doc["chunk_id"][0])))
        placed.sort()
        return [(cid, -negated) for negated, _place, cid in placed[:limit]]

    def symbol_candidates(self, words: list[str], limit: int) -> list[str]:
        """Chunk ids whose symbol holds every one of `words` (whole, lowercased
        identifiers), best BM25 first: shorter symbols, i.e. closer matches, lead, then
        file order. The caller checks the exact symbol; this only narrows the index to a
        few candidates."""
        if not words:
            return []
        clauses = [
            (tantivy.Occur.Must, tantivy.Query.term_query(self.schema, "symbol_t", w))
            for w in dict.fromkeys(stems(words))
        ]
        return [cid for cid, _ in self._ranked(tantivy.Query.boolean_query(clauses), limit)]

    def ids_by_path(self) -> dict[str, set[str]]:
        """Every (path → chunk ids) the committed index holds; for verify."""
        searcher = self.index.searcher()
        n = searcher.num_docs
        out: dict[str, set[str]] = {}
        if n == 0:
            return out
        result = searcher.search(tantivy.Query.all_query(), n, count=False)
        for _score, address in result.hits:
            doc = searcher.doc(address)
            out.setdefault(str(doc["path"][0]), set()).add(str(doc["chunk_id"][0]))
        return out

    def num_docs(self) -> int:
        return int(self.index.searcher().num_docs)
