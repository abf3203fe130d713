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

`status_during_index` (issue 22.2, "status p99 as today"): a daemon cold-indexes
`--status-corpus` with local embedding, then another one (fresh home, no cache) through
a 2-node cluster, while this process asks `status` every 50 ms; the latencies of both
are reported side by side.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.corpora import materialize
from bench.embedding import sample_texts
from bench.harness import BenchDaemon, save, summary_ms, wait_for


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


def _status_while_indexing(home: Path, tree: Path, env: dict[str, str]) -> dict[str, Any]:
    """Cold index of `tree` by a daemon in `home`; `status` latencies until it is idle."""
    d = BenchDaemon(home, env)
    d.start()
    try:
        if env:  # the pool connected (each actor's model loaded) before the clock starts
            wait_for(lambda: d.status()["cluster"]["state"] == "connected", timeout=300)
        t = time.perf_counter()
        d.call("index", path=str(tree))
        latencies: list[float] = []
        while True:
            s = time.perf_counter()
            root = d.root_status(tree)
            latencies.append(time.perf_counter() - s)
            if root["idle"] and root["counters"]["batches"] >= 1:
                break
            time.sleep(0.05)
        wall = time.perf_counter() - t
        cluster = d.status().get("cluster") or {}
    finally:
        d.stop()
    return {
        "index_wall_s": round(wall, 1),
        "chunks": root["chunks"],
        "cluster_chunks_embedded": cluster.get("chunks_embedded", 0),
        "status": summary_ms(latencies),
    }


def status_during_index(corpus: str, runs: int) -> dict[str, Any]:
    """`runs` rounds of (local, 2-node cluster) cold indexes, each in a fresh home."""
    from tests.ray_cluster import CLIENT_ENV, LocalRayCluster

    rounds: dict[str, list[dict[str, Any]]] = {"local": [], "ray_2_nodes": []}
    with tempfile.TemporaryDirectory(prefix="rcmd-bench-cluster-") as tmp:
        work = Path(tmp)
        tree = materialize(corpus, work / "tree").resolve()
        cluster = LocalRayCluster(cpus=1).start(nodes=2)
        try:
            env = {"RCMD_CLUSTER_ADDRESS": cluster.address, **CLIENT_ENV}
            for i in range(runs):
                rounds["local"].append(_status_while_indexing(work / f"l{i}", tree, {}))
                rounds["ray_2_nodes"].append(_status_while_indexing(work / f"r{i}", tree, env))
        finally:
            cluster.stop()
    for one in rounds["ray_2_nodes"]:
        if one["cluster_chunks_embedded"] < one["chunks"]:
            raise RuntimeError(f"the cluster did not embed the corpus: {one}")
    out: dict[str, Any] = {"corpus": corpus, "runs": runs}
    for name, got in rounds.items():
        p99s = [r["status"]["p99_ms"] for r in got]
        out[name] = {
            "status_p99_ms_median": statistics.median(p99s),
            "status_p99_ms_runs": p99s,
            "status_p50_ms_median": statistics.median(r["status"]["p50_ms"] for r in got),
            "index_wall_s_median": statistics.median(r["index_wall_s"] for r in got),
            "rounds": got,
        }
    return out


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
    out["status_during_index"] = status_during_index(args.status_corpus, args.status_runs)
    out["load_1min_after"] = os.getloadavg()[0]
    command = f"python -m bench cluster --chunks {args.chunks} --corpus {args.corpus}"
    flags = f"--status-corpus {args.status_corpus} --status-runs {args.status_runs}"
    save("cluster", f"{command} {flags}", out)
    return out
