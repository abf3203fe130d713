"""One batch, end to end: reconcile paths → stat/hash → chunk → embed (cache first) →
Tantivy + Qdrant writes → commit → state records.

The consistency rule lives here: paths are marked in-flight before any index write, and a
file's record is written only after the Tantivy commit and the vector flush that hold it.
Chunk ids are deterministic, so replaying a batch after a crash overwrites, never duplicates.

A big batch is lexical-first: chunks whose vector is not in the embedding cache are
recorded as pending (state.db says exactly which vectors Qdrant lacks) and
`fill_vectors` embeds them afterwards, a step at a time, yielding to newer work.
"""

from __future__ import annotations

import functools
import os
import stat as stat_mod
import time
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field

import blake3
import structlog

from daemon.activity import Activity
from daemon.chunk_cache import ChunkCache
from daemon.chunk_diff import ChunkDiff, FileWrite, IdChunk, check_stored, diff_chunks, row_fields
from daemon.chunker import Chunk, TooComplex, chunk_source
from daemon.config import Config
from daemon.cpus import cpu_info
from daemon.embed_cache import EmbedCache, Vector, cache_key
from daemon.embed_groups import EmbedPolicy, shared_texts
from daemon.embedder import TextEmbedder
from daemon.graph import graph_of
from daemon.graph_pool import GraphPool
from daemon.graph_rows import TableRows, rows_of
from daemon.ignore import IGNORE_FILES, is_indexable_name, printable_if_not_utf8, through_link
from daemon.lexical_writes import LexicalDoc
from daemon.merkle import ancestors, hash_bytes
from daemon.metrics import BatchReport
from daemon.parse_cache import ParseCache
from daemon.regular import read_regular
from daemon.root import RootIndex
from daemon.state import ChunkPatch, ChunkRow, FileRecord, PendingVector
from daemon.vectors import VectorPoint

log = structlog.get_logger("rcmd.pipeline")

#: A batch runs at least this long before it yields to another root's file work, so
#: two busy roots take turns instead of thrashing.
MIN_RUN_BEFORE_YIELD_S = 0.5


@dataclass(frozen=True, slots=True)
class Collaborators:
    config: Config
    embedder: TextEmbedder
    cache: EmbedCache
    #: Set when the daemon is shutting down: a batch stops at its next commit point.
    should_stop: Callable[[], bool] = lambda: False
    #: Chunk lists by (path, content): a file seen before is not parsed again.
    chunk_cache: ChunkCache | None = None
    #: Trees of recently parsed files: an edit is parsed incrementally.
    parse_cache: ParseCache | None = None
    #: Extracts the symbol graphs of big batches on another CPU (`daemon.graph_pool`).
    graph_pool: GraphPool | None = None
    #: Called on the indexer thread after each file batch of a root; must not raise (a
    #: project's dependency crates are refreshed there: `daemon.dep_sync`).
    after_files: Callable[[RootIndex], object] = lambda _root: None


def crash_point(name: str) -> None:
    """Die here, as a kill -9 would, when the test-only switch RCMD_TEST_CRASH_AT names this
    point: the crash tests use it to hit the windows between the consistency steps."""
    if os.environ.get("RCMD_TEST_CRASH_AT") == name:
        os._exit(137)


def hold_point(name: str, until: Callable[[], bool]) -> None:
    """Wait here until `until()` (the daemon asked to stop; for `search` and `fresh`,
    the searched roots' stores closed by the stop), when the test-only switch
    RCMD_TEST_HOLD_AT names this point: a test of what a client sees while a root is
    indexing (Ctrl-C in `index --wait`, `stop` mid-batch) or a search runs then runs no
    race against the work finishing first. The log says when it holds (`test_hold`)."""
    if os.environ.get("RCMD_TEST_HOLD_AT") != name:
        return
    log.info("test_hold", point=name)
    while not until():
        time.sleep(0.01)


def chunk_id(root_id: str, path: str, c: Chunk, occurrence: int) -> str:
    return _chunk_id(root_id, path, c.symbol, c.kind, c.part, occurrence)


@functools.lru_cache(maxsize=1 << 15)
def _chunk_id(root_id: str, path: str, symbol: str, kind: str, part: int, occurrence: int) -> str:
    """Memoized: a save hashes the ids of every chunk of the file twice (old and new)."""
    key = f"{root_id}\0{path}\0{symbol}\0{kind}\0{part}\0{occurrence}"
    return blake3.blake3(key.encode()).hexdigest(length=16)


