"""Hybrid search over one or more roots: BM25 and vector candidates fused with RRF.

Results are resolved through `state.db`, so only chunks whose file record is committed
(and therefore in both indexes) are ever returned: no stale or half-written hits.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from daemon.fusion import rrf
from daemon.root import RootIndex
from daemon.state import ChunkRow

SNIPPET_LINES = 6
#: How much deeper each side searches when filters may discard candidates.
FILTER_DEPTH_FACTOR = 4


@dataclass(frozen=True, slots=True)
class SearchHit:
    root: str
    path: str
    start_line: int
    end_line: int
    symbol: str
    kind: str
    score: float
    snippet: str

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def snippet(row: ChunkRow, query_words: set[str], lines: int = SNIPPET_LINES) -> str:
    """A few lines of the chunk, starting at the first line that mentions a query word."""
    text_lines = row.text.splitlines()
    start = 0
    for i, line in enumerate(text_lines):
        low = line.lower()
        if any(w in low for w in query_words):
            start = max(0, i - 1)
            break
    return "\n".join(text_lines[start : start + lines])


def search_roots(
    roots: Sequence[RootIndex],
    query: str,
    *,
    mode: str,
    limit: int,
    candidates: int,
    rrf_k: int,
    embed_query: Callable[[str], npt.NDArray[np.float32]] | None,
    path_glob: str | None = None,
    kind: str | None = None,
) -> list[SearchHit]:
    """Best `limit` hits over `roots`; `path_glob` (fnmatch on the root-relative path, `*`
    crossing `/`) and `kind` keep only matching chunks, searching deeper to make up for it."""
    filtered = path_glob is not None or kind is not None
    depth = max(candidates, limit) * (FILTER_DEPTH_FACTOR if filtered else 1)
    vector = embed_query(query) if mode in ("hybrid", "vector") and embed_query else None
    words = {w.lower() for w in query.split() if len(w) > 2}
    keyed: list[tuple[tuple[str, str], float]] = []
    for root in roots:
        bm25 = root.lexical.search(query, depth) if mode in ("hybrid", "bm25") else []
        vec = root.vectors.search(vector, depth) if vector is not None else []
        if mode == "hybrid":
            fused = rrf([[cid for cid, _ in bm25], [cid for cid, _ in vec]], k=rrf_k)
        else:
            fused = bm25 if mode == "bm25" else vec
        keyed.extend(((root.id, cid), score) for cid, score in fused)
    keyed.sort(key=lambda kv: -kv[1])
    by_root = {r.id: r for r in roots}
    hits: list[SearchHit] = []
    wanted: dict[str, list[str]] = {}
    for (rid, cid), _ in keyed[: depth * 2]:
        wanted.setdefault(rid, []).append(cid)
    rows = {rid: by_root[rid].state.chunk_rows(cids) for rid, cids in wanted.items()}
    for (rid, cid), score in keyed:
        row = rows.get(rid, {}).get(cid)
        if row is None:
            continue
        if (kind is not None and row.kind != kind) or (
            path_glob is not None and not fnmatch.fnmatchcase(row.path, path_glob)
        ):
            continue
        hits.append(
            SearchHit(
                root=str(by_root[rid].path),
                path=row.path,
                start_line=row.start_line,
                end_line=row.end_line,
                symbol=row.symbol,
                kind=row.kind,
                score=round(score, 6),
                snippet=snippet(row, words),
            )
        )
        if len(hits) >= limit:
            break
    return hits
