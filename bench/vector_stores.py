"""Embedded vector stores compared: qdrant-client's local mode against Qdrant Edge.

    python -m bench vectors [--points 50000 200000] [--queries 200]

Each (store, size) runs in its own process, so RSS is the store's own: random unit
vectors of 384 dims (seeded), upserted in batches of 256 with a `path` payload, then
query p50/p99 (top 50), the time to reopen the store from disk, RSS and on-disk size.
"""

from __future__ import annotations

import json
import shutil
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


class _Edge:
    """Qdrant Edge through rcmd's own wrapper, as the daemon writes it."""

    def __init__(self, path: Path) -> None:
        from daemon.vectors import EdgeStore

        self.path, self.store = path, EdgeStore(path, DIM)

    def upsert(self, data: np.ndarray, lo: int, hi: int) -> None:
        from daemon.vectors import VectorPoint

        self.store.upsert(
            [VectorPoint(f"{i:032x}", f"src/f{i // 20}.rs", "fn", data[i]) for i in range(lo, hi)]
        )

    def flush(self) -> None:
        self.store.flush()

    def query(self, v: np.ndarray) -> Any:
        return self.store.search(v, 50)

    def reopen(self) -> None:
        from daemon.vectors import EdgeStore

        self.store.close()
        self.store = EdgeStore(self.path, DIM)


class _ClientLocal:
    """qdrant-client's local (in-process) mode, one collection."""

    def __init__(self, path: Path) -> None:
        from qdrant_client import QdrantClient, models

        self.path, self.client = path, QdrantClient(path=str(path))
        self.client.create_collection(
            "c", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE)
        )

    def upsert(self, data: np.ndarray, lo: int, hi: int) -> None:
        from qdrant_client import models

        self.client.upsert(
            "c",
            [
                models.PointStruct(id=i, vector=data[i].tolist(), payload={"path": f"f{i}"})
                for i in range(lo, hi)
            ],
        )

    def flush(self) -> None:
        """Local mode writes through; nothing to flush."""

    def query(self, v: np.ndarray) -> Any:
        return self.client.query_points("c", query=v.tolist(), limit=50)

    def reopen(self) -> None:
        from qdrant_client import QdrantClient

        self.client.close()
        self.client = QdrantClient(path=str(self.path))


def one(store: str, n: int, queries: int) -> dict[str, Any]:
    """Measure one store at one size in this process."""
    from daemon.metrics import rss_bytes

    data = _vectors(n, 1)
    probes = _vectors(queries, 2)
    tmp = Path(tempfile.mkdtemp(prefix="rcmd-vec-"))
    out: dict[str, Any] = {"store": store, "points": n}
    t = time.perf_counter()
    s: _Edge | _ClientLocal = (
        _Edge(tmp / "shard") if store == "edge" else _ClientLocal(tmp / "local")
    )
    out["create_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    for lo in range(0, n, BATCH):
        s.upsert(data, lo, min(n, lo + BATCH))
    s.flush()
    seconds = time.perf_counter() - t
    out["upsert_s"] = round(seconds, 1)
    out["upsert_points_per_s"] = round(n / seconds)
    t = time.perf_counter()
    s.reopen()
    out["reopen_s"] = round(time.perf_counter() - t, 2)
    times = []
    for v in probes:
        t = time.perf_counter()
        s.query(v)
        times.append(time.perf_counter() - t)
    out["query"] = summary_ms(times)
    out["rss_mb"] = rss_bytes() >> 20
    out["disk_mb"] = _disk_mb(tmp)
    shutil.rmtree(tmp, ignore_errors=True)
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
