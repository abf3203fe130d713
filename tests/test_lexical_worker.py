"""A big batch's Tantivy writes made in a worker process (`daemon.lexical_writes`): the
same index as in process, nothing half written when the worker dies, and the index's
writer back in the daemon once the batch ends."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from daemon.cpus import cpu_info
from daemon.lexical import LexicalIndex
from daemon.lexical_writes import LexicalDoc, WorkerWrites
from daemon.pipeline import run_batch
from daemon.verify import verify_root
from ipc.errors import StateError


def _doc(cid: str, word: str) -> LexicalDoc:
    return LexicalDoc(cid, f"src/{cid}.rs", "fn", f"m::{word}", f"fn {word}()", word, 1, 2)


def _ids(index: LexicalIndex, word: str) -> list[str]:
    return sorted(cid for cid, _ in index.search(word, 10))


def test_writes_in_the_worker_are_committed_and_the_writer_comes_back(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "tantivy")
    index.add([_doc("a", "alpha")])
    index.commit()
    assert index.write_in_worker()
    index.delete_paths(["src/a.rs"])
    index.add([_doc("b", "beta"), _doc("c", "beta")])
    assert _ids(index, "beta") == []  # not committed yet
    index.commit()
    assert _ids(index, "beta") == ["b", "c"] and _ids(index, "alpha") == []
    index.write_here()
    index.add([_doc("d", "beta")])  # the daemon's own writer again: the lock was let go
    index.commit()
    assert _ids(index, "beta") == ["b", "c", "d"]
    index.close()


def test_a_worker_that_dies_fails_the_commit_and_leaves_the_last_commit(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "tantivy")
    assert index.write_in_worker()
    index.add([_doc("a", "alpha")])
    index.commit()
    index.add([_doc("b", "alpha")])
    worker = index._writes
    assert isinstance(worker, WorkerWrites)
    worker._proc.kill()
    with pytest.raises(StateError, match="lexical worker"):
        index.commit()
    index.rollback()  # as the indexer does after a failed batch
    assert _ids(index, "alpha") == ["a"]
    index.add([_doc("c", "alpha")])  # its death released the lock
    index.commit()
    assert _ids(index, "alpha") == ["a", "c"]
    index.close()


def test_a_failed_batch_in_the_worker_drops_what_it_did_not_commit(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "tantivy")
    assert index.write_in_worker()
    index.add([_doc("a", "alpha")])
    index.write_here()  # the batch ends with writes pending: they are dropped
    assert index.pending == 0 and _ids(index, "alpha") == []
    index.close()


def test_the_segments_the_worker_wrote_are_removed_once_dead(tmp_path: Path) -> None:
    """Tantivy deletes only the files its list (`.managed.json`, held in memory from when
    the index was opened) names: the daemon's index must learn the worker's files, or
    they stay on disk for good once their documents are deleted."""
    path = tmp_path / "tantivy"
    index = LexicalIndex(path)
    assert index.write_in_worker()
    index.add([_doc(f"a{i}", "alpha") for i in range(20)])
    index.commit()
    index.write_here()
    meta = json.loads((path / "meta.json").read_text())
    worker_segments = {seg["segment_id"].replace("-", "") for seg in meta["segments"]}
    assert worker_segments
    index.delete_all()
    index.commit()
    index.add([_doc("z", "omega")])
    index.commit()
    index.release_writer()  # its merges and garbage collection end first
    left = {p.name.split(".")[0] for p in path.iterdir()} & worker_segments
    assert left == set()
    index.close()


def test_a_worker_that_cannot_take_the_writer_leaves_the_writes_here(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "tantivy")
    other = LexicalIndex(tmp_path / "tantivy")
    other.add([_doc("a", "alpha")])  # another writer holds the index's lock
    assert not index.write_in_worker()
    other.commit()
    other.close()
    index.add([_doc("b", "alpha")])
    index.commit()
    assert _ids(index, "alpha") == ["a", "b"]
    index.close()


@pytest.mark.skipif(cpu_info().usable < 2, reason="the worker needs a second usable CPU")
def test_a_forced_rebuild_in_the_worker_equals_one_in_process(setup: Any) -> None:
    _crate, collab, open_root = setup
    root = open_root()
    run_batch(root, None, collab)
    here = root.lexical.ids_by_path()
    index_cfg = dataclasses.replace(collab.config.index, lexical_worker_files=1)
    worker_collab = dataclasses.replace(
        collab, config=dataclasses.replace(collab.config, index=index_cfg)
    )
    report = run_batch(root, None, worker_collab, force=True)
    assert report.lexical_worker == 1 and report.chunks_written > 0
    assert root.lexical.ids_by_path() == here
    assert verify_root(root)["ok"], verify_root(root)["problems"]
    assert root.lexical.search("fetch_with_retry", 5)
    # The next batch writes in process again (the worker gave the writer back).
    lib = root.path / "src" / "lib.rs"
    lib.write_text(lib.read_text() + "\npub fn after_the_worker() {}\n")
    assert run_batch(root, ["src/lib.rs"], collab).lexical_worker == 0
    assert root.lexical.search("after_the_worker", 5)
    assert verify_root(root)["ok"], verify_root(root)["problems"]