def assign_ids(root_id: str, path: str, chunks: Iterable[Chunk]) -> list[tuple[str, Chunk]]:
    """Deterministic ids; repeated (symbol, kind, part) in a file are told apart by order."""
    seen: dict[tuple[str, str, int], int] = {}
    out = []
    for c in chunks:
        k = (c.symbol, c.kind, c.part)
        n = seen.get(k, 0)
        seen[k] = n + 1
        out.append((_chunk_id(root_id, path, c.symbol, c.kind, c.part, n), c))
    return out


@dataclass
class _Scan:
    present: dict[str, os.stat_result] = field(default_factory=dict)
    scope: list[str] = field(default_factory=list)  # prefixes fully reconciled
    not_utf8: set[str] = field(default_factory=set)  # printable names that cannot be indexed
    #: Folders that may not be listed (EACCES): what they held is dropped, as an
    #: unreadable file is, and each is reported as skipped instead of vanishing silently.
    unreadable: set[str] = field(default_factory=set)


def _reconcile(root: RootIndex, paths: Iterable[str] | None) -> _Scan:
    """Stat each event path: a file is checked, a directory rescanned, a missing path
    drops everything recorded under it. `None` means the whole root."""
    scan = _Scan()
    if paths is None:
        root.ignore.forget("")
        scan.scope.append("")
        scan.present.update(root.ignore.walk("", scan.not_utf8, scan.unreadable))
        return scan
    for rel in sorted(set(paths)):
        shown = printable_if_not_utf8(rel)
        if shown is not None:
            scan.not_utf8.add(shown)
            continue
        name = rel.rsplit("/", 1)[-1]
        if name in IGNORE_FILES:
            parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
            root.ignore.forget(parent)
            rel = parent
        full = root.path / rel
        try:
            if through_link(root.path, rel):  # names a file outside the root: absent
                raise FileNotFoundError(rel)
            st = os.lstat(full)
        except OSError:
            scan.scope.append(rel)
            continue
        if stat_mod.S_ISDIR(st.st_mode):
            scan.scope.append(rel)
            if not rel or not root.ignore.is_ignored(rel, True):
                scan.present.update(root.ignore.walk(rel, scan.not_utf8, scan.unreadable))
        elif stat_mod.S_ISREG(st.st_mode):
            scan.scope.append(rel)
            if is_indexable_name(name) and not root.ignore.is_ignored(rel, False):
                scan.present[rel] = st
        else:
            scan.scope.append(rel)
    return scan


def _stored(root: RootIndex) -> _Stored:
    return _Stored(root.vectors.ids_by_path(), root.state.pending_ids_by_path())


class _Pending:
    """Index writes not yet committed, and the records that follow the commit; `pool`:
    where this batch's symbol graphs are extracted, when not in process."""

    def __init__(self, pool: GraphPool | None = None) -> None:
        self.pool = pool
        #: Graphs the pool is extracting: (path, content hash, bytes, future rows and blob).
        self.graph_jobs: list[tuple[str, bytes, bytes, Future[tuple[TableRows, bytes]]]] = []
        self.files: list[FileRecord] = []
        self.chunks: list[ChunkRow] = []
        self.deleted: list[str] = []
        self.skipped: dict[str, tuple[str, str]] = {}
        self.vectors_later: list[PendingVector] = []
        self.patches: list[ChunkPatch] = []
        #: Files checked against the indexes (forced, content as recorded).
        self.checked: set[str] = set()
        self.since = time.monotonic()

    def __bool__(self) -> bool:
        return bool(self.files or self.deleted or self.skipped or self.graph_jobs)


def _commit(
    root: RootIndex, pending: _Pending, report: BatchReport, cache: ChunkCache | None
) -> None:
    if not pending:
        return
    with report.timed("graph"):
        _collect_graphs(root, pending, cache)
    with report.timed("tantivy_commit"):
        root.lexical.commit()
    crash_point("after_tantivy_commit")
    with report.timed("vector_flush"):
        root.vectors.flush()
    crash_point("before_state_record")
    with report.timed("state_record"):
        root.ledger.commit(
            pending.files,
            pending.chunks,
            pending.deleted,
            pending.skipped,
            pending.vectors_later,
            pending.patches,
            pending.checked,
        )


