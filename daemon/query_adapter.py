"""A question's vector moved towards the code that answers it.

The default model (all-MiniLM-L6-v2) was trained on English sentence pairs: a question
in words and the Rust code that answers it land far apart. A linear map applied to the
question's vector only (q' = W q, normalized) closes some of that gap; the chunks'
vectors are untouched, so nothing is re-embedded and an index built without it is the
same index. W was fitted by `python -m bench.quality.adapter` on doc comments and
doc-blanked code of Debian's packaged crates outside every evaluation set, and is kept
in `model/query_adapter.npz` with the id of the model it was fitted for.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import structlog

log = structlog.get_logger("rcmd.query_adapter")

#: Shipped with the package (pyproject's package data `model/*`).
ADAPTER_FILE = Path(__file__).parent / "model" / "query_adapter.npz"


def base_model(model_id: str) -> str:
    """The model an id names, without the graph's quantization recipe: the int8 and float
    graphs of one model give vectors within 1% of each other, so one map serves both."""
    return model_id.split("+", 1)[0]


@dataclass(frozen=True, slots=True, eq=False)
class QueryAdapter:
    model: str
    matrix: npt.NDArray[np.float32]

    def apply(self, vector: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """`vector` mapped and normalized (the store ranks by cosine)."""
        out = self.matrix @ vector.astype(np.float32)
        norm = float(np.linalg.norm(out))
        return out / norm if norm > 0 else vector

    def save(self, path: Path) -> None:
        np.savez_compressed(path, model=np.array(self.model), matrix=self.matrix.astype(np.float16))


def load_adapter(
    model_id: str, path: Path = ADAPTER_FILE, dim: int | None = None
) -> QueryAdapter | None:
    """The adapter fitted for `model_id`'s model, or None: no file, one fitted for
    another model (a configured fastembed model gets its questions as they are), or one
    that cannot be read (logged: questions are then searched as they are, never a failed
    start). `dim`, when given, is the model's vector size the map must fit."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            model = str(data["model"])
            matrix = np.asarray(data["matrix"], dtype=np.float32)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        log.warning("query_adapter_unreadable", path=str(path), error=str(e))
        return None
    square = matrix.ndim == 2 and matrix.shape[0] == matrix.shape[1]
    if not square or matrix.shape[0] != (dim or matrix.shape[0]) or not np.isfinite(matrix).all():
        log.warning("query_adapter_unreadable", path=str(path), shape=list(matrix.shape))
        return None
    if base_model(model) != base_model(model_id):
        return None
    return QueryAdapter(model, matrix)
