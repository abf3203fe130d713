"""What `status` says about a root, and the one line a service manager shows: built
from the root's own objects (ledger, progress, state) and the indexer's queue, never
from fields another module writes."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from daemon.chunk_cache import ChunkCache
from daemon.embed_cache import EmbedCache
from daemon.embedder import TextEmbedder
from daemon.indexer import Indexer
from daemon.parse_cache import ParseCache
from daemon.registry import Registry
from daemon.root import RootIndex

#: Skipped files listed by name in a root's status (all are counted by reason).
SKIPPED_EXAMPLES = 20


def root_status(indexer: Indexer, registry: Registry, root: RootIndex) -> dict[str, Any]:
    files, chunks = root.state.counts()
    skipped = list(root.state.skipped())
    reasons = Counter(reason for _p, reason, _d in skipped)
    last_commit = root.state.get_meta("last_commit")  # this thread's read connection
    idle = indexer.idle(root.id)
    seed = root.state.get_meta("seed")
    return {
        "path": str(root.path),
        "id": root.id,
        "files": files,
        "chunks": chunks,
        "merkle_root": root.ledger.root_hash,
        "last_commit": float(last_commit) if last_commit else None,
        "queue": indexer.queued(root.id),
        "vectors_pending": root.ledger.vectors_pending,
        "idle": idle,
        # Set when the index was adopted from a snapshot file or a root of the same repo.
        "seeded_from": root.state.get_meta("seeded_from"),
        "seed": json.loads(seed) if seed else None,
        # `name version` of a dependency root (`index --deps`), else None.
        "dependency": registry.deps.crate_of(root.path),
        # Why `index --deps` added no dependency crates (a broken Cargo.lock), else None.
        "deps_skipped": registry.deps.skipped(root.path),
        "skipped": {
            "count": len(skipped),
            "by_reason": dict(reasons),
            "examples": [
                {"path": sp, "reason": r, "detail": d} for sp, r, d in skipped[:SKIPPED_EXAMPLES]
            ],
        },
        # Not idle yet nothing runs: files or vectors wait in the queue.
        **root.progress.to_json(registry.watch_rescans(root), queued=not idle),
    }


def root_statuses(indexer: Indexer, registry: Registry) -> list[dict[str, Any]]:
    """Each root's status; a root removed while it is read (`rcmd remove`, a dependency
    crate no project uses any more) is left out, not an internal error."""
    out = []
    for root in registry.roots():
        try:
            out.append(root_status(indexer, registry, root))
        except Exception:
            if root in registry.roots():
                raise
    return out


def summary_line(indexer: Indexer, registry: Registry) -> str:
    """One line for a service manager's status display; never raises."""
    try:
        roots = registry.roots()
        busy = [r for r in roots if not indexer.idle(r.id)]
        if busy:
            r = busy[0]
            p = r.progress
            pending = r.ledger.vectors_pending
            if p.files_done >= p.files_total and pending:
                return f"{r.path.name}: BM25 ready, embedding {pending} chunks"
            return f"{r.path.name}: {p.activity}, {p.files_done}/{p.files_total} files"
        # From the ledgers in memory: a count of state.db's chunks every tick kept a read
        # connection of every parked dependency root opening and closing (1% of a CPU
        # idle with 50 crates).
        chunks = sum(r.ledger.chunks_of(r.ledger) for r in roots)
        return f"idle: {len(roots)} root(s), {chunks} chunks"
    except Exception as exc:  # a root removed meanwhile, a state error: never fatal
        return f"status unavailable: {exc}"


def caches_status(
    embedder: TextEmbedder,
    indexer: Indexer,
    cache: EmbedCache,
    chunk_cache: ChunkCache | None,
    parse_cache: ParseCache,
) -> dict[str, Any]:
    """The daemon-wide `embedding`, `chunk_cache` and `parse_cache` objects of `status`."""
    return {
        "embedding": {
            "model": embedder.model_id,
            "dim": embedder.dim,
            "loaded": embedder.loaded,
            "device": embedder.device_status(),
            "layout": embedder.layout_status(),
            "tokens_embedded": embedder.tokens_embedded,
            **indexer.totals.counts(),
            "cache_pruned": cache.pruned,
        },
        "chunk_cache": {
            "hits": chunk_cache.hits if chunk_cache else 0,
            "misses": chunk_cache.misses if chunk_cache else 0,
            "pruned": chunk_cache.pruned if chunk_cache else 0,
        },
        "parse_cache": {
            "files": len(parse_cache),
            "bytes": parse_cache.size,
            "incremental": parse_cache.incremental,
            "full": parse_cache.full,
            "evicted": parse_cache.evicted,
        },
    }
