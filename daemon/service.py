"""The daemon's core: registered roots, the indexer, and one handler per protocol method.

Handlers are plain blocking functions; the socket server runs them on worker threads, so
a long search or verify never blocks another client.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import structlog

from daemon.config import Config, root_dir
from daemon.embed_cache import EmbedCache
from daemon.embedder import Embedder
from daemon.indexer import Indexer
from daemon.metrics import peak_rss_bytes, rss_bytes
from daemon.pipeline import Collaborators
from daemon.root import RootIndex, root_id_for
from daemon.search import SearchHit, search_roots
from daemon.verify import verify_root
from daemon.watcher import RootWatcher
from ipc import __version__
from ipc.errors import BadRequest, Busy, NotFound, StateError, Timeout
from ipc.protocol import PROTOCOL_VERSION
from ipc.requests import (
    REQUESTS,
    HelloRequest,
    IndexRequest,
    MethodRequest,
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
#: Most lines one `read` returns.
MAX_READ_LINES = 2000


def version() -> str:
    """The package version `hello` and `status` report. RCMD_TEST_VERSION (test-only, like
    RCMD_TEST_CRASH_AT) makes a daemon pose as another version, to test client upgrades."""
    return os.environ.get("RCMD_TEST_VERSION") or __version__


def handler(schema: type[R], domain: Callable[[R], Any]) -> Handler:
    """A socket handler: parse `params` with the method's schema, then one domain call."""
    return lambda params: domain(schema.from_params(params))


