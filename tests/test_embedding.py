"""The real offline model and the real apsw cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from daemon.embed_cache import EmbedCache, cache_key
from daemon.embedder import in_groups, plan_batches


def test_plan_batches_sorted_and_bounded() -> None:
    lengths = [50, 3, 200, 10, 10, 120, 7]
    batches = plan_batches(lengths, batch_size=3, max_batch_tokens=300)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths)
    for b in batches:
        assert len(b) <= 3
        assert max(lengths[i] for i in b) * len(b) <= 300 or len(b) == 1


def test_offline_model_embeds_normalized_vectors(embedder: Any) -> None:
    vecs = embedder.embed(["fn main() {}", "retry a failed http request", "x" * 5000])
    assert len(vecs) == 3
    for v in vecs:
        assert v.shape == (embedder.dim,)
        assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-3


def test_float_graph_gives_the_stock_vectors_and_int8_stays_close(
    embedder: Any, tmp_path: Path
) -> None:
    """The rewritten float graph must embed exactly as fastembed does on the model as
    shipped (texts under the 256-token window, where both truncate alike); the int8
    graph is another model id, close to it."""
    from daemon.config import EmbeddingConfig
    from daemon.embedder import Embedder, stock_fastembed

    texts = [
        "pub fn push(&mut self, value: T) { if self.len == self.buf.capacity() { self.grow() } }",
        "/// Reads the whole file into a string.\nfn read_to_string(p: &Path) -> Result<String>",
        "impl Drop for Guard { fn drop(&mut self) { self.lock.unlock(); } }",
    ]
    stock = stock_fastembed(tmp_path)
    reference = np.asarray(list(stock.embed(texts)))
    exact = np.asarray(Embedder(EmbeddingConfig(quantize=False), tmp_path).embed(texts))
    assert (exact * reference).sum(axis=1).min() > 0.9999
    int8 = np.asarray(embedder.embed(texts))
    assert (int8 * reference).sum(axis=1).min() > 0.97
    assert embedder.model_id != Embedder(EmbeddingConfig(quantize=False), tmp_path).model_id


def test_batched_equals_one_by_one(embedder: Any) -> None:
    """A text's vector must not depend on what it is embedded with (the int8 graph
    quantizes activations per run, so this holds because each text runs alone)."""
    texts = [f"fn f{i}() {{ {'let x = 1; ' * i} }}" for i in range(12)]
    together = embedder.embed(texts)
    alone = [embedder.embed([t])[0] for t in texts]
    for a, b in zip(together, alone, strict=True):
        assert float(np.dot(a, b)) > 0.99999


def test_embed_until_stops_between_texts_and_keeps_their_vectors(embedder: Any) -> None:
    """The streaming path gives the vectors `embed` gives; a stop asked from the start
    still embeds one text (progress), and stops before the rest."""
    texts = [
        f"fn parse_{i}(input: &str) -> Result<u{i}, Error> {{ todo!() }}" * (i % 3 + 1)
        for i in range(12)
    ]
    whole = embedder.embed(texts)
    all_of_them = embedder.embed_until(texts, lambda: False)
    assert sorted(all_of_them) == list(range(12))
    for i, vector in all_of_them.items():
        assert np.allclose(vector, whole[i], atol=1e-6)
    asked: list[int] = []
    some = embedder.embed_until(texts, lambda: asked.append(1) is None)
    assert 1 <= len(some) < len(texts) and asked
    assert all(np.allclose(v, whole[i], atol=1e-6) for i, v in some.items())


def test_in_groups_runs_the_first_group_and_stops_at_a_boundary() -> None:
    calls: list[list[str]] = []

    def embed(part: Any) -> list[Any]:
        calls.append(list(part))
        return [np.full(2, len(t), dtype=np.float32) for t in part]

    texts = [str(i) * (i + 1) for i in range(7)]
    assert sorted(in_groups(embed, texts, 3, lambda: False)) == list(range(7))
    calls.clear()
    done = in_groups(embed, texts, 3, lambda: True)
    assert sorted(done) == [0, 1, 2] and calls == [texts[:3]]
    assert done[2][0] == 3


def test_semantics_rank_related_text_higher(embedder: Any) -> None:
    q = embedder.embed_query("retry failed network requests")
    near, far = embedder.embed(
        [
            "fn fetch_with_retry(url) { for attempt in 0..n { if ok { return } sleep(backoff) } }",
            "struct Matrix { rows: usize, cols: usize, data: Vec<f64> }",
        ]
    )
    assert float(np.dot(q, near)) > float(np.dot(q, far))


def test_cache_roundtrip_and_persistence(tmp_path: Path) -> None:
    path = tmp_path / "emb.db"
    cache = EmbedCache(path)
    k1, k2 = cache_key("m", "a"), cache_key("m", "b")
    assert cache_key("m", "a") == k1 and cache_key("other", "a") != k1
    v = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    v /= np.linalg.norm(v)
    cache.put_many({k1: v})
    got = cache.get_many([k1, k2])
    assert set(got) == {k1}
    assert np.allclose(got[k1], v, atol=1e-3)
    cache.close()
    again = EmbedCache(path)
    assert len(again) == 1
    assert set(again.get_many([k1])) == {k1}


def test_release_memory_reloads_the_model_and_keeps_vectors(tmp_path: Path) -> None:
    from daemon.config import EmbeddingConfig
    from daemon.embedder import Embedder

    emb = Embedder(EmbeddingConfig(), tmp_path)
    before = emb.embed(["pub fn grow(&mut self) {}"])[0]
    assert not emb.release_memory(2)  # one text embedded: not worth a reload
    emb.embed(["a", "b"])
    assert emb.release_memory(2)
    assert emb.embedded_since_load == 0
    after = emb.embed(["pub fn grow(&mut self) {}"])[0]
    assert float(np.dot(before, after)) > 0.9999
    assert emb.embed_query("grow").shape == (emb.dim,)


def test_background_load_answers_model_id_at_once_and_embeds_when_ready(
    tmp_path: Path,
) -> None:
    from daemon.config import EmbeddingConfig
    from daemon.embedder import DIM_DEFAULT, Embedder, default_model_id

    emb = Embedder(EmbeddingConfig(), tmp_path, background=True)
    announced = (emb.model_id, emb.dim)
    assert announced == (default_model_id(EmbeddingConfig()), DIM_DEFAULT)
    vec = emb.embed_query("where does Vec grow its buffer")  # waits for the load
    assert emb.loaded and vec.shape == (DIM_DEFAULT,)
    assert (emb.model_id, emb.dim) == announced