def _read(
    root: RootIndex, rel: str, max_bytes: int
) -> tuple[bytes | None, os.stat_result | None, str]:
    """File bytes and the stat taken with them, or a skip reason (`daemon.regular`: a
    FIFO that took a scanned file's name must not hang the batch)."""
    try:
        data, st = read_regular(root.path / rel, max_bytes)
    except FileNotFoundError:
        return None, None, "vanished"
    except OSError as exc:
        return None, None, f"unreadable: {exc.strerror}"
    if data is None:
        size = f"{st.st_size} bytes" if st.st_size > max_bytes else "grew while read"
        return None, st, f"too_large: {size} > {max_bytes}"
    if b"\0" in data[:8192]:
        return None, st, "binary"
    return data, st, ""


@dataclass
class _Plan:
    """What a batch must do, decided from the scan before any index is touched."""

    candidates: list[str]  # files to read (changed, new, in flight, or forced)
    gone: list[str]  # recorded or in-flight paths no longer present
    inflight: set[str]
    pending: _Pending
    #: Files whose content, when as recorded, is checked against what the indexes hold
    #: (a forced reindex), with what the vector store and state.db's pending rows hold.
    check: set[str] = field(default_factory=set)
    stored: _Stored | None = None


@dataclass(frozen=True)
class _Stored:
    """What the vector store holds, and which recorded chunks still wait for a vector,
    read once when a forced batch starts: a file whose content is as recorded is then
    checked against the indexes, not rewritten blind."""

    points: dict[str, set[str]]  # ids by path
    pending: dict[str, set[str]]  # ids by path


def _plan(
    root: RootIndex,
    paths: set[str] | None,
    force: bool,
    report: BatchReport,
    max_bytes: int,
    check: Collection[str] = (),
) -> _Plan:
    """Reconcile `paths` and split them into files to read and paths to drop; forced
    (`force`, or the `check` paths a forced batch left), which files to check. An indexed
    file now over `max_bytes` is read again even if unchanged, so a lowered limit drops
    it (from the stat data already at hand: no extra system call)."""
    inflight = root.state.inflight()
    if paths is not None:
        paths = paths | inflight  # a failed batch's leftovers are redone by the next
    with report.timed("scan"):
        scan = _reconcile(root, paths)
    report.statted += len(scan.present)
    scopes = set(scan.scope)

    def in_scope(p: str) -> bool:
        return p in scopes or any(a in scopes for a in ancestors(p))

    diff = root.ledger.stat_diff(scan.present) if paths is None and not force else None
    if diff is not None:  # a whole-root scan: the stat trees' diff, agreeing dirs skipped
        changed = {*diff.added, *diff.changed}
        candidates = [p for p in scan.present if p in changed or p in inflight]
        gone = list(diff.deleted)
        report.dirs_skipped += diff.dirs_skipped
    else:  # events: each path's stat against its record
        candidates = [
            rel
            for rel, st in scan.present.items()
            if force or rel in inflight or not root.ledger.unchanged(rel, st)
        ]
        gone = root.ledger.under(lambda p: p not in scan.present and in_scope(p))
    candidates += _over_limit(root, scan.present, set(candidates), max_bytes)
    report.unchanged += len(scan.present) - len(candidates)
    gone += [p for p in inflight if p not in scan.present and p not in root.ledger]
    pending = _Pending()
    # Skip records of files that are gone (or no longer skipped) are dropped; names that
    # are not valid UTF-8 cannot be stored or indexed, so they are reported instead.
    for p, _reason, _detail in root.state.skipped():
        if p not in scan.present and p not in scan.not_utf8 and in_scope(p):
            pending.skipped[p] = ("", "")
    for shown in scan.not_utf8:
        pending.skipped[shown] = ("non_utf8_name", "the file name is not valid UTF-8")
        report.skipped += 1
    for folder in scan.unreadable:
        why = "Permission denied (a folder: its files are indexed again once it can be read)"
        pending.skipped[folder or "."] = ("unreadable", why)
        report.skipped += 1
    plan = _Plan(candidates, gone, inflight, pending)
    plan.check = {p for p in candidates if (force and p not in inflight) or p in check}
    if plan.check:
        with report.timed("check"):
            plan.stored = _stored(root)
    return plan


def _over_limit(
    root: RootIndex, present: dict[str, os.stat_result], listed: set[str], max_bytes: int
) -> list[str]:
    """Indexed files over `max_bytes` not `listed` yet: unchanged, but the limit was
    lowered since they were indexed, so they must be read again (and dropped)."""
    return [
        p
        for p, st in present.items()
        if st.st_size > max_bytes and p not in listed and p in root.ledger
    ]


