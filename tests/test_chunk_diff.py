"""Differential writes (issue 20.1): an edit rewrites the chunks it changed, moves the
ones whose lines shifted without a new vector, and leaves the rest alone; the indexes
still agree with state.db. Real Tantivy, Qdrant Edge, apsw and the offline model."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import numpy as np
import pytest
import tantivy

from daemon.chunk_cache import ChunkCache
from daemon.chunk_diff import ChunkDiff, check_stored, diff_chunks, row_fields
from daemon.chunker import Chunk, chunk_source
from daemon.pipeline import Collaborators, assign_ids, fill_vectors, run_batch
from daemon.root import RootIndex
from daemon.state import ChunkRow
from daemon.vectors import VectorPoint
from daemon.verify import verify_root

RETRY = "src/net/retry.rs"


def ids(rel: str, text: str) -> list[Any]:
    return assign_ids("r", rel, chunk_source(rel, text.encode()))


def test_diff_sorts_changed_moved_kept_and_removed() -> None:
    old = "fn a() -> u8 { 1 }\n\nfn b() -> u8 { 2 }\n\nfn c() -> u8 { 3 }\n"
    edited = "fn a() -> u8 { 1 }\n\nfn b() -> u8 { 20 }\n\nfn c() -> u8 { 3 }\n"
    d = diff_chunks(ids("x.rs", old), ids("x.rs", edited))
    assert [c.symbol for _, c in d.changed] == ["x::b"] and d.kept == 2 and not d.moved
    shifted = "\n\n" + old.replace("fn c() -> u8 { 3 }\n", "")
    d = diff_chunks(ids("x.rs", old), ids("x.rs", shifted))
    assert not d.changed and d.kept == 0
    assert [c.symbol for _, c in d.moved] == ["x::a", "x::b"]
    assert [c.start_line for _, c in d.moved] == [3, 5] and len(d.removed) == 1


def test_attribute_only_change_moves_without_a_new_vector() -> None:
    """The model does not see attributes: the vector stays, the doc is rewritten."""
    old = "fn a() -> u8 { 1 }\n"
    d = diff_chunks(ids("x.rs", old), ids("x.rs", "#[inline]\n" + old))
    assert not d.changed and [c.start_line for _, c in d.moved] == [1]


@pytest.fixture
def cached(setup: Any) -> Iterator[tuple[Path, Collaborators, RootIndex]]:
    """The fixture crate indexed (vectors filled), with a chunk cache that knows it."""
    crate, collab, open_root = setup
    chunks = ChunkCache(collab.config.paths.cache_dir / "chunks.db", 1 << 24)
    collab = dataclasses.replace(collab, chunk_cache=chunks)
    root = open_root()
    run_batch(root, None, collab)
    fill_vectors(root, collab, lambda: False)
    try:
        yield crate, collab, root
    finally:
        chunks.close()


def _stored_lines(root: RootIndex, cid: str) -> tuple[int, int]:
    """(start, end) that Tantivy's one doc of `cid` holds."""
    searcher = root.lexical.index.searcher()
    q = tantivy.Query.term_query(root.lexical.schema, "chunk_id", cid)
    hits = searcher.search(q, 2).hits
    assert len(hits) == 1, hits
    doc = searcher.doc(hits[0][1])
    return int(doc["start_line"][0]), int(doc["end_line"][0])


def _consistent(root: RootIndex) -> None:
    report = verify_root(root)
    assert report["ok"], report["problems"]
    _files, chunks = root.state.counts()
    assert root.lexical.num_docs() == chunks  # no doc written twice
    assert root.vectors.count() == chunks - root.ledger.vectors_pending


def test_edit_inside_one_fn_writes_one_chunk(
    cached: tuple[Path, Collaborators, RootIndex],
) -> None:
    crate, collab, root = cached
    before = root.state.chunk_ids_of(RETRY)
    path = crate / RETRY
    path.write_text(path.read_text().replace("saturating_pow(attempt)", "pow(attempt)"))
    report = run_batch(root, [RETRY], collab)
    assert report.chunks_written == 1 and report.chunks == 1 and report.chunks_moved == 0
    assert report.chunks_kept == len(before) - 1
    assert root.state.chunk_ids_of(RETRY) == before
    assert root.ledger.vectors_pending == 1  # new text: its vector comes later
    _consistent(root)  # and the old vector is gone meanwhile
    assert fill_vectors(root, collab, lambda: False).texts_embedded == 1
    _consistent(root)
    row = root.state.chunk_rows(before)
    assert any("2u32.pow(attempt)" in r.text for r in row.values())


