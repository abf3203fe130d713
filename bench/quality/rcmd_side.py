"""rcmd through its real code path: a daemon process over its socket.

The daemon keeps its state (and the content-keyed embedding cache) under the work dir,
so a re-run only embeds what changed; search knobs are passed as RCMD_SEARCH_* variables.
Starting, stopping and waiting are the shared driver's (ipc.driver).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ipc.client import Client
from ipc.driver import DaemonDriver

REPO = Path(__file__).resolve().parents[2]
#: How often a long index or rebuild prints its progress.
PROGRESS_EVERY_S = 15.0


def _progress(what: str) -> Any:
    def show(r: dict[str, Any]) -> None:
        p = r["progress"]
        print(f"  rcmd {what}: {p['chunks_done']}/{p['chunks_total']} chunks", flush=True)

    return show


class RcmdDaemon(DaemonDriver):
    client: Client | None = None

    def index(self, root: Path, timeout: float = 3600, progress: bool = True) -> dict[str, Any]:
        """Add `root` (or reconcile it) and wait until it is indexed."""
        self.call("index", path=str(root))
        show = _progress("indexing") if progress else None
        return self.wait(root, timeout, step_s=PROGRESS_EVERY_S, progress=show)

    def reindex(self, root: Path, timeout: float = 3600) -> dict[str, Any]:
        """Force a rebuild (re-chunk, re-embed what the cache lacks) and wait for it."""
        self.call("reindex", path=str(root), force=True)
        return self.wait(root, timeout, step_s=PROGRESS_EVERY_S, progress=_progress("reindex"))

    def wait_indexed(self, root: Path, timeout: float = 7200) -> dict[str, Any]:
        """Wait until `root` is indexed (it was added or rebuilt earlier), with progress."""
        return self.wait(root, timeout, step_s=PROGRESS_EVERY_S, progress=_progress(root.name))

    def search(self, query: str, **params: Any) -> tuple[list[dict[str, Any]], float]:
        """(results, round-trip ms) on one kept-open connection, as an editor would."""
        if self.client is None:
            self.client = Client(self.paths.socket, timeout=120)
        t = time.perf_counter()
        result = self.client.call("search", query=query, **params)
        return result["results"], (time.perf_counter() - t) * 1000

    def stop(self, timeout: float = 120.0) -> int:
        if self.client is not None:
            self.client.close()
            self.client = None
        return super().stop(timeout)