def run_batch(
    root: RootIndex,
    paths: Iterable[str] | None,
    collab: Collaborators,
    *,
    force: bool = False,
    check: Collection[str] = (),
    should_yield: Callable[[], bool] = lambda: False,
    unchecked: Callable[[list[str]], None] = lambda _: None,
    report: BatchReport | None = None,
) -> BatchReport:
    """Bring the indexes of `root` up to date for `paths` (None: the whole root); `force`
    reads every file again, and checks against the indexes those whose content is as
    recorded (as it does the `check` paths, left by a forced batch that stopped).

    `should_yield` says another root's file work waits: the batch then stops at its next
    step boundary (after `MIN_RUN_BEFORE_YIELD_S`). Files not written yet stay in
    flight, so the caller resumes exactly where it stopped by queueing them again, and
    those still to check are passed to `unchecked`. `report` (a new one by default)
    is counted into as the batch goes, so its caller can show the counts meanwhile."""
    report = BatchReport() if report is None else report
    prog = root.progress
    if not root.path.is_dir():
        # An unmounted disk or a moved checkout is not "every file deleted".
        prog.set_watcher("root missing; waiting for it to return")
        return report
    prog.begin(Activity.SCANNING)
    wanted = None if paths is None else set(paths)
    plan = _plan(root, wanted, force, report, collab.config.index.max_file_bytes, check)
    prog.files_planned(len(plan.candidates))
    prog.set_activity(Activity.INDEXING)
    root.state.mark_inflight([*plan.candidates, *plan.gone])
    if force and paths is None:
        root.graph_current()  # every file is read again, now or after a restart
    workers = len(plan.candidates) >= collab.config.index.lexical_worker_files > 0
    in_worker = workers and cpu_info().spare and root.lexical.write_in_worker()
    report.lexical_worker += in_worker
    try:
        if plan.gone:
            report.points_dropped += root.ledger.chunks_of(plan.gone)
            root.lexical.delete_paths(plan.gone)
            root.vectors.delete_paths(plan.gone)
            plan.pending.deleted.extend(plan.gone)
            report.deleted += len(plan.gone)
        rest = _write_files(root, plan, collab, report, force, should_yield)
    finally:
        if collab.graph_pool is not None:
            collab.graph_pool.release()
        if in_worker:
            root.lexical.write_here()
    if rest is not None:
        report.interrupted += 1
        unchecked([p for p in rest if p in plan.check])
    elif paths is None:
        root.ledger.full_scan_done()
    if rest is None and plan.stored is not None:  # paths this batch wrote are not stray
        drop_orphans(root, plan.stored.points.keys() - {*plan.candidates, *plan.gone})
    prog.end()
    return report


def _write_files(
    root: RootIndex,
    plan: _Plan,
    collab: Collaborators,
    report: BatchReport,
    force: bool,
    should_yield: Callable[[], bool],
) -> list[str] | None:
    """Read, chunk, embed and write the planned files a step at a time, committing on the
    interval; the files not reached when a stop, a removal or other work interrupted it
    (what is done stays; the rest stays in flight), None when it finished."""
    cfg = collab.config.index
    yield_after = time.monotonic() + MIN_RUN_BEFORE_YIELD_S
    pending = plan.pending
    lexical_first = len(plan.candidates) >= cfg.lexical_first_files
    if collab.graph_pool is not None and len(plan.candidates) >= cfg.graph_worker_files > 0:
        pending.pool = collab.graph_pool
    step: list[FileWrite] = []
    step_chunks = 0
    for i, rel in enumerate(plan.candidates):
        # An in-flight file may be half written in one index: rewrite it even if unchanged.
        redo = force or rel in plan.inflight
        stored = plan.stored if rel in plan.check else None
        prepared = _prepare_file(root, rel, collab, pending, report, (redo, stored))
        if prepared is not None:
            step.append(prepared)
            step_chunks += len(prepared.docs)
        last = i == len(plan.candidates) - 1
        if step and (step_chunks >= cfg.chunks_per_step or last):
            _write_step(root, step, collab, pending, report, lexical_first)
            step, step_chunks = [], 0
        stop = (
            collab.should_stop()
            or root.cancelled
            or (step == [] and time.monotonic() > yield_after and should_yield())
        )
        if last or stop or time.monotonic() - pending.since >= cfg.commit_interval_s:
            _commit(root, pending, report, collab.chunk_cache)
            pending = _Pending(pending.pool)
        # Counted after the commit, so "every file done" means every file is searchable.
        root.progress.file_done(i + 1)
        if stop and not last:  # stopped after the last file: it has finished
            log.info("batch_interrupted", root=str(root.path), done=i + 1)
            return [f.record.path for f in step] + plan.candidates[i + 1 :]
    _commit(root, pending, report, collab.chunk_cache)
    return None


