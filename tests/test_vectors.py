"""The embedded Qdrant Edge store, for real: ids, deletes, persistence, vacuum."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daemon.vectors import EdgeStore, VectorPoint, chunk_id_of, point_id


def points(n: int, paths: int, seed: int = 0) -> list[VectorPoint]:
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return [VectorPoint(f"{i + 1:032x}", f"src/f{i % paths}.rs", "fn", vecs[i]) for i in range(n)]


def test_point_ids_roundtrip() -> None:
    cid = "0123456789abcdef0123456789abcdef"
    assert chunk_id_of(point_id(cid)) == cid


def test_upsert_is_idempotent_and_delete_by_path(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path / "q", 16)
    pts = points(40, 4)
    store.upsert(pts)
    store.upsert(pts)  # a replayed batch overwrites
    assert store.count() == 40
    store.delete_paths(["src/f0.rs"])
    by_path = store.ids_by_path()
    assert set(by_path) == {"src/f1.rs", "src/f2.rs", "src/f3.rs"}
    assert sum(len(v) for v in by_path.values()) == 30
    hits = store.search(pts[1].vector, 3)
    assert hits[0][0] == pts[1].chunk_id
    store.close()
    reopened = EdgeStore(tmp_path / "q", 16)
    assert reopened.count() == 30
    reopened.close()


def test_vacuum_keeps_live_points_and_search(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path / "q", 16)
    pts = points(1500, 75)
    store.upsert(pts)
    for _ in range(2):  # every file rewritten twice: 3000 deleted points
        paths = sorted({p.path for p in pts})
        store.delete_paths(paths)
        store.upsert(pts)
    before = store.ids_by_path()
    seconds = store.vacuum()
    assert seconds > 0
    assert store.ids_by_path() == before
    assert store.count() == 1500
    assert store.search(pts[7].vector, 1)[0][0] == pts[7].chunk_id
    store.close()


@pytest.mark.filterwarnings("ignore:Payload indexes have no effect")
def test_server_store_through_qdrant_client() -> None:
    """The qdrant-client code path, against qdrant-client's in-process engine (no server)."""
    from daemon.config import VectorStoreConfig
    from daemon.vectors import ServerStore

    store = ServerStore(VectorStoreConfig(url=":memory:"), "abcd", 16)
    assert store.collection == "rcmd_abcd"
    pts = points(40, 4)
    store.upsert(pts)
    store.upsert(pts)
    assert store.count() == 40
    store.delete_paths(["src/f0.rs"])
    assert set(store.ids_by_path()) == {"src/f1.rs", "src/f2.rs", "src/f3.rs"}
    assert store.search(pts[1].vector, 3)[0][0] == pts[1].chunk_id
    store.delete_all()
    assert store.count() == 0
    assert store.vacuum() == 0.0
    store.close()


@pytest.mark.filterwarnings("ignore:Payload indexes have no effect")
def test_dump_gives_every_vector_of_both_stores(tmp_path: Path) -> None:
    """What a snapshot reads out: every id with its vector (float16 in both stores)."""
    from daemon.config import VectorStoreConfig
    from daemon.vectors import ServerStore

    pts = points(1234, 7)  # more than one page
    for store in (
        EdgeStore(tmp_path / "q", 16),
        ServerStore(VectorStoreConfig(url=":memory:"), "dump", 16),
    ):
        store.upsert(pts)
        dumped = dict(store.dump())
        assert set(dumped) == {p.chunk_id for p in pts}
        for p in pts[:50]:
            assert np.allclose(dumped[p.chunk_id], p.vector, atol=2e-3)
        store.close()


def test_delete_single_chunks_and_flush_only_after_writes(tmp_path: Path) -> None:
    """An edit deletes chunks by id; a step that wrote nothing flushes nothing, and
    what was written survives a reopen."""
    from daemon.config import VectorStoreConfig
    from daemon.vectors import ServerStore

    pts = points(6, 2)
    for store in (
        EdgeStore(tmp_path / "q", 16),
        ServerStore(VectorStoreConfig(url=":memory:"), "r", 16),
    ):
        store.upsert(pts)
        store.flush()
        store.delete_ids([pts[0].chunk_id, pts[3].chunk_id])
        store.delete_ids([])
        store.flush()
        store.flush()  # nothing new: a no-op
        by_path = store.ids_by_path()
        assert by_path == {
            "src/f0.rs": {pts[2].chunk_id, pts[4].chunk_id},
            "src/f1.rs": {pts[1].chunk_id, pts[5].chunk_id},
        }
        store.close()
    reopened = EdgeStore(tmp_path / "q", 16)
    assert reopened.count() == 4
    reopened.close()


def test_each_shard_keeps_few_threads_and_little_memory(tmp_path: Path) -> None:
    """Qdrant Edge's defaults are 8 search threads a shard and a 32 MB storage chunk loaded
    into memory with it; a root per dependency crate made that hundreds of idle threads
    and a gigabyte of RSS after a restart."""
    import os

    from daemon.vectors import SEARCH_THREADS, EdgeStore

    if not Path("/proc/self/task").is_dir():
        pytest.skip("counts threads and RSS through /proc (Linux)")

    def threads() -> int:
        return len(os.listdir("/proc/self/task"))

    def rss_file_mb() -> int:
        line = next(
            ln
            for ln in Path("/proc/self/status").read_text().splitlines()
            if ln.startswith("RssFile")
        )
        return int(line.split()[1]) // 1024

    for i in range(4):
        store = EdgeStore(tmp_path / f"s{i}", 16)
        store.upsert(points(50, 1, seed=i))
        store.flush()
        store.close()
    before_threads, before_rss = threads(), rss_file_mb()
    stores = [EdgeStore(tmp_path / f"s{i}", 16) for i in range(4)]
    assert threads() - before_threads <= 4 * SEARCH_THREADS
    assert rss_file_mb() - before_rss < 32  # not 4 x 32 MB
    assert len(stores[0].search(points(1, 1, seed=9)[0].vector, 5)) == 5
    for s in stores:
        s.close()
