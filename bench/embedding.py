"""Embedding throughput: rcmd's batching against a naive fastembed call, same run.

    python -m bench embed [--chunks 512] [--corpus small]

The same chunks (the embed texts rcmd builds for the corpus, shuffled with a fixed seed)
go through (a) `TextEmbedding.embed(texts, batch_size=64)`, the naive call, and (b)
`Embedder.embed`: length-sorted batches under a padded-token budget. Both use the same
loaded model and thread settings. Reports chunks/s, real tokens/s and the ratio.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.corpora import materialize
from bench.harness import save


def sample_texts(corpus: str, n: int, seed: int = 3) -> list[str]:
    from daemon.chunker import chunk_source

    with tempfile.TemporaryDirectory() as tmp:
        tree = materialize(corpus, Path(tmp) / "tree")
        texts = []
        for f in sorted(tree.rglob("*.rs")):
            rel = f.relative_to(tree).as_posix()
            texts.extend(c.embed_text() for c in chunk_source(rel, f.read_bytes()))
    random.Random(seed).shuffle(texts)
    return texts[:n]


def run(args: Any) -> dict[str, Any]:
    from daemon.config import EmbeddingConfig
    from daemon.embedder import Embedder

    texts = sample_texts(args.corpus, args.chunks)
    with tempfile.TemporaryDirectory() as cache:
        emb = Embedder(EmbeddingConfig(), Path(cache))
        tokens = sum(emb.token_lengths(texts))
        emb.embed(texts[:32])  # warm the session
        out: dict[str, Any] = {"chunks": len(texts), "real_tokens": tokens, "rounds": args.rounds}
        runs: dict[str, list[float]] = {"naive_batch64_unsorted": [], "rcmd": []}
        # Interleaved rounds, so a change in machine load hits both alike.
        for _ in range(args.rounds):
            t = time.perf_counter()
            naive = list(emb._model.embed(texts, batch_size=64))
            runs["naive_batch64_unsorted"].append(time.perf_counter() - t)
            t = time.perf_counter()
            ours = emb.embed(texts)
            runs["rcmd"].append(time.perf_counter() - t)
            assert len(naive) == len(ours) == len(texts)
        for name, times in runs.items():
            s = statistics.median(times)
            out[name] = {
                "median_s": round(s, 2),
                "chunks_per_s": round(len(texts) / s, 1),
                "tokens_per_s": round(tokens / s),
            }
        out["speedup"] = round(
            statistics.median(runs["naive_batch64_unsorted"]) / statistics.median(runs["rcmd"]), 2
        )
        t = time.perf_counter()
        emb.token_lengths(texts)
        out["tokenize_s"] = round(time.perf_counter() - t, 3)
    command = f"python -m bench embed --chunks {args.chunks} --corpus {args.corpus}"
    save("embedding", f"{command} --rounds {args.rounds}", out)
    return out
