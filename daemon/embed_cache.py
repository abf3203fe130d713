"""The embedding cache shared by all roots: blake3(model id ‖ text) → vector.

Identical code in two roots, or code restored by a revert, is never embedded twice;
vectors are stored as float16 (ample for cosine ranking, half the disk).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import apsw
import blake3
import numpy as np
import numpy.typing as npt

from daemon.state import set_wal
from ipc.errors import StateError

Vector = npt.NDArray[np.float32]


def cache_key(model_id: str, text: str) -> bytes:
    return blake3.blake3(model_id.encode() + b"\0" + text.encode()).digest(16)


class EmbedCache:
    def __init__(self, path: Path) -> None:
        try:
            self._db = apsw.Connection(str(path))
            self._db.set_busy_timeout(5000)
            set_wal(self._db)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS emb(key BLOB PRIMARY KEY, vec BLOB NOT NULL)"
                " WITHOUT ROWID"
            )
        except apsw.Error as exc:
            raise StateError(f"{path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, Vector]:
        found: dict[bytes, Vector] = {}
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            marks = ",".join("?" * len(part))
            for key, blob in self._db.execute(
                f"SELECT key, vec FROM emb WHERE key IN ({marks})", part
            ):
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
