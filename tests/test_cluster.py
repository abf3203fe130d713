"""Embedding on a real Ray cluster (a head and a worker node on this machine, started by
`ray start`): the index is complete, the vectors equal local ones and the cache records
them; a worker killed mid-batch costs a retry, nothing else; an unreachable cluster
falls back to the local model and says so."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from daemon.chunker import chunk_source
from daemon.embed_cache import EmbedCache, cache_key
from daemon.embed_groups import EmbedPolicy, embedded_texts
from tests.conftest import NEEDS, Daemon, skip_or_fail, wait_until, write_new_code
from tests.ray_cluster import CLIENT_ENV, LocalRayCluster, free_port, ray_available

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[LocalRayCluster]:
    """Two nodes of one CPU each: the daemon's pool gets two actors, one per node."""
    if not ray_available():
        skip_or_fail(f"{NEEDS}Ray (pip install 'rcmd[cluster]')")
    cluster = LocalRayCluster(cpus=1)
    try:
        yield cluster.start(nodes=2)
    finally:
        cluster.stop()
    assert cluster.session_pids() == []


def cluster_daemon(home: Path, address: str, **env: str) -> Daemon:
    d = Daemon(home, RCMD_CLUSTER_ADDRESS=address, **CLIENT_ENV, **env)
    d.start()
    return d


def connected(d: Daemon) -> dict[str, Any]:
    cluster: dict[str, Any] = wait_until(
        lambda: (c := d.call("status")["cluster"])["state"] == "connected" and c, timeout=240
    )
    return cluster


def texts_of(tree: Path) -> list[str]:
    texts = []
    for path in sorted(tree.rglob("*.rs")):
        rel = path.relative_to(tree).as_posix()
        texts += embedded_texts(chunk_source(rel, path.read_bytes()), EmbedPolicy())
    return texts


def assert_cached_like_local(home: Path, tree: Path, embedder: Any) -> int:
    """Every chunk of `tree` has a cached vector, at cosine >= 0.999 to the local one."""
    texts = sorted(set(texts_of(tree)))
    cache = EmbedCache(home / "cache" / "embeddings.db")
    try:
        found = cache.get_many([cache_key(embedder.model_id, t) for t in texts], embedder.dim)
    finally:
        cache.close()
    assert len(found) == len(texts)
    local = np.stack(embedder.embed(texts))
    remote = np.stack([found[cache_key(embedder.model_id, t)] for t in texts])
    cosines = (local * remote).sum(axis=1) / np.linalg.norm(remote, axis=1)
    assert cosines.min() >= 0.999
    return len(texts)


def test_index_through_the_cluster(
    ray_cluster: LocalRayCluster, crate: Path, tmp_path: Path, embedder: Any
) -> None:
    d = cluster_daemon(tmp_path / "home", ray_cluster.address)
    try:
        assert connected(d)["workers"] == 2
        d.cli("index", str(crate), "--wait")
        status = d.call("status")
        (root,) = status["roots"]
        assert root["vectors_pending"] == 0
        # Every text the model ran went through the cluster (chunks sharing a vector
        # are embedded as one text: daemon/embed_groups.py).
        assert status["cluster"]["chunks_embedded"] == status["embedding"]["texts_embedded"] > 0
        assert d.verify()["ok"]
        assert d.search("retry failed http requests")
        assert f"cluster {ray_cluster.address}: connected (2 workers)" in d.cli("status").stdout
    finally:
        d.stop()
        d.kill()
    assert assert_cached_like_local(tmp_path / "home", crate, embedder) > 0


def test_a_worker_killed_mid_batch(
    ray_cluster: LocalRayCluster, tmp_path: Path, embedder: Any
) -> None:
    tree = tmp_path / "tree"
    write_new_code(tree / "src", "killed", files=30, fns=10)
    d = cluster_daemon(tmp_path / "home", ray_cluster.address, RCMD_CLUSTER_BATCH_SIZE="8")
    try:
        connected(d)
        d.cli("index", str(tree))
        busy = wait_until(lambda: ray_cluster.worker_pids("ray::EmbedWorker.embed"), timeout=120)
        os.kill(busy[0], signal.SIGKILL)
        d.wait_idle(tree, timeout=600)
        status = d.call("status")
        assert status["cluster"]["retried_batches"] >= 1
        assert status["cluster"]["state"] == "connected"
        (root,) = status["roots"]
        assert root["vectors_pending"] == 0 and root["files"] == 30
        assert d.verify()["ok"]
    finally:
        d.stop()
        d.kill()
    assert assert_cached_like_local(tmp_path / "home", tree, embedder) == 300


def test_an_unreachable_cluster_falls_back_to_the_local_model(crate: Path, tmp_path: Path) -> None:
    if not ray_available():
        skip_or_fail(f"{NEEDS}Ray (pip install 'rcmd[cluster]')")
    d = cluster_daemon(tmp_path / "home", f"127.0.0.1:{free_port()}")
    try:
        cluster = wait_until(
            lambda: (c := d.call("status")["cluster"])["reason"] != "connecting" and c
        )
        assert cluster["state"] == "local-fallback" and "cannot reach" in cluster["reason"]
        d.cli("index", str(crate), "--wait")
        status = d.call("status")
        assert status["roots"][0]["vectors_pending"] == 0
        assert status["cluster"]["chunks_embedded"] == 0
        assert status["embedding"]["cache_misses"] > 0
    finally:
        d.stop()
        d.kill()


def test_a_lost_cluster_falls_back_and_is_joined_again(
    crate: Path, tmp_path: Path, embedder: Any
) -> None:
    """The cluster stops under a connected daemon: its work is embedded locally, status
    says so; once the cluster is back at the address, the daemon joins it again."""
    if not ray_available():
        skip_or_fail(f"{NEEDS}Ray (pip install 'rcmd[cluster]')")
    first = LocalRayCluster().start(nodes=1)
    again: LocalRayCluster | None = None
    d = cluster_daemon(tmp_path / "home", first.address, RCMD_CLUSTER_RECONNECT_S="1")
    try:
        connected(d)
        first.stop()
        d.cli("index", str(crate), "--wait")
        status = d.call("status")
        assert status["cluster"]["state"] == "local-fallback"
        assert status["roots"][0]["vectors_pending"] == 0
        again = LocalRayCluster(port=first.port).start(nodes=1)
        tree = tmp_path / "tree"
        write_new_code(tree / "src", "rejoined", files=2, fns=4)
        connected(d)
        d.cli("index", str(tree), "--wait")
        assert d.call("status")["cluster"]["chunks_embedded"] == 8
    finally:
        d.stop()
        d.kill()
        first.stop()
        if again is not None:
            again.stop()
    assert_cached_like_local(tmp_path / "home", crate, embedder)
    assert assert_cached_like_local(tmp_path / "home", tree, embedder) == 8


def test_build_a_snapshot_on_the_cluster(
    ray_cluster: LocalRayCluster, crate: Path, tmp_path: Path
) -> None:
    """`rcmd build --cluster`: the chunks are embedded by the cluster's actors, and a
    daemon adopting the file has nothing left to embed."""
    from tests.test_build import build_and_adopt

    build_and_adopt(crate, tmp_path, "--cluster", ray_cluster.address, **CLIENT_ENV)
