"""Embedding throughput: the daemon's local model against a Ray cluster of 1 and 2 nodes.

    python -m bench cluster [--chunks 384] [--corpus small]

The same chunk texts go through:

- `local`: the daemon's embedder as configured (one thread per core);
- `local_1_thread`: the same with one thread, the compute one actor has;
- `ray_1_node` / `ray_2_nodes`: `ClusterEmbedder` on a real cluster started here
  (`ray start`, one CPU per node, so one actor per node), batches of 32, 2 in flight.

On one machine the nodes share its cores, so 2 nodes cannot beat local: what this
measures is the cost Ray adds. `overhead_ms_per_chunk` is ray_1_node's time per chunk
less local_1_thread's (same compute, plus the round trips and serialisation);
`driver_cpu_ms_per_chunk` is the CPU the daemon's process spends per chunk sent, which
bounds how many workers one daemon can feed. `projection` gives chunks/s for N workers
on separate machines: min(N × one actor's rate, 1 / driver CPU per chunk).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.embedding import sample_texts
from bench.harness import save


def _timed(embed: Any, texts: list[str]) -> tuple[float, float, Any]:
    cpu, t = time.process_time(), time.perf_counter()
    vectors = np.stack(embed(texts))
    return time.perf_counter() - t, time.process_time() - cpu, vectors


def _through_cluster(nodes: int, local: Any, texts: list[str]) -> dict[str, Any]:
    from daemon.cluster import ClusterEmbedder
    from daemon.config import ClusterConfig
    from tests.ray_cluster import CLIENT_ENV, LocalRayCluster

    os.environ.update(CLIENT_ENV)  # this process is the cluster's client (the daemon)
    cluster = LocalRayCluster(cpus=1).start(nodes=nodes)
    embedder = ClusterEmbedder(local, ClusterConfig(address=cluster.address))
    try:
        deadline = time.monotonic() + 300
        while embedder.cluster_status()["state"] != "connected":
            if time.monotonic() > deadline or embedder.cluster_status()["reason"] != "connecting":
                raise RuntimeError(f"no cluster: {embedder.cluster_status()}")
            time.sleep(0.2)
        embedder.embed(texts[:64])  # each actor's session warm
        wall, cpu, vectors = _timed(embedder.embed, texts)
        if embedder.cluster_status()["chunks_embedded"] != 64 + len(texts):
            raise RuntimeError(f"the cluster fell back: {embedder.cluster_status()}")
    finally:
        embedder.close()
        cluster.stop()
    return {"wall_s": wall, "driver_cpu_s": cpu, "vectors": vectors}


def run(args: Any) -> dict[str, Any]:
    from daemon.config import EmbeddingConfig
    from daemon.embedder import Embedder

    texts = sample_texts(args.corpus, args.chunks)
    n = len(texts)
    out: dict[str, Any] = {"chunks": n, "corpus": args.corpus}
    with tempfile.TemporaryDirectory() as tmp:
        local = Embedder(EmbeddingConfig(), Path(tmp))
        single = Embedder(EmbeddingConfig(threads=1), Path(tmp))
        for model in (local, single):
            model.embed(texts[:8])
        runs = {
            "local": _timed(local.embed, texts),
            "local_1_thread": _timed(single.embed, texts),
        }
        reference = runs["local"][2]
        for nodes, name in ((1, "ray_1_node"), (2, "ray_2_nodes")):
            got = _through_cluster(nodes, local, texts)
            runs[name] = (got["wall_s"], got["driver_cpu_s"], got["vectors"])
    for name, (wall, cpu, vectors) in runs.items():
        out[name] = {
            "wall_s": round(wall, 2),
            "chunks_per_s": round(n / wall, 1),
            "driver_cpu_ms_per_chunk": round(1000 * cpu / n, 2),
            "min_cosine_to_local": round(float((vectors * reference).sum(axis=1).min()), 5),
        }
    overhead = (runs["ray_1_node"][0] - runs["local_1_thread"][0]) / n
    out["overhead_ms_per_chunk"] = round(1000 * overhead, 2)
    actor_rate = n / runs["ray_1_node"][0]
    driver_cpu = max(runs["ray_2_nodes"][1] / n, 1e-6)
    out["projection"] = {
        str(workers): round(min(workers * actor_rate, 1 / driver_cpu), 1)
        for workers in (1, 2, 4, 8, 16, 32)
    }
    out["projection_ceiling_chunks_per_s"] = round(1 / driver_cpu, 1)
    save("cluster", f"python -m bench cluster --chunks {args.chunks} --corpus {args.corpus}", out)
    return out
