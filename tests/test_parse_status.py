"""`status` `last_batch` says how a batch got its chunks (issue 20.3): `parse`,
`items_reparsed`, `chunks_written`, `chunk_cache_hits` — in process through the real
indexer thread, and from a real daemon after a save."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.chunk_cache import ChunkCache
from daemon.indexer import Indexer
from daemon.parse_cache import ParseCache
from tests.conftest import Daemon, wait_until

RETRY = "src/net/retry.rs"
#: Inside `RetryPolicy::next_delay`: one item, one chunk.
EDIT = ("saturating_pow(attempt)", "pow(attempt)")

Batch = Callable[..., dict[str, Any]]


@pytest.fixture
def batch(setup: Any) -> Iterator[tuple[Path, Batch]]:
    """Run one batch through a real indexer thread (with both caches) and return its
    `last_batch`. Batches embed in the same step (no lexical-first), so no vector
    batch follows and replaces `last_batch`."""
    crate, collab, open_root = setup
    index = dataclasses.replace(collab.config.index, lexical_first_files=1_000_000)
    chunks = ChunkCache(collab.config.paths.cache_dir / "chunks.db", 1 << 24)
    collab = dataclasses.replace(
        collab,
        config=dataclasses.replace(collab.config, index=index),
        chunk_cache=chunks,
        parse_cache=ParseCache(64 << 20),
    )
    root = open_root()
    indexer = Indexer(collab)
    indexer.start()

    def run(paths: set[str] | None = None, force: bool = False) -> dict[str, Any]:
        indexer.enqueue(root, paths, force=force)
        assert indexer.wait_idle(root.id, 120)
        return dict(indexer.last_batch)

    try:
        yield crate, run
    finally:
        indexer.stop()
        chunks.close()


def _edit(crate: Path) -> None:
    path = crate / RETRY
    path.write_text(path.read_text().replace(*EDIT))


def test_last_batch_parse_is_full_then_incremental_then_cached(
    batch: tuple[Path, Batch],
) -> None:
    crate, run = batch
    assert run()["parse"] == "full"
    _edit(crate)
    assert run({RETRY})["parse"] == "incremental"
    assert run(force=True)["parse"] == "cached"


def test_last_batch_items_reparsed(batch: tuple[Path, Batch]) -> None:
    crate, run = batch
    first = run()
    assert first["items_reparsed"] > 10
    _edit(crate)
    assert run({RETRY})["items_reparsed"] == 1


def test_last_batch_chunks_written(batch: tuple[Path, Batch]) -> None:
    crate, run = batch
    first = run()
    assert first["chunks_written"] == first["chunks"] > 10
    _edit(crate)
    edited = run({RETRY})
    assert edited["chunks_written"] == 1 and edited["chunks_kept"] > 5


def test_last_batch_chunk_cache_hits(batch: tuple[Path, Batch]) -> None:
    _crate, run = batch
    first = run()
    assert first["chunk_cache_hits"] == 0
    forced = run(force=True)
    assert forced["chunk_cache_hits"] == forced["indexed"] == first["indexed"]


def test_daemon_reports_an_incremental_save(daemon: Daemon, crate: Path) -> None:
    daemon.cli("index", str(crate), "--wait")
    path = crate / RETRY
    text = path.read_text()
    # Parsed once while indexing: the save is parsed from that tree.
    path.write_text(text.replace(*EDIT))

    def saved() -> dict[str, Any] | None:
        status = json.loads(daemon.cli("status", "--json").stdout)
        last = status["roots"][0]["last_batch"]
        return status if last.get("parse") == "incremental" else None

    status = wait_until(saved, timeout=60)
    last = status["roots"][0]["last_batch"]
    assert last["items_reparsed"] == 1 and last["chunks_written"] == 1
    assert last["chunk_cache_hits"] == 0 and last["chunks"] == 1
    assert status["parse_cache"]["files"] >= 1 and status["parse_cache"]["incremental"] >= 1
    daemon.wait_idle(crate)
    assert daemon.verify()["ok"]