def _prepare_file(
    root: RootIndex,
    rel: str,
    collab: Collaborators,
    pending: _Pending,
    report: BatchReport,
    redo: tuple[bool, _Stored | None],
) -> FileWrite | None:
    """Read, hash and chunk one file; None when there is nothing to write for it. Unless
    `redo` (rewrite it), the new chunks are compared with those the indexes hold (when
    known); given what the stores hold (`redo[1]`, a forced reindex), they are checked
    against state.db's rows and the vector store's points instead."""
    force, stored = redo
    with report.timed("read"):
        data, st, reason = _read(root, rel, collab.config.index.max_file_bytes)
    if data is None or st is None:
        if reason == "vanished":
            pending.skipped[rel] = ("", "")
            _drop_indexed(root, rel, pending, report)
        else:
            kind, _, detail = reason.partition(": ")
            _skip(root, rel, pending, report, kind, detail)
        return None
    report.read += 1
    with report.timed("hash"):
        digest = hash_bytes(data)
    if not force and root.ledger.same_content(rel, st, digest):
        pending.skipped[rel] = ("", "")  # clears its in-flight mark at the next commit
        report.unchanged += 1
        return None
    t = time.perf_counter()
    old = None if force else _indexed_chunks(root, rel, collab)
    try:
        cut, typed = _chunks_of(root.id, rel, data, digest, collab, report)
        chunks = assign_ids(root.id, rel, cut)
    except TooComplex as exc:
        _skip(root, rel, pending, report, "too_complex", str(exc))
        return None
    except Exception as exc:  # one file the chunker cannot handle must not stop the batch
        log.exception("chunk_failed", root=str(root.path), path=rel)
        _skip(root, rel, pending, report, "chunk_error", f"{type(exc).__name__}: {exc}")
        return None
    report.time("chunk", time.perf_counter() - t)
    diff, shared = _diff(root, (rel, digest), chunks, (old, stored), report)
    with report.timed("graph"):
        _stage_graph(root, rel, (digest, data), collab, pending, cache_it=not typed)
    _count_diff(root, rel, diff, stored, report)
    if stored is not None and diff is not None:
        pending.checked.add(rel)  # its graph rows are checked too, when recorded
    record = FileRecord.of(rel, st, digest, len(chunks))
    prepared = FileWrite(record, chunks, diff, shared, checked=stored is not None)
    root.progress.chunks_planned(len(prepared.embeds))  # what it embeds
    return prepared


def _count_diff(
    root: RootIndex, rel: str, diff: ChunkDiff | None, stored: _Stored | None, report: BatchReport
) -> None:
    """Count what writing a file's chunks leaves as vector garbage (of a checked file,
    only the points the store holds), keeps and moves."""
    if diff is None:
        report.points_dropped += root.ledger.chunks_of([rel])
        return
    dropped = (*diff.removed, *(cid for cid, _ in diff.changed))
    held = None if stored is None else stored.points.get(rel, set())
    report.points_dropped += len(dropped) if held is None else sum(c in held for c in dropped)
    report.chunks_moved += len(diff.moved)
    report.chunks_kept += diff.kept


def _diff(
    root: RootIndex,
    file: tuple[str, bytes],
    chunks: list[IdChunk],
    indexed: tuple[list[IdChunk] | None, _Stored | None],
    report: BatchReport,
) -> tuple[ChunkDiff | None, dict[str, str]]:
    """What to write of a file's `chunks` (None: all of them), against the chunks the
    indexes hold for it (`old`) or, forced, against what they hold (`stored`); and the
    embedded texts of its chunks that share a vector."""
    old, stored = indexed
    if stored is not None:
        with report.timed("check"):
            diff = _checked(root, *file, chunks, stored)
        if diff is not None and not diff.changed:
            return diff, {}  # no vector to write: no embedded text needed
        return diff, _shared(chunks, root.policy)
    with report.timed("chunk"):
        shared = _shared(chunks, root.policy)
        diff = None if old is None else diff_chunks(old, chunks, _shared(old, root.policy), shared)
    return diff, shared


