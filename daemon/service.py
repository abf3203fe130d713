"""The daemon's core: registered roots, the indexer, and one handler per protocol method.

Handlers are plain blocking functions; the socket server runs them on worker threads, so
a long search or verify never blocks another client.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import structlog

from daemon.budget import apply_budget
from daemon.chunk_cache import ChunkCache
from daemon.config import Config
from daemon.cpus import cpu_info
from daemon.embed_cache import EmbedCache
from daemon.embedder import TextEmbedder
from daemon.graph import is_path, navigate
from daemon.graph_pool import GraphPool
from daemon.indexer import Indexer
from daemon.metrics import peak_rss_bytes, rss_bytes
from daemon.mounts import kernel_mount_of, kernel_mounts
from daemon.parse_cache import ParseCache
from daemon.pipeline import Collaborators, hold_point
from daemon.query_adapter import load_adapter
from daemon.reader import read_lines
from daemon.registry import Registry
from daemon.root import RootIndex
from daemon.search import SearchHit, overlaps, run_search
from daemon.seeding import Adopter
from daemon.status import caches_status, root_status, root_statuses, summary_line
from daemon.sync import Cookies, bring_up_to_date
from daemon.verify import unchecked_report, verify_root
from ipc import __version__
from ipc.errors import (
    STOPPING_MESSAGE,
    BadRequest,
    NotFound,
    RcmdError,
    StateError,
    Stopping,
    Timeout,
)
from ipc.protocol import PROTOCOL_VERSION
from ipc.requests import (
    NAV_REQUESTS,
    REQUESTS,
    ExportRequest,
    HelloRequest,
    IndexRequest,
    MethodRequest,
    NavRequest,
    ReadRequest,
    ReindexRequest,
    RemoveRequest,
    SearchRequest,
    SimilarRequest,
    StatusRequest,
    StopRequest,
    VerifyRequest,
    WaitRequest,
)

log = structlog.get_logger("rcmd.service")

Handler = Callable[[dict[str, Any]], Any]
R = TypeVar("R", bound=MethodRequest)
#: How long `verify` waits for a running batch before answering busy.
VERIFY_WAIT_S = 10.0
#: How long a stop waits for the running batch step before the process exits hard.
STOP_TIMEOUT_S = 60.0
#: Exit status of a daemon that had to exit hard (EX_SOFTWARE).
EXIT_STUCK = 70
#: Most lines one `read` returns.
MAX_READ_LINES = 2000


def version() -> str:
    """The package version `hello` and `status` report. RCMD_TEST_VERSION (test-only, like
    RCMD_TEST_CRASH_AT) makes a daemon pose as another version, to test client upgrades."""
    return os.environ.get("RCMD_TEST_VERSION") or __version__


def _run_steps(steps: list[tuple[str, Callable[[], None]]]) -> None:
    for what, step in steps:
        try:
            step()
        except Exception:
            log.exception("shutdown_step_failed", step=what)


def handler(schema: type[R], domain: Callable[[R], Any]) -> Handler:
    """A socket handler: parse `params` with the method's schema, then one domain call."""
    return lambda params: domain(schema.from_params(params))


def told_when_stopping(
    stopping: threading.Event, handlers: dict[str, Handler]
) -> dict[str, Handler]:
    """`handlers`, each of which answers `Stopping` when it fails once a stop was asked:
    shutdown closes the stores under the requests still running (a search got "internal
    error" from its closed index), so a search's roots `degraded` then are no answer
    either, nor a wait the stop ended (`Timeout`: a `wait`, a `--fresh` search's cookie
    or batch). An error of the request itself (not found, bad request) stays so."""

    def wrapped(handle: Handler) -> Handler:
        def call(params: dict[str, Any]) -> Any:
            try:
                reply = handle(params)
            except Exception as exc:
                own = isinstance(exc, RcmdError) and not isinstance(exc, (StateError, Timeout))
                if own or not stopping.is_set():
                    raise
                # A traceback unless a store or the disk said it: a bug of ours stays
                # visible in the log though the client is told only "stopping".
                log.info(
                    "request_cut_short_by_stop",
                    error=f"{type(exc).__name__}: {exc}",
                    exc_info=not isinstance(exc, (OSError, RcmdError)),
                )
                raise Stopping(STOPPING_MESSAGE) from exc
            if stopping.is_set() and isinstance(reply, dict) and reply.get("degraded"):
                raise Stopping(STOPPING_MESSAGE)  # its roots' stores closed, not failed
            return reply

        return call

    return {method: wrapped(handle) for method, handle in handlers.items()}


