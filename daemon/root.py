"""One registered project root: its state, both indexes, its Merkle tree and live progress."""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3

from daemon.config import Config, root_dir
from daemon.ignore import IgnoreRules
from daemon.lexical import LexicalIndex
from daemon.merkle import MerkleTree
from daemon.metrics import BatchReport
from daemon.state import StateDB
from daemon.vectors import VectorStore, open_store


def root_id_for(path: Path) -> str:
    return blake3.blake3(str(path).encode()).hexdigest()[:16]


@dataclass
class Progress:
    """What the indexer is doing to this root now; read by status without locks
    (each field is replaced atomically, and a status reply tolerates a torn snapshot)."""

    activity: str = "idle"
    files_total: int = 0
    files_done: int = 0
    chunks_total: int = 0
    chunks_done: int = 0
    started_at: float = 0.0


class RootIndex:
    def __init__(self, path: Path, config: Config, dim: int) -> None:
        self.path = path
        self.id = root_id_for(path)
        self.dir = root_dir(config.paths, self.id)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "root.txt").write_text(str(path) + "\n")
        self.state = StateDB(self.dir / "state.db")
        self.lexical = LexicalIndex(self.dir / "tantivy")
        self.vectors: VectorStore = open_store(
            config.vector_store, self.dir / "qdrant", self.id, dim
        )
        self.ignore = IgnoreRules(path)
        self.records = self.state.files()
        self.tree = MerkleTree({p: r.hash for p, r in self.records.items()})
        self.progress = Progress()
        #: Summed over every batch since the daemon started, for status.
        self.totals = BatchReport()
        self.batches = 0
        self.vacuums = 0
        self.last_batch: dict[str, Any] = {}
        self.watch_status = "starting"
        self.last_error = ""
        self.lock = threading.Lock()
        self.opened_at = time.time()
        self.closed = False

    def close(self) -> None:
        """Commit and release everything; safe to call twice."""
        if self.closed:
            return
        self.closed = True
        self.lexical.close()
        self.vectors.close()
        self.state.close()

    def destroy(self) -> None:
        """Close and delete this root's state (it was removed by the user)."""
        self.close()
        shutil.rmtree(self.dir, ignore_errors=True)
