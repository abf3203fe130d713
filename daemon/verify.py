"""`verify`: do disk, state.db, Tantivy and Qdrant agree about a root?"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from daemon.merkle import MerkleTree, hash_bytes
from daemon.root import RootIndex
from daemon.vectors import read_through

MAX_PROBLEMS = 20


def disk_tree(root: RootIndex, exclude: set[str]) -> tuple[MerkleTree, int]:
    """The Merkle tree of the indexable files on disk now (read and hashed), leaving out
    `exclude`; and how many files it walked."""
    tree = MerkleTree()
    walked = 0
    for path, _st in root.ignore.walk(""):
        walked += 1
        if path in exclude:
            continue
        try:
            tree.set_file(path, hash_bytes((root.path / path).read_bytes()))
        except OSError:  # gone or unreadable since the walk: not on disk for this check
            continue
    return tree, walked


def _tree_problems(root: RootIndex, recorded: MerkleTree) -> tuple[list[str], int]:
    """Disk against the records, by Merkle diff (only differing subtrees are visited),
    and the records against the daemon's ledger and the persisted root hash."""
    problems: list[str] = []
    skipped = {p for p, _r, _d in root.state.skipped()}
    on_disk, walked = disk_tree(root, skipped)
    diff = recorded.diff(on_disk)
    problems += [f"on disk, not indexed: {p}" for p in diff.added]
    problems += [f"indexed, not on disk: {p}" for p in diff.deleted]
    problems += [f"changed on disk since indexed: {p}" for p in diff.changed]
    if recorded.root_hash != root.ledger.root_hash:
        problems.append("state.db's file records differ from the daemon's")
    persisted = root.state.get_meta("merkle_root")
    if persisted is not None and persisted != recorded.root_hash:
        problems.append("state.db's Merkle root does not match its file records")
    return problems, walked


def _read_index(
    root: RootIndex, name: str, read: Callable[[], dict[str, set[str]]], problems: list[str]
) -> dict[str, set[str]]:
    """`read()`, or nothing and a problem naming the repair when the index is unreadable."""
    try:
        return read()
    except Exception as exc:  # a damaged index: an error of its engine, any type
        problems.append(f"{name} cannot be read ({exc}); restart the daemon to rebuild it")
        return {}


def verify_root(root: RootIndex) -> dict[str, Any]:
    """Compare the four views path by path; call with the root's lock held (no batch running)."""
    records = root.state.files()
    recorded = MerkleTree({p: r.hash for p, r in records.items()})
    problems, walked = _tree_problems(root, recorded)
    state_ids = root.state.chunk_ids_by_path()
    pending = root.state.pending_ids()
    lexical_ids = _read_index(root, "tantivy", root.lexical.ids_by_path, problems)
    vector_ids = _read_index(root, "qdrant", lambda: read_through(root.vectors), problems)
    # Chunks a lexical-first batch left for later are in Tantivy, not yet in Qdrant.
    embedded = {p: ids - pending for p, ids in state_ids.items()}
    for name, want, ids in (("tantivy", state_ids, lexical_ids), ("qdrant", embedded, vector_ids)):
        for path in sorted(set(want) | set(ids)):
            if want.get(path, set()) != ids.get(path, set()):
                problems.append(f"{name} disagrees with state.db on {path}")
    stray = pending - {cid for ids in state_ids.values() for cid in ids}
    if stray:
        problems.append(f"{len(stray)} pending vectors of chunks not recorded")
    for path, rec in records.items():
        if rec.chunks != len(state_ids.get(path, ())):
            problems.append(f"chunk count mismatch in state.db for {path}")
    for path in sorted(root.state.graph_paths() - set(records)):
        problems.append(f"symbol graph rows of a file not recorded: {path}")
    lexical_total = sum(len(v) for v in lexical_ids.values())
    vector_total = sum(len(v) for v in vector_ids.values())
    return {
        "path": str(root.path),
        "ok": not problems,
        "files_on_disk": walked,
        "files_recorded": len(records),
        "chunks_recorded": sum(len(v) for v in state_ids.values()),
        "tantivy_docs": lexical_total,
        "qdrant_points": vector_total,
        "vectors_pending": len(pending),
        "problems": problems[:MAX_PROBLEMS],
        "problem_count": len(problems),
    }


def unchecked_report(root: RootIndex) -> dict[str, Any]:
    """`verify_root`'s report for a root that was indexing throughout the wait: not
    checked, so not ok, and saying when to ask again."""
    return {
        "path": str(root.path),
        "ok": False,
        "busy": True,
        "problems": ["indexing: not checked; retry when rcmd status shows it idle"],
        "problem_count": 1,
    }