class Service:
    def __init__(
        self, config: Config, embedder: Embedder, cache: EmbedCache, socket_path: Path
    ) -> None:
        self.config = config
        self.socket_path = socket_path
        self.embedder = embedder
        self.cache = cache
        self.started = time.time()
        self.stop_requested = threading.Event()
        self.indexer = Indexer(
            Collaborators(config, embedder, cache, should_stop=self.stop_requested.is_set)
        )
        self.roots: dict[str, RootIndex] = {}
        #: Registered roots that could not be opened, with why.
        self.failed: dict[str, str] = {}
        self.watchers: dict[str, RootWatcher] = {}
        self._roots_lock = threading.Lock()
        self._registry = config.paths.state_dir / "roots.json"
        self.handlers: dict[str, Handler] = {
            "hello": handler(HelloRequest, self.hello),
            "status": handler(StatusRequest, self.status),
            "search": handler(SearchRequest, self.search),
            "index": handler(IndexRequest, self.index),
            "reindex": handler(ReindexRequest, self.reindex),
            "remove": handler(RemoveRequest, self.remove),
            "verify": handler(VerifyRequest, self.verify),
            "read": handler(ReadRequest, self.read),
            "similar": handler(SimilarRequest, self.similar),
            "wait": handler(WaitRequest, self.wait),
            "stop": handler(StopRequest, self.stop),
        }
        if missing := REQUESTS.keys() - self.handlers.keys():
            raise RuntimeError(f"methods without a handler: {sorted(missing)}")

    # ---- lifecycle ----
    def start(self) -> None:
        self.indexer.start()
        for path in self._load_registry():
            try:
                self._open_root(Path(path))
            except Exception as exc:
                # Kept registered (and shown in status) so a passing failure loses nothing.
                self.failed[path] = f"{type(exc).__name__}: {exc}"
                log.error("root_open_failed", root=path, error=str(exc))

    def shutdown(self) -> None:
        """Stop watchers, let the indexer commit, close every store; one failure does not
        keep the rest from closing."""
        self.stop_requested.set()
        steps: list[tuple[str, Callable[[], None]]] = [
            *((f"watcher {w.root}", w.stop) for w in self.watchers.values()),
            ("indexer", self.indexer.stop),
            *((f"root {r.path}", r.close) for r in self.roots.values()),
            ("embedding cache", self.cache.close),
        ]
        for what, step in steps:
            try:
                step()
            except Exception:
                log.exception("shutdown_step_failed", step=what)
        log.info("daemon_stopped")

    def _load_registry(self) -> list[str]:
        try:
            data = json.loads(self._registry.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.error("registry_unreadable", path=str(self._registry), error=str(exc))
            return []
        return [p for p in data.get("roots", []) if isinstance(p, str)]

    def _save_registry(self) -> None:
        tmp = self._registry.with_suffix(".tmp")
        paths = {str(r.path) for r in self.roots.values()} | set(self.failed)
        tmp.write_text(json.dumps({"roots": sorted(paths)}))
        os.replace(tmp, self._registry)

    def _open_root(self, path: Path) -> RootIndex:
        try:
            root = RootIndex(path, self.config, self.embedder.model_id, self.embedder.dim)
        except StateError as exc:
            # The root's own files are unreadable (truncated, damaged, another schema): they
            # are a cache of the source tree, so set them aside and rebuild from the files.
            broken = root_dir(self.config.paths, root_id_for(path))
            aside = broken.with_name(broken.name + ".broken")
            log.error(
                "root_state_unusable_rebuilding",
                root=str(path),
                error=str(exc),
                moved_to=str(aside),
            )
            shutil.rmtree(aside, ignore_errors=True)
            broken.rename(aside)
            root = RootIndex(path, self.config, self.embedder.model_id, self.embedder.dim)
        self.roots[root.id] = root

        def on_status(text: str) -> None:
            root.watch_status = text

        watcher = RootWatcher(
            path,
            lambda paths: self.indexer.enqueue(root, paths),
            on_status,
            self.config.index.debounce_ms,
            self.config.index.max_wait_ms,
            self.config.index.poll_interval_s,
        )
        self.watchers[root.id] = watcher
        if path.is_dir():
            self.indexer.enqueue(root, None)
        else:
            # An unmounted disk or a moved checkout: keep the index, do not "delete" it all;
            # the watcher rescans when the root is back.
            root.watch_status = "root missing; waiting for it to return"
            log.warning("root_missing", root=str(path))
        watcher.start()
        log.info("root_opened", root=str(path), id=root.id, files=len(root.records))
        return root

    # ---- lookups ----
    def _find_root(self, raw: str) -> RootIndex:
        """The registered root that holds `raw` (the root itself or any path inside it)."""
        path = Path(raw).expanduser().resolve()
        best: RootIndex | None = None
        for root in list(self.roots.values()):
            if (path == root.path or root.path in path.parents) and (
                best is None or len(str(root.path)) > len(str(best.path))
            ):
                best = root
        if best is None:
            raise NotFound(f"{path} is not inside an indexed root; add it with: rcmd index {path}")
        return best

    # ---- handlers ----
    def hello(self, req: HelloRequest) -> dict[str, Any]:
        return {"protocol": PROTOCOL_VERSION, "version": version(), "pid": os.getpid()}

    def index(self, req: IndexRequest) -> dict[str, Any]:
        path = Path(req.path).expanduser().resolve()
        if not path.is_dir():
            raise NotFound(f"{path} is not a directory")
        with self._roots_lock:
            for root in list(self.roots.values()):
                if root.path == path:
                    self.indexer.enqueue(root, None)
                    return self._root_status(root)
            self.failed.pop(str(path), None)  # a root that failed to open gets another try
            root = self._open_root(path)
            self._save_registry()
        return self._root_status(root)

    def reindex(self, req: ReindexRequest) -> dict[str, Any]:
        raw, force = req.path, req.force
        roots = [self._find_root(raw)] if raw else list(self.roots.values())
        if raw is None and not roots:
            raise NotFound("no roots are indexed; add one with: rcmd index PATH")
        roots = [r for r in roots if r.path.is_dir()]  # a missing root keeps its index
        if not roots:
            raise NotFound("the root is missing on disk; nothing to rebuild")
        for root in roots:
            self.indexer.enqueue(root, None, force=force)
        return {"roots": [str(r.path) for r in roots], "force": force}

    def remove(self, req: RemoveRequest) -> dict[str, Any]:
        path = Path(req.path).expanduser().resolve()
        with self._roots_lock:
            root = next((r for r in self.roots.values() if r.path == path), None)
            if root is None and str(path) in self.failed:
                del self.failed[str(path)]
                self._save_registry()
                return {"removed": str(path)}
            if root is None:
                raise NotFound(f"{path} is not an indexed root")
            root.cancelled = True  # a running batch stops at its next step
            self.watchers.pop(root.id).stop()
            self.indexer.forget(root.id)
            del self.roots[root.id]
            with root.lock:
                root.destroy()
            self._save_registry()
        return {"removed": str(path)}

    def search(self, req: SearchRequest) -> dict[str, Any]:
        roots = [self._find_root(req.root)] if req.root else list(self.roots.values())
        if not roots:
            raise NotFound("no roots are indexed; add one with: rcmd index PATH")
        t = time.perf_counter()
        hits = search_roots(
            roots, req, embed_query=self.embedder.embed_query, tuning=self.config.search
        )
        return {
            "results": [h.to_json() for h in hits],
            "took_ms": round((time.perf_counter() - t) * 1000, 2),
        }

    def _confined(self, raw: str, raw_root: str | None) -> tuple[RootIndex, Path, str]:
        """(root, real file, path relative to the root) for a `path` param, which may be
        absolute or relative to `root`; refuses anything that resolves outside every root
        (`..`, absolute paths elsewhere, symlinks pointing out)."""
        if raw_root:
            base = self._find_root(raw_root)
            candidate = base.path / raw
        else:
            candidate = Path(raw).expanduser()
            if not candidate.is_absolute():
                raise BadRequest("'path' must be absolute unless 'root' is given")
        real = candidate.resolve()
        root = self._find_root(str(real))
        if not real.is_file():
            raise NotFound(f"{real} is not a file")
        return root, real, real.relative_to(root.path).as_posix()

    def read(self, req: ReadRequest) -> dict[str, Any]:
        """The lines `req` names (at most MAX_READ_LINES), from a file inside a root."""
        root, real, rel = self._confined(req.path, req.root)
        start = req.start_line
        end = min(req.end_line or start + MAX_READ_LINES - 1, start + MAX_READ_LINES - 1)
        lines = real.read_bytes().decode("utf-8", "replace").splitlines()
        if start > len(lines):
            raise BadRequest(f"{rel} has {len(lines)} lines; start_line {start} is past its end")
        end = min(end, len(lines))
        return {
            "root": str(root.path),
            "path": rel,
            "start_line": start,
            "end_line": end,
            "text": "\n".join(lines[start - 1 : end]),
        }

    def similar(self, req: SimilarRequest) -> dict[str, Any]:
        """Chunks nearest (by embedding) to a file's line range, the range itself excluded."""
        source = self.read(req)  # a SimilarRequest is a ReadRequest with a limit
        limit = req.limit
        roots = list(self.roots.values())
        vector = self.embedder.embed([source["text"]])[0]
        hits = search_roots(
            roots,
            SearchRequest(mode="vector", limit=limit + 20),
            embed_query=lambda _query: vector,
            tuning=self.config.search,
        )

        src_root: str = source["root"]
        src_path: str = source["path"]
        first: int = source["start_line"]
        last: int = source["end_line"]

        def overlaps(h: SearchHit) -> bool:
            return (
                h.root == src_root
                and h.path == src_path
                and h.start_line <= last
                and h.end_line >= first
            )

        results = [h.to_json() for h in hits if not overlaps(h)][:limit]
        return {"results": results}

    def verify(self, req: VerifyRequest) -> dict[str, Any]:
        return self._verify([self._find_root(req.root)] if req.root else list(self.roots.values()))

    def _verify(self, roots: list[RootIndex]) -> dict[str, Any]:
        """Check each root's disk, state.db and indexes agree, once no batch runs on it."""
        reports = []
        for root in roots:
            if not root.lock.acquire(timeout=VERIFY_WAIT_S):
                raise Busy(f"{root.path} is indexing; retry when rcmd status shows it idle")
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
        root = self._find_root(req.path)
        if not self.indexer.wait_idle(root.id, req.timeout_s):
            if self.stop_requested.is_set():
                raise Busy("the daemon is stopping")
            raise Timeout(
                f"{root.path} is still indexing after {req.timeout_s:g}s; "
                "wait again, or follow it with: rcmd status"
            )
        if self.roots.get(root.id) is not root:
            raise NotFound(f"{root.path} was removed while waiting")
        return self._root_status(root)

    def status(self, req: StatusRequest) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pid": os.getpid(),
            "version": version(),
            "protocol": PROTOCOL_VERSION,
            "socket": str(self.socket_path),
            "uptime_s": round(time.time() - self.started, 1),
            "rss_bytes": rss_bytes(),
            "peak_rss_bytes": peak_rss_bytes(),
            "embedding": {
                "model": self.embedder.model_id,
                "dim": self.embedder.dim,
                "loaded": self.embedder.loaded,
                "cache_hits": self.indexer.totals.cache_hits,
                "cache_misses": self.indexer.totals.cache_misses,
            },
            "vector_store": "qdrant-server" if self.config.vector_store.url else "qdrant-edge",
            "last_batch": self.indexer.last_batch,
            "waiting": self.indexer.waiters,
            "roots": [self._root_status(r) for r in list(self.roots.values())],
            "failed_roots": [
                {"path": p, "error": e, "next": f"see the log; remove it with: rcmd remove {p}"}
                for p, e in self.failed.items()
            ],
        }
        if req.verify:
            out["verify"] = self._verify(list(self.roots.values()))
        return out

    def summary(self) -> str:
        """One line for a service manager's status display."""
        try:
            return self._summary()
        except Exception as exc:  # a root removed meanwhile, a state error: never fatal
            return f"status unavailable: {exc}"

    def _summary(self) -> str:
        roots = list(self.roots.values())
        busy = [r for r in roots if not self.indexer.idle(r.id)]
        if busy:
            r = busy[0]
            p = r.progress
            if p.files_done >= p.files_total and r.vectors_pending:
                return f"{r.path.name}: BM25 ready, embedding {r.vectors_pending} chunks"
            return f"{r.path.name}: {p.activity}, {p.files_done}/{p.files_total} files"
        chunks = sum(r.state.counts()[1] for r in roots)
        return f"idle: {len(roots)} root(s), {chunks} chunks"

    def _root_status(self, root: RootIndex) -> dict[str, Any]:
        files, chunks = root.state.counts()
        p = root.progress
        elapsed = max(time.time() - p.started_at, 1e-6) if p.started_at else 0.0
        rate = p.chunks_done / elapsed if elapsed and p.activity != "idle" else 0.0
        remaining = max(p.chunks_total - p.chunks_done, 0)
        file_rate = p.files_done / elapsed if elapsed else 0.0
        eta = None
        if p.activity != "idle" and p.files_done < p.files_total and file_rate > 0:
            eta = (p.files_total - p.files_done) / file_rate
        elif p.activity != "idle" and rate > 0:  # filling in pending vectors
            eta = remaining / rate
        skipped = list(root.state.skipped())
        reasons = Counter(reason for _p, reason, _d in skipped)
        last_commit = root.state.get_meta("last_commit")  # this thread's read connection
        return {
            "path": str(root.path),
            "id": root.id,
            "files": files,
            "chunks": chunks,
            "merkle_root": root.tree.root_hash,
            "last_commit": float(last_commit) if last_commit else None,
            "queue": self.indexer.queued(root.id),
            "vectors_pending": root.vectors_pending,
            "idle": self.indexer.idle(root.id),
            "activity": p.activity,
            "progress": {
                "files_done": p.files_done,
                "files_total": p.files_total,
                "chunks_done": p.chunks_done,
                "chunks_total": p.chunks_total,
                "chunks_remaining": remaining,
                "chunks_per_s": round(rate, 1),
                "eta_s": round(eta, 1) if eta is not None else None,
            },
            "skipped": {
                "count": len(skipped),
                "by_reason": dict(reasons),
                "examples": [{"path": sp, "reason": r, "detail": d} for sp, r, d in skipped[:20]],
            },
            "watcher": root.watch_status,
            "last_error": root.last_error,
            "counters": {
                "batches": root.batches,
                "files_statted": root.totals.statted,
                "files_read": root.totals.read,
                "files_indexed": root.totals.indexed,
                "files_deleted": root.totals.deleted,
                "chunks_written": root.totals.chunks,
                "vacuums": root.vacuums,
                "watch_rescans": w.rescans if (w := self.watchers.get(root.id)) else 0,
                "stages_s": root.totals.to_json()["stages"],
            },
            "last_batch": root.last_batch,
        }