def _replied(
    roots: Sequence[RootIndex], hits: Sequence[SearchHit], crate_of: Callable[[Path], str | None]
) -> list[dict[str, Any]]:
    """Each hit's reply record with `stale` (`_staleness`) and, for a dependency crate's
    hit, its `crate` (`NAME VERSION`), as navigation says it."""
    stale = _staleness(roots)
    crates = {str(r.path): crate_of(r.path) for r in roots}
    out = []
    for h in hits:
        record = h.to_json() | {"stale": stale(h.root, h.path)}
        out.append(record | ({"crate": crates[h.root]} if crates[h.root] else {}))
    return out


def _staleness(roots: Sequence[RootIndex]) -> Callable[[str, str], bool]:
    """Whether a hit's file (its root's path, its path in the root) changed on disk after
    it was indexed, so its lines may have moved: one lstat a hit, no read."""
    by_path = {str(r.path): r for r in roots}

    def stale(root: str, path: str) -> bool:
        found = by_path.get(root)
        return found is not None and found.ledger.is_stale(found.path, path)

    return stale


def indexing(indexer: Indexer, roots: list[RootIndex]) -> dict[str, Any]:
    """`indexing`: the roots answered whose files are still being read, so an empty or
    thin answer from a root mid-way through its first scan is not taken for "nothing
    matches" (`{}` when none)."""
    busy = [str(r.path) for r in roots if indexer.files_pending(r.id)]
    return {"indexing": busy} if busy else {}


def navigation_notes(
    indexer: Indexer, roots: list[RootIndex], hits: list[dict[str, Any]]
) -> dict[str, Any]:
    """Each hit marked `stale` as search hits are (its file changed or went since it was
    read: an editor jumped to a moved line, or to a deleted file), and `indexing`."""
    stale = _staleness(roots)
    for hit in hits:
        hit["stale"] = stale(hit["root"], hit["path"])
    return indexing(indexer, roots)


def folder_to_index(raw: str) -> Path:
    """The folder an `index` request names, resolved; refused when it is none, or lies on
    a kernel file system (`/proc/self` became a root named after the daemon's pid)."""
    path = Path(raw).expanduser().resolve()
    if not path.is_dir():
        raise NotFound(f"{path} is not a directory")
    if (mount := kernel_mount_of(path, kernel_mounts())) is not None:
        raise BadRequest(f"{path} is on {mount}, a kernel file system without source files")
    return path


def root_relative(registry: Registry, req: SearchRequest) -> SearchRequest:
    """An absolute `path` filter made relative to the root holding it (the search keeps
    to that root), as the CLI does: an agent's `/abs/app/src` matched no root-relative
    path and found nothing, silently."""
    if req.path is None or not os.path.isabs(req.path):
        return req
    target = Path(req.path).resolve()
    root = registry.find(str(target))
    if req.root is not None and root is not registry.find(req.root):
        raise BadRequest(f"path {req.path} is outside the root {req.root}")
    rel = target.relative_to(root.path).as_posix()
    return dataclasses.replace(req, root=str(root.path), path=None if rel == "." else rel)


