"""The `search` filters as predicates on a candidate chunk, defined in one place.

A new filter is a field of `ipc.requests.SearchRequest` and one predicate here; search
keeps a candidate only if every predicate holds, and searches deeper when any is set.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

from daemon.query import symbol_matches
from daemon.state import ChunkRow
from ipc.requests import SearchRequest

RowFilter = Callable[[ChunkRow], bool]


def row_filters(request: SearchRequest) -> list[RowFilter]:
    """The predicates `request` asks for (empty: no filtering)."""
    out: list[RowFilter] = []
    if (kind := request.kind) is not None:
        out.append(lambda row: row.kind == kind)
    if (glob := request.path) is not None:
        # fnmatch on the root-relative path: `*` also crosses `/`.
        out.append(lambda row: fnmatch.fnmatchcase(row.path, glob))
    if (name := request.symbol_name) is not None:
        # Exact and case-sensitive: `name` itself or a symbol ending in `::name`.
        out.append(lambda row: symbol_matches(row.symbol, name, ignore_case=False))
    return out
