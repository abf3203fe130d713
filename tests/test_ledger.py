"""A root's bookkeeping: the file ledger keeps records, the Merkle tree and state.db in
step; the progress object reports a typed activity and never a stale rate; the recorded
layout (model, text, chunk policy) rebuilds a root built under another one."""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

import apsw
import pytest
import tantivy

import daemon.root
from daemon.activity import Activity, RootProgress
from daemon.indexer import Indexer
from daemon.lexical import LEXICAL_VERSION
from daemon.pipeline import run_batch
from daemon.sync import Cookies, bring_up_to_date
from daemon.verify import verify_root
from ipc.errors import StateError
from tests.conftest import wait_until


def test_merkle_root_is_recorded_with_the_records(setup: Any) -> None:
    crate, collab, open_root = setup
    root = open_root()
    run_batch(root, None, collab)
    assert root.state.get_meta("merkle_root") == root.ledger.root_hash
    (crate / "src" / "extra.rs").write_text("pub fn extra() {}\n")
    before = root.ledger.root_hash
    run_batch(root, {"src/extra.rs"}, collab)
    assert root.ledger.root_hash != before
    assert root.state.get_meta("merkle_root") == root.ledger.root_hash
    recorded = root.ledger.root_hash
    root.close()
    assert open_root().ledger.root_hash == recorded  # rebuilt from the file hashes


def test_a_root_hash_that_disagrees_with_the_records_rereads_every_file(setup: Any) -> None:
    """A database whose records do not add up to its recorded root is not trusted for the
    stat fast path: the next full scan hashes every file, and then trusts it again."""
    _crate, collab, open_root = setup
    root = open_root()
    files = run_batch(root, None, collab).indexed
    root.state.set_meta("merkle_root", "0" * 64)
    root.close()
    reopened = open_root()
    first = run_batch(reopened, None, collab)
    assert first.read == files and first.indexed == 0  # read and hashed, nothing rewritten
    assert reopened.state.get_meta("merkle_root") == reopened.ledger.root_hash
    assert run_batch(reopened, None, collab).read == 0


