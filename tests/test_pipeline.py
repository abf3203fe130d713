"""The batch pipeline with real Tantivy, Qdrant Edge, fastembed and apsw (no daemon)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from daemon.config import load_config
from daemon.embed_cache import EmbedCache
from daemon.pipeline import Collaborators, run_batch
from daemon.root import RootIndex
from daemon.search import search_roots
from daemon.verify import verify_root
from tests.conftest import seed_cache


@pytest.fixture
def setup(crate: Path, tmp_path: Path, embedder: Any, warm_cache: Path) -> Any:
    config = load_config({"RCMD_HOME": str(tmp_path / "home")})
    seed_cache(tmp_path / "home", warm_cache)
    cache = EmbedCache(config.paths.embed_cache)
    collab = Collaborators(config, embedder, cache)
    roots: list[RootIndex] = []

    def open_root() -> RootIndex:
        root = RootIndex(crate.resolve(), config, embedder.dim)
        roots.append(root)
        return root

    yield crate, collab, open_root
    for r in roots:
        r.close()
    cache.close()


def search(root: RootIndex, collab: Collaborators, query: str, mode: str = "hybrid") -> list[str]:
    hits = search_roots(
        [root],
        query,
        mode=mode,
        limit=10,
        candidates=50,
        rrf_k=60,
        embed_query=collab.embedder.embed_query,
    )
    return [f"{h.path}:{h.symbol}" for h in hits]


def test_index_search_and_verify(setup: Any) -> None:
    crate, collab, open_root = setup
    root = open_root()
    report = run_batch(root, None, collab)
    n_files = sum(1 for _ in crate.rglob("*.rs"))
    assert report.indexed == n_files
    assert report.chunks > n_files
    assert verify_root(root)["ok"], verify_root(root)["problems"]
    assert search(root, collab, "retry failed http requests with backoff")[0].startswith(
        "src/net/retry.rs"
    )
    assert any(
        "fetch_with_retry" in h for h in search(root, collab, "fetch_with_retry", "bm25")[:3]
    )
    assert search(root, collab, "exponential backoff between attempts", "vector")


def test_second_run_reads_nothing(setup: Any) -> None:
    _crate, collab, open_root = setup
    root = open_root()
    run_batch(root, None, collab)
    again = run_batch(root, None, collab)
    assert again.read == 0 and again.indexed == 0 and again.unchanged == again.statted


def test_touch_without_change_rehashes_but_does_not_reindex(setup: Any) -> None:
    crate, collab, open_root = setup
    root = open_root()
    run_batch(root, None, collab)
    lib = crate / "src" / "lib.rs"
    os.utime(lib, ns=(1, 1))
    report = run_batch(root, ["src/lib.rs"], collab)
    assert report.read == 1 and report.indexed == 0
    assert verify_root(root)["ok"]


def test_change_delete_rename_follow(setup: Any) -> None:
    crate, collab, open_root = setup
    root = open_root()
    run_batch(root, None, collab)
    store = crate / "src" / "store.rs"
    store.write_text(store.read_text() + "\npub fn zanzibar_quokka() -> u8 { 7 }\n")
    run_batch(root, ["src/store.rs"], collab)
    assert (
        search(root, collab, "zanzibar_quokka", "bm25")[0] == "src/store.rs:store::zanzibar_quokka"
    )

    (crate / "src" / "net").rename(crate / "src" / "web")
    run_batch(root, ["src/net", "src/web"], collab)
    hits = search(root, collab, "fetch_with_retry", "bm25")
    assert hits and all(h.startswith("src/web/") for h in hits if "retry" in h)
    assert not any(h.startswith("src/net/") for h in hits)

    store.unlink()
    run_batch(root, ["src/store.rs"], collab)
    assert not search(root, collab, "zanzibar_quokka", "bm25")
    assert verify_root(root)["ok"], verify_root(root)["problems"]


def test_cold_index_embeds_and_forced_rebuild_hits_the_cache(
    crate: Path, tmp_path: Path, embedder: Any
) -> None:
    config = load_config({"RCMD_HOME": str(tmp_path / "cold")})
    config.paths.cache_dir.mkdir(parents=True)
    cache = EmbedCache(config.paths.embed_cache)
    collab = Collaborators(config, embedder, cache)
    root = RootIndex(crate.resolve(), config, embedder.dim)
    first = run_batch(root, None, collab)
    assert first.cache_misses > 0 and first.cache_hits == 0
    again = run_batch(root, None, collab, force=True)
    assert again.indexed == first.indexed
    assert again.cache_misses == 0 and again.cache_hits == first.chunks
    assert verify_root(root)["ok"]
    root.close()
    cache.close()


def test_state_survives_reopen(setup: Any) -> None:
    _crate, collab, open_root = setup
    root = open_root()
    run_batch(root, None, collab)
    files, chunks = root.state.counts()
    merkle = root.tree.root_hash
    root.close()
    reopened = open_root()
    assert reopened.state.counts() == (files, chunks)
    assert reopened.tree.root_hash == merkle
    assert run_batch(reopened, None, collab).read == 0
    assert verify_root(reopened)["ok"]


def test_inflight_paths_are_redone(setup: Any) -> None:
    """A crash after the in-flight mark and before the record: the path is redone."""
    _crate, collab, open_root = setup
    root = open_root()
    run_batch(root, None, collab)
    root.state.mark_inflight(["src/lib.rs"])
    report = run_batch(root, None, collab)
    assert report.read == 1
    assert not root.state.inflight()


def test_bad_files_are_skipped_and_reported(setup: Any) -> None:
    crate, collab, open_root = setup
    (crate / "src" / "blob.rs").write_bytes(b"\x00\x01\x02binary")
    (crate / "src" / "huge.rs").write_text("// x\n" * 300_000)
    (crate / "src" / "latin1.rs").write_bytes(b"fn caf\xe9() {}\n")
    (crate / "src" / "empty.rs").write_text("")
    root = open_root()
    report = run_batch(root, None, collab)
    reasons = {p: r for p, r, _d in root.state.skipped()}
    assert reasons == {"src/blob.rs": "binary", "src/huge.rs": "too_large"}
    assert report.skipped == 2
    assert verify_root(root)["ok"], verify_root(root)["problems"]
    (crate / "src" / "blob.rs").write_text("pub fn now_fine() {}\n")
    run_batch(root, ["src/blob.rs"], collab)
    assert {p for p, _r, _d in root.state.skipped()} == {"src/huge.rs"}


def test_indexer_vacuums_when_garbage_passes_the_threshold(setup: Any) -> None:
    from daemon.indexer import VACUUM_MIN_POINTS, Indexer

    _crate, collab, open_root = setup
    root = open_root()
    run_batch(root, None, collab)
    indexer = Indexer(collab)
    forced = run_batch(root, None, collab, force=True)
    assert forced.points_dropped == root.state.counts()[1]
    indexer._maybe_vacuum(root, forced.points_dropped)
    assert root.vacuums == 0  # a small crate stays under the minimum
    indexer._maybe_vacuum(root, VACUUM_MIN_POINTS)
    assert root.vacuums == 1
    assert root.state.get_meta("vector_garbage") == "0"
    assert verify_root(root)["ok"]
    assert search(root, collab, "exponential backoff between attempts", "vector")
