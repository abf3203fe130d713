"""rcmd through its real code path: a daemon process over its socket.

The daemon keeps its state (and the content-keyed embedding cache) under the work dir,
so a re-run only embeds what changed; search knobs are passed as RCMD_SEARCH_* variables.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ipc.client import Client, call, is_running
from ipc.paths import RuntimePaths, runtime_paths

REPO = Path(__file__).resolve().parents[2]


class RcmdDaemon:
    def __init__(self, home: Path, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.env = {**os.environ, "RCMD_HOME": str(home), **(env or {})}
        self.paths: RuntimePaths = runtime_paths(self.env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: Client | None = None

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.home / "daemon.out", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon"], env=self.env, stdout=log, stderr=log, cwd=REPO
        )
        deadline = time.monotonic() + 180
        while not is_running(self.paths):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"daemon did not start; see {self.home / 'daemon.out'}")
            time.sleep(0.2)

    def index(self, root: Path, timeout: float = 3600, progress: bool = True) -> dict[str, Any]:
        """Add `root` (or reconcile it) and wait until it is idle twice in a row."""
        call(self.paths, "index", path=str(root))
        deadline = time.monotonic() + timeout
        idle = 0
        last = 0.0
        while time.monotonic() < deadline:
            r = next(x for x in call(self.paths, "status")["roots"] if x["path"] == str(root))
            idle = idle + 1 if r["idle"] else 0
            if idle >= 2:
                return r  # type: ignore[no-any-return]
            if progress and time.monotonic() - last > 15:
                p = r["progress"]
                print(f"  rcmd indexing: {p['chunks_done']}/{p['chunks_total']} chunks", flush=True)
                last = time.monotonic()
            time.sleep(0.5)
        raise TimeoutError("indexing did not finish")

    def reindex(self, root: Path, timeout: float = 3600) -> dict[str, Any]:
        """Force a rebuild (re-chunk, re-embed what the cache lacks) and wait for it."""

        def current() -> dict[str, Any]:
            roots = call(self.paths, "status")["roots"]
            return next(x for x in roots if x["path"] == str(root))  # type: ignore[no-any-return]

        before = current()["counters"]["batches"]
        call(self.paths, "reindex", path=str(root), force=True)
        deadline = time.monotonic() + timeout
        last = 0.0
        while time.monotonic() < deadline:
            r = current()
            if r["idle"] and r["counters"]["batches"] > before:
                return r
            if time.monotonic() - last > 15:
                p = r["progress"]
                print(f"  rcmd reindex: {p['chunks_done']}/{p['chunks_total']} chunks", flush=True)
                last = time.monotonic()
            time.sleep(0.5)
        raise TimeoutError("reindex did not finish")

    def search(self, query: str, **params: Any) -> tuple[list[dict[str, Any]], float]:
        """(results, round-trip ms) on one kept-open connection, as an editor would."""
        if self.client is None:
            self.client = Client(self.paths.socket, timeout=120)
        t = time.perf_counter()
        result = self.client.call("search", query=query, **params)
        return result["results"], (time.perf_counter() - t) * 1000

    def status(self) -> dict[str, Any]:
        return call(self.paths, "status")  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                call(self.paths, "stop")
            except Exception:
                self.proc.terminate()
        self.proc.wait(120)
        self.proc = None