def _checked(
    root: RootIndex, rel: str, digest: bytes, chunks: list[IdChunk], stored: _Stored
) -> ChunkDiff | None:
    """A forced file's chunks against what state.db and the vector store hold for it;
    None (written whole) when its recorded content is not this one."""
    rec = root.ledger.get(rel)
    if rec is None or rec.hash != digest:
        return None
    rows = {cid: row_fields(r) for cid, r in root.state.chunk_rows_of(rel).items()}
    points, pending = stored.points.get(rel, set()), stored.pending.get(rel, set())
    return check_stored(chunks, rows, points, pending)


def _shared(chunks: list[IdChunk], policy: EmbedPolicy) -> dict[str, str]:
    """Embedded text by id of the chunks that share a vector."""
    texts = shared_texts([c for _, c in chunks], policy)
    return {cid: text for (cid, _), text in zip(chunks, texts, strict=True) if text is not None}


def _stage_graph(
    root: RootIndex,
    rel: str,
    content: tuple[bytes, bytes],
    collab: Collaborators,
    pending: _Pending,
    *,
    cache_it: bool,
) -> None:
    """Stage the file's symbol graph (from the cache when its content is known, else
    from the batch's worker, or here: from the tree the parse cache holds, reading again
    only the items an edit changed) for the commit that records its chunks; kept in the
    chunk cache when `cache_it` (not for a version being typed, as its chunks are not).
    A file the graph extractor cannot read keeps its chunks and has no graph rows."""
    digest, data = content
    cache, parses = collab.chunk_cache, collab.parse_cache
    rows = cache.get_graph(rel, digest) if cache is not None else None
    if rows is None and pending.pool is not None:
        job = pending.pool.submit(rel, data)
        if job is not None:
            pending.graph_jobs.append((rel, digest, data, job))
            return
    if rows is None:
        try:
            graph = parses.graph((root.id, rel), digest) if parses is not None else None
            rows = rows_of(graph if graph is not None else graph_of(rel, data))
        except Exception:
            log.exception("graph_failed", root=str(root.path), path=rel)
            return
        if cache is not None and cache_it:
            cache.put_graph(rel, digest, rows)
    root.ledger.stage_graph(rel, digest, rows)


def _collect_graphs(root: RootIndex, pending: _Pending, cache: ChunkCache | None) -> None:
    """Stage the graphs the worker extracted for this commit (waiting for the last
    ones); a file whose job failed has its graph extracted here."""
    for rel, digest, data, job in pending.graph_jobs:
        try:
            rows, blob = job.result()
        except Exception:  # the worker died: it takes no more of this batch
            if pending.pool is not None:
                pending.pool.fail()
            rows = rows_of(graph_of(rel, data))
            blob = None
        if cache is not None:
            if blob is None:
                cache.put_graph(rel, digest, rows)
            else:
                cache.put_graph_blob(rel, digest, blob)
        root.ledger.stage_graph(rel, digest, rows)
    pending.graph_jobs.clear()


def _indexed_chunks(
    root: RootIndex, rel: str, collab: Collaborators
) -> list[tuple[str, Chunk]] | None:
    """The chunks (with ids) the indexes hold for `rel`: chunking is deterministic, so they
    are the chunks of its recorded content, when a cache still has those. None when
    unknown, or when their ids are not exactly the recorded ones (then it is rewritten)."""
    rec = root.ledger.get(rel)
    if rec is None:
        return None
    parses, cache = collab.parse_cache, collab.chunk_cache
    chunks = parses.chunks_for((root.id, rel), rec.hash) if parses is not None else None
    if chunks is None and cache is not None:
        chunks = cache.get(rel, rec.hash)
    if chunks is None:
        return None
    old = assign_ids(root.id, rel, chunks)
    if {cid for cid, _ in old} != root.state.chunk_ids_of(rel):
        return None
    return old


