"""Snapshots in process (issue 21): export, adopt with a Merkle-diff catch-up, and search
that matches a cold index, with the real Tantivy, Qdrant Edge, fastembed and apsw."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from daemon.adopt import InstallContext, install
from daemon.config import load_config, root_dir
from daemon.embed_cache import EmbedCache
from daemon.pipeline import Collaborators, fill_vectors, run_batch
from daemon.root import RootIndex, build_layout, root_id_for
from daemon.search import search_roots
from daemon.snapshot import pack, stage_export, unpack
from daemon.snapshot_format import Limits
from daemon.verify import verify_root
from ipc.requests import SearchRequest
from tests.conftest import seed_cache

QUERIES = [
    ("retry failed http requests with backoff", "hybrid"),
    ("fetch_with_retry", "bm25"),
    ("exponential backoff between attempts", "vector"),
    ("store a value in the cache", "hybrid"),
    ("brand_new_helper", "bm25"),
]


def index_fully(root: RootIndex, collab: Collaborators) -> None:
    run_batch(root, None, collab)
    fill_vectors(root, collab, lambda: False)


def export_file(root: RootIndex, collab: Collaborators, out: Path) -> Path:
    stage = out.parent / "stage"
    stage.mkdir()
    model = (collab.embedder.model_id, collab.embedder.dim)
    stage_export(root, stage, model, collab.chunk_cache, None)
    pack(stage, out)
    shutil.rmtree(stage)
    return out


def adopt(file: Path, tree: Path, collab: Collaborators, work: Path) -> Path:
    """Unpack and install `file` as the index of `tree` (what `rcmd index --from` does)."""
    snap = work / "snap"
    snap.mkdir(parents=True)
    found = unpack(file, snap, Limits())
    e = collab.embedder
    ctx = InstallContext(
        build_layout(e.model_id, e.dim),
        e.dim,
        collab.config.index.max_file_bytes,
        collab.config.paths.embed_cache,
    )
    install(snap, found, work / "build", tree, ctx, str(file))
    target = root_dir(collab.config.paths, root_id_for(tree))
    target.parent.mkdir(parents=True, exist_ok=True)
    (work / "build").rename(target)
    return target


def results(root: RootIndex, collab: Collaborators) -> list[list[tuple[Any, ...]]]:
    out = []
    for query, mode in QUERIES:
        hits = search_roots(
            [root],
            SearchRequest(query=query, mode=mode, limit=10),
            embed_query=collab.embedder.embed_query,
        )
        out.append([(h.path, h.start_line, h.end_line, h.symbol, h.kind) for h in hits])
    return out


def test_adopted_root_catches_up_by_diff_and_searches_like_a_cold_index(
    setup: Any, tmp_path: Path, warm_cache: Path
) -> None:
    crate, collab, open_root = setup
    source = open_root()
    index_fully(source, collab)
    file = export_file(source, collab, tmp_path / "demo.rcmd.tar.gz")

    tree = tmp_path / "other" / "demo_crate"
    shutil.copytree(crate, tree)
    lib = tree / "src" / "store.rs"
    lib.write_text(
        lib.read_text() + "\n/// A brand new helper.\npub fn brand_new_helper() -> u8 { 7 }\n"
    )
    (tree / "src" / "unicode.rs").unlink()
    adopt(file, tree, collab, tmp_path / "work")
    adopted = RootIndex(
        tree.resolve(), collab.config, collab.embedder.model_id, collab.embedder.dim
    )
    try:
        assert adopted.state.get_meta("seeded_from") == str(file)
        seed = json.loads(adopted.state.get_meta("seed") or "{}")
        assert (seed["files_changed"], seed["files_added"], seed["files_deleted"]) == (1, 0, 1)
        assert len(adopted.ledger) == len(source.ledger) - 2  # all but the two that differ
        batch = run_batch(adopted, None, collab)
        assert (batch.read, batch.indexed, batch.deleted) == (1, 1, 0)
        filled = fill_vectors(adopted, collab, lambda: False)
        # Only the chunk texts the cache lacks went through the model: the new function.
        assert batch.cache_misses + filled.cache_misses == 1
        check = verify_root(adopted)
        assert check["ok"], check["problems"]
        adopted_results = results(adopted, collab)
    finally:
        adopted.close()

    cold_config = load_config({"RCMD_HOME": str(tmp_path / "cold")})
    seed_cache(tmp_path / "cold", warm_cache)
    cold_cache = EmbedCache(cold_config.paths.embed_cache)
    cold_collab = Collaborators(cold_config, collab.embedder, cold_cache)
    cold = RootIndex(tree.resolve(), cold_config, collab.embedder.model_id, collab.embedder.dim)
    try:
        index_fully(cold, cold_collab)
        assert adopted_results == results(cold, cold_collab)
        assert any("brand_new_helper" in hit[3] for hit in adopted_results[4])
    finally:
        cold.close()
        cold_cache.close()
