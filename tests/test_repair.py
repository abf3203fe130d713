"""Damaged or missing state is repaired, not trusted (issue 17.11): each case starts a
real daemon on state damaged while it was stopped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from daemon.chunker import chunk_source
from daemon.embed_cache import cache_key
from daemon.pipeline import fill_vectors, run_batch
from daemon.vectors import EdgeStore
from daemon.verify import verify_root
from tests.conftest import Daemon


def _indexed(daemon: Daemon, crate: Path) -> dict[str, Any]:
    daemon.cli("index", str(crate), "--wait")
    status = daemon.root_status(crate)
    assert daemon.stop() == 0
    return status


def _searchable(daemon: Daemon, crate: Path, before: dict[str, Any]) -> None:
    after = daemon.wait_idle(crate)
    assert (after["files"], after["chunks"]) == (before["files"], before["chunks"])
    hits = daemon.search("fetch_with_retry", "--mode", "bm25")
    assert hits and hits[0]["symbol"].endswith("fetch_with_retry")
    assert daemon.search("retry failed requests with backoff", "--mode", "vector")
    assert daemon.verify()["ok"], daemon.verify()


def test_damaged_embedding_cache_is_set_aside(daemon: Daemon, crate: Path) -> None:
    before = _indexed(daemon, crate)
    cache = daemon.home / "cache" / "embeddings.db"
    cache.write_bytes(b"not a database at all" * 200)
    for extra in ("embeddings.db-wal", "embeddings.db-shm"):
        (cache.parent / extra).unlink(missing_ok=True)
    daemon.start()  # used to exit with "file is not a database"
    assert (cache.parent / "embeddings.db.broken").exists()
    daemon.cli("reindex", str(crate), "--force")
    _searchable(daemon, crate, before)
    assert "cache_unusable_set_aside" in (daemon.home / "log" / "rcmd.log").read_text()


@pytest.mark.parametrize("side", ["tantivy", "qdrant", "tantivy/meta.json"])
def test_missing_index_directory_is_rebuilt(daemon: Daemon, crate: Path, side: str) -> None:
    """A Tantivy folder without its meta.json opened as a new, empty index: BM25 found
    nothing, silently, in a root that status showed whole."""
    before = _indexed(daemon, crate)
    gone = daemon.home / "state" / "roots" / before["id"] / side
    shutil.rmtree(gone) if gone.is_dir() else gone.unlink()
    daemon.start()
    _searchable(daemon, crate, before)
    assert "index_directory_missing" in (daemon.home / "log" / "rcmd.log").read_text()
    assert "missing at start; rebuilding" in daemon.root_status(crate)["repaired"]


#: Qdrant Edge files a damaged disk or a careless cleanup may cut short.
VECTOR_FILES = [
    "vector_storage/vectors/chunk_0.mmap",
    "payload_storage/page_0.dat",
]


def _cut(segments: Path, name: str) -> None:
    (file,) = segments.glob(f"*/{name}")
    with open(file, "r+b") as f:
        f.truncate(0)


@pytest.mark.parametrize("name", VECTOR_FILES)
def test_unreadable_vector_files_are_rebuilt(daemon: Daemon, crate: Path, name: str) -> None:
    """A truncated vector file opened without complaint: every search in words (of
    every root) then failed with an internal error, verify said ok, and `reindex
    --force` did not help. It is found at open now, and the root rebuilt."""
    before = _indexed(daemon, crate)
    root_dir = daemon.home / "state" / "roots" / before["id"]
    _cut(root_dir / "qdrant" / "segments", name)
    daemon.start()
    _searchable(daemon, crate, before)
    assert daemon.search("where do we retry failed http requests")
    assert (root_dir.parent / (root_dir.name + ".broken")).is_dir()
    # Said after the rebuild too (its success clears last_error).
    assert "set aside as" in daemon.cli("status").stdout.split("repaired at start: ")[1]


def test_verify_names_an_unreadable_vector_store(setup: Any) -> None:
    """verify answered an internal error (a payload file cut short) or ok (a vector file
    cut short); it names the store and the repair now."""
    _crate, collab, open_root = setup
    root = open_root()
    run_batch(root, None, collab)
    fill_vectors(root, collab, lambda: False)
    root.vectors.close()
    _cut(root.dir / "qdrant" / "segments", VECTOR_FILES[0])
    root.vectors = EdgeStore(root.dir / "qdrant", collab.embedder.dim)  # opened unchecked
    report = verify_root(root)
    assert not report["ok"]
    assert report["problems"][0].startswith("qdrant cannot be read"), report["problems"]


@pytest.mark.parametrize("damage", ["truncated", "deleted"])
def test_damaged_registry_is_rebuilt_from_the_root_folders(
    daemon: Daemon, crate: Path, damage: str
) -> None:
    """A deleted roots.json forgot every root (their indexes stayed on disk, orphaned)."""
    before = _indexed(daemon, crate)
    registry = daemon.home / "state" / "roots.json"
    if damage == "deleted":
        registry.unlink()
    else:
        registry.write_text('{"roots": [trunc')
    daemon.start()
    assert [r["path"] for r in daemon.call("status")["roots"]] == [str(crate.resolve())]
    assert (registry.parent / "roots.json.broken").exists() == (damage == "truncated")
    assert json.loads(registry.read_text()) == {"roots": [str(crate.resolve())]}
    _searchable(daemon, crate, before)


def test_a_cached_vector_of_the_wrong_size_is_a_miss(setup: Any, embedder: Any) -> None:
    """One bad row used to fail every batch of the root (Qdrant refuses the size)."""
    crate, collab, open_root = setup
    rel = "src/lib.rs"
    first = next(iter(chunk_source(rel, (crate / rel).read_bytes())))
    key = cache_key(embedder.model_id, first.embed_text())
    collab.cache.put_many({key: np.ones(7, dtype=np.float32)})
    root = open_root()
    run_batch(root, None, collab)
    assert root.ledger.vectors_pending >= 1  # the bad row is no hit
    assert fill_vectors(root, collab, lambda: False).cache_misses >= 1
    assert verify_root(root)["ok"]
    assert collab.cache.get_many([key], embedder.dim)[key].shape == (embedder.dim,)


def test_pathological_file_is_skipped_and_reported(setup: Any) -> None:
    """10,000 nested `mod`s (268 KB) made 340 MB of symbol paths and a 6.5-minute pass;
    now the file is skipped as `too_complex` and the rest of the crate is indexed."""
    crate, collab, open_root = setup
    depth = 10_000
    nested = "".join(f"mod m{i} {{\nfn f{i}() {{}}\n" for i in range(depth)) + "}\n" * depth
    (crate / "src" / "nested.rs").write_text(nested)
    root = open_root()
    report = run_batch(root, None, collab)
    assert report.skipped == 1 and report.indexed > 0
    ((path, reason, detail),) = list(root.state.skipped())
    assert (path, reason) == ("src/nested.rs", "too_complex") and "nested" in detail
    assert verify_root(root)["ok"]


def _wrong_kind(entry: Path) -> None:
    """Put an entry of the other kind where `entry` was (a folder for a file, and back)."""
    was_dir = entry.is_dir()
    shutil.rmtree(entry) if was_dir else entry.unlink()
    if was_dir:
        entry.write_text("not a folder")
    else:
        entry.mkdir()
        (entry / "stray").write_text("x")


@pytest.mark.parametrize("name", ["state.db", "root.txt", "qdrant", "tantivy"])
def test_a_state_entry_of_the_wrong_kind_is_set_aside(
    daemon: Daemon, crate: Path, name: str
) -> None:
    """A folder where state.db belongs (or a file for qdrant) failed the open with
    EISDIR, ENOTDIR, EEXIST or 'unable to open', read as a failed disk: the root stayed
    failed for good, told to free some space, and `rcmd index` failed the same way."""
    before = _indexed(daemon, crate)
    root_dir = daemon.home / "state" / "roots" / before["id"]
    _wrong_kind(root_dir / name)
    daemon.start()
    assert daemon.call("status")["failed_roots"] == []
    _searchable(daemon, crate, before)
    assert (root_dir.parent / (root_dir.name + ".broken")).is_dir()
    assert "the wrong kind: " + name in daemon.root_status(crate)["repaired"]


def test_a_removed_root_set_aside_once_is_not_brought_back(daemon: Daemon, crate: Path) -> None:
    """A root's set-aside folder (`<id>.broken`) keeps its root.txt after the root is
    removed: a roots.json rebuilt from the markers registered the removed root again."""
    before = _indexed(daemon, crate)
    state = daemon.home / "state" / "roots" / before["id"]
    for name in ("state.db-wal", "state.db-shm"):
        (state / name).unlink(missing_ok=True)
    (state / "state.db").write_bytes(b"not a database at all" * 200)
    daemon.start()
    daemon.wait_idle(crate)
    daemon.cli("remove", str(crate))
    assert daemon.stop() == 0
    assert list((daemon.home / "state" / "roots").glob("*.broken/root.txt"))
    (daemon.home / "state" / "roots.json").unlink()
    daemon.start()
    assert daemon.call("status")["roots"] == []


def test_a_removed_root_leaves_no_marker_when_its_folder_is_half_deleted(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A removal cut short (the daemon killed inside the rmtree) left the folder with
    its root.txt, which a rebuilt roots.json read back as a root to open."""
    import daemon.root

    _crate, _collab, open_root = setup
    root = open_root()
    monkeypatch.setattr(daemon.root.shutil, "rmtree", lambda *a, **k: None)  # cut short
    root.destroy()
    assert root.dir.is_dir() and not (root.dir / "root.txt").exists()
