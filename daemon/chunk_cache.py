"""The chunk cache shared by all roots: a file's chunk list is a pure function of its
path, its bytes and the chunk policy, so it is kept by blake3(policy ‖ path ‖ content
hash). `reindex --force`, a restart after a crash, or a second checkout of the same code
then skip parsing for every file whose content was seen before (issue 20.3).

Bounded: past `max_bytes` of stored (compressed) chunk lists the oldest entries go.
"""

from __future__ import annotations

import json
import time
import zlib
from pathlib import Path

import blake3

from daemon.chunker import CHUNK_POLICY_VERSION, Chunk
from daemon.sqlite import connect, state_errors

_FIELDS = ("start_line", "end_line", "symbol", "kind", "signature", "doc", "text", "context")


def chunk_key(path: str, digest: bytes) -> bytes:
    return blake3.blake3(f"{CHUNK_POLICY_VERSION}\0{path}\0".encode() + digest).digest(16)


def _encode(chunks: list[Chunk]) -> bytes:
    rows = [[*(getattr(c, f) for f in _FIELDS), c.part] for c in chunks]
    return zlib.compress(json.dumps(rows, separators=(",", ":")).encode(), 1)


def _decode(path: str, blob: bytes) -> list[Chunk]:
    return [Chunk(path, *row) for row in json.loads(zlib.decompress(blob))]


class ChunkCache:
    def __init__(self, path: Path, max_bytes: int) -> None:
        self._path = path
        self._max = max_bytes
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
        with state_errors(self._path):
            row = self._db.execute(
                "SELECT data FROM chunks WHERE key=?", (chunk_key(path, digest),)
            ).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return _decode(path, bytes(row[0]))

    def put(self, path: str, digest: bytes, chunks: list[Chunk]) -> None:
        blob = _encode(chunks)
        with state_errors(self._path), self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO chunks VALUES(?,?,?,?)",
                (chunk_key(path, digest), blob, len(blob), time.time()),
            )

    def size(self) -> int:
        with state_errors(self._path):
            row = self._db.execute("SELECT coalesce(sum(size), 0) FROM chunks").fetchone()
        return int(row[0]) if row else 0

    def prune(self) -> int:
        """Drop the oldest entries until the cache holds at most `max_bytes`; how many."""
        excess = self.size() - self._max
        if excess <= 0:
            return 0
        dropped = 0
        with state_errors(self._path), self._db:
            rows = self._db.execute("SELECT key, size FROM chunks ORDER BY added").fetchall()
            doomed = []
            for key, size in rows:
                if excess <= 0:
                    break
                doomed.append((key,))
                excess -= size if isinstance(size, int) else 0
            self._db.executemany("DELETE FROM chunks WHERE key=?", doomed)
            dropped = len(doomed)
        self.pruned += dropped
        return dropped
