"""The chunk cache (issue 20.3): a file's chunks are a pure function of its path, bytes
and the chunk policy, so a forced reindex parses nothing it has parsed before, gets the
same chunks, and the cache stays within its bound."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import daemon.chunk_cache
from daemon.chunk_cache import ChunkCache
from daemon.chunker import chunk_source
from daemon.merkle import hash_bytes
from daemon.pipeline import run_batch
from daemon.verify import verify_root

CRATE = Path(__file__).parent / "fixtures" / "demo_crate"

SOURCE = b"pub struct A;\nimpl A {\n    pub fn one(&self) -> u32 { 1 }\n}\n"


def test_round_trip_and_keys(tmp_path: Path, monkeypatch: Any) -> None:
    cache = ChunkCache(tmp_path / "chunks.db", 1 << 20)
    chunks = chunk_source("src/a.rs", SOURCE)
    cache.put("src/a.rs", b"h" * 32, chunks)
    assert cache.get("src/a.rs", b"h" * 32) == chunks
    assert cache.get("src/b.rs", b"h" * 32) is None  # the path names the module
    monkeypatch.setattr(daemon.chunk_cache, "CHUNK_POLICY_VERSION", 999)
    assert cache.get("src/a.rs", b"h" * 32) is None  # another policy cuts differently
    assert (cache.hits, cache.misses) == (1, 2)
    cache.close()


def test_prune_keeps_the_newest_within_the_bound(tmp_path: Path) -> None:
    cache = ChunkCache(tmp_path / "chunks.db", 0)
    chunks = chunk_source("src/a.rs", SOURCE)
    for i in range(20):
        cache.put(f"src/m{i}.rs", b"h" * 32, chunks)
    one = cache.size() // 20
    cache.close()
    cache = ChunkCache(tmp_path / "chunks.db", 5 * one)  # room for five entries
    assert cache.prune() == 15 and cache.size() <= 5 * one
    assert cache.get("src/m19.rs", b"h" * 32) is not None  # the newest stay
    assert cache.get("src/m0.rs", b"h" * 32) is None
    cache.close()


def test_forced_reindex_parses_nothing_known(setup: Any) -> None:
    _crate, collab, open_root = setup
    chunks = ChunkCache(collab.config.paths.cache_dir / "chunks.db", 1 << 20)
    collab = dataclasses.replace(collab, chunk_cache=chunks)
    root = open_root()
    try:
        first = run_batch(root, None, collab)
        rows = root.state.chunk_ids_by_path()
        again = run_batch(root, None, collab, force=True)
        assert first.files_parsed == first.indexed > 0 and first.chunk_cache_hits == 0
        assert again.files_parsed == 0 and again.chunk_cache_hits == again.indexed
        assert root.state.chunk_ids_by_path() == rows and verify_root(root)["ok"]
    finally:
        chunks.close()


def test_a_files_symbol_graph_is_cached_by_content(tmp_path: Path) -> None:
    """The graph round-trips through the cache unchanged, under a key of its own."""
    from daemon.graph import graph_of
    from daemon.graph_rows import rows_of

    src = (CRATE / "src" / "net" / "retry.rs").read_bytes()
    graph = graph_of("src/net/retry.rs", src)
    assert graph.defs and graph.refs
    cache = ChunkCache(tmp_path / "chunks.db", 1 << 20)
    digest = hash_bytes(src)
    assert cache.get_graph("src/net/retry.rs", digest) is None
    rows = rows_of(graph)
    cache.put_graph("src/net/retry.rs", digest, rows)
    got = cache.get_graph("src/net/retry.rs", digest)
    assert got is not None
    assert [[tuple(r) for r in table] for table in got] == [list(map(tuple, t)) for t in rows]
    assert cache.get("src/net/retry.rs", digest) is None  # not mistaken for chunks
    assert cache.get_graph("src/net/other.rs", digest) is None