def _chunks_of(
    root_id: str, rel: str, data: bytes, digest: bytes, collab: Collaborators, report: BatchReport
) -> tuple[list[Chunk], bool]:
    """The file's chunks: from the parse or chunk cache when this content was chunked
    before, else from the file's previous tree when the parse cache holds it; and
    whether they were cut incrementally (a version being typed: not cached)."""
    cache, parses = collab.chunk_cache, collab.parse_cache
    cached = parses.chunks_for((root_id, rel), digest) if parses is not None else None
    if cached is None and cache is not None:
        cached = cache.get(rel, digest)
    if cached is not None:
        report.chunk_cache_hits += 1
        return cached, False
    if parses is None:
        chunks = chunk_source(rel, data)
        report.files_parsed += 1
    else:
        parsed = parses.chunk((root_id, rel), data, digest)
        chunks = parsed.chunks
        report.items_reparsed += parsed.items_reparsed
        if parsed.incremental:
            # A version being typed is rarely seen again: the parse cache holds it.
            report.files_reparsed += 1
            return chunks, True
        report.files_parsed += 1
    if cache is not None:
        cache.put(rel, digest, chunks)
    return chunks, False


def _skip(
    root: RootIndex, rel: str, pending: _Pending, report: BatchReport, reason: str, detail: str
) -> None:
    """Count and record a file that cannot be indexed, and drop what the indexes held."""
    report.skipped += 1
    pending.skipped[rel] = (reason, detail)
    _drop_indexed(root, rel, pending, report)


def _drop_indexed(root: RootIndex, rel: str, pending: _Pending, report: BatchReport) -> None:
    """Remove a file that is indexed but can no longer be (gone, unreadable, skipped)."""
    old = root.ledger.get(rel)
    if old is None:
        return
    root.lexical.delete_paths([rel])
    root.vectors.delete_paths([rel])
    pending.deleted.append(rel)
    report.deleted += 1
    report.points_dropped += old.chunks


def _write_step(
    root: RootIndex,
    step: list[FileWrite],
    collab: Collaborators,
    pending: _Pending,
    report: BatchReport,
    lexical_first: bool,
) -> None:
    """Embed one step's chunks (`lexical_first`: only those in the cache; the rest are
    recorded as pending) and write them to both indexes (uncommitted). A file with a
    diff has only its changed and moved chunks written, and its removed ones deleted."""
    hold_point("write_step", collab.should_stop)
    docs = [ic for f in step for ic in f.docs]
    embeds = [ic for f in step for ic in f.embeds]
    texts = {cid: f.embed_text(cid, c) for f in step for cid, c in f.embeds}
    vectors = _embed(texts, collab, report, cache_only=lexical_first)
    if not lexical_first:
        root.progress.chunks_embedded(len(embeds))
    whole = [f.record.path for f in step if f.diff is None]
    diffs = [f.diff for f in step if f.diff is not None]
    patched = [f.diff for f in step if f.diff is not None and not f.lexical_whole]
    lexical_whole = [f.record.path for f in step if f.lexical_whole]
    with report.timed("tantivy"):
        root.lexical.delete_paths(lexical_whole)
        root.lexical.delete_ids([cid for d in patched for cid in d.lexical_deletes])
        root.lexical.add(
            LexicalDoc(cid, c.path, c.kind, c.symbol, c.signature, c.text, c.start_line, c.end_line)
            for cid, c in docs
        )
    # A changed chunk whose new vector comes later must not keep its old one meanwhile.
    stale = [cid for d in diffs for cid, _ in d.changed if cid not in vectors]
    with report.timed("vectors"):
        root.vectors.delete_paths(whole)
        root.vectors.delete_ids([cid for d in diffs for cid in d.removed] + stale)
        root.vectors.upsert(
            [VectorPoint(cid, c.path, c.kind, vectors[cid]) for cid, c in embeds if cid in vectors]
        )
    pending.vectors_later.extend(
        PendingVector(cid, c.path, c.kind, texts[cid]) for cid, c in embeds if cid not in vectors
    )
    for f in step:
        pending.files.append(f.record)
        pending.skipped[f.record.path] = ("", "")  # no longer skipped, if it was
        pending.chunks.extend(
            ChunkRow(cid, c.path, c.start_line, c.end_line, c.symbol, c.kind, c.signature, c.text)
            for cid, c in f.rows
        )
        if f.diff is not None:
            pending.patches.append(
                ChunkPatch(f.record.path, f.diff.removed, tuple(cid for cid, _ in f.diff.changed))
            )
    report.indexed += len(step)
    report.chunks += len(embeds)
    report.chunks_written += len(docs)


