"""The daemon's core: registered roots, the indexer, and one handler per protocol method.

Handlers are plain blocking functions; the socket server runs them on worker threads, so
a long search or verify never blocks another client.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from daemon.config import Config
from daemon.embed_cache import EmbedCache
from daemon.embedder import Embedder
from daemon.indexer import Indexer
from daemon.metrics import peak_rss_bytes, rss_bytes
from daemon.pipeline import Collaborators
from daemon.registry import Registry
from daemon.root import RootIndex
from daemon.search import SearchHit, search_roots
from daemon.verify import verify_root
from ipc import __version__
from ipc.errors import BadRequest, Busy, NotFound
from ipc.protocol import (
    KINDS,
    MODES,
    PROTOCOL_VERSION,
    param_bool,
    param_int,
    param_opt_str,
    param_str,
)

log = structlog.get_logger("rcmd.service")

Handler = Callable[[dict[str, Any]], Any]
#: How long `verify` waits for a running batch before answering busy.
VERIFY_WAIT_S = 10.0
#: Most lines one `read` returns.
MAX_READ_LINES = 2000


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
        self.registry = Registry(config, embedder.model_id, embedder.dim, self.indexer)
        self.handlers: dict[str, Handler] = {
            "hello": self.hello,
            "status": self.status,
            "search": self.search,
            "index": self.index,
            "reindex": self.reindex,
            "remove": self.remove,
            "verify": self.verify,
            "read": self.read,
            "similar": self.similar,
            "stop": self.stop,
        }

    # ---- lifecycle ----
    def start(self) -> None:
        self.indexer.start()
        self.registry.load()

    def shutdown(self) -> None:
        """Stop watchers, let the indexer commit, close every store; one failure does not
        keep the rest from closing."""
        self.stop_requested.set()
        steps = [*self.registry.closers(), ("embedding cache", self.cache.close)]
        for what, step in steps:
            try:
                step()
            except Exception:
                log.exception("shutdown_step_failed", step=what)
        log.info("daemon_stopped")

    # ---- handlers ----
    def hello(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"protocol": PROTOCOL_VERSION, "version": __version__, "pid": os.getpid()}

    def index(self, params: dict[str, Any]) -> dict[str, Any]:
        path = Path(param_str(params, "path")).expanduser().resolve()
        if not path.is_dir():
            raise NotFound(f"{path} is not a directory")
        return self._root_status(self.registry.add(path))

    def reindex(self, params: dict[str, Any]) -> dict[str, Any]:
        raw = param_opt_str(params, "path")
        force = param_bool(params, "force", False)
        # A missing root keeps its index.
        roots = [r for r in self.registry.select(raw) if r.path.is_dir()]
        if not roots:
            raise NotFound("the root is missing on disk; nothing to rebuild")
        for root in roots:
            self.indexer.enqueue(root, None, force=force)
        return {"roots": [str(r.path) for r in roots], "force": force}

    def remove(self, params: dict[str, Any]) -> dict[str, Any]:
        path = Path(param_str(params, "path")).expanduser().resolve()
        self.registry.remove(path)
        return {"removed": str(path)}

    def search(self, params: dict[str, Any]) -> dict[str, Any]:
        query = param_str(params, "query", "")
        symbol = param_opt_str(params, "symbol")
        if symbol is not None and not symbol.strip():
            raise BadRequest("'symbol' must not be empty")
        if not query.strip() and symbol is None:
            raise BadRequest("'query' must not be empty (it may be left out with 'symbol')")
        mode = param_str(params, "mode", "hybrid")
        if mode not in MODES:
            raise BadRequest(f"'mode' must be one of {', '.join(MODES)}")
        limit = param_int(params, "limit", 10, 1, 1000)
        raw_root = param_opt_str(params, "root")
        roots = self.registry.select(raw_root)
        kind = param_opt_str(params, "kind")
        if kind is not None and kind not in KINDS:
            raise BadRequest(f"'kind' must be one of {', '.join(KINDS)}")
        t = time.perf_counter()
        hits = search_roots(
            roots,
            query,
            mode=mode,
            limit=limit,
            candidates=self.config.search.candidates,
            rrf_k=self.config.search.rrf_k,
            embed_query=self.embedder.embed_query,
            path_glob=param_opt_str(params, "path"),
            kind=kind,
            symbol=symbol.strip() if symbol is not None else None,
            tuning=self.config.search,
        )
        return {
            "results": [h.to_json() for h in hits],
            "took_ms": round((time.perf_counter() - t) * 1000, 2),
        }

    def _confined(self, params: dict[str, Any]) -> tuple[RootIndex, Path, str]:
        """(root, real file, path relative to the root) for a `path` param, which may be
        absolute or relative to `root`; refuses anything that resolves outside every root
        (`..`, absolute paths elsewhere, symlinks pointing out)."""
        raw = param_str(params, "path")
        raw_root = param_opt_str(params, "root")
        if raw_root:
            base = self.registry.find(raw_root)
            candidate = base.path / raw
        else:
            candidate = Path(raw).expanduser()
            if not candidate.is_absolute():
                raise BadRequest("'path' must be absolute unless 'root' is given")
        real = candidate.resolve()
        root = self.registry.find(str(real))
        if not real.is_file():
            raise NotFound(f"{real} is not a file")
        return root, real, real.relative_to(root.path).as_posix()

    def read(self, params: dict[str, Any]) -> dict[str, Any]:
        root, real, rel = self._confined(params)
        start = param_int(params, "start_line", 1, 1, 1 << 31)
        end = param_int(params, "end_line", start + MAX_READ_LINES - 1, start, 1 << 31)
        end = min(end, start + MAX_READ_LINES - 1)
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

    def similar(self, params: dict[str, Any]) -> dict[str, Any]:
        """Chunks nearest (by embedding) to a file's line range, the range itself excluded."""
        source = self.read(params)
        limit = param_int(params, "limit", 10, 1, 1000)
        roots = self.registry.roots()
        vector = self.embedder.embed([source["text"]])[0]
        hits = search_roots(
            roots,
            "",
            mode="vector",
            limit=limit + 20,
            candidates=self.config.search.candidates,
            rrf_k=self.config.search.rrf_k,
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

    def verify(self, params: dict[str, Any]) -> dict[str, Any]:
        raw = param_opt_str(params, "root")
        roots = self.registry.select(raw) if raw else self.registry.roots()
        reports = []
        for root in roots:
            if not root.lock.acquire(timeout=VERIFY_WAIT_S):
                raise Busy(f"{root.path} is indexing; retry when rcmd status shows it idle")
            try:
                reports.append(verify_root(root))
            finally:
                root.lock.release()
        return {"ok": all(r["ok"] for r in reports), "roots": reports}

    def stop(self, params: dict[str, Any]) -> dict[str, Any]:
        self.stop_requested.set()
        return {"stopping": True}

    def status(self, params: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pid": os.getpid(),
            "version": __version__,
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
            "roots": [self._root_status(r) for r in self.registry.roots()],
            "failed_roots": [
                {"path": p, "error": e, "next": f"see the log; remove it with: rcmd remove {p}"}
                for p, e in self.registry.failed().items()
            ],
        }
        if param_bool(params, "verify", False):
            out["verify"] = self.verify({})
        return out

    def summary(self) -> str:
        """One line for a service manager's status display."""
        try:
            return self._summary()
        except Exception as exc:  # a root removed meanwhile, a state error: never fatal
            return f"status unavailable: {exc}"

    def _summary(self) -> str:
        roots = self.registry.roots()
        busy = [r for r in roots if not self.indexer.idle(r.id)]
        if busy:
            r = busy[0]
            p = r.progress
            pending = r.ledger.vectors_pending
            if p.files_done >= p.files_total and pending:
                return f"{r.path.name}: BM25 ready, embedding {pending} chunks"
            return f"{r.path.name}: {p.activity}, {p.files_done}/{p.files_total} files"
        chunks = sum(r.state.counts()[1] for r in roots)
        return f"idle: {len(roots)} root(s), {chunks} chunks"

    def _root_status(self, root: RootIndex) -> dict[str, Any]:
        files, chunks = root.state.counts()
        skipped = list(root.state.skipped())
        reasons = Counter(reason for _p, reason, _d in skipped)
        last_commit = root.state.get_meta("last_commit")  # this thread's read connection
        return {
            "path": str(root.path),
            "id": root.id,
            "files": files,
            "chunks": chunks,
            "merkle_root": root.ledger.root_hash,
            "last_commit": float(last_commit) if last_commit else None,
            "queue": self.indexer.queued(root.id),
            "vectors_pending": root.ledger.vectors_pending,
            "idle": self.indexer.idle(root.id),
            "skipped": {
                "count": len(skipped),
                "by_reason": dict(reasons),
                "examples": [{"path": sp, "reason": r, "detail": d} for sp, r, d in skipped[:20]],
            },
            **root.progress.to_json(self.registry.watch_rescans(root)),
        }
