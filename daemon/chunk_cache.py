"""The chunk cache shared by all roots: a file's chunk list is a pure function of its
path, its bytes and the chunk policy, so it is kept by blake3(policy ‖ path ‖ content
hash). `reindex --force`, a restart after a crash, or a second checkout of the same code
then skip parsing for every file whose content was seen before (issue 20.3). A file's
symbol graph is kept the same way, in the same table under its own key.

Bounded: entries unused for `max_age_s` go, then, past `max_bytes` of stored
(compressed) chunk lists, the least recently used; `added` is the last use (refreshed at
most daily, as the embedding cache does).
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import blake3

from daemon.chunker import CHUNK_POLICY_VERSION, Chunk
from daemon.embed_cache import TOUCH_EVERY_S
from daemon.graph_rows import TableRows, decode_rows, encode_rows
from daemon.sqlite import cache_write, connect, state_errors
from daemon.symbols import GRAPH_REVISION, GRAPH_VERSION

_FIELDS = ("start_line", "end_line", "symbol", "kind", "signature", "doc", "text", "context")


def chunk_key(path: str, digest: bytes) -> bytes:
    return blake3.blake3(f"{CHUNK_POLICY_VERSION}\0{path}\0".encode() + digest).digest(16)


def graph_key(path: str, digest: bytes) -> bytes:
    """Kept as its rows (`daemon.graph_rows`) since "rows": a graph kept as records
    before then is simply not found."""
    version = f"{GRAPH_VERSION}.{GRAPH_REVISION}"
    return blake3.blake3(f"graph rows {version}\0{path}\0".encode() + digest).digest(16)


def _encode(chunks: list[Chunk]) -> bytes:
    rows = [[*(getattr(c, f) for f in _FIELDS), c.part] for c in chunks]
    return zlib.compress(json.dumps(rows, separators=(",", ":")).encode(), 1)


def _decode(path: str, blob: bytes) -> list[Chunk]:
    return [Chunk(path, *row) for row in json.loads(zlib.decompress(blob))]


class ChunkCache:
    def __init__(
        self,
        path: Path,
        max_bytes: int,
        max_age_s: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._path = path
        self._max = max_bytes
        self._max_age = max_age_s
        self._clock = clock
        self._db = connect(path)
        with state_errors(path):
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS chunks(key BLOB PRIMARY KEY, data BLOB NOT NULL,"
                " size INTEGER NOT NULL, added REAL NOT NULL) WITHOUT ROWID"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS chunks_added ON chunks(added)")
        self.hits = 0
        self.misses = 0
        self.pruned = 0

    def close(self) -> None:
        self._db.close()

    def get(self, path: str, digest: bytes) -> list[Chunk] | None:
        blob = self._get(chunk_key(path, digest))
        if blob is None:
            self.misses += 1
            return None
        self.hits += 1
        return _decode(path, blob)

    def put(self, path: str, digest: bytes, chunks: list[Chunk]) -> None:
        self._put(chunk_key(path, digest), _encode(chunks))

    def get_graph(self, path: str, digest: bytes) -> TableRows | None:
        """The symbol graph of a file's content, kept beside its chunks (the graph is as
        pure a function of path and bytes as they are): a forced reindex then parses
        nothing for known contents."""
        blob = self._get(graph_key(path, digest))
        return None if blob is None else decode_rows(blob)

    def put_graph(self, path: str, digest: bytes, rows: TableRows) -> None:
        self.put_graph_blob(path, digest, encode_rows(rows))

    def put_graph_blob(self, path: str, digest: bytes, blob: bytes) -> None:
        """Keep a graph that is already encoded (`encode_rows`: a worker's)."""
        self._put(graph_key(path, digest), blob)

    def _get(self, key: bytes) -> bytes | None:
        now = self._clock()
        with state_errors(self._path):
            row = self._db.execute("SELECT data, added FROM chunks WHERE key=?", (key,)).fetchone()
        if row is not None and row[1] < now - TOUCH_EVERY_S:
            with cache_write(self._path):
                self._db.execute("UPDATE chunks SET added=? WHERE key=?", (now, key))
        return None if row is None else bytes(row[0])

    def _put(self, key: bytes, blob: bytes) -> None:
        with cache_write(self._path), self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO chunks VALUES(?,?,?,?)",
                (key, blob, len(blob), self._clock()),
            )

    def size(self) -> int:
        with state_errors(self._path):
            row = self._db.execute("SELECT coalesce(sum(size), 0) FROM chunks").fetchone()
        return int(row[0]) if row else 0

    def prune(self) -> int:
        """Drop entries unused for `max_age_s` (if set), then the least recently used
        until the cache holds at most `max_bytes`; how many went."""
        dropped = 0
        if self._max_age > 0:
            with state_errors(self._path), self._db:
                cutoff = self._clock() - self._max_age
                self._db.execute("DELETE FROM chunks WHERE added < ?", (cutoff,))
                dropped = self._db.changes()
        self.pruned += dropped
        excess = self.size() - self._max
        if excess <= 0:
            return dropped
        with state_errors(self._path), self._db:
            rows = self._db.execute("SELECT key, size FROM chunks ORDER BY added").fetchall()
            doomed = []
            for key, size in rows:
                if excess <= 0:
                    break
                doomed.append((key,))
                excess -= size if isinstance(size, int) else 0
            self._db.executemany("DELETE FROM chunks WHERE key=?", doomed)
        self.pruned += len(doomed)
        return dropped + len(doomed)
