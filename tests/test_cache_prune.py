"""The embedding and chunk caches are pruned by age and size (issue 20.4): real apsw
databases, a settable clock instead of waiting."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from daemon.chunk_cache import ChunkCache
from daemon.chunker import chunk_source
from daemon.embed_cache import ROW_OVERHEAD, TOUCH_EVERY_S, EmbedCache
from daemon.indexer import Indexer

DAY = 86_400.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000_000.0

    def __call__(self) -> float:
        return self.now


def _vectors(n: int, start: int = 0) -> dict[bytes, Any]:
    return {i.to_bytes(16, "big"): np.full(8, i, dtype=np.float32) for i in range(start, n)}


def test_embedding_cache_drops_rows_unused_for_max_age(tmp_path: Path) -> None:
    clock = Clock()
    cache = EmbedCache(tmp_path / "e.db", clock)
    cache.put_many(_vectors(4))
    clock.now += 10 * DAY
    cache.put_many(_vectors(6, 4))
    assert cache.get_many([(0).to_bytes(16, "big")])  # used again: refreshed
    clock.now += 5 * DAY
    assert cache.prune(0, 8 * DAY) == 3  # rows 1..3: unused for 15 days
    assert len(cache) == 3 and cache.pruned == 3
    assert cache.prune(0, 0) == 0  # no limits, nothing goes
    cache.close()


def test_embedding_cache_keeps_the_recently_used_within_its_size(tmp_path: Path) -> None:
    clock = Clock()
    cache = EmbedCache(tmp_path / "e.db", clock)
    for i in range(10):
        cache.put_many(_vectors(i + 1, i))
        clock.now += 1
    assert cache.size() == 10 * (16 + ROW_OVERHEAD)
    clock.now += TOUCH_EVERY_S + 1
    assert cache.get_many([(2).to_bytes(16, "big")])  # the oldest but one, used now
    assert cache.prune(4 * (16 + ROW_OVERHEAD), 0) == 6
    kept = cache.get_many([i.to_bytes(16, "big") for i in range(10)])
    assert sorted(int.from_bytes(k, "big") for k in kept) == [2, 7, 8, 9]
    cache.close()


def test_an_older_rcmd_can_still_write_the_cache(tmp_path: Path) -> None:
    """Last use lives in a side table: the two-column insert of an older rcmd works,
    and its rows count as unused until a hit refreshes them."""
    import apsw

    clock = Clock()
    EmbedCache(tmp_path / "e.db", clock).close()
    db = apsw.Connection(str(tmp_path / "e.db"))
    for k in (b"k" * 16, b"j" * 16):
        db.execute("INSERT OR REPLACE INTO emb VALUES(?,?)", (k, np.ones(8, np.float16).tobytes()))
    db.close()
    cache = EmbedCache(tmp_path / "e.db", clock)
    assert cache.get_many([b"k" * 16], 8)  # refreshed by the hit
    assert cache.prune(0, DAY) == 1 and len(cache) == 1
    cache.close()


def test_chunk_cache_drops_entries_unused_for_max_age(tmp_path: Path) -> None:
    clock = Clock()
    cache = ChunkCache(tmp_path / "c.db", 1 << 30, 30 * DAY, clock)
    chunks = chunk_source("src/a.rs", b"fn a() {}\n")
    cache.put("src/a.rs", b"1" * 32, chunks)
    cache.put("src/b.rs", b"2" * 32, chunks)
    clock.now += 20 * DAY
    assert cache.get("src/a.rs", b"1" * 32) is not None  # used: refreshed
    clock.now += 20 * DAY
    assert cache.prune() == 1 and cache.pruned == 1
    assert cache.get("src/a.rs", b"1" * 32) is not None
    assert cache.get("src/b.rs", b"2" * 32) is None
    cache.close()


def test_indexer_prunes_both_caches_when_idle(setup: Any) -> None:
    """Config keys reach the caches: a tiny embedding cache bound empties it."""
    _crate, collab, open_root = setup
    index = dataclasses.replace(collab.config.index, embed_cache_mb=0, cache_max_age_days=0)
    chunks = ChunkCache(collab.config.paths.cache_dir / "chunks.db", 0)
    collab = dataclasses.replace(
        collab, config=dataclasses.replace(collab.config, index=index), chunk_cache=chunks
    )
    root = open_root()
    indexer = Indexer(collab)
    indexer.start()
    try:
        indexer.enqueue(root, None)
        assert indexer.wait_idle(root.id, 120)
    finally:
        indexer.stop()
    assert chunks.pruned > 0 and chunks.size() == 0  # 0 MB: everything goes
    assert collab.cache.pruned == 0 and len(collab.cache) > 0  # 0: no limit
    chunks.close()
