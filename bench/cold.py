"""Whole cold-index runs (issue 24.1): what a daemon indexing a corpus from nothing
keeps of its embedder's speed, measured on the same machine in the same run.

    python -m bench cold small crates:tokio crates:rayon,rayon-core,itertools [--runs 1]

Corpora: `small`, `medium`, `large` (rust-src), `synthetic:N`, or `crates:a,b,...`:
Debian's packaged crate sources (/usr/share/cargo/registry/<name>-<version>, from
`apt-get install librust-<name>-dev`), copied side by side. Each run is a fresh daemon
in a fresh RCMD_HOME (empty embedding, chunk and parse caches) that indexes the corpus
until idle. Per corpus: files, lines, chunks, tokens embedded, wall seconds, the
daemon's CPU seconds, chunks/s and tokens/s over the whole run and over its `embed`
stage, and the token-length distribution of what it embedded. Two ceilings: the
layout measurement the daemon makes at its start (status embedding.layout: short fixed
texts; `whole_run_vs_ceiling`), and the embedder alone, in this process with no daemon
running, on 400 of the corpus's own chunk texts (`whole_run_vs_same_texts`: the same
token-length mix, so what is lost is what the pipeline around the model costs; issue
target: within 15%).
"""

from __future__ import annotations

import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.corpora import materialize
from bench.embedding import chunk_texts
from bench.harness import BenchDaemon, cpu_s, machine_state, pct, save
from daemon.deps import DEBIAN_REGISTRY as REGISTRY


def corpus_tree(name: str, dest: Path) -> Path:
    """A private copy of corpus `name` under `dest`."""
    if not name.startswith("crates:"):
        return materialize(name, dest)
    dest.mkdir(parents=True)
    for crate in name.split(":", 1)[1].split(","):
        found = sorted(REGISTRY.glob(f"{crate}-[0-9]*"))
        if not found:
            raise SystemExit(f"{REGISTRY}/{crate}-* not found; apt-get install librust-{crate}-dev")
        shutil.copytree(found[-1], dest / found[-1].name, symlinks=True)
    return dest


def embedder_on(tree: Path, sample: int = 400, seed: int = 5) -> tuple[list[int], float]:
    """Token counts of every chunk text of `tree`, as the daemon's model counts them, and
    the embedder's own rate on a sample of those texts (tokens/s, best of 2, the layout
    measured as the daemon would): the ceiling a whole run of this corpus can reach."""
    from daemon.config import EmbeddingConfig
    from daemon.embedder import Embedder
    from daemon.layout import measure

    texts = chunk_texts(tree)
    picked = random.Random(seed).sample(texts, min(sample, len(texts)))
    with tempfile.TemporaryDirectory() as cache:
        model = Embedder(EmbeddingConfig(), Path(cache))
        try:
            lengths = model.token_lengths(texts)
            rate = measure(model.embed, lambda t: sum(model.token_lengths(t)), picked)
            return lengths, rate
        finally:
            model.close()


def _distribution(lengths: list[int]) -> dict[str, Any]:
    ordered = sorted(lengths) or [0]
    return {
        "p10": pct(ordered, 0.1),
        "p50": pct(ordered, 0.5),
        "p90": pct(ordered, 0.9),
        "max": ordered[-1],
        "share_at_cap_256": round(sum(1 for n in ordered if n >= 256) / len(ordered), 3),
        "share_under_16": round(sum(1 for n in ordered if n < 16) / len(ordered), 3),
    }


def _one_run(tree: Path, home: Path) -> dict[str, Any]:
    d = BenchDaemon(home)
    d.start()
    try:
        wait = time.perf_counter()
        while not d.status()["embedding"]["loaded"]:  # the layout is measured at load
            time.sleep(0.1)
        load_s = time.perf_counter() - wait
        assert d.proc is not None
        cpu0, t = cpu_s(d.proc.pid), time.perf_counter()
        d.call("index", path=str(tree))
        root = d.wait(tree, timeout=7200)
        wall, cpu = time.perf_counter() - t, cpu_s(d.proc.pid) - cpu0
        emb = d.status()["embedding"]
        peak_mb = settled_peak_mb(d, emb["texts_embedded"])
    finally:
        d.stop()
    layout = emb["layout"]
    ceiling = layout["tokens_per_s"].get(f"{layout['runs']}x{layout['threads']}", 0)
    embed_s = root["counters"]["stages_s"].get("embed", 0.0)
    tokens = emb["tokens_embedded"]
    return {
        "files": root["files"],
        "chunks": root["chunks"],
        "chunks_embedded": emb["cache_misses"],
        "texts_embedded": emb.get("texts_embedded"),
        "tokens_embedded": tokens,
        "wall_s": round(wall, 1),
        "daemon_cpu_s": round(cpu, 1),
        "chunks_per_s": round(root["chunks"] / wall, 1),
        "tokens_per_s": round(tokens / wall),
        "embed_stage_s": round(embed_s, 1),
        "embed_stage_tokens_per_s": round(tokens / embed_s) if embed_s else None,
        "layout": f"{layout['runs']}x{layout['threads']} ({layout['chosen_by']})",
        "model_load_s": round(load_s, 1),
        "ceiling_tokens_per_s": ceiling,
        "whole_run_vs_ceiling": round(tokens / wall / ceiling, 3) if ceiling else None,
        "peak_rss_mb": peak_mb,
        "stages_s": root["counters"]["stages_s"],
    }


def settled_peak_mb(d: BenchDaemon, texts: int, timeout: float = 30.0) -> int:
    """The daemon's peak RSS once it has given memory back after the run: at idle it
    reloads the model (the new one is built beside the old), and that is part of the
    run's peak. Waits for `memory_released` in its log when the run embedded enough
    texts to reload."""
    from daemon.indexer import RELEASE_AFTER_TEXTS

    log, deadline = d.paths.log_file, time.monotonic() + timeout
    while texts >= RELEASE_AFTER_TEXTS and time.monotonic() < deadline:
        if log.exists() and '"memory_released"' in log.read_text(errors="replace"):
            break
        time.sleep(0.1)
    return round(int(d.status()["peak_rss_bytes"]) / 2**20)


def run(args: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": args.runs, "machine_before": machine_state(), "corpora": {}}
    with tempfile.TemporaryDirectory(prefix="rcmd-bench-cold-") as tmp:
        for name in args.corpora:
            tree = corpus_tree(name, Path(tmp) / "tree").resolve()
            files = sorted(tree.rglob("*.rs"))
            lines = sum(f.read_bytes().count(b"\n") for f in files)
            runs = [_one_run(tree, Path(tmp) / f"home-{i}") for i in range(args.runs)]
            for i in range(args.runs):
                shutil.rmtree(Path(tmp) / f"home-{i}")
            walls = [r["wall_s"] for r in runs]
            lengths, ceiling = embedder_on(tree)
            rates = [r["tokens_per_s"] for r in runs]
            out["corpora"][name] = {
                "rs_files": len(files),
                "lines": lines,
                "wall_s_median": statistics.median(walls),
                "wall_s_runs": walls,
                "tokens": _distribution(lengths),
                "ceiling_same_texts_tokens_per_s": round(ceiling),
                "whole_run_vs_same_texts": round(statistics.median(rates) / ceiling, 3),
                "runs": runs,
            }
            print({name: {k: v for k, v in runs[-1].items() if k != "stages_s"}}, flush=True)
            shutil.rmtree(tree)
    out["machine_after"] = machine_state()
    save("cold", f"python -m bench cold {' '.join(args.corpora)} --runs {args.runs}", out)
    return out
