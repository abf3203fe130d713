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

import blake3
import numpy as np
import pytest

from daemon.adopt import InstallContext, install
from daemon.chunker import chunk_source
from daemon.config import load_config, root_dir
from daemon.embed_cache import EmbedCache
from daemon.embed_groups import EmbedPolicy, embedded_texts, policy_of
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


def context(collab: Collaborators) -> InstallContext:
    """What the daemon installs a snapshot under: its layout, limits and embedder."""
    e, policy = collab.embedder, policy_of(collab.config.embedding)
    return InstallContext(
        build_layout(e.model_id, e.dim, policy),
        e.dim,
        collab.config.index.max_file_bytes,
        policy,
        e.embed,
    )


def adopt(file: Path, tree: Path, collab: Collaborators, work: Path) -> Path:
    """Unpack and install `file` as the index of `tree` (what `rcmd index --from` does)."""
    snap = work / "snap"
    snap.mkdir(parents=True)
    found = unpack(file, snap, Limits())
    install(snap, found, work / "build", tree, context(collab), str(file))
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
        for p in sorted(staged.iterdir(), key=lambda p: p.name != "manifest.json"):
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
        install(snap, found, work / "build", crate, context(collab), str(file))
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


# ---- rows and vectors that do not hold for the files or the model ----


def rewrite_jsonl(stage: Path, name: str, edit: Callable[[list[list[Any]]], None]) -> None:
    """Edit the rows of member `name` in place, and restate its size and hash in the
    manifest (what a forger does: the member hashes prove nothing about the content)."""
    rows = [json.loads(line) for line in (stage / name).read_text().splitlines()]
    edit(rows)
    (stage / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    restate(stage, name)


def restate(stage: Path, name: str) -> None:
    data = (stage / name).read_bytes()
    edit_manifest(
        stage,
        lambda m: m["members"].__setitem__(
            name, {"size": len(data), "blake3": blake3.blake3(data).hexdigest()}
        ),
    )


def fresh_collab(tmp_path: Path, embedder: Any) -> Collaborators:
    """Collaborators in a home of their own with an empty embedding cache."""
    config = load_config({"RCMD_HOME": str(tmp_path / "fresh")})
    (tmp_path / "fresh" / "cache").mkdir(parents=True)
    return Collaborators(config, embedder, EmbedCache(config.paths.embed_cache))


def test_snapshot_vectors_never_enter_the_shared_cache(
    staged: Path, embedder: Any, tmp_path: Path
) -> None:
    """An honest snapshot whose vectors name embedding-cache keys is adopted, but its
    vectors go into the root's store only: the cache of this home stays empty."""
    keys = {}

    def with_keys(rows: list[list[Any]]) -> None:
        for row in rows:
            row[1] = keys.setdefault(row[0], blake3.blake3(row[0].encode()).hexdigest()[:32])

    file = tampered(staged, tmp_path, lambda s: rewrite_jsonl(s, "vectors.jsonl", with_keys))
    tree = tmp_path / "tree" / "demo_crate"
    shutil.copytree(FIXTURE_CRATE, tree)
    collab = fresh_collab(tmp_path, embedder)
    try:
        adopt(file, tree, collab, tmp_path / "work")
        assert len(collab.cache) == 0
    finally:
        collab.cache.close()


def made_up(vectors: Any) -> Any:
    vectors[:] = vectors[0]  # every chunk the first one's vector
    return vectors


def nearby(vectors: Any) -> Any:
    """Vectors at cosine ~0.96 to the model's: near, as another model's can be, but
    below what another build of this one gives (the float graph: 0.985-0.994)."""
    noise = np.random.default_rng(7).standard_normal(vectors.shape)
    noise *= 0.3 / np.linalg.norm(noise, axis=1, keepdims=True)
    return vectors.astype(np.float32) + noise


@pytest.mark.parametrize("forge", [made_up, nearby])
def test_refuses_vectors_the_model_would_not_make(
    staged: Path, setup: Any, tmp_path: Path, forge: Callable[[Any], Any]
) -> None:
    def change(stage: Path) -> None:
        path = stage / "vectors.f16"
        vectors = np.fromfile(path, dtype="<f2").reshape(-1, 384)
        forge(vectors.copy()).astype("<f2").tofile(path)
        restate(stage, "vectors.f16")

    message = refused(tampered(staged, tmp_path, change), setup, tmp_path)
    assert "is not this model's" in message and "\n" not in message


def first_fn(rows: list[list[Any]]) -> list[Any]:
    return next(r for r in rows if r[5] == "fn")


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda r: r.__setitem__(7, "fn injected() { /* not in the file */ }"), "does not hold"),
        (lambda r: r.__setitem__(5, "bogus"), "unknown kind"),
        (lambda r: r.__setitem__(2, 99999999999), "after its end"),
        (lambda r: r.__setitem__(3, 100000), "past the file's"),
        (lambda r: r.__setitem__(4, "\x1b[31mred\x1b[0m"), "control character"),
        (lambda r: r.__setitem__(6, "fn f()\x07"), "control character"),
    ],
    ids=["text", "kind", "start", "end", "symbol", "signature"],
)
def test_refuses_chunk_rows_that_do_not_hold_for_the_files(
    staged: Path, setup: Any, tmp_path: Path, edit: Callable[[list[Any]], None], says: str
) -> None:
    def change(stage: Path) -> None:
        rewrite_jsonl(stage, "chunks.jsonl", lambda rows: edit(first_fn(rows)))

    message = refused(tampered(staged, tmp_path, change), setup, tmp_path)
    assert says in message and "refusing the snapshot" in message and "\n" not in message


