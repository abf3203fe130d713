"""One root's store failing does not fail a search over several roots.

A search reads each root's Tantivy index (BM25, symbol candidates) and Qdrant shard
(vectors). One of them raising (a parked crate's shard that cannot load on a full disk,
index files deleted or damaged under the daemon) made the whole search an error, though
every other root could answer. Now the root is ranked by the side that still works (a
hybrid search whose shard fails ranks that root by BM25, as during a vacuum: its hits
are still the user's best guess from it), or left out when no side the search uses
works; the reply names it (`degraded`), and the error is logged. A search whose every
root is left out fails as before, saying why: an empty list would read as "no match".
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TypeVar

import structlog

from daemon.root import RootIndex
from ipc.errors import RcmdError, StateError

log = structlog.get_logger("rcmd.search")

T = TypeVar("T")

LEXICAL = "lexical index"
VECTORS = "vectors"
#: Errors of our own code, not of a store: never taken for a store that failed.
BUGS = (TypeError, AttributeError, NameError, AssertionError)


@dataclass(frozen=True, slots=True)
class Degraded:
    """A root a search could not use whole: the stores that raised, with why, and
    whether it was left out (no store the search uses answered) or ranked without them."""

    root: str
    failed: dict[str, str]
    left_out: bool

    def to_json(self) -> dict[str, object]:
        return {"root": self.root, "left_out": self.left_out, "failed": dict(self.failed)}


class StoreFailures:
    """The store calls of one search that raised, by root."""

    def __init__(self) -> None:
        self._failed: dict[str, dict[str, str]] = {}

    def guard(self, root: RootIndex, store: str, call: Callable[[], T], fallback: T) -> T:
        """`call()` (a call into `root`'s `store`), or `fallback` when it raises: the
        failure is logged and noted, and no later call of the search goes to that store."""
        if store in self._failed.get(root.id, {}):
            return fallback
        try:
            return call()
        except BUGS:
            raise
        except Exception as exc:
            log.warning(
                "store_failed_in_search",
                root=str(root.path),
                store=store,
                error=f"{type(exc).__name__}: {exc}",
                # A disk or state error says it all; hundreds of crates would repeat it.
                exc_info=not isinstance(exc, (OSError, RcmdError)),
            )
            self._failed.setdefault(root.id, {})[store] = str(exc) or type(exc).__name__
            return fallback

    def report(self, roots: Sequence[RootIndex], ranking: Collection[str]) -> list[Degraded]:
        """Each root with a failed store, left out when every store that ranks in this
        search (`ranking`: BM25's index, the vectors or both) failed; when that is every
        root searched, the search fails instead (StateError, saying why)."""
        out = [
            Degraded(str(r.path), dict(failed), all(s in failed for s in ranking))
            for r in roots
            if (failed := self._failed.get(r.id))
        ]
        if roots and len(out) == len(roots) and all(d.left_out for d in out):
            raise StateError("; ".join(describe(d) for d in out))
        return out


def describe(d: Degraded) -> str:
    """`ROOT: its vectors cannot be searched: WHY` (every failed store, `;`-joined)."""
    return "; ".join(
        f"{d.root}: its {store} cannot be searched: {why}" for store, why in d.failed.items()
    )
