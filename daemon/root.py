"""One registered project root: its stores (state.db, Tantivy, Qdrant), its file ledger
and its progress. The stores are opened together and rebuilt together when what they
hold was made under another embedding model, text layout or chunk policy."""

from __future__ import annotations

import shutil
import stat
import threading
from pathlib import Path

import blake3
import structlog

from daemon.activity import RootProgress
from daemon.chunker import CHUNK_POLICY_VERSION, EMBED_TEXT_VERSION
from daemon.config import Config, root_dir
from daemon.crate_names import CrateNames, CrateNamesCache
from daemon.embed_groups import EmbedPolicy, policy_of
from daemon.graph import GRAPH_REVISION_KEY, graph_layout, graph_revision
from daemon.ignore import IgnoreRules
from daemon.ledger import FileLedger
from daemon.lexical import LEXICAL_VERSION, LexicalIndex
from daemon.mounts import kernel_mounts
from daemon.parking import GONE_WHILE_PARKED, IdleClock, ParkableVectors
from daemon.state import StateDB
from daemon.vectors import VectorStore, open_store
from ipc.errors import StateError

log = structlog.get_logger("rcmd.root")


#: What each index cannot be without: Tantivy opens a folder that lacks its meta.json
#: as a new, empty index (BM25 then found nothing in a root whose state.db listed every
#: file, and verify was the only one to say so).
INDEX_MARKERS = {"tantivy": "tantivy/meta.json", "qdrant": "qdrant"}

#: A state folder's entries and whether each is a folder. One of the other kind (a
#: folder where state.db belongs) failed every open with EISDIR, ENOTDIR or EEXIST,
#: which read as a failed disk: the root stayed failed, `rcmd index` did not help.
STATE_LAYOUT = {
    "root.txt": False,
    "state.db": False,
    "state.db-wal": False,
    "state.db-shm": False,
    "tantivy": True,
    "tantivy/meta.json": False,
    "qdrant": True,
}


def misplaced(where: Path) -> list[str]:
    """The entries of state folder `where` (itself included, as '.') that exist as
    the wrong kind: damage to set aside, never a disk to free or fix. One that cannot
    be looked at (EACCES) is no evidence of damage."""
    kind = _is_dir(where)
    if kind is False:
        return ["."]
    return [
        name
        for name, folder in STATE_LAYOUT.items()
        if kind and _is_dir(where / name) not in (None, folder)
    ]


def _is_dir(path: Path) -> bool | None:
    """Whether `path` is a folder; None where it is missing or cannot be looked at."""
    try:
        return stat.S_ISDIR(path.stat().st_mode)
    except OSError:
        return None


def root_id_for(path: Path) -> str:
    return blake3.blake3(str(path).encode()).hexdigest()[:16]


def build_layout(model_id: str, dim: int, policy: EmbedPolicy) -> dict[str, str]:
    """What a root's indexes were built under (state.db meta key → value): a root whose
    recorded layout differs on any key is rebuilt."""
    return {
        "embedding_model": f"{model_id} ({dim}), text v{EMBED_TEXT_VERSION}, {policy.layout()}",
        "chunk_policy": str(CHUNK_POLICY_VERSION),
        "lexical": LEXICAL_VERSION,
    }


