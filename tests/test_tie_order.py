"""Chunks a search cannot tell apart are listed in file order (path, then line), the
same after every build: not in the order the stores happened to write them, which
follows how batches finish. Real Tantivy over the fixture crate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daemon.fusion import through_ties
from daemon.lexical import LexicalIndex
from daemon.lexical_writes import LexicalDoc
from daemon.pipeline import run_batch
from daemon.search import search_roots
from ipc.requests import SearchRequest

TWIN = "pub fn frobnicate_widget(level: u32) -> u32 {\n    level * 7 + 3\n}\n"


def test_tied_hits_are_listed_in_file_order_not_write_order(setup: Any) -> None:
    crate, collab, open_root = setup
    root = open_root()
    (crate / "src" / "right.rs").write_text(TWIN)
    run_batch(root, None, collab)
    # Written second, so the lexical store holds it after its twin.
    (crate / "src" / "left.rs").write_text(TWIN)
    run_batch(root, ["src/left.rs"], collab)
    question = SearchRequest(query="frobnicate widget level", mode="bm25", limit=5)
    hits = search_roots([root], question, embed_query=None)
    assert [h.path for h in hits[:2]] == ["src/left.rs", "src/right.rs"]
    assert hits[0].score == hits[1].score  # a true tie, listed in file order
    # An identifier's exact definitions are listed closest symbol first, then in file
    # order, and so is a bare symbol lookup.
    ident = SearchRequest(query="frobnicate_widget", mode="bm25", limit=5)
    looked_up = SearchRequest(query="", mode="bm25", limit=5, symbol="frobnicate_widget")
    for req in (ident, looked_up):
        hits = search_roots([root], req, embed_query=None)
        assert [h.path for h in hits[:2]] == ["src/left.rs", "src/right.rs"], req


def test_a_tie_reaching_the_depth_is_cut_in_file_order(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "tantivy")
    for name in ("e", "d", "c", "b", "a"):  # written last to first
        index.add([LexicalDoc(name, f"src/{name}.rs", "fn", "probe", "fn probe()", TWIN, 1, 3)])
        index.commit()
    assert [cid for cid, _ in index.search("frobnicate widget", 2)] == ["a", "b"]
    assert index.symbol_candidates(["probe"], 3) == ["a", "b", "c"]


def test_through_ties_takes_a_run_of_equal_scores_whole() -> None:
    scores = [0.9, 0.5, 0.5, 0.5, 0.2]
    assert through_ties(scores, 2) == 4
    assert through_ties(scores, 1) == 1
    assert through_ties(scores, 4) == 4
    assert through_ties(scores, 9) == 5
    assert through_ties([], 3) == 0


SLOW = (
    "/// Takes the lock on the slow path: a slow lock, locked slowly, the slow lock path.\n"
    "pub fn lock_shared_slow(lock: u32) -> u32 {\n    lock + 1\n}\n\n"
    "pub fn lock_slow() {}\n"
)


def test_a_short_questions_words_joined_find_the_identifier_they_spell(setup: Any) -> None:
    """`lock slow` means `lock_slow` more than a chunk that says lock and slow most (as
    parking_lot's `RawMutex::lock_slow` ranked fourth); `LockSlow` and `LOCK_SLOW` too."""
    crate, collab, open_root = setup
    root = open_root()
    (crate / "src" / "slow.rs").write_text(SLOW)
    run_batch(root, None, collab)
    for query in ("lock slow", "Lock Slow"):
        hits = search_roots(
            [root], SearchRequest(query=query, mode="bm25", limit=3), embed_query=None
        )
        assert hits[0].symbol == "slow::lock_slow", [h.symbol for h in hits]


def test_a_bm25_answer_holding_the_questions_stems_is_not_low_confidence(setup: Any) -> None:
    """Without vectors, confidence compares the question's words with the best hit's;
    as written, "detecting runs within procedural macros" matched one word of `Detects
    whether we are running inside a procedural macro` and the right answer was "low"."""
    from daemon.search import run_search

    crate, collab, open_root = setup
    root = open_root()
    (crate / "src" / "inside.rs").write_text(
        "/// Detects whether we are running inside a procedural macro.\n"
        "pub fn inside_proc_macro() -> bool {\n    false\n}\n"
    )
    run_batch(root, None, collab)
    question = SearchRequest(query="detecting runs within procedural macros", mode="bm25")
    outcome = run_search([root], question, embed_query=None)
    assert outcome.hits[0].symbol == "inside::inside_proc_macro"
    assert outcome.confidence == "high"
    nowhere = SearchRequest(query="decode a jpeg image from bytes", mode="bm25")
    assert run_search([root], nowhere, embed_query=None).confidence == "low"
