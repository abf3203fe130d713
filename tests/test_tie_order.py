"""Chunks a search cannot tell apart are listed in file order (path, then line), the
same after every build: not in the order the stores happened to write them, which
follows how batches finish. Real Tantivy over the fixture crate."""

from __future__ import annotations

from typing import Any

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