class RootIndex:
    def __init__(self, path: Path, config: Config, model_id: str, dim: int) -> None:
        self.path = path
        self.id = root_id_for(path)
        self.dir = root_dir(config.paths, self.id)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "root.txt").write_text(str(path) + "\n")
        self.state = StateDB(self.dir / "state.db")
        missing = [
            side
            for side in ("tantivy", "qdrant")
            if not (self.dir / INDEX_MARKERS[side]).exists()
            and not (side == "qdrant" and config.vector_store.url)
        ]
        self.ledger = FileLedger(self.state)
        self.progress = RootProgress()
        #: Which chunks share a vector (recorded in the layout: a change rebuilds).
        self.policy = policy_of(config.embedding)
        layout = {**build_layout(model_id, dim, self.policy), **graph_layout()}
        reset = self._reset_if_rebuilt(layout, missing)
        # Graph rows of an older extraction (a navigation fix since) are made again by a
        # forced batch: every file read again, its Tantivy documents rewritten, state.db
        # and the vectors checked (nothing embedded again).
        recorded = self.state.get_meta(GRAPH_REVISION_KEY)
        self._graph_stale = not reset and recorded != graph_revision()
        if reset:
            self.graph_current()
        elif self._graph_stale:
            log.info("graph_revision_changed", root=str(path), was=recorded, now=graph_revision())
        try:
            self.lexical = LexicalIndex(self.dir / "tantivy")
        except Exception as exc:  # a damaged meta.json, a foreign directory
            self.state.close()
            raise StateError(f"{self.dir / 'tantivy'}: {exc}") from exc
        try:
            self.vectors: VectorStore = _open_vectors(config, self.dir / "qdrant", self.id, dim)
        except Exception as exc:
            self.lexical.close()
            self.state.close()
            if config.vector_store.url:
                raise  # a server that is down is not local damage: keep the root as failed
            raise StateError(f"{self.dir / 'qdrant'}: {exc}") from exc
        if reset and config.vector_store.url:
            self.vectors.delete_all()  # a server collection outlives the local state
        self.ignore = IgnoreRules(path, kernel_mounts())
        self._crates = CrateNamesCache(path)
        #: Held while a batch, an embedding run or a vacuum writes to the stores.
        self.lock = threading.Lock()
        #: Set while an export waits for `lock`: an embedding run gives way at its next step.
        self.lock_wanted = threading.Event()
        self._closed = False
        self._cancelled = False
        #: When a search, a navigation or a batch last used the root (`park`).
        self.clock = IdleClock()

    def _reset_if_rebuilt(self, layout: dict[str, str], missing: list[str]) -> bool:
        """Empty every store when state.db is new (whatever the indexes hold is
        unaccounted for), was built under another layout, or records files that an index
        directory gone missing held; record the current layout. The next full batch then
        rebuilds both sides, through the embedding cache."""
        recorded = {key: self.state.get_meta(key) for key in layout}
        # A root from before the chunk policy was recorded was cut under its version 1.
        if recorded.get("chunk_policy") is None and not self.state.created:
            recorded["chunk_policy"] = "1"
        # ... and its lexical index without stems.
        if recorded.get("lexical") is None and not self.state.created:
            recorded["lexical"] = "1"
        # A root from before the symbol graph has none: build it (through the caches).
        if recorded.get("symbol_graph") is None and not self.state.created:
            recorded["symbol_graph"] = "0"
        changed = any(v is not None and v != layout[k] for k, v in recorded.items())
        lost = missing if len(self.ledger) else []
        if lost:
            gone = " and ".join(INDEX_MARKERS[side] for side in lost)
            note = f"{gone} missing at start; rebuilding the index from the files"
            log.error("index_directory_missing", root=str(self.path), missing=lost)
            self.progress.repaired = note
        reset = self.state.created or changed or bool(lost)
        if reset:
            if not self.state.created:
                log.warning("index_layout_changed", root=str(self.path), was=recorded, now=layout)
            # Removed before they are opened: an index made under another layout may
            # have a schema Tantivy refuses to open (a new field in LEXICAL_VERSION 3).
            for side in ("tantivy", "qdrant"):
                shutil.rmtree(self.dir / side, ignore_errors=True)
            self.ledger.reset()
        for key, value in layout.items():
            if reset or recorded.get(key) != value:  # no write when nothing changed:
                self.state.set_meta(key, value)  # a root opens on a full disk too
        return reset

    @property
    def graph_stale(self) -> bool:
        """Whether some file's graph rows were made by an older extraction revision."""
        return self._graph_stale

    def graph_current(self) -> None:
        """Record that every file's graph rows are the current revision's: called once a
        forced batch marked every file in flight (a restart reads them again too)."""
        self.state.set_meta(GRAPH_REVISION_KEY, graph_revision())
        self._graph_stale = False

    @property
    def cancelled(self) -> bool:
        """Whether the root is being removed: a running batch stops at its next step."""
        return self._cancelled

    def cancel(self) -> None:
        self._cancelled = True

    def crate_names(self) -> CrateNames:
        """What the root's crates are called in paths (from their Cargo.toml)."""
        return self._crates.get()

    def park(self) -> bool:
        """Close the Tantivy index, the vector shard (`daemon.parking`) and the idle
        state.db readers unless a batch holds the root; the next use opens them again.
        Whether a store was closed."""
        if not self.lock.acquire(blocking=False):
            return False
        try:
            if self._closed:
                return False
            self.state.idle()
            closed = self.lexical.park()
            if isinstance(self.vectors, ParkableVectors):
                closed = self.vectors.park() or closed
            return closed
        finally:
            self.lock.release()

    @property
    def parked(self) -> bool:
        """Whether `park` closed the stores and nothing opened them since."""
        vectors = not isinstance(self.vectors, ParkableVectors) or self.vectors.parked
        return self.lexical.parked and vectors

    @property
    def closed(self) -> bool:
        """Whether `close` ran (the daemon is stopping, or the root was removed)."""
        return self._closed

    def close(self) -> None:
        """Commit and release everything; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.lexical.close()
        self.vectors.close()
        self.state.close()

    def destroy(self) -> None:
        """Close and delete this root's state (it was removed by the user). Its
        `root.txt` goes first: a folder left half-deleted (a crash, a busy file) named
        the root still, and a roots.json rebuilt from the markers brought it back."""
        self.close()
        (self.dir / "root.txt").unlink(missing_ok=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def _open_vectors(config: Config, path: Path, root_id: str, dim: int) -> VectorStore:
    """The root's vector store; an in-process shard can be parked (a server's
    collection holds no thread or file here)."""
    if config.vector_store.url:
        return open_store(config.vector_store, path, root_id, dim)

    def opener(first: bool) -> VectorStore:
        # Edge makes a new, empty shard in a missing folder: a parked root's, deleted
        # meanwhile, found nothing silently, and the next start saw no folder missing.
        if not first and not (path.is_dir() and any(path.iterdir())):
            raise StateError(f"{path} {GONE_WHILE_PARKED}")
        return open_store(config.vector_store, path, root_id, dim, check=first)

    return ParkableVectors(opener)