def test_refuses_a_member_larger_than_declared_before_writing_it(
    staged: Path, setup: Any, tmp_path: Path
) -> None:
    """A gzip bomb: a member whose header says 16 MiB of zeros, declared at its honest
    size. Refused from its header: not a byte of it is written."""
    out = tmp_path / "bomb.rcmd.tar.gz"
    size = 16 << 20
    with tarfile.open(out, "w:gz") as tar:
        for p in sorted(staged.iterdir(), key=lambda p: p.name != "manifest.json"):
            info = tar.gettarinfo(str(p), arcname=p.name)
            if p.name == "vectors.f16":
                info.size = size
                tar.addfile(info, io.BytesIO(bytes(size)))
            else:
                tar.addfile(info, p.open("rb"))
    assert "its manifest says" in refused(out, setup, tmp_path)
    assert not (tmp_path / "work" / "snap" / "vectors.f16").exists()


def test_refuses_a_deeply_nested_manifest(staged: Path, setup: Any, tmp_path: Path) -> None:
    file = tampered(staged, tmp_path, lambda s: (s / "manifest.json").write_text("[" * 200_000))
    assert "nests too deeply" in refused(file, setup, tmp_path)


def test_adopts_an_honest_snapshot_of_crlf_and_bom_files(setup: Any, tmp_path: Path) -> None:
    """Chunk texts are compared with the file's lines as the chunker reads them (BOM
    dropped, CRLF as LF, invalid UTF-8 replaced): an honest snapshot of such files adopts."""
    crate, collab, open_root = setup
    odd = crate / "src" / "odd.rs"
    odd.write_bytes(
        b"\xef\xbb\xbf/// Odd \xff bytes.\r\npub fn odd_one() -> u8 {\r\n    1\r\n}\r\n"
    )
    source = open_root()
    index_fully(source, collab)
    file = export_file(source, collab, tmp_path / "odd.rcmd.tar.gz")
    tree = tmp_path / "other" / "demo_crate"
    shutil.copytree(crate, tree)
    adopt(file, tree, collab, tmp_path / "work")


def move_to_pending(stage: Path, text_of: Callable[[list[Any]], str]) -> None:
    """Turn the last vector of the snapshot into a pending row whose text is
    `text_of(chunk row)` (what an export taken during a lexical-first batch holds)."""
    ids = [json.loads(line) for line in (stage / "vectors.jsonl").read_text().splitlines()]
    cid = ids[-1][0]
    row = next(
        r for r in map(json.loads, (stage / "chunks.jsonl").read_text().splitlines()) if r[0] == cid
    )
    (stage / "vectors.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ids[:-1]))
    vectors = (stage / "vectors.f16").read_bytes()
    (stage / "vectors.f16").write_bytes(vectors[: -384 * 2])
    (stage / "pending.jsonl").write_text(json.dumps([cid, row[1], row[5], text_of(row)]) + "\n")
    for name in ("vectors.jsonl", "vectors.f16", "pending.jsonl"):
        restate(stage, name)


def own_text(row: list[Any]) -> str:
    """The text the chunker embeds for the chunk `row` of the fixture crate."""
    listed = chunk_source(row[1], (FIXTURE_CRATE / row[1]).read_bytes())
    texts = embedded_texts(listed, EmbedPolicy())
    return next(
        t
        for c, t in zip(listed, texts, strict=True)
        if (c.start_line, c.end_line, c.symbol, c.kind) == (row[2], row[3], row[4], row[5])
    )


def test_pending_vectors_must_name_their_chunks_text(
    staged: Path, setup: Any, tmp_path: Path
) -> None:
    """A pending row's text is embedded later and cached under that text: it must be the
    chunk's own, or the chunk would be found by a text it does not hold."""
    forged = tampered(staged, tmp_path, lambda s: move_to_pending(s, lambda r: "rm -rf /"))
    assert "names a text other than the chunk's" in refused(forged, setup, tmp_path)
    shutil.rmtree(tmp_path / "tampered")
    honest = tampered(staged, tmp_path, lambda s: move_to_pending(s, own_text))
    tree = tmp_path / "tree" / "demo_crate"
    shutil.copytree(FIXTURE_CRATE, tree)
    adopt(honest, tree, setup[1], tmp_path / "work2")