def test_inserted_lines_move_chunks_without_vectors(
    cached: tuple[Path, Collaborators, RootIndex],
) -> None:
    crate, collab, root = cached
    before = root.state.chunk_rows(root.state.chunk_ids_of(RETRY))
    path = crate / RETRY
    text = path.read_text()
    cut = text.index("impl RetryPolicy {")
    path.write_text(text[:cut] + "\n\n\n" + text[cut:])
    points = root.vectors.count()
    report = run_batch(root, [RETRY], collab)
    assert report.chunks == 0 and report.cache_hits == 0  # nothing embedded, not even looked up
    assert report.chunks_moved == report.chunks_written > 0 and report.chunks_kept > 0
    after = root.state.chunk_rows(before)
    assert after.keys() == before.keys()
    for cid, row in after.items():
        shift = 3 if before[cid].start_line > text[:cut].count("\n") else 0
        assert row.start_line == before[cid].start_line + shift
        assert _stored_lines(root, cid) == (row.start_line, row.end_line)
    assert root.vectors.count() == points
    _consistent(root)


def test_removed_and_added_items_follow(
    cached: tuple[Path, Collaborators, RootIndex],
) -> None:
    crate, collab, root = cached
    path = crate / RETRY
    text = path.read_text()
    start = text.index("impl Default for RetryPolicy")
    end = text.index("/// Retries a failed")
    path.write_text(
        text[:start] + text[end:] + "\n/// Brand new.\npub fn jitter_ms() -> u64 { 17 }\n"
    )
    report = run_batch(root, [RETRY], collab)
    fill_vectors(root, collab, lambda: False)
    symbols = {r.symbol for r in root.state.chunk_rows(root.state.chunk_ids_of(RETRY)).values()}
    assert "net::retry::jitter_ms" in symbols
    assert not any(s.endswith("RetryPolicy::default") for s in symbols)
    assert report.chunks == 1 and report.chunks_kept > 0
    _consistent(root)


def test_unknown_old_chunks_rewrite_whole_files(
    cached: tuple[Path, Collaborators, RootIndex],
) -> None:
    crate, collab, root = cached
    path = crate / RETRY
    path.write_text(path.read_text().replace("saturating_pow(attempt)", "pow(attempt)"))
    n = len(root.state.chunk_ids_of(RETRY))
    without_cache = dataclasses.replace(collab, chunk_cache=None)
    report = run_batch(root, [RETRY], without_cache)
    assert report.chunks_written == n and report.chunks_kept == 0
    _consistent(root)


def _row(cid: str, c: Chunk) -> tuple[object, ...]:
    return row_fields(
        ChunkRow(cid, c.path, c.start_line, c.end_line, c.symbol, c.kind, c.signature, c.text)
    )


def test_check_stored_rewrites_only_what_differs_from_the_file() -> None:
    new = ids("x.rs", "fn a() -> u8 { 1 }\n\nfn b() -> u8 { 2 }\n\nfn c() -> u8 { 3 }\n")
    (a, _), (b, cb), (c, _) = new
    rows = {cid: _row(cid, chunk) for cid, chunk in new}
    assert check_stored(new, rows, {a, b, c}, set()) == ChunkDiff((), (), (), 3)
    rows[b] = _row(b, dataclasses.replace(cb, text="fn b() -> u8 { 20 }"))
    rows["f" * 32] = rows[a]  # a row no chunk of the file has any more
    d = check_stored(new, rows, {a, b, "e" * 32}, {a})  # c's vector lost, a's pending
    assert [cid for cid, _ in d.changed] == [a, b, c] and d.kept == 0
    assert d.removed == ("e" * 32, "f" * 32) and not d.moved


