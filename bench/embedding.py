"""Embedding throughput: rcmd's embedder against naive fastembed calls, same run.

    python -m bench embed [--chunks 512] [--corpus small] [--rounds 3]

The same chunks (the embed texts rcmd builds for the corpus, shuffled with a fixed seed)
go through, in interleaved rounds so that a change in machine load hits all alike:

- `naive_stock`: the naive call, `TextEmbedding(model).embed(texts, batch_size=64)` on
  the model as shipped. fastembed truncates this model at 512 tokens.
- `naive_256`: the same call truncating at 256, the model's training window and
  rcmd's: what is left of the gap once both embed the same tokens.
- `sorted_batches`: that call on length-sorted batches under rcmd's token budget (rcmd's
  embedder before the graph rewrite).
- `rcmd_float`: rcmd with `quantize = false` (stock vectors, rewritten float graph).
- `rcmd`: rcmd's default (int8 graph, one text per run, two runs side by side).

Reports chunks/s, real tokens/s (rcmd's tokenizer, 256-token window) and ratios.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.corpora import materialize
from bench.harness import machine_state, save


def chunk_texts(tree: Path) -> list[str]:
    """The texts the daemon embeds for `tree`'s Rust files (a text that chunks of a file
    share once: daemon/embed_groups.py), in file order."""
    from daemon.chunker import chunk_source
    from daemon.embed_groups import EmbedPolicy, embedded_texts

    texts: list[str] = []
    for f in sorted(tree.rglob("*.rs")):
        rel = f.relative_to(tree).as_posix()
        chunks = chunk_source(rel, f.read_bytes())
        texts.extend(dict.fromkeys(embedded_texts(chunks, EmbedPolicy())))
    return texts


def sample_texts(corpus: str, n: int, seed: int = 3) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        texts = chunk_texts(materialize(corpus, Path(tmp) / "tree"))
    random.Random(seed).shuffle(texts)
    return texts[:n]


def _stock_model(cache: Path, max_tokens: int | None) -> Any:
    from daemon.embedder import stock_fastembed

    model = stock_fastembed(cache)
    if max_tokens is not None:
        model.model.tokenizer.enable_truncation(max_tokens)  # type: ignore[attr-defined]
    return model


def run(args: Any) -> dict[str, Any]:
    from daemon.config import EmbeddingConfig
    from daemon.embedder import MAX_TOKENS, Embedder, plan_batches

    texts = sample_texts(args.corpus, args.chunks)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        rcmd = Embedder(EmbeddingConfig(), cache)
        rcmd_float = Embedder(EmbeddingConfig(quantize=False), cache)
        stock = _stock_model(cache, None)
        naive = _stock_model(cache, MAX_TOKENS)
        lengths = rcmd.token_lengths(texts)
        cfg = EmbeddingConfig()

        def sorted_batches() -> list[Any]:
            out: list[Any] = [None] * len(texts)
            for batch in plan_batches(lengths, cfg.batch_size, cfg.max_batch_tokens):
                chunk = [texts[i] for i in batch]
                for i, v in zip(batch, naive.embed(chunk, batch_size=len(chunk)), strict=True):
                    out[i] = v
            return out

        ways: dict[str, Callable[[], Any]] = {
            "naive_stock": lambda: list(stock.embed(texts, batch_size=64)),
            "naive_256": lambda: list(naive.embed(texts, batch_size=64)),
            "sorted_batches": sorted_batches,
            "rcmd_float": lambda: rcmd_float.embed(texts),
            "rcmd": lambda: rcmd.embed(texts),
        }
        for model in (stock, naive):  # warm every session
            list(model.embed(texts[:8]))
        rcmd.embed(texts[:8])
        rcmd_float.embed(texts[:8])
        runs, vectors = _timed(ways, args.rounds)
        out = _figures(runs, vectors, len(texts), sum(lengths), args.rounds)
        t = time.perf_counter()
        rcmd.token_lengths(texts)
        out["tokenize_s"] = round(time.perf_counter() - t, 3)
        out["layout"] = rcmd.layout_status()
        out["machine_after"] = machine_state()
    command = f"python -m bench embed --chunks {args.chunks} --corpus {args.corpus}"
    save("embedding", f"{command} --rounds {args.rounds}", out)
    return out


def _timed(
    ways: dict[str, Callable[[], Any]], rounds: int
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Seconds of each way per round (interleaved, so load hits all alike), last vectors."""
    runs: dict[str, list[float]] = {name: [] for name in ways}
    vectors: dict[str, Any] = {}
    for _ in range(rounds):
        for name, way in ways.items():
            t = time.perf_counter()
            vectors[name] = np.asarray(way())
            runs[name].append(time.perf_counter() - t)
    return runs, vectors


def _figures(
    runs: dict[str, list[float]], vectors: dict[str, Any], chunks: int, tokens: int, rounds: int
) -> dict[str, Any]:
    """Medians, rates and ratios of every way, and how far rcmd's vectors are from float."""
    out: dict[str, Any] = {"chunks": chunks, "real_tokens": tokens, "rounds": rounds}
    base = statistics.median(runs["naive_stock"])
    base_256 = statistics.median(runs["naive_256"])
    for name, times in runs.items():
        s = statistics.median(times)
        out[name] = {
            "median_s": round(s, 2),
            "chunks_per_s": round(chunks / s, 1),
            "tokens_per_s": round(tokens / s),
            "speedup_vs_stock": round(base / s, 2),
            "speedup_vs_256": round(base_256 / s, 2),
        }
    out["speedup"] = out["rcmd"]["speedup_vs_stock"]
    out["speedup_same_tokens"] = out["rcmd"]["speedup_vs_256"]
    cos = (vectors["rcmd"] * vectors["naive_256"]).sum(axis=1)
    out["rcmd_cosine_to_float"] = {
        "mean": round(float(cos.mean()), 4),
        "min": round(float(cos.min()), 4),
    }
    cos = (vectors["rcmd_float"] * vectors["naive_256"]).sum(axis=1)
    out["rcmd_float_cosine_to_float"] = round(float(cos.min()), 5)
    out["int8_over_float"] = round(
        out["rcmd"]["tokens_per_s"] / out["rcmd_float"]["tokens_per_s"], 2
    )
    return out
