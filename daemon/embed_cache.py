"""The embedding cache shared by all roots: blake3(model id ‖ text) → vector.

Identical code in two roots, or code restored by a revert, is never embedded twice;
vectors are stored as float16 (ample for cosine ranking, half the disk).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import blake3
import numpy as np
import numpy.typing as npt
import structlog

from daemon.sqlite import connect, open_or_set_aside, state_errors

log = structlog.get_logger("rcmd.embed_cache")

Vector = npt.NDArray[np.float32]


def cache_key(model_id: str, text: str) -> bytes:
    return blake3.blake3(model_id.encode() + b"\0" + text.encode()).digest(16)


def open_cache(path: Path) -> EmbedCache:
    """The cache at `path`, or a new one if it is damaged (see `open_or_set_aside`)."""
    return open_or_set_aside(path, EmbedCache)


class EmbedCache:
    def __init__(self, path: Path) -> None:
        self._db = connect(path)
        with state_errors(path):
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS emb(key BLOB PRIMARY KEY, vec BLOB NOT NULL)"
                " WITHOUT ROWID"
            )

    def close(self) -> None:
        self._db.close()

    def get_many(self, keys: Sequence[bytes], dim: int | None = None) -> dict[bytes, Vector]:
        """Cached vectors by key; with `dim`, a row of another size (a damaged or foreign
        row) is left out, so it counts as a miss and the fresh vector replaces it."""
        found: dict[bytes, Vector] = {}
        size = None if dim is None else 2 * dim
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            marks = ",".join("?" * len(part))
            for key, blob in self._db.execute(
                f"SELECT key, vec FROM emb WHERE key IN ({marks})", part
            ):
                if size is not None and len(blob) != size:
                    continue
                found[bytes(key)] = np.frombuffer(blob, dtype=np.float16).astype(np.float32)
        return found

    def put_many(self, items: dict[bytes, Vector]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO emb VALUES(?,?)",
                ((k, v.astype(np.float16).tobytes()) for k, v in items.items()),
            )

    def __len__(self) -> int:
        row = self._db.execute("SELECT count(*) FROM emb").fetchone()
        return int(row[0]) if row else 0
