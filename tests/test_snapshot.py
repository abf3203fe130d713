"""Snapshots in process (issue 21): export, adopt with a Merkle-diff catch-up, and search
that matches a cold index, with the real Tantivy, Qdrant Edge, fastembed and apsw."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from daemon.adopt import InstallContext, install
from daemon.config import load_config, root_dir
from daemon.embed_cache import EmbedCache
from daemon.embed_groups import policy_of
from daemon.pipeline import Collaborators, fill_vectors, run_batch
from daemon.root import RootIndex, build_layout, root_id_for
from daemon.search import search_roots
from daemon.snapshot import pack, stage_export, unpack
from daemon.snapshot_format import Limits
from daemon.verify import verify_root
from ipc.errors import BadRequest
from ipc.requests import SearchRequest
from tests.conftest import FIXTURE_CRATE, seed_cache

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
        build_layout(e.model_id, e.dim, policy_of(collab.config.embedding)),
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
    with tarfile.open(file) as tar:
        names = tar.getnames()
        assert names[0] == "manifest.json" and all("/" not in n for n in names)
        contents = b"".join(tar.extractfile(n).read() for n in names)  # type: ignore[union-attr]
    assert str(crate.parent).encode() not in contents  # every path relative to the root

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
        assert batch.texts_embedded + filled.texts_embedded == 1
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


# ---- hostile and mismatched snapshots ----


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory, embedder: Any, warm_cache: Path) -> Path:
    """The members of a good snapshot of the fixture crate, staged once for the module."""
    base = tmp_path_factory.mktemp("staged")
    crate = base / "demo_crate"
    shutil.copytree(FIXTURE_CRATE, crate)
    config = load_config({"RCMD_HOME": str(base / "home")})
    seed_cache(base / "home", warm_cache)
    cache = EmbedCache(config.paths.embed_cache)
    collab = Collaborators(config, embedder, cache)
    root = RootIndex(crate.resolve(), config, embedder.model_id, embedder.dim)
    try:
        index_fully(root, collab)
        stage = base / "stage"
        stage.mkdir()
        stage_export(root, stage, (embedder.model_id, embedder.dim), None, None)
    finally:
        root.close()
        cache.close()
    return stage


def tampered(staged: Path, tmp_path: Path, change: Callable[[Path], None]) -> Path:
    """A snapshot file packed from a copy of the good members after `change(copy)`."""
    stage = tmp_path / "tampered"
    shutil.copytree(staged, stage)
    change(stage)
    return tampered_file(stage, tmp_path)


def tampered_file(stage: Path, tmp_path: Path) -> Path:
    out = tmp_path / "bad.rcmd.tar.gz"
    pack(stage, out)
    return out


def with_member(staged: Path, tmp_path: Path, info: tarfile.TarInfo, data: bytes = b"") -> Path:
    """The good snapshot plus one extra member."""
    out = tmp_path / "extra.rcmd.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        for p in sorted(staged.iterdir()):
            tar.add(p, arcname=p.name)
        tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out


def edit_manifest(stage: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    path = stage / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def refused(file: Path, setup: Any, tmp_path: Path, limits: Limits | None = None) -> str:
    """Adopt `file` for a copy of the crate; it must fail with BadRequest, leaving no root
    and nothing outside the work folder. The error message."""
    crate, collab, _open_root = setup
    work = tmp_path / "work"
    with pytest.raises(BadRequest) as info:
        snap = work / "snap"
        snap.mkdir(parents=True)
        found = unpack(file, snap, limits or Limits())
        e = collab.embedder
        ctx = InstallContext(
            build_layout(e.model_id, e.dim, policy_of(collab.config.embedding)),
            e.dim,
            1 << 20,
            collab.config.paths.embed_cache,
        )
        install(snap, found, work / "build", crate, ctx, str(file))
    assert not (work / "build").exists()
    assert not root_dir(collab.config.paths, root_id_for(crate)).exists()
    assert not (tmp_path / "escaped").exists()
    assert not (tmp_path / "absolute").exists()
    return str(info.value)


def test_refuses_an_absolute_member(staged: Path, setup: Any, tmp_path: Path) -> None:
    info = tarfile.TarInfo(str(tmp_path / "absolute"))
    info.size = 1
    assert "absolute path" in refused(with_member(staged, tmp_path, info, b"x"), setup, tmp_path)


def test_refuses_a_member_climbing_out(staged: Path, setup: Any, tmp_path: Path) -> None:
    info = tarfile.TarInfo("../../escaped")
    info.size = 1
    assert "'..'" in refused(with_member(staged, tmp_path, info, b"x"), setup, tmp_path)


@pytest.mark.parametrize(
    ("kind", "word"),
    [(tarfile.SYMTYPE, "symlink"), (tarfile.LNKTYPE, "hardlink"), (tarfile.CHRTYPE, "device")],
)
def test_refuses_links_and_devices(
    staged: Path, setup: Any, tmp_path: Path, kind: bytes, word: str
) -> None:
    info = tarfile.TarInfo("vectors.f16")
    info.type = kind
    info.linkname = str(tmp_path / "escaped")
    message = refused(with_member(staged, tmp_path, info), setup, tmp_path)
    assert f"is a {word}" in message


def test_refuses_an_oversized_member(staged: Path, setup: Any, tmp_path: Path) -> None:
    file = tampered(staged, tmp_path, lambda stage: None)
    message = refused(file, setup, tmp_path, Limits(member_bytes=64))
    assert "over the 64 allowed" in message


def test_refuses_an_unlisted_or_unknown_member(staged: Path, setup: Any, tmp_path: Path) -> None:
    info = tarfile.TarInfo("extra.bin")
    info.size = 1
    assert "not part of the format" in refused(
        with_member(staged, tmp_path, info, b"x"), setup, tmp_path
    )


def test_refuses_a_manifest_lying_about_sizes(staged: Path, setup: Any, tmp_path: Path) -> None:
    def lie(data: dict[str, Any]) -> None:
        data["members"]["chunks.jsonl"]["size"] += 1

    file = tampered(staged, tmp_path, lambda stage: edit_manifest(stage, lie))
    assert "its manifest says" in refused(file, setup, tmp_path)


def test_refuses_a_member_whose_hash_differs(staged: Path, setup: Any, tmp_path: Path) -> None:
    def swap(stage: Path) -> None:
        text = (stage / "chunks.jsonl").read_text()
        (stage / "chunks.jsonl").write_text(text.replace("retry", "rEtry", 1))

    file = tampered(staged, tmp_path, swap)
    assert "does not match the hash" in refused(file, setup, tmp_path)


def test_refuses_a_manifest_lying_about_file_hashes(
    staged: Path, setup: Any, tmp_path: Path
) -> None:
    def lie(data: dict[str, Any]) -> None:
        data["files"][0][2] = "0" * 64

    file = tampered(staged, tmp_path, lambda stage: edit_manifest(stage, lie))
    assert "Merkle root does not match" in refused(file, setup, tmp_path)


def test_refuses_a_record_path_outside_the_root(staged: Path, setup: Any, tmp_path: Path) -> None:
    def lie(data: dict[str, Any]) -> None:
        data["files"][0][0] = "../escaped"

    file = tampered(staged, tmp_path, lambda stage: edit_manifest(stage, lie))
    assert "not a plain relative path" in refused(file, setup, tmp_path)


@pytest.mark.parametrize("key", ["embedding_model", "chunk_policy"])
def test_refuses_another_model_or_chunk_policy(
    staged: Path, setup: Any, tmp_path: Path, key: str
) -> None:
    def other(data: dict[str, Any]) -> None:
        data["layout"][key] = "something else"

    file = tampered(staged, tmp_path, lambda stage: edit_manifest(stage, other))
    message = refused(file, setup, tmp_path)
    assert f"made with {key} 'something else'" in message and "without --from" in message


def test_refuses_a_file_that_is_no_snapshot(setup: Any, tmp_path: Path) -> None:
    file = tmp_path / "junk.tar.gz"
    file.write_bytes(b"\x1f\x8b not really gzip")
    assert "not a readable rcmd snapshot" in refused(file, setup, tmp_path)
