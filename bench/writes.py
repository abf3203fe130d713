"""Index write settings (plan tasks 3.1 and 3.2): Tantivy writer heap and threads, and the
vector upsert batch size, each on the corpus's real chunks.

    python -m bench writes [--corpus small]

Tantivy: every chunk added and committed once per setting, in a fresh index. Vectors:
random unit vectors (384 dims) upserted into a fresh Qdrant Edge shard with rcmd's
config, by batch size; the embedding model is out of the figure on purpose.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.corpora import materialize
from bench.harness import save


def _docs(tree: Path) -> list[Any]:
    """Every chunk of the tree as the Tantivy doc the daemon would write."""
    from daemon.chunker import chunk_source
    from daemon.lexical_writes import LexicalDoc
    from daemon.pipeline import assign_ids

    docs = []
    for f in sorted(tree.rglob("*.rs")):
        rel = f.relative_to(tree).as_posix()
        for cid, c in assign_ids("bench", rel, chunk_source(rel, f.read_bytes())):
            docs.append(
                LexicalDoc(
                    cid, rel, c.kind, c.symbol, c.signature, c.text, c.start_line, c.end_line
                )
            )
    return docs


def _tantivy(tmp: Path, docs: list[Any]) -> list[dict[str, Any]]:
    from daemon.lexical import LexicalIndex

    out = []
    # Tantivy wants at least 15 MB of heap per writer thread.
    for heap_mb, threads in ((16, 1), (64, 1), (64, 2), (256, 1), (256, 2)):
        index = LexicalIndex(tmp / f"t{heap_mb}-{threads}", heap_mb << 20, threads)
        t = time.perf_counter()
        index.add(docs)
        index.commit()
        seconds = time.perf_counter() - t
        index.close()
        out.append(
            {
                "heap_mb": heap_mb,
                "threads": threads,
                "seconds": round(seconds, 2),
                "chunks_per_s": round(len(docs) / seconds),
            }
        )
        print(out[-1], flush=True)
    return out


def _upserts(tmp: Path, docs: list[Any]) -> list[dict[str, Any]]:
    from daemon.vectors import EdgeStore, VectorPoint

    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((len(docs), 384), dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    points = [VectorPoint(d.chunk_id, d.path, d.kind, v) for d, v in zip(docs, vecs, strict=True)]
    out = []
    for batch in (32, 128, 512, 2048):
        store = EdgeStore(tmp / f"q{batch}", 384)
        t = time.perf_counter()
        for lo in range(0, len(points), batch):
            store.upsert(points[lo : lo + batch])
        store.flush()
        seconds = time.perf_counter() - t
        store.close()
        out.append(
            {
                "batch": batch,
                "seconds": round(seconds, 2),
                "points_per_s": round(len(points) / seconds),
            }
        )
        print(out[-1], flush=True)
    return out


def run(args: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        docs = _docs(materialize(args.corpus, tmp / "tree"))
        out: dict[str, Any] = {"corpus": args.corpus, "chunks": len(docs)}
        out["tantivy"] = _tantivy(tmp, docs)
        out["vector_upsert"] = _upserts(tmp, docs)
    save(f"writes-{args.corpus}", f"python -m bench writes --corpus {args.corpus}", out)
    return out
