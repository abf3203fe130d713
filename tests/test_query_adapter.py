"""The query adapter: loaded only for the model it was fitted for, applied only to
questions in words, and what ships is a sane map."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from daemon.config import SearchConfig
from daemon.embedder import DEFAULT_MODEL_ID
from daemon.pipeline import fill_vectors, run_batch
from daemon.query_adapter import ADAPTER_FILE, QueryAdapter, base_model, load_adapter
from daemon.search import run_search, search_roots
from ipc.requests import SearchRequest


def test_the_shipped_adapter_is_for_the_default_model_and_stays_near_the_identity() -> None:
    adapter = load_adapter(DEFAULT_MODEL_ID + "+q8v2")
    assert adapter is not None and adapter.model == base_model(DEFAULT_MODEL_ID)
    w = adapter.matrix
    assert w.shape == (384, 384) and np.isfinite(w).all()
    # Fitted with a penalty on ‖W − I‖: a map near the identity, not a new space.
    assert 0 < np.linalg.norm(w - np.eye(384)) < np.linalg.norm(np.eye(384))
    v = np.random.default_rng(1).standard_normal(384).astype(np.float32)
    out = adapter.apply(v / np.linalg.norm(v))
    assert abs(float(np.linalg.norm(out)) - 1) < 1e-5


def test_another_model_or_no_file_gets_no_adapter(tmp_path: Path) -> None:
    assert load_adapter("BAAI/bge-small-en-v1.5") is None
    assert load_adapter(DEFAULT_MODEL_ID, tmp_path / "missing.npz") is None
    QueryAdapter("other/model", np.eye(384, dtype=np.float32)).save(tmp_path / "a.npz")
    assert load_adapter(DEFAULT_MODEL_ID, tmp_path / "a.npz") is None
    assert load_adapter("other/model+q8v2", tmp_path / "a.npz") is not None
    assert ADAPTER_FILE.name == "query_adapter.npz"


def test_a_damaged_adapter_file_is_ignored_not_fatal(tmp_path: Path) -> None:
    broken = tmp_path / "broken.npz"
    broken.write_bytes(ADAPTER_FILE.read_bytes()[:1000])
    assert load_adapter(DEFAULT_MODEL_ID, broken) is None
    np.savez(tmp_path / "nan.npz", model=np.array(DEFAULT_MODEL_ID), matrix=np.full((4, 4), np.nan))
    assert load_adapter(DEFAULT_MODEL_ID, tmp_path / "nan.npz") is None
    np.savez(tmp_path / "small.npz", model=np.array(DEFAULT_MODEL_ID), matrix=np.eye(4))
    assert load_adapter(DEFAULT_MODEL_ID, tmp_path / "small.npz", dim=384) is None
    np.savez(tmp_path / "keys.npz", weights=np.eye(4))
    assert load_adapter(DEFAULT_MODEL_ID, tmp_path / "keys.npz") is None


def test_only_questions_in_words_are_mapped(embedder: Any, setup: Any) -> None:
    """A map that turns a vector round (−I) reverses a question's vector ranking, and
    leaves an identifier's alone; `query_adapter = false` turns it off."""
    _crate, collab, open_root = setup
    root = open_root()
    run_batch(root, None, collab)
    fill_vectors(root, collab, lambda: False)
    flip = QueryAdapter(base_model(embedder.model_id), -np.eye(384, dtype=np.float32))

    def paths(query: str, adapter: QueryAdapter | None, **knobs: Any) -> list[str]:
        req = SearchRequest(query=query, mode="vector", limit=5)
        tuning = SearchConfig(**knobs)
        hits = search_roots(
            [root], req, embed_query=embedder.embed_query, tuning=tuning, adapter=adapter
        )
        return [f"{h.path}:{h.start_line}" for h in hits]

    question = "retry a failed http request with backoff"
    assert paths(question, flip) != paths(question, None)
    assert paths(question, flip, query_adapter=False) == paths(question, None)
    assert paths("RetryPolicy", flip) == paths("RetryPolicy", None)

    def confidence(query: str, **knobs: Any) -> str | None:
        # Floors no cosine can pass (2) and every cosine passes (-1) tell the spaces apart.
        tuning = SearchConfig(low_confidence_adapted_cosine=2.0, low_confidence_cosine=-1.0)
        req = SearchRequest(query=query, mode="hybrid", limit=5)
        out = run_search(
            [root],
            req,
            embed_query=embedder.embed_query,
            tuning=dataclasses.replace(tuning, **knobs),
            adapter=flip,
        )
        return out.confidence

    assert confidence(question) == "low"  # mapped: the adapted floor
    assert confidence(question, query_adapter=False) == "high"  # as embedded: its own floor
    assert confidence("RetryPolicy") is None


def test_the_fit_gradient_matches_finite_differences() -> None:
    """`bench.quality.adapter`'s loss and its hand-derived gradient agree, so L-BFGS fits
    what the docstring says (the softmax of each answer among its crate's chunks)."""
    from bench.quality.adapter import DIM, Pairs, loss_and_grad

    rng = np.random.default_rng(5)

    def unit(n: int) -> Any:
        v = rng.standard_normal((n, DIM)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    data = [Pairs("a", unit(4), unit(9), np.array([0, 3, 3, 8]))]
    w = np.eye(DIM) + 0.01 * rng.standard_normal((DIM, DIM))
    grad = loss_and_grad(w.ravel(), data, 20.0, 0.05)[1]
    for _ in range(3):
        d = rng.standard_normal(DIM * DIM)
        d /= np.linalg.norm(d)
        eps = 1e-4
        up = loss_and_grad(w.ravel() + eps * d, data, 20.0, 0.05)[0]
        down = loss_and_grad(w.ravel() - eps * d, data, 20.0, 0.05)[0]
        slope = float(grad @ d)
        assert abs((up - down) / (2 * eps) - slope) < 1e-7 + 1e-4 * abs(slope)
