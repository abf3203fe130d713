"""`verify`: do disk, state.db, Tantivy and Qdrant agree about a root?"""

from __future__ import annotations

from typing import Any

from daemon.root import RootIndex

MAX_PROBLEMS = 20


def verify_root(root: RootIndex) -> dict[str, Any]:
    """Compare the four views path by path; call with the root's lock held (no batch running)."""
    problems: list[str] = []
    on_disk = dict(root.ignore.walk(""))
    records = root.state.files()
    skipped = {p for p, _r, _d in root.state.skipped()}
    for path in sorted(set(on_disk) - set(records) - skipped):
        problems.append(f"on disk, not indexed: {path}")
    for path in sorted(set(records) - set(on_disk)):
        problems.append(f"indexed, not on disk: {path}")
    for path in sorted(set(records) & set(on_disk)):
        st, rec = on_disk[path], records[path]
        if (st.st_size, st.st_mtime_ns) != (rec.size, rec.mtime_ns):
            problems.append(f"changed on disk since indexed: {path}")
    state_ids = root.state.chunk_ids_by_path()
    pending = root.state.pending_ids()
    lexical_ids = root.lexical.ids_by_path()
    vector_ids = root.vectors.ids_by_path()
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
    lexical_total = sum(len(v) for v in lexical_ids.values())
    vector_total = sum(len(v) for v in vector_ids.values())
    return {
        "path": str(root.path),
        "ok": not problems,
        "files_on_disk": len(on_disk),
        "files_recorded": len(records),
        "chunks_recorded": sum(len(v) for v in state_ids.values()),
        "tantivy_docs": lexical_total,
        "qdrant_points": vector_total,
        "vectors_pending": len(pending),
        "problems": problems[:MAX_PROBLEMS],
        "problem_count": len(problems),
    }
