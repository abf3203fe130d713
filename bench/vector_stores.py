"""Embedded vector stores compared: qdrant-client's local mode against Qdrant Edge.

    python -m bench vectors [--points 50000 200000] [--queries 200]

Each (store, size) runs in its own process, so RSS is the store's own: random unit
vectors of 384 dims (seeded), upserted in batches of 256 with a `path` payload, then
query p50/p99 (top 50), the time to reopen the store from disk, RSS and on-disk size.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import REPO, dir_bytes, save, summary_ms

DIM = 384
BATCH = 256
STORES = ("edge", "client_local")


def _vectors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, DIM), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def _disk_mb(path: Path) -> float:
    return round(dir_bytes(path) / 2**20, 1)


def one(store: str, n: int, queries: int) -> dict[str, Any]:
    """Measure one store at one size in this process."""
    from daemon.metrics import rss_bytes
    from daemon.vectors import EdgeStore, VectorPoint

    data = _vectors(n, 1)
    probes = _vectors(queries, 2)
    tmp = Path(tempfile.mkdtemp(prefix="rcmd-vec-"))
    out: dict[str, Any] = {"store": store, "points": n}
    t = time.perf_counter()
    if store == "edge":
        s: Any = EdgeStore(tmp / "shard", DIM)

        def upsert(lo: int, hi: int) -> None:
            s.upsert(
                [
                    VectorPoint(f"{i:032x}", f"src/f{i // 20}.rs", "fn", data[i])
                    for i in range(lo, hi)
                ]
            )

        def query(v: np.ndarray) -> Any:
            return s.search(v, 50)

        def reopen() -> Any:
            s.close()
            return EdgeStore(tmp / "shard", DIM)
    else:
        from qdrant_client import QdrantClient, models

        client = QdrantClient(path=str(tmp / "local"))
        client.create_collection(
            "c", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE)
        )

        def upsert(lo: int, hi: int) -> None:
            client.upsert(
                "c",
                [
                    models.PointStruct(id=i, vector=data[i].tolist(), payload={"path": f"f{i}"})
                    for i in range(lo, hi)
                ],
            )

        def query(v: np.ndarray) -> Any:
            return client.query_points("c", query=v.tolist(), limit=50)

        def reopen() -> Any:
            nonlocal client
            client.close()
            client = QdrantClient(path=str(tmp / "local"))
            return client

    out["create_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    for lo in range(0, n, BATCH):
        upsert(lo, min(n, lo + BATCH))
    if store == "edge":
        s.flush()
    seconds = time.perf_counter() - t
    out["upsert_s"] = round(seconds, 1)
    out["upsert_points_per_s"] = round(n / seconds)
    t = time.perf_counter()
    reopened = reopen()
    out["reopen_s"] = round(time.perf_counter() - t, 2)
    if store == "edge":
        s = reopened
    times = []
    for v in probes:
        t = time.perf_counter()
        query(v)
        times.append(time.perf_counter() - t)
    out["query"] = summary_ms(times)
    out["rss_mb"] = rss_bytes() >> 20
    out["disk_mb"] = _disk_mb(tmp)
    return out


def run(args: Any) -> dict[str, Any]:
    results = []
    for n in args.points:
        for store in STORES:
            proc = subprocess.run(
                [sys.executable, "-m", "bench", "vectors", "--one", store, str(n)],
                capture_output=True,
                text=True,
                cwd=REPO,
            )
            if proc.returncode != 0:
                results.append({"store": store, "points": n, "error": proc.stderr[-800:]})
                continue
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), flush=True)
    out = {"results": results}
    points = " ".join(str(n) for n in args.points)
    save("vector-stores", f"python -m bench vectors --points {points}", out)
    return out