class Service:
    def __init__(
        self,
        config: Config,
        embedder: TextEmbedder,
        cache: EmbedCache,
        socket_path: Path,
        chunk_cache: ChunkCache | None = None,
    ) -> None:
        self.config = config
        self.socket_path = socket_path
        self.embedder = embedder
        self.cache = cache
        self.started = time.time()
        self.stop_requested = threading.Event()
        self.chunk_cache = chunk_cache
        self.parse_cache = ParseCache(config.index.parse_cache_mb << 20)
        self.indexer = Indexer(
            Collaborators(
                config,
                embedder,
                cache,
                should_stop=self.stop_requested.is_set,
                chunk_cache=chunk_cache,
                parse_cache=self.parse_cache,
                graph_pool=GraphPool() if cpu_info().spare else None,
                after_files=lambda root: self.registry.dep_sync.refresh(root.path),
            )
        )
        self.cookies = Cookies()
        self.adapter = load_adapter(embedder.model_id, dim=embedder.dim)
        model = (embedder.model_id, embedder.dim)
        self.registry = Registry(config, *model, self.indexer, self.cookies)
        self.adopter = Adopter(config, self.registry, model, chunk_cache, embedder.embed)
        self.handlers = told_when_stopping(self.stop_requested, _handlers(self))
        if missing := REQUESTS.keys() - self.handlers.keys():
            raise RuntimeError(f"methods without a handler: {sorted(missing)}")

    # ---- lifecycle ----
    def start(self) -> None:
        self.adopter.clean()
        self.indexer.start()
        self.registry.load()

    def shutdown(self) -> None:
        """Stop watchers, let the indexer finish its step and commit, close every store;
        one failure does not keep the rest from closing. A batch that does not stop in
        STOP_TIMEOUT_S ends the process at once: closing stores under it would corrupt
        them, while its in-flight files are simply redone at the next start."""
        self.stop_requested.set()
        self.cookies.close()  # a --fresh search waiting for its cookie stops waiting
        _run_steps(self.registry.watcher_closers())
        if not self.indexer.stop(STOP_TIMEOUT_S):
            log.error("indexer_did_not_stop_exiting", timeout_s=STOP_TIMEOUT_S)
            os._exit(EXIT_STUCK)
        steps = [
            *self.registry.root_closers(),
            ("embedding cache", self.cache.close),
            ("embedder", self.embedder.close),
        ]
        if self.chunk_cache is not None:
            steps.append(("chunk cache", self.chunk_cache.close))
        _run_steps(steps)
        log.info("daemon_stopped")

    # ---- handlers ----
    def hello(self, req: HelloRequest) -> dict[str, Any]:
        return {"protocol": PROTOCOL_VERSION, "version": version(), "pid": os.getpid()}

    def index(self, req: IndexRequest) -> dict[str, Any]:
        path = folder_to_index(req.path)
        snapshot = Path(req.snapshot).expanduser().resolve() if req.snapshot else None
        reply = root_status(self.indexer, self.registry, self.adopter.add(path, snapshot))
        if req.deps:
            reply["deps"] = self.registry.dep_sync.register(path)
        return reply

    def export(self, req: ExportRequest) -> dict[str, Any]:
        return self.adopter.export(req.path, Path(req.file).expanduser().resolve())

    def reindex(self, req: ReindexRequest) -> dict[str, Any]:
        raw, force = req.path, req.force
        # A missing root keeps its index.
        roots = [r for r in self.registry.select(raw) if r.path.is_dir()]
        if not roots:
            raise NotFound("the root is missing on disk; nothing to rebuild")
        for root in roots:
            self.indexer.enqueue(root, None, force=force)
        return {"roots": [str(r.path) for r in roots], "force": force}

    def remove(self, req: RemoveRequest) -> dict[str, Any]:
        path = Path(req.path).expanduser().resolve()
        self.registry.dep_sync.drop_project(path)
        self.registry.remove(path)
        return {"removed": str(path)}

    def search(self, req: SearchRequest) -> dict[str, Any]:
        req = root_relative(self.registry, req)
        if (symbol := req.symbol_name) is not None and not is_path(symbol):
            raise BadRequest(
                f"'symbol' {symbol!r} is not a Rust name or path; "
                "ask for one like: rcmd search --symbol Vec::push"
            )
        roots = self.registry.select(req.root, req.deps)
        t = time.perf_counter()
        if req.fresh:
            hold_point("fresh", lambda: all(r.closed for r in roots))
            bring_up_to_date(roots, self.cookies, self.indexer, self.config.search.fresh_timeout_s)
        hold_point("search", lambda: all(r.closed for r in roots))
        outcome = run_search(
            roots,
            req,
            embed_query=self.embedder.embed_query,
            tuning=self.config.search,
            adapter=self.adapter,
        )
        results = _replied(roots, outcome.hits, self.registry.deps.crate_of)
        reply: dict[str, Any] = {"results": results}
        if req.max_tokens is not None:
            reply["results"], reply["cut"] = apply_budget(results, req.max_tokens)
        reply.update(outcome.notes())
        reply.update(indexing(self.indexer, roots))
        reply["took_ms"] = round((time.perf_counter() - t) * 1000, 2)
        return reply

    def navigate(self, req: NavRequest) -> dict[str, Any]:
        """Definitions, references, callers, callees or impls of a name (`daemon.graph`)."""
        t = time.perf_counter()
        roots = self.registry.select(req.root, req.deps)
        with self.registry.graph_readers(roots) as graphs:
            reply = navigate(graphs, req.method, req.name, req.limit)
        reply.update(navigation_notes(self.indexer, roots, reply["results"]))
        reply["took_ms"] = round((time.perf_counter() - t) * 1000, 2)
        return reply

    def read(self, req: ReadRequest) -> dict[str, Any]:
        """The lines `req` names (at most MAX_READ_LINES and MAX_READ_BYTES) of an indexed
        file: never `.env`, `.git/config`, `target/` or anything else rcmd does not index."""
        root, real, rel = self.registry.confine(req.path, req.root)
        if rel not in root.ledger:
            raise NotFound(f"{rel} is not an indexed file of {root.path}; only those are read")
        start = req.start_line
        end = min(req.end_line or start + MAX_READ_LINES - 1, start + MAX_READ_LINES - 1)
        try:
            got = read_lines(real, start, end)
        except OSError as exc:
            raise NotFound(f"{rel}: {exc.strerror}") from None
        if got.past_end is not None:
            raise BadRequest(f"{rel} has {got.past_end} lines; start_line {start} is past its end")
        return {
            "root": str(root.path),
            "path": rel,
            "start_line": start,
            "end_line": got.end_line,
            "text": got.text,
            "truncated": got.truncated,
        }

    def similar(self, req: SimilarRequest) -> dict[str, Any]:
        """Chunks nearest (by embedding) to a file's line range, the range itself excluded."""
        source, limit = self.read(req), req.limit  # a SimilarRequest: a ReadRequest, a limit
        roots = self.registry.select(None)  # the projects, as a search without --deps
        vector = self.embedder.embed([source["text"]])[0]
        outcome = run_search(
            roots,
            SearchRequest(mode="vector", limit=limit + 20),
            embed_query=lambda _query: vector,
            tuning=self.config.search,
        )
        span = (source["root"], source["path"], source["start_line"], source["end_line"])
        kept = [h for h in outcome.hits if not overlaps(h, *span)][:limit]
        # A query-less vector search has no `exact` nor `confidence`: notes are `degraded`.
        return {"results": _replied(roots, kept, self.registry.deps.crate_of)} | outcome.notes()

    def verify(self, req: VerifyRequest) -> dict[str, Any]:
        return self._verify(self.registry.select(req.root) if req.root else self.registry.roots())

    def _verify(self, roots: list[RootIndex]) -> dict[str, Any]:
        """Check each root's disk, state.db and indexes agree, once no batch runs on it;
        one still busy after VERIFY_WAIT_S is reported unchecked, the others checked."""
        reports = []
        for root in roots:
            if not root.lock.acquire(timeout=VERIFY_WAIT_S):
                reports.append(unchecked_report(root))
                continue
            try:
                reports.append(verify_root(root))
            finally:
                root.lock.release()
        return {"ok": all(r["ok"] for r in reports), "roots": reports}

    def stop(self, req: StopRequest) -> dict[str, Any]:
        self.stop_requested.set()
        return {"stopping": True}

    def wait(self, req: WaitRequest) -> dict[str, Any]:
        """The root's status once it is idle; blocks on the indexer's condition, no polling.
        Work queued before this call (an `index` or `reindex` that has answered) counts."""
        root = self.registry.find(req.path)
        if not self.indexer.wait_idle(root.id, req.timeout_s):
            raise Timeout(
                f"{root.path} is still indexing after {req.timeout_s:g}s; "
                "wait again, or follow it with: rcmd status"
            )
        if root not in self.registry.roots():
            raise NotFound(f"{root.path} was removed while waiting")
        return root_status(self.indexer, self.registry, root)

    def status(self, req: StatusRequest) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pid": os.getpid(),
            "version": version(),
            "protocol": PROTOCOL_VERSION,
            "socket": str(self.socket_path),
            "uptime_s": round(time.time() - self.started, 1),
            "rss_bytes": rss_bytes(),
            "peak_rss_bytes": peak_rss_bytes(),
            **caches_status(
                self.embedder, self.indexer, self.cache, self.chunk_cache, self.parse_cache
            ),
            "cluster": self.embedder.cluster_status(),
            "vector_store": "qdrant-server" if self.config.vector_store.url else "qdrant-edge",
            "last_batch": self.indexer.last_batch,
            "waiting": self.indexer.waiters,
            "roots": root_statuses(self.indexer, self.registry),
            "failed_roots": [f.to_json(p) for p, f in self.registry.failed().items()],
        }
        if req.verify:
            out["verify"] = self._verify(self.registry.roots())
        return out

    def summary(self) -> str:
        """One line for a service manager's status display."""
        return summary_line(self.indexer, self.registry)


def _handlers(service: Service) -> dict[str, Handler]:
    """The service's handler of each protocol method."""
    return {
        "hello": handler(HelloRequest, service.hello),
        "status": handler(StatusRequest, service.status),
        "search": handler(SearchRequest, service.search),
        "index": handler(IndexRequest, service.index),
        "reindex": handler(ReindexRequest, service.reindex),
        "remove": handler(RemoveRequest, service.remove),
        "verify": handler(VerifyRequest, service.verify),
        "read": handler(ReadRequest, service.read),
        "similar": handler(SimilarRequest, service.similar),
        "wait": handler(WaitRequest, service.wait),
        "stop": handler(StopRequest, service.stop),
        "export": handler(ExportRequest, service.export),
        **{nav.method: handler(nav, service.navigate) for nav in NAV_REQUESTS},
    }
