"""The embedding cache shared by all roots: blake3(model id ‖ text) → vector.

Identical code in two roots, or code restored by a revert, is never embedded twice;
vectors are stored as float16 (ample for cosine ranking, half the disk). Bounded by age
and size (`[index] embed_cache_mb`, `cache_max_age_days`): pruned when the indexer is
idle, least recently used first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import blake3
import numpy as np
import numpy.typing as npt
import structlog

from daemon.sqlite import cache_write, connect, open_or_set_aside, state_errors

log = structlog.get_logger("rcmd.embed_cache")

Vector = npt.NDArray[np.float32]


def cache_key(model_id: str, text: str) -> bytes:
    return blake3.blake3(model_id.encode() + b"\0" + text.encode()).digest(16)


def open_cache(path: Path) -> EmbedCache:
    """The cache at `path`, or a new one if it is damaged (see `open_or_set_aside`)."""
    return open_or_set_aside(path, EmbedCache)


#: A hit refreshes its row's last use at most this often (a write per hit would double
#: the cost of a lookup): ages are known to within a day.
TOUCH_EVERY_S = 86_400.0
#: Bytes a row costs beyond its vector (key, index entry, page overhead), measured.
ROW_OVERHEAD = 64


class EmbedCache:
    """Each vector's last use is kept beside it (`emb_use`), so `prune` drops what has not
    been used for long, and the least recently used rows past a size bound. A side table,
    not a column: an older rcmd keeps writing `emb` as it did (its rows count as unused
    since the epoch until a hit refreshes them)."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self._path = path
        self._clock = clock
        self._db = connect(path)
        with state_errors(path):
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS emb(key BLOB PRIMARY KEY, vec BLOB NOT NULL)"
                " WITHOUT ROWID"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS emb_use(key BLOB PRIMARY KEY, used REAL NOT NULL)"
                " WITHOUT ROWID"
            )
        #: Rows dropped by `prune` since the daemon started.
        self.pruned = 0

    def close(self) -> None:
        self._db.close()

    def get_many(self, keys: Sequence[bytes], dim: int | None = None) -> dict[bytes, Vector]:
        """Cached vectors by key; with `dim`, a row of another size (a damaged or foreign
        row) is left out, so it counts as a miss and the fresh vector replaces it. Hits
        not used for `TOUCH_EVERY_S` get their last use refreshed."""
        found: dict[bytes, Vector] = {}
        size = None if dim is None else 2 * dim
        now = self._clock()
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            marks = ",".join("?" * len(part))
            stale = []
            for key, blob, used in self._db.execute(
                f"SELECT key, vec, used FROM emb LEFT JOIN emb_use USING(key) "
                f"WHERE key IN ({marks})",
                part,
            ):
                if size is not None and len(blob) != size:
                    continue
                found[bytes(key)] = np.frombuffer(blob, dtype=np.float16).astype(np.float32)
                if used is None or used < now - TOUCH_EVERY_S:
                    stale.append((key, now))
            if stale:
                with cache_write(self._path), self._db:
                    self._db.executemany("INSERT OR REPLACE INTO emb_use VALUES(?,?)", stale)
        return found

    def put_many(self, items: dict[bytes, Vector]) -> None:
        now = self._clock()
        with cache_write(self._path), self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO emb VALUES(?,?)",
                ((k, v.astype(np.float16).tobytes()) for k, v in items.items()),
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO emb_use VALUES(?,?)", ((k, now) for k in items)
            )

    def __len__(self) -> int:
        row = self._db.execute("SELECT count(*) FROM emb").fetchone()
        return int(row[0]) if row else 0

    def size(self) -> int:
        """Estimated bytes: rows times (one row's vector + `ROW_OVERHEAD`)."""
        row = self._db.execute("SELECT length(vec) FROM emb LIMIT 1").fetchone()
        return len(self) * (int(row[0]) + ROW_OVERHEAD) if row else 0

    def prune(self, max_bytes: int, max_age_s: float) -> int:
        """Drop rows unused for `max_age_s` (0: no age limit), then the least recently
        used past `max_bytes` (0: no size limit); how many went."""
        dropped = 0
        with state_errors(self._path), self._db:
            if max_age_s > 0:
                dropped += self._drop(
                    "SELECT key FROM emb LEFT JOIN emb_use USING(key) WHERE coalesce(used, 0) < ?",
                    (self._clock() - max_age_s,),
                )
            size = self.size()
            if max_bytes > 0 and size > max_bytes:
                rows = len(self)
                dropped += self._drop(
                    "SELECT key FROM emb LEFT JOIN emb_use USING(key)"
                    " ORDER BY coalesce(used, 0) LIMIT ?",
                    (rows - rows * max_bytes // size,),
                )
            self._db.execute("DELETE FROM emb_use WHERE key NOT IN (SELECT key FROM emb)")
        if dropped:
            log.info("embed_cache_pruned", rows=dropped)
        self.pruned += dropped
        return dropped

    def _drop(self, select: str, args: tuple[float | int, ...]) -> int:
        """Delete the rows whose keys `select` yields; how many."""
        keys = [(k,) for (k,) in self._db.execute(select, args)]
        self._db.executemany("DELETE FROM emb WHERE key=?", keys)
        return len(keys)
