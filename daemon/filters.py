"""The `search` filters as predicates on a candidate chunk, defined in one place.

A new filter is a field of `ipc.requests.SearchRequest` and one predicate here; search
keeps a candidate only if every predicate holds, and searches deeper when any is set.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Collection

from daemon.query import symbol_matches
from daemon.state import ChunkRow
from ipc.requests import SearchRequest

RowFilter = Callable[[ChunkRow], bool]


def row_filters(request: SearchRequest, also: Collection[str] = ()) -> list[RowFilter]:
    """The predicates `request` asks for (empty: no filtering); a chunk whose symbol is
    one of `also` passes the symbol filter too (the items a public path names)."""
    out: list[RowFilter] = []
    if (kind := request.kind) is not None:
        out.append(lambda row: row.kind == kind)
    if (glob := request.path) is not None:
        out.append(path_filter(glob))
    if (name := request.symbol_name) is not None:
        # Exact and case-sensitive: `name` itself or a symbol ending in `::name`.
        aliases = frozenset(also)
        out.append(
            lambda row: row.symbol in aliases or symbol_matches(row.symbol, name, ignore_case=False)
        )
    return out


def path_filter(value: str) -> RowFilter:
    """A glob is matched by fnmatch on the root-relative path (`*` also crosses `/`). A
    value without glob characters is a file or a folder: the path itself, everything
    under it, and everything under a folder of that name anywhere (`--path dec2flt`)."""
    if any(c in value for c in "*?["):
        return lambda row: fnmatch.fnmatchcase(row.path, value)
    name = value.strip("/").removeprefix("./")
    if not name:
        return lambda row: True
    inner, tail = "/" + name + "/", "/" + name
    # "/" + path: the folder or file at the top counts like one further down.
    return lambda row: inner in "/" + row.path or ("/" + row.path).endswith(tail)