def test_verify_diffs_contents_not_only_stat(setup: Any) -> None:
    """Same size, same mtime, same inode, other bytes: only the Merkle diff of what is
    on disk against the records sees it."""
    crate, collab, open_root = setup
    root = open_root()
    run_batch(root, None, collab)
    target = crate / "src" / "lib.rs"
    st = target.stat()
    data = bytearray(target.read_bytes())
    data[-2:-1] = b"X" if data[-2:-1] != b"X" else b"Y"
    with open(target, "r+b") as f:  # in place: the inode stays
        f.write(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    report = verify_root(root)
    assert not report["ok"]
    assert "changed on disk since indexed: src/lib.rs" in report["problems"]


def test_a_schema_1_database_gains_ctime_and_rereads_each_file_once(setup: Any) -> None:
    """A state.db from before `files.ctime_ns` is migrated in place: every record's ctime
    is unknown, so the next full scan reads and hashes each file once and re-indexes
    none (the hashes agree); then the stat fast path holds again."""
    _crate, collab, open_root = setup
    root = open_root()
    files = run_batch(root, None, collab).indexed
    db_path = root.state.path
    root.close()
    db = apsw.Connection(str(db_path))
    db.execute("ALTER TABLE files DROP COLUMN ctime_ns")
    db.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    db.close()
    reopened = open_root()
    assert reopened.state.get_meta("schema_version") == "2"
    assert {r.ctime_ns for r in reopened.state.files().values()} == {None}
    first = run_batch(reopened, None, collab)
    assert first.read == files and first.indexed == 0
    assert None not in {r.ctime_ns for r in reopened.state.files().values()}
    assert run_batch(reopened, None, collab).read == 0
    assert verify_root(reopened)["ok"]


def test_chunk_policy_change_rebuilds_the_root(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _crate, collab, open_root = setup
    root = open_root()
    run_batch(root, None, collab)
    assert len(root.ledger) > 0
    root.close()
    same = open_root()
    assert len(same.ledger) > 0  # same policy: kept
    same.close()
    monkeypatch.setattr(daemon.root, "CHUNK_POLICY_VERSION", 999)
    rebuilt = open_root()
    assert len(rebuilt.ledger) == 0 and rebuilt.state.get_meta("chunk_policy") == "999"
    report = run_batch(rebuilt, None, collab)
    assert report.indexed > 0 and report.cache_misses == 0  # re-chunked, vectors cached


def test_a_root_indexed_before_stems_is_rebuilt(setup: Any) -> None:
    """A root recorded without the lexical version (built before stemming) is rebuilt,
    and its BM25 side then matches a word's other forms: "backoffs" (a word the crate
    does not hold) finds the fn documented with "backoff"."""
    _crate, collab, open_root = setup
    root = open_root()
    run_batch(root, None, collab)
    db = root.dir / "state.db"
    root.close()
    with apsw.Connection(str(db)) as conn:
        conn.execute("DELETE FROM meta WHERE key = 'lexical'")
    rebuilt = open_root()
    assert len(rebuilt.ledger) == 0 and rebuilt.state.get_meta("lexical") == LEXICAL_VERSION
    run_batch(rebuilt, None, collab)
    hits = rebuilt.lexical.search("backoffs", 5)
    symbols = rebuilt.state.chunk_symbols(cid for cid, _ in hits).values()
    assert "net::retry::fetch_with_retry" in symbols


def test_a_root_whose_tantivy_index_has_an_older_schema_is_rebuilt_in_place(setup: Any) -> None:
    """An upgrade that adds a Tantivy field (version 3: doc comments) leaves roots whose
    index has the old schema, which Tantivy refuses to open: the root is rebuilt where
    it is, not set aside as broken, and then searches the new field."""
    _crate, collab, open_root = setup
    root = open_root()
    run_batch(root, None, collab)
    folder = root.dir / "tantivy"
    db = root.dir / "state.db"
    root.close()
    shutil.rmtree(folder)
    folder.mkdir()
    old = tantivy.SchemaBuilder()
    for name in ("chunk_id", "path", "kind", "symbol_t", "content_t"):
        old.add_text_field(name, stored=True)
    tantivy.Index(old.build(), str(folder))
    with apsw.Connection(str(db)) as conn:
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'lexical'")
    rebuilt = open_root()
    assert len(rebuilt.ledger) == 0 and rebuilt.state.get_meta("lexical") == LEXICAL_VERSION
    assert not root.dir.with_name(root.dir.name + ".broken").exists()
    run_batch(rebuilt, None, collab)
    hits = rebuilt.lexical.search("exponential", 5, boosts={"doc_t": 1.0, "content_t": 0.0})
    symbols = rebuilt.state.chunk_symbols(cid for cid, _ in hits).values()
    assert "net::retry::fetch_with_retry" in symbols  # found by its doc comment alone


def test_progress_has_a_rate_only_while_active() -> None:
    p = RootProgress()
    p.begin(Activity.INDEXING, files=10)
    p.started_at = time.time() - 2.0
    p.file_done(5)
    assert p.to_json()["progress"]["eta_s"] is not None
    p.failed("OSError: disk full")
    out = p.to_json()
    assert out["activity"] == "failed" and out["last_error"] == "OSError: disk full"
    assert out["progress"]["eta_s"] is None and out["progress"]["chunks_per_s"] == 0


def test_a_failed_batch_shows_failed_and_fresh_is_refused_until_its_retry(setup: Any) -> None:
    """Through the real indexer: a batch that fails (its state.db closed under it)
    leaves the root `failed` with its error, and no rate or ETA. Its work is out of the
    queue until the retry, so `fresh` must not take the root for up to date then (it
    answered from the older index), but say why."""
    _crate, collab, open_root = setup
    root = open_root()
    indexer = Indexer(collab)
    indexer.start()
    try:
        root.state.close()  # every write of the batch now fails
        indexer.enqueue(root, None)
        wait_until(lambda: indexer.failures.error(root.id) is not None, timeout=60)
        out = root.progress.to_json()
        assert out["activity"] == "failed"
        assert out["last_error"] and "retrying" in out["last_error"]
        assert out["progress"]["eta_s"] is None and out["progress"]["chunks_per_s"] == 0
        with pytest.raises(StateError, match="cannot answer") as caught:
            bring_up_to_date([root], Cookies(), indexer, timeout=30)
        assert "retrying" in str(caught.value)
    finally:
        indexer.stop()