def test_force_checks_both_stores_and_repairs_what_differs(
    cached: tuple[Path, Collaborators, RootIndex],
) -> None:
    """A forced reindex rewrites every Tantivy doc, and of state.db and the vector store
    exactly what differs from the files: a damaged chunk row, a lost graph row (of a
    file whose rows the daemon remembers), a lost or a stray point, a stray pending row."""
    crate, collab, root = cached
    n = root.state.counts()[1]
    report = run_batch(root, None, collab, force=True)
    assert report.chunks_written == n and report.chunks_kept == n
    assert report.chunks == 0 and report.points_dropped == 0
    _consistent(root)
    path = crate / RETRY
    path.write_text(path.read_text().replace("saturating_pow(attempt)", "pow(attempt)"))
    run_batch(root, [RETRY], collab)  # a save: its graph rows are remembered
    fill_vectors(root, collab, lambda: False)
    damaged, lost = sorted(root.state.chunk_ids_of(RETRY))[:2]
    good = root.state.chunk_rows([damaged])[damaged]
    graph = "SELECT count(*) FROM sym_refs JOIN sym_files f ON f.id = file WHERE f.path=?"
    with apsw.Connection(str(root.state.path)) as db:
        db.execute("UPDATE chunks SET text='garbage' WHERE id=?", (damaged,))
        refs = _count(db, graph, RETRY)
        last = _count(db, graph.replace("count(*)", "max(sym_refs.rowid)"), RETRY)
        db.execute("DELETE FROM sym_refs WHERE rowid=?", (last,))  # a lost graph row
        assert _count(db, graph, RETRY) == refs - 1
        db.execute("INSERT INTO pending_vectors VALUES(?, ?, 'fn', 'gone')", ("d" * 32, RETRY))
    root.vectors.delete_ids([lost])
    stray = "e" * 32
    root.vectors.upsert([VectorPoint(stray, RETRY, "fn", np.ones(collab.embedder.dim, np.float32))])
    root.vectors.flush()
    assert not verify_root(root)["ok"]
    report = run_batch(root, None, collab, force=True)
    assert report.chunks_written == n and report.chunks_kept == n - 2
    assert report.chunks == 2 and report.points_dropped == 2  # the damaged one, the stray
    assert root.state.chunk_rows([damaged])[damaged] == good
    assert "d" * 32 not in root.state.pending_ids()
    with apsw.Connection(str(root.state.path)) as db:
        assert _count(db, graph, RETRY) == refs
    _consistent(root)


def _count(db: apsw.Connection, sql: str, *args: object) -> int:
    row = db.execute(sql, args).fetchone()
    assert row is not None
    return int(row[0])


def test_a_forced_batch_that_gives_way_leaves_the_rest_to_check(
    cached: tuple[Path, Collaborators, RootIndex], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forced batch that stops for another root's work hands the files it did not
    reach to `unchecked`; the batch that resumes checks them (no vector written, no
    garbage) instead of rewriting them blind as in-flight files."""
    import daemon.pipeline

    _crate, collab, root = cached
    index = dataclasses.replace(collab.config.index, chunks_per_step=1)
    collab = dataclasses.replace(collab, config=dataclasses.replace(collab.config, index=index))
    monkeypatch.setattr(daemon.pipeline, "MIN_RUN_BEFORE_YIELD_S", 0.0)
    rest: list[str] = []
    first = run_batch(
        root, None, collab, force=True, should_yield=lambda: True, unchecked=rest.extend
    )
    assert first.interrupted == 1 and rest and set(rest) <= root.state.inflight()
    second = run_batch(root, root.state.inflight(), collab, check=rest)
    assert second.interrupted == 0 and second.indexed == len(rest)
    assert second.chunks == second.points_dropped == second.cache_hits == 0
    assert first.chunks_kept + second.chunks_kept == root.state.counts()[1]
    assert not root.state.inflight()
    _consistent(root)


def test_the_indexer_resumes_a_forced_batch_that_gave_way_by_checking(
    cached: tuple[Path, Collaborators, RootIndex],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another root's queued work makes the forced batch give way after one step; the
    indexer queues the rest with `check`, so the whole rebuild writes no vector."""
    import daemon.pipeline
    from daemon.indexer import Indexer

    _crate, collab, root = cached
    index = dataclasses.replace(collab.config.index, chunks_per_step=1)
    collab = dataclasses.replace(collab, config=dataclasses.replace(collab.config, index=index))
    monkeypatch.setattr(daemon.pipeline, "MIN_RUN_BEFORE_YIELD_S", 0.0)
    (tmp_path / "other" / "src").mkdir(parents=True)
    (tmp_path / "other" / "src" / "lib.rs").write_text("pub fn other() {}\n")
    model = (collab.embedder.model_id, collab.embedder.dim)
    other = RootIndex((tmp_path / "other").resolve(), collab.config, *model)
    run_batch(other, None, collab)
    fill_vectors(other, collab, lambda: False)
    indexer = Indexer(collab)
    indexer.enqueue(root, None, force=True)
    # Whole-root work queued behind it (an edit would go first): the forced batch gives way.
    indexer.enqueue(other, None)
    indexer.start()
    try:
        assert indexer.wait_idle(root.id, 120) and indexer.wait_idle(other.id, 120)
    finally:
        assert indexer.stop()
        other.close()
    done = indexer.totals.done
    assert done.interrupted >= 1
    assert done.chunks_kept == root.state.counts()[1]
    assert done.points_dropped == done.chunks == 0
    _consistent(root)
