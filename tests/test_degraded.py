"""One root's failing store leaves that root out of a search over several, or ranks it
by the side that still works (`daemon.degraded`); real Tantivy, Qdrant Edge, fastembed
and apsw, in process. The daemon's side (reply, CLI line) is in test_dep_parking."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from daemon.config import SearchConfig
from daemon.pipeline import fill_vectors, run_batch
from daemon.root import RootIndex
from daemon.search import run_search
from ipc.errors import StateError
from ipc.requests import SearchRequest

QUESTION = "retry failed http requests with backoff"


def test_a_root_whose_store_fails_is_ranked_without_it_or_left_out(
    setup: Any, tmp_path: Path
) -> None:
    crate, collab, open_root = setup
    good = open_root()
    shutil.copytree(crate, tmp_path / "copy")
    model = (collab.embedder.model_id, collab.embedder.dim)
    bad = RootIndex((tmp_path / "copy").resolve(), collab.config, *model)
    try:
        for root in (good, bad):
            run_batch(root, None, collab)
            fill_vectors(root, collab, lambda: False)

        def search(roots: list[RootIndex], mode: str) -> Any:
            request = SearchRequest(query=QUESTION, mode=mode, limit=20)
            embed = collab.embedder.embed_query
            return run_search(roots, request, embed_query=embed, tuning=SearchConfig())

        whole = search([good, bad], "hybrid")
        assert {h.root for h in whole.hits} == {str(good.path), str(bad.path)}
        assert not whole.degraded
        bad.vectors.close()
        hybrid = search([good, bad], "hybrid")  # `bad` ranked by BM25 alone
        assert {h.root for h in hybrid.hits} == {str(good.path), str(bad.path)}
        (only,) = hybrid.degraded
        assert only.root == str(bad.path) and not only.left_out
        assert list(only.failed) == ["vectors"]
        vector = search([good, bad], "vector")  # no side left to rank `bad`
        assert vector.hits and {h.root for h in vector.hits} == {str(good.path)}
        assert [d.left_out for d in vector.degraded] == [True]
        assert vector.notes()["degraded"] == [d.to_json() for d in vector.degraded]
        with pytest.raises(StateError, match="its vectors cannot be searched"):
            search([bad], "vector")  # alone: an error, not an empty answer
        assert search([bad], "bm25").hits and not search([bad], "bm25").degraded
        bad.lexical.close()
        for mode in ("hybrid", "bm25"):
            out = search([good, bad], mode)
            assert out.hits and {h.root for h in out.hits} == {str(good.path)}, mode
            assert [d.left_out for d in out.degraded] == [True], mode
            with pytest.raises(StateError, match="its lexical index cannot be searched"):
                search([bad], mode)
    finally:
        bad.close()