def _embed(
    texts: dict[str, str],
    collab: Collaborators,
    report: BatchReport,
    *,
    cache_only: bool,
    should_yield: Callable[[], bool] | None = None,
) -> dict[str, Vector]:
    """Vectors by chunk id: cache first, the model for misses (none with `cache_only`).

    With `should_yield`, the embedder asks it before each next text (`embed_until`) and
    stops early when it says so: the result then holds only the chunks done."""
    model_id = collab.embedder.model_id
    keys = {cid: cache_key(model_id, text) for cid, text in texts.items()}
    with report.timed("cache_lookup"):
        cached = collab.cache.get_many(list(set(keys.values())), collab.embedder.dim)
    miss_keys: dict[bytes, str] = {}
    for cid, key in keys.items():
        if key not in cached:
            miss_keys.setdefault(key, texts[cid])
    report.cache_hits += sum(1 for k in keys.values() if k not in miss_keys)
    if cache_only:
        return {cid: cached[key] for cid, key in keys.items() if key in cached}
    misses = list(miss_keys.items())
    if misses:
        texts_in = [text for _, text in misses]
        with report.timed("embed"):
            if should_yield is None:
                got = dict(enumerate(collab.embedder.embed(texts_in)))
            else:
                got = collab.embedder.embed_until(texts_in, should_yield)
        new = {misses[i][0]: vector for i, vector in got.items()}
        report.texts_embedded += len(new)
        with report.timed("cache_store"):
            collab.cache.put_many(new)
        cached.update(new)
    done = {cid: cached[key] for cid, key in keys.items() if key in cached}
    report.cache_misses += sum(1 for key in keys.values() if key in miss_keys and key in cached)
    return done


def fill_vectors(
    root: RootIndex,
    collab: Collaborators,
    should_yield: Callable[[], bool],
    report: BatchReport | None = None,
) -> BatchReport:
    """Embed the chunks recorded as pending, a step at a time, until none is left or
    `should_yield` says newer work waits (checked before each text, so an edit
    elsewhere waits for the texts running, not a step). Each step's points are written
    at once (searchable) and flushed at most every `commit_interval_s`, as Tantivy
    commits: a flush took ~20 ms after every step of 128 (1.5 s of tokio's 27 s cold
    index; 0.45 s now, though the wall time moved less, ~1%). Pending rows are cleared
    only after their flush, so a crash repeats at most the steps of one interval (their
    texts come from the embedding cache). `report` as for `run_batch`."""
    report = BatchReport() if report is None else report
    prog = root.progress
    prog.begin_embedding(root.ledger.vectors_pending)
    unflushed: list[str] = []
    after: tuple[str, str] | None = None  # the last row written, not yet flushed
    flushed_at = time.monotonic()
    while not should_yield():
        todo = root.state.pending_vectors(collab.config.index.chunks_per_step, after)
        if not todo:
            break
        texts = {v.id: v.embed_text for v in todo}
        vectors = _embed(texts, collab, report, cache_only=False, should_yield=should_yield)
        done = [v for v in todo if v.id in vectors]
        with report.timed("vectors"):
            root.vectors.upsert([VectorPoint(v.id, v.path, v.kind, vectors[v.id]) for v in done])
        unflushed += [v.id for v in done]
        prog.chunks_embedded(len(done))
        report.vectors_filled += len(done)
        hold_point("vectors_filled", collab.should_stop)
        if len(done) < len(todo):  # stopped for newer work: the rest stays pending
            break
        after = (todo[-1].path, todo[-1].id)
        if time.monotonic() - flushed_at >= collab.config.index.commit_interval_s:
            _flush_filled(root, unflushed, report)
            unflushed, flushed_at = [], time.monotonic()
    _flush_filled(root, unflushed, report)
    prog.end_embedding(root.ledger.vectors_pending)
    return report


def _flush_filled(root: RootIndex, ids: list[str], report: BatchReport) -> None:
    """Flush the points written for `ids`, then clear their pending rows."""
    if not ids:
        return
    with report.timed("vector_flush"):
        root.vectors.flush()
    crash_point("before_vectors_recorded")
    root.ledger.vectors_written(ids)


def drop_orphans(root: RootIndex, vector_paths: Iterable[str]) -> int:
    """Delete index entries whose path has no state record (left by a crash or a bug);
    `vector_paths`: the vector store's paths, as the forced batch read them (less those
    it wrote or deleted since)."""
    orphans = (set(root.lexical.ids_by_path()) | set(vector_paths)) - set(root.ledger)
    if orphans:
        root.lexical.delete_paths(orphans)
        root.lexical.commit()
        root.vectors.delete_paths(orphans)
        root.vectors.flush()
        log.warning("orphans_dropped", root=str(root.path), paths=len(orphans))
    return len(orphans)
