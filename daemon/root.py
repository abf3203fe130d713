"""One registered project root: its state, both indexes, its Merkle tree and live progress."""

from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
import structlog

from daemon.chunker import EMBED_TEXT_VERSION
from daemon.config import Config, root_dir
from daemon.ignore import IgnoreRules
from daemon.lexical import LexicalIndex
from daemon.merkle import MerkleTree
from daemon.metrics import BatchReport
from daemon.state import StateDB
from daemon.vectors import VectorStore, open_store
from ipc.errors import StateError

log = structlog.get_logger("rcmd.root")


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
    def __init__(self, path: Path, config: Config, model_id: str, dim: int) -> None:
        self.path = path
        self.id = root_id_for(path)
        self.dir = root_dir(config.paths, self.id)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "root.txt").write_text(str(path) + "\n")
        self.state = StateDB(self.dir / "state.db")
        try:
            self.lexical = LexicalIndex(self.dir / "tantivy")
        except Exception as exc:  # a damaged meta.json, a foreign directory
            self.state.close()
            raise StateError(f"{self.dir / 'tantivy'}: {exc}") from exc
        model = f"{model_id} ({dim}), text v{EMBED_TEXT_VERSION}"
        built_with = self.state.get_meta("embedding_model")
        reset = self.state.created or (built_with is not None and built_with != model)
        if reset:
            # A new state.db records nothing, so whatever the indexes hold is unaccounted
            # for; and vectors of two models are not comparable. Start both afresh.
            if not self.state.created:
                log.warning("embedding_model_changed", root=str(path), was=built_with, now=model)
            shutil.rmtree(self.dir / "qdrant", ignore_errors=True)
            self.lexical.delete_all()
            self.lexical.commit()
            self.state.clear()
        self.state.set_meta("embedding_model", model)
        try:
            self.vectors: VectorStore = open_store(
                config.vector_store, self.dir / "qdrant", self.id, dim
            )
        except Exception as exc:
            self.lexical.close()
            self.state.close()
            if config.vector_store.url:
                raise  # a server that is down is not local damage: keep the root as failed
            raise StateError(f"{self.dir / 'qdrant'}: {exc}") from exc
        if reset and config.vector_store.url:
            self.vectors.delete_all()  # a server collection outlives the local state
        self.ignore = IgnoreRules(path)
        self.records = self.state.files()
        self.tree = MerkleTree({p: r.hash for p, r in self.records.items()})
        self.progress = Progress()
        #: Chunks recorded whose vectors are not written yet (a lexical-first batch's).
        self.vectors_pending = self.state.pending_count()
        #: Summed over every batch since the daemon started, for status.
        self.totals = BatchReport()
        self.batches = 0
        self.vacuums = 0
        self.last_batch: dict[str, Any] = {}
        self.watch_status = "starting"
        self.last_error = ""
        self.lock = threading.Lock()
        self.closed = False
        #: Set when the root is being removed: a running batch stops at its next step.
        self.cancelled = False

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
