"""The batch pipeline with real Tantivy, Qdrant Edge, fastembed and apsw (no daemon)."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from daemon.activity import Activity
from daemon.config import SearchConfig, load_config
from daemon.embed_cache import EmbedCache
from daemon.pipeline import Collaborators, fill_vectors, run_batch
from daemon.root import RootIndex
from daemon.search import resolve_candidates, search_roots
from daemon.verify import verify_root
from ipc.requests import SearchRequest
from tests.conftest import REPO, seed_cache


def search(root: RootIndex, collab: Collaborators, query: str, mode: str = "hybrid") -> list[str]:
    hits = search_roots(
        [root],
        SearchRequest(query=query, mode=mode, limit=10),
        embed_query=collab.embedder.embed_query,
        tuning=SearchConfig(candidates=50, rrf_k=60),
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


def test_questions_rank_the_code_above_its_tests(setup: Any) -> None:
    """petgraph's "shortest path between two nodes" led with a #[test] fn and a bench.
    Test code now counts half for a question in words, unless the question asks for
    tests; names are not questions, and are not demoted."""
    crate, collab, open_root = setup
    (crate / "tests").mkdir()
    (crate / "tests" / "delays.rs").write_text(
        "use demo::net::retry::RetryPolicy;\n\n/// The delay between attempts doubles.\n"
        "#[test]\nfn delay_between_attempts_doubles() {\n"
        "    let policy = RetryPolicy::new(3);\n"
        "    assert_eq!(policy.next_delay(1), policy.next_delay(0) * 2);\n}\n"
    )
    root = open_root()
    run_batch(root, None, collab)
    fill_vectors(root, collab, lambda: False)
    question = "delay between attempts doubles"
    assert (
        search(root, collab, question)[0] == "src/net/retry.rs:net::retry::RetryPolicy::next_delay"
    )
    flat = replace(collab.config.search, test_weight=1.0)
    hits = search_roots(
        [root],
        SearchRequest(query=question, mode="hybrid", limit=10),
        embed_query=collab.embedder.embed_query,
        tuning=flat,
    )
    assert hits[0].path == "tests/delays.rs"  # what it was
    asked = search(root, collab, "test that the delay between attempts doubles")
    assert asked[0].startswith("tests/delays.rs")


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
    root = RootIndex(crate.resolve(), config, embedder.model_id, embedder.dim)
    first = run_batch(root, None, collab)
    assert first.cache_hits == 0 and root.ledger.vectors_pending == first.chunks
    filled = fill_vectors(root, collab, lambda: False)  # the misses, after the BM25 pass
    assert filled.cache_misses == filled.vectors_filled == first.chunks
    checked = run_batch(root, None, collab, force=True)  # every vector found in place
    assert checked.indexed == first.indexed and checked.chunks_kept == first.chunks
    assert checked.cache_misses == checked.cache_hits == 0
    root.vectors.delete_all()  # lost: a forced rebuild writes them again, from the cache
    root.vectors.flush()
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
    merkle = root.ledger.root_hash
    root.close()
    reopened = open_root()
    assert reopened.state.counts() == (files, chunks)
    assert reopened.ledger.root_hash == merkle
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


def test_a_lowered_size_limit_drops_indexed_files_and_a_raised_one_brings_them_back(
    setup: Any,
) -> None:
    """The stat fast path skipped unchanged files, so a lowered `max_file_bytes` only
    applied to files edited afterwards: the big ones stayed searchable."""
    crate, collab, open_root = setup
    root = open_root()
    run_batch(root, None, collab)
    sizes = {p.relative_to(crate).as_posix(): p.stat().st_size for p in crate.rglob("*.rs")}
    limit = sorted(sizes.values())[len(sizes) // 2]
    over = {p for p, n in sizes.items() if n > limit}
    assert over and over != set(sizes)
    index = replace(collab.config.index, max_file_bytes=limit)
    lowered = replace(collab, config=replace(collab.config, index=index))
    report = run_batch(root, None, lowered)
    assert {p for p, r, _d in root.state.skipped() if r == "too_large"} == over
    assert report.skipped == len(over) and not over & set(root.ledger.under(lambda _p: True))
    assert not over & {h.split(":")[0] for h in search(root, collab, "fn", "bm25")}
    assert verify_root(root)["ok"], verify_root(root)["problems"]
    run_batch(root, None, collab)
    assert not list(root.state.skipped()) and set(root.ledger.under(lambda _p: True)) == set(sizes)
    assert verify_root(root)["ok"], verify_root(root)["problems"]


def test_indexer_vacuums_when_garbage_passes_the_threshold(setup: Any) -> None:
    from daemon.indexer import VACUUM_MIN_POINTS, maybe_vacuum

    crate, collab, open_root = setup
    root = open_root()
    run_batch(root, None, collab)
    chunks = root.state.counts()[1]
    (crate / "src" / "store.rs").unlink()
    dropped = run_batch(root, None, collab)
    assert 0 < dropped.points_dropped == chunks - root.state.counts()[1]
    maybe_vacuum(root, dropped.points_dropped, queued=False)
    assert root.progress.vacuums == 0  # a small crate stays under the minimum
    maybe_vacuum(root, VACUUM_MIN_POINTS, queued=True)
    assert root.progress.vacuums == 0  # not while work waits for the root
    maybe_vacuum(root, 0, queued=False)
    assert root.progress.vacuums == 1
    assert root.state.get_meta("vector_garbage") == "0"
    assert verify_root(root)["ok"]
    assert search(root, collab, "exponential backoff between attempts", "vector")


def test_status_reads_while_batches_write(setup: Any) -> None:
    """Request threads read state.db while the indexer writes it (apsw refuses one
    connection used by two threads at once, so each thread must use its own)."""
    import threading

    crate, collab, open_root = setup
    root = open_root()
    run_batch(root, None, collab)
    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            try:
                root.state.get_meta("last_commit")
                root.state.counts()
                list(root.state.skipped())
                root.state.inflight()
            except BaseException as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(15):
            for path in crate.rglob("*.rs"):
                os.utime(path, ns=(i + 1, i + 1))  # same content: stat updates only
            run_batch(root, None, collab)
    finally:
        done.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert verify_root(root)["ok"]


def test_non_utf8_file_name_is_skipped_not_fatal(setup: Any) -> None:
    crate, collab, open_root = setup
    bad = os.fsencode(crate / "src") + b"/bad\xff.rs"
    with open(bad, "wb") as f:
        f.write(b"pub fn hidden() {}\n")
    root = open_root()
    report = run_batch(root, None, collab)
    assert report.indexed == sum(1 for _ in crate.rglob("*.rs")) - 1
    reasons = {p: r for p, r, _d in root.state.skipped()}
    assert reasons == {"src/bad\\xff.rs": "non_utf8_name"}
    assert verify_root(root)["ok"], verify_root(root)["problems"]
    os.unlink(bad)
    run_batch(root, None, collab)
    assert list(root.state.skipped()) == []


def test_missing_root_is_not_emptied(setup: Any, tmp_path: Path) -> None:
    crate, collab, open_root = setup
    root = open_root()
    run_batch(root, None, collab)
    counts = root.state.counts()
    away = tmp_path / "away"
    crate.rename(away)
    report = run_batch(root, None, collab, force=True)
    assert report.deleted == 0 and root.state.counts() == counts
    assert root.progress.watcher.startswith("root missing")
    away.rename(crate)


def test_interrupted_batch_keeps_unwritten_files_in_flight(
    crate: Path, tmp_path: Path, embedder: Any, warm_cache: Path
) -> None:
    """Files read into a step that is never written must stay marked for redo."""
    import dataclasses

    config = load_config({"RCMD_HOME": str(tmp_path / "home")})
    seed_cache(tmp_path / "home", warm_cache)
    config = dataclasses.replace(
        config,
        index=dataclasses.replace(config.index, commit_interval_s=0.0, chunks_per_step=10_000),
    )
    cache = EmbedCache(config.paths.embed_cache)
    calls = iter(range(1000))
    collab = Collaborators(config, embedder, cache, should_stop=lambda: next(calls) >= 3)
    root = RootIndex(crate.resolve(), config, embedder.model_id, embedder.dim)
    try:
        run_batch(root, None, collab)
        recorded = set(root.state.files())
        total = {p.relative_to(crate).as_posix() for p in crate.rglob("*.rs")}
        assert recorded < total  # interrupted before the single step was written
        assert root.state.inflight() == total - recorded
        resumed = run_batch(root, [], Collaborators(config, embedder, cache))
        assert resumed.indexed == len(total - recorded)
        assert set(root.state.files()) == total and not root.state.inflight()
        assert verify_root(root)["ok"]
    finally:
        root.close()
        cache.close()


def test_in_flight_file_is_rewritten_even_if_unchanged(setup: Any) -> None:
    """A crash between the vector delete and upsert leaves the content unchanged but the
    vectors gone; the in-flight mark must force a rewrite."""
    _crate, collab, open_root = setup
    root = open_root()
    run_batch(root, None, collab)
    root.state.mark_inflight(["src/lib.rs"])
    root.vectors.delete_paths(["src/lib.rs"])
    assert not verify_root(root)["ok"]
    run_batch(root, [], collab)
    assert verify_root(root)["ok"], verify_root(root)["problems"]


def test_changing_the_model_rebuilds_instead_of_mixing(
    crate: Path, tmp_path: Path, embedder: Any, warm_cache: Path
) -> None:
    config = load_config({"RCMD_HOME": str(tmp_path / "home")})
    seed_cache(tmp_path / "home", warm_cache)
    cache = EmbedCache(config.paths.embed_cache)
    collab = Collaborators(config, embedder, cache)
    root = RootIndex(crate.resolve(), config, embedder.model_id, embedder.dim)
    run_batch(root, None, collab)
    root.close()
    other = RootIndex(crate.resolve(), config, "some/other-model", embedder.dim)
    try:
        assert other.state.counts() == (0, 0) and other.vectors.count() == 0
        assert other.lexical.num_docs() == 0
    finally:
        other.close()
    # A root whose vectors were made from another embedded-text layout is rebuilt too.
    root = RootIndex(crate.resolve(), config, embedder.model_id, embedder.dim)
    run_batch(root, None, collab)
    root.state.set_meta("embedding_model", f"{embedder.model_id} ({embedder.dim})")
    root.close()
    again = RootIndex(crate.resolve(), config, embedder.model_id, embedder.dim)
    try:
        assert again.state.counts() == (0, 0) and again.vectors.count() == 0
    finally:
        again.close()
        cache.close()


def test_failed_work_is_queued_again(setup: Any) -> None:
    import dataclasses

    from daemon.indexer import Indexer, _Work, requeue_later

    _crate, collab, open_root = setup
    root = open_root()
    config = collab.config
    config = dataclasses.replace(
        config, index=dataclasses.replace(config.index, retry_after_s=0.05)
    )
    indexer = Indexer(dataclasses.replace(collab, config=config))  # not started: work stays queued
    retry_s = indexer.collab.config.index.retry_after_s
    requeue_later(indexer, root, _Work(paths={"src/lib.rs"}), retry_s).join(10)
    assert indexer.queued(root.id) == 1
    root.cancel()
    requeue_later(indexer, root, _Work(full=True), retry_s).join(10)
    assert indexer.queued(root.id) == 1  # a removed root is not retried


def test_held_work_waits_for_its_release_and_the_root_is_not_idle_meanwhile(
    setup: Any,
) -> None:
    """A root's first scan is held until its watch is in place (`Indexer.hold`): the
    indexer runs it only after `release`, and the root never looks idle before."""
    from daemon.indexer import Indexer

    _crate, collab, open_root = setup
    root = open_root()
    indexer = Indexer(collab)
    stale = indexer.hold(root.id)
    token = indexer.hold(root.id)  # the root removed and added again: a new hold
    indexer.enqueue(root, None)
    indexer.start()
    try:
        indexer.release(root.id, stale)  # an older watcher ending late releases nothing
        assert not indexer.wait_idle(root.id, 0.5)  # held: queued, not run, not idle
        assert indexer.queued(root.id) == 1 and root.ledger.get("src/lib.rs") is None
        indexer.release(root.id, token)
        assert indexer.wait_idle(root.id, 120)
        assert root.ledger.get("src/lib.rs") is not None
    finally:
        assert indexer.stop()
        root.close()


def test_lexical_first_batch_then_vectors_fill_in(
    crate: Path, tmp_path: Path, embedder: Any
) -> None:
    """A big batch is searchable with BM25 before anything is embedded; the pending
    vectors survive a reopen, fill in a step at a time, and verify holds at every stage."""
    env = {
        "RCMD_HOME": str(tmp_path / "cold"),
        "RCMD_INDEX_LEXICAL_FIRST_FILES": "2",
        "RCMD_INDEX_CHUNKS_PER_STEP": "8",
    }
    config = load_config(env)
    config.paths.cache_dir.mkdir(parents=True)
    cache = EmbedCache(config.paths.embed_cache)
    collab = Collaborators(config, embedder, cache)
    root = RootIndex(crate.resolve(), config, embedder.model_id, embedder.dim)
    report = run_batch(root, None, collab)
    chunks = root.state.counts()[1]
    assert report.cache_misses == 0 and root.ledger.vectors_pending == chunks > 0
    assert root.vectors.count() == 0
    assert verify_root(root)["ok"], verify_root(root)["problems"]
    assert any("fetch_with_retry" in h for h in search(root, collab, "fetch_with_retry", "bm25"))
    assert not search(root, collab, "exponential backoff between attempts", "vector")

    # One file edited while its vectors are pending: the new chunks replace the old ones.
    retry = crate / "src" / "net" / "retry.rs"
    retry.write_text(retry.read_text() + "\npub fn pending_edit_marker() {}\n")
    run_batch(root, ["src/net/retry.rs"], collab)  # small: embedded in the same step
    assert verify_root(root)["ok"], verify_root(root)["problems"]
    root.close()

    root = RootIndex(crate.resolve(), config, embedder.model_id, embedder.dim)
    before = root.ledger.vectors_pending
    assert 0 < before < chunks
    # Newer work waits from the second check on: the step's first text is embedded
    # (progress), and the embedder asks before each next one.
    steps = itertools.chain([False], itertools.repeat(True))
    filled = fill_vectors(root, collab, lambda: next(steps))
    # (chunks whose text is shared, a group of fragments, get its vector together)
    assert filled.texts_embedded == 1 and filled.vectors_filled >= 1
    assert root.ledger.vectors_pending == before - filled.vectors_filled
    assert verify_root(root)["ok"], verify_root(root)["problems"]
    fill_vectors(root, collab, lambda: False)
    assert root.ledger.vectors_pending == 0 and root.state.pending_count() == 0
    assert root.vectors.count() == root.state.counts()[1]
    assert verify_root(root)["ok"], verify_root(root)["problems"]
    assert search(root, collab, "exponential backoff between attempts", "vector")
    root.close()
    cache.close()


def test_identifier_queries_skip_the_query_embedding(setup: Any) -> None:
    """With the default `identifier_vector_weight` of 0, a name is answered by BM25 and the
    exact-symbol list without running the model; a question in words still embeds."""
    _crate, collab, open_root = setup
    root = open_root()
    run_batch(root, None, collab)

    def no_model(_query: str) -> Any:
        raise AssertionError("the query was embedded")

    def run(query: str) -> list[str]:
        hits = search_roots(
            [root],
            SearchRequest(query=query, mode="hybrid", limit=5),
            embed_query=no_model,
            tuning=SearchConfig(candidates=50, rrf_k=20),
        )
        return [h.symbol for h in hits]

    assert any(s.endswith("fetch_with_retry") for s in run("fetch_with_retry")[:1])
    with pytest.raises(AssertionError, match="embedded"):
        run("retry failed http requests with backoff")


def test_files_deleted_and_renamed_while_a_batch_reads_them(setup: Any) -> None:
    """Files deleted and renamed after the batch planned them and before it reads them:
    in lockstep with the batch (its per-file stop check), each file read lets the vandal
    delete or rename one churn file the batch has not reached yet. The batch finishes,
    and the next one leaves the index equal to the tree."""
    import dataclasses

    crate, collab, open_root = setup
    churn = crate / "src" / "churn"
    churn.mkdir()
    for i in range(150):
        (churn / f"f{i}.rs").write_text(f"pub fn churn_{i}() -> u32 {{ {i} }}\n")
    ahead = sorted(churn.iterdir(), reverse=True)  # the batch reads them in name order
    vandalized: list[str] = []

    def vandal_step() -> bool:
        if len(vandalized) < 75:
            f = ahead[len(vandalized)]
            if len(vandalized) % 2:
                f.unlink()
            else:
                f.rename(churn / f"moved_{f.name}")
            vandalized.append(f.name)
        return False  # never asks the batch to stop

    root = open_root()
    first = run_batch(root, None, dataclasses.replace(collab, should_stop=vandal_step))
    assert len(vandalized) == 75 and first.read < 150 + 7  # it met files already gone
    run_batch(root, None, collab)
    report = verify_root(root)
    assert report["ok"], report["problems"]
    assert report["files_recorded"] == report["files_on_disk"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_unreadable_file_is_skipped_and_reported(warm_cache: Path) -> None:
    """An unreadable file and a folder that may not be listed are each reported as
    skipped (the folder's files vanished with no trace). EACCES cannot happen to root,
    so the batch runs in a child that drops to `nobody`."""
    import shutil
    import subprocess
    import sys
    import tempfile

    # pytest's own temp folders are root's (0700): `nobody` needs a way in.
    base = Path(tempfile.mkdtemp(prefix="rcmd-eacces-"))
    crate = base / "crate"
    (crate / "src").mkdir(parents=True)
    (crate / "src" / "ok.rs").write_text("pub fn readable() {}\n")
    (crate / "src" / "secret.rs").write_text("pub fn hidden() {}\n")
    (crate / "src" / "secret.rs").chmod(0)
    (crate / "src" / "locked").mkdir()
    (crate / "src" / "locked" / "inner.rs").write_text("pub fn locked_away() {}\n")
    (crate / "src" / "locked").chmod(0)  # a folder that may not be listed
    home = base / "home"
    seed_cache(home, warm_cache)
    for p in (base, crate, crate / "src", home, home / "cache"):
        p.chmod(0o777)
    (home / "cache" / "embeddings.db").chmod(0o666)
    script = f"""
import os, json
from pathlib import Path
from daemon.chunker import chunk_source
from daemon.activity import Activity
from daemon.config import SearchConfig, load_config
from daemon.embed_cache import EmbedCache
from daemon.embedder import Embedder
from daemon.pipeline import Collaborators, run_batch
from daemon.root import RootIndex
# Everything that reads root's own files (modules, the model) is loaded first.
os.umask(0)
chunk_source("warm.rs", b"fn warm() {{}}")
config = load_config({{"RCMD_HOME": {str(home)!r}}})
emb = Embedder(config.embedding, config.paths.cache_dir)
root = RootIndex(Path({str(crate)!r}), config, emb.model_id, emb.dim)
collab = Collaborators(config, emb, EmbedCache(config.paths.embed_cache))
# The root's state (made above, as root) is handed to `nobody`, whose daemon it becomes.
for p in Path({str(home)!r}).rglob("*"):
    p.chmod(0o777 if p.is_dir() else 0o666)
os.setgid(65534); os.setuid(65534)
run_batch(root, None, collab)
print(json.dumps({{"skipped": list(root.state.skipped()), "files": root.state.counts()[0]}}))
"""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["files"] == 1
    skipped = {path: (reason, why) for path, reason, why in out["skipped"]}
    assert skipped["src/secret.rs"] == ("unreadable", "Permission denied")
    assert skipped["src/locked"][0] == "unreadable" and "a folder" in skipped["src/locked"][1]
    assert len(skipped) == 2


def test_hits_resolved_page_by_page_match_one_read(setup: Any) -> None:
    """Search reads candidate rows a page at a time; the pages give the same rows, in the
    same order and with the same whole-item extents, as one read of every candidate, and
    skip ids that are not recorded."""
    _crate, collab, open_root = setup
    root = open_root()
    run_batch(root, None, collab)
    ids = sorted(root.state.chunk_ids_by_path().items())
    keyed = [((root.id, cid), 1.0 / (i + 1)) for i, (_, cids) in enumerate(ids) for cid in cids]
    keyed.insert(5, ((root.id, "not-a-chunk"), 0.5))
    by_root = {root.id: root}
    whole = list(resolve_candidates(keyed, by_root, len(keyed), whole_items=True))
    assert len(whole) == len(keyed) - 1
    assert list(resolve_candidates(keyed, by_root, 3, whole_items=True)) == whole
    parts = list(resolve_candidates(keyed, by_root, 3, whole_items=False))
    assert [r.id for _, r, _ in parts] == [r.id for _, r, _ in whole]
    assert all(
        w.start_line <= p.start_line and p.end_line <= w.end_line
        for (_, p, _), (_, w, _) in zip(parts, whole, strict=True)
    )


def _stepped_root(
    crate: Path, tmp_path: Path, embedder: Any, **index: Any
) -> tuple[RootIndex, Collaborators, EmbedCache]:
    """`crate` opened with vectors filled 3 chunks a step (and `index` settings), so a
    fill can be stopped part way."""
    import dataclasses

    config = load_config({"RCMD_HOME": str(tmp_path / "home")})
    settings = dataclasses.replace(config.index, chunks_per_step=3, **index)
    config = dataclasses.replace(config, index=settings)
    config.paths.cache_dir.mkdir(parents=True)
    cache = EmbedCache(config.paths.embed_cache)
    collab = Collaborators(config, embedder, cache)
    return RootIndex(crate.resolve(), config, embedder.model_id, embedder.dim), collab, cache


def test_vectors_filled_in_small_steps_embed_each_text_once_and_flush_at_the_end(
    crate: Path, tmp_path: Path, embedder: Any
) -> None:
    """Steps written before their flush are not handed out again (the cursor moves past
    them), a stop for newer work leaves the rest pending, and the next fill ends it."""
    root, collab, cache = _stepped_root(crate, tmp_path, embedder, commit_interval_s=3600.0)
    try:
        run_batch(root, None, collab)
        pending = root.state.pending_vectors(10_000)
        assert len(pending) > 9  # several steps
        asked = itertools.count()
        first = fill_vectors(root, collab, lambda: next(asked) >= 8)
        left = root.state.pending_count()
        assert 0 < left < len(pending) and first.vectors_filled == len(pending) - left
        rest = fill_vectors(root, collab, lambda: False)
        assert rest.vectors_filled == left and root.state.pending_count() == 0
        texts = len({v.embed_text for v in pending})
        assert first.texts_embedded + rest.texts_embedded == texts  # none embedded twice
        assert root.vectors.count() == root.state.counts()[1]
        assert verify_root(root)["ok"]
    finally:
        root.close()
        cache.close()


def test_a_window_of_loose_code_keeps_its_own_lines_and_a_split_fn_shows_whole(
    setup: Any,
) -> None:
    """A long run of loose code (http's 826-line `standard_headers! { … }` table) is cut
    into windows; a hit on one keeps the window's lines, not the run's (it read 148–973
    for a row near the end, so the editor opened hundreds of lines from it). A long fn
    cut into parts still shows as the whole fn."""
    crate, collab, open_root = setup
    rows = "\n".join(f'    (Header{i}, HEADER_{i}, b"header-{i}");' for i in range(300))
    rows = rows.replace("(Header250,", "(ZebraCrossing,")
    body = "\n".join(f"    let v{i} = {i} + 1; // quagga step {i}" for i in range(250))
    (crate / "src" / "tables.rs").write_text(
        f"standard_headers! {{\n{rows}\n}}\n\npub fn long_quagga() {{\n{body}\n}}\n"
    )
    root = open_root()
    run_batch(root, None, collab)
    req = SearchRequest(query="zebra crossing", mode="bm25", limit=5)
    hit = search_roots([root], req, embed_query=None)[0]
    row = 2 + 250  # `standard_headers! {` is line 1
    assert (hit.path, hit.kind) == ("src/tables.rs", "code")
    assert hit.start_line <= row <= hit.end_line and hit.end_line - hit.start_line < 60
    fn = search_roots([root], replace(req, query="quagga"), embed_query=None)
    fn_hit = next(h for h in fn if h.symbol.endswith("long_quagga"))
    assert (fn_hit.start_line, fn_hit.end_line) == (304, 304 + 251)


def test_embedding_that_gave_way_resumes_its_progress(
    crate: Path, tmp_path: Path, embedder: Any
) -> None:
    """A fill that stops for file work elsewhere (any save in another root) once began
    again at 0 of what was left, with no rate ("starting…") and an ETA from its first
    slow seconds. Resumed, its count, total and rate go on."""
    root, collab, cache = _stepped_root(crate, tmp_path, embedder)
    try:
        run_batch(root, None, collab)
        total = root.state.pending_count()
        asked = itertools.count()
        fill_vectors(root, collab, lambda: next(asked) >= 8)
        done = total - root.state.pending_count()
        assert 0 < done < total
        seen: list[dict[str, Any]] = []

        def first_look() -> bool:
            if not seen:
                seen.append(root.progress.rates())
            return False

        root.progress.begin(Activity.SCANNING)  # another batch of the root between
        fill_vectors(root, collab, first_look)
        assert seen[0]["chunks_done"] == done and seen[0]["chunks_total"] == total
        assert seen[0]["chunks_per_s"] > 0 and seen[0]["eta_s"] is not None
        assert root.progress.rates()["chunks_done"] == total
        root.progress.begin_embedding(0)  # a finished run is not resumed
        assert root.progress.rates()["chunks_done"] == 0
    finally:
        root.close()
        cache.close()


def test_an_edit_goes_before_other_roots_whole_root_work(setup: Any, tmp_path: Path) -> None:
    """After an upgrade every stale root has a forced batch queued (and each gives way
    to the next): an edit in another root is taken first, not after a turn of each."""
    import shutil

    from daemon.indexer import Indexer

    crate, collab, _open_root = setup
    roots = []
    for name in ("a", "b", "c"):
        copy = tmp_path / name
        shutil.copytree(crate, copy)
        roots.append(RootIndex(copy.resolve(), collab.config, *_model(collab)))
    done: list[str] = []
    indexer = Indexer(replace(collab, after_files=lambda root: done.append(root.path.name)))
    indexer.enqueue(roots[0], None, force=True)
    indexer.enqueue(roots[1], None, force=True)
    indexer.enqueue(roots[2], {"src/lib.rs"})
    indexer.enqueue(roots[1], {"src/lib.rs"}, resumed=True)  # leftovers: not an edit
    _run_until_idle(indexer, roots)
    assert done[0] == "c" and sorted(done) == ["a", "b", "c"]


def _run_until_idle(indexer: Any, roots: list[RootIndex]) -> None:
    """Start `indexer` on what was queued, wait until every root is idle, then stop it
    and close the roots."""
    try:
        indexer.start()
        for root in roots:
            assert indexer.wait_idle(root.id, 120)
    finally:
        assert indexer.stop()
        for root in roots:
            root.close()


def _model(collab: Collaborators) -> tuple[str, int]:
    return collab.embedder.model_id, collab.embedder.dim


def test_a_forced_batch_plans_only_the_chunks_it_embeds(setup: Any) -> None:
    """A stale root's refresh at start is a forced batch whose vectors are all in
    place: its progress said "chunks embedded 0/2861" (every Tantivy doc rewritten
    counted as a chunk to embed), with an ETA, while it embedded none."""
    _crate, collab, open_root = setup
    root = open_root()
    run_batch(root, None, collab)
    fill_vectors(root, collab, lambda: False)
    checked = run_batch(root, None, collab, force=True)
    assert checked.chunks == 0 and checked.chunks_written > 0
    progress = root.progress.rates()
    assert progress["chunks_total"] == progress["chunks_done"] == 0


def test_a_forced_batch_stopped_after_its_last_file_has_finished(
    setup: Any, tmp_path: Path
) -> None:
    """A stop (or a turn given to another root) that falls after the last file: every
    file is written, yet the batch counted as interrupted and skipped what follows a
    whole-root pass, so the points of a path state.db does not know stayed."""
    import numpy as np

    from daemon.vectors import VectorPoint

    crate, collab, _open_root = setup
    one = tmp_path / "one"
    (one / "src").mkdir(parents=True)
    (one / "src" / "lib.rs").write_text((crate / "src" / "lib.rs").read_text())
    root = RootIndex(one.resolve(), collab.config, collab.embedder.model_id, collab.embedder.dim)
    try:
        run_batch(root, None, collab)
        fill_vectors(root, collab, lambda: False)
        stray = np.ones(collab.embedder.dim, dtype=np.float32)
        root.vectors.upsert([VectorPoint("ab" * 16, "src/gone.rs", "fn", stray)])
        root.vectors.flush()
        assert not verify_root(root)["ok"]
        stopping = replace(collab, should_stop=lambda: True)  # asked after the one file
        report = run_batch(root, None, stopping, force=True)
        assert report.interrupted == 0 and report.indexed == 1
        assert verify_root(root)["ok"]
    finally:
        root.close()


def _saving(
    indexer: Any, other: RootIndex, saves: int
) -> tuple[Callable[[RootIndex], None], list[tuple[str, int]]]:
    """An `after_files` hook for an editor saving root "a" all the time: each save is
    queued while the last one's batch runs (`saves` in all). It records the roots'
    batches in order, each with `other`'s pending vectors then."""
    left = iter(range(saves))
    done: list[tuple[str, int]] = []

    def after(root: RootIndex) -> None:
        done.append((root.path.name, other.ledger.vectors_pending))
        if root.path.name == "a" and next(left, None) is not None:
            indexer.enqueue(root, {"src/lib.rs"})

    return after, done


def test_an_editor_saving_all_the_time_does_not_starve_another_root(
    setup: Any, tmp_path: Path
) -> None:
    """Edits go first; a save every 100 ms (each one queued while the last one's batch
    ran) kept that tier busy for good, and another root's cold index waited until the
    saves stopped: it now gets a turn after a few, and its vectors are embedded too."""
    import shutil

    from daemon.indexer import MAX_PASSED, Indexer

    crate, collab, _open_root = setup
    roots = []
    for name in ("a", "b"):
        shutil.copytree(crate, tmp_path / name)
        roots.append(RootIndex((tmp_path / name).resolve(), collab.config, *_model(collab)))
    fresh = "".join(f"/// Unseen {i}.\npub fn unseen_{i}() -> u32 {{ {i} }}\n" for i in range(9))
    (tmp_path / "b" / "src" / "fresh.rs").write_text(fresh)  # not in the warm cache
    hooks: list[Callable[[RootIndex], None]] = []
    indexer = Indexer(replace(collab, after_files=lambda root: hooks[0](root)))
    after, done = _saving(indexer, roots[1], 4 * MAX_PASSED)
    hooks.append(after)
    indexer.enqueue(roots[0], {"src/lib.rs"})
    indexer.enqueue(roots[1], None)
    _run_until_idle(indexer, roots)
    names = [name for name, _pending in done]
    assert names.index("b") <= MAX_PASSED
    pending = [n for _name, n in done[names.index("b") :]]
    assert pending[0] > 0 and 0 in pending[:-1], "b's vectors waited for the last save"


def test_answers_name_the_roots_still_reading_their_files(setup: Any) -> None:
    """Search and navigation replies list, as `indexing`, the roots whose file work is
    queued or running: a root mid-way through its first scan answered an empty list with
    nothing saying it was not final."""
    from daemon.indexer import Indexer
    from daemon.service import indexing

    _crate, collab, open_root = setup
    root = open_root()
    indexer = Indexer(collab)  # not started yet: the first scan stays queued
    indexer.enqueue(root, None)
    try:
        assert indexing(indexer, [root]) == {"indexing": [str(root.path)]}
        indexer.start()
        assert indexer.wait_files_done(root.id, 120)
        assert indexing(indexer, [root]) == {}  # vectors may still be pending: BM25 has all
    finally:
        assert indexer.stop()
