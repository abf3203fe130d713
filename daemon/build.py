"""`rcmd build ROOT -o FILE [--cluster ADDRESS]`: a snapshot made without a daemon.

A CI job or a build machine indexes a tree once, with the embedding spread over a Ray
cluster when an address is given, and hands the file to everyone (`rcmd index PATH
--from FILE`). The index is built in a temporary RCMD_HOME by the same pipeline the
daemon runs (one writer: this process) and written in the snapshot format of
`daemon/snapshot.py`; only the model's rewritten graph is kept in the user's cache, so
the next build does not rebuild it.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import structlog

from daemon.chunk_cache import ChunkCache
from daemon.config import load_config
from daemon.embed_cache import EmbedCache
from daemon.embedder import Embedder, TextEmbedder
from daemon.gitinfo import checkout_of
from daemon.pipeline import Collaborators, fill_vectors, run_batch
from daemon.root import RootIndex
from daemon.snapshot import check_export_target, pack, stage_export
from ipc.errors import NotFound

log = structlog.get_logger("rcmd.build")

#: Longest a build waits for the cluster's actors before it embeds locally.
CONNECT_TIMEOUT_S = 300.0
CHUNK_CACHE_BYTES = 256 << 20


def _embedder(local: Embedder, address: str, cluster_cfg: Any) -> TextEmbedder:
    """The local model, or the cluster's pool once it is connected (or has failed: then
    the build goes on locally and says so)."""
    if not address:
        return local
    from daemon.cluster import ClusterEmbedder

    cluster = ClusterEmbedder(local, cluster_cfg)
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while time.monotonic() < deadline:
        status = cluster.cluster_status()
        if status["state"] == "connected" or status.get("reason") != "connecting":
            break
        time.sleep(0.2)
    return cluster


def build_snapshot(root_path: Path, out: Path, address: str = "") -> dict[str, Any]:
    """Index `root_path` from scratch and write its snapshot to `out`."""
    if not root_path.is_dir():
        raise NotFound(f"{root_path} is not a directory")
    check_export_target(out)
    model_cache = load_config().paths.cache_dir
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rcmd-build-") as tmp:
        env = {**os.environ, "RCMD_HOME": tmp, "RCMD_CLUSTER_ADDRESS": address}
        config = load_config(env)
        config.paths.cache_dir.mkdir(parents=True, exist_ok=True)
        model_cache.mkdir(parents=True, exist_ok=True)
        local = Embedder(config.embedding, model_cache)
        embedder = _embedder(local, address, config.cluster)
        cache = EmbedCache(config.paths.embed_cache)
        chunks = ChunkCache(config.paths.cache_dir / "chunks.db", CHUNK_CACHE_BYTES)
        root = RootIndex(root_path, config, embedder.model_id, embedder.dim)
        try:
            collab = Collaborators(config, embedder, cache, chunk_cache=chunks)
            report = run_batch(root, None, collab)
            fill_vectors(root, collab, lambda: False)
            stage = Path(tmp) / "stage"
            stage.mkdir()
            checkout = checkout_of(root_path)
            model = (embedder.model_id, embedder.dim)
            manifest = stage_export(root, stage, model, chunks, checkout.head if checkout else None)
            size = pack(stage, out)
            cluster = embedder.cluster_status()
        finally:
            root.close()
            cache.close()
            chunks.close()
            embedder.close()
    log.info("snapshot_built", root=str(root_path), file=str(out), bytes=size)
    return {
        "root": str(root_path),
        "file": str(out),
        "bytes": size,
        "files": len(manifest.files),
        "chunks": report.chunks,
        "cluster": cluster,
        "seconds": round(time.perf_counter() - t, 3),
    }
