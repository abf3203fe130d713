"""The symbol graph's rows in state.db (`sym_*` tables): a file's rows written whole, or,
when the rows last written for it are known, only the rows that differ.

A graph travels as its rows (`TableRows`): the chunk cache keeps them and the graph
worker sends them, so a known graph (a forced reindex reads ~1,000 of them) is written
without being built as records first.

A save of a big file changes the rows of the one item it touched, yet rewriting the
file's ~10,000 rows (each in two or three indexes) cost ~30 ms a save of a 1 MB file.
The rows a commit wrote are kept for the few files of a small commit (a save), so the
next commit of that file deletes and inserts only the difference. They are kept only
once the transaction is committed, and forgotten whenever a commit fails or the tables
are cleared, so they are always what the database holds.

A forced reindex checks instead: a file's rows are read back in the order written and
left alone when they are its graph's, row for row, else written again whole.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter, OrderedDict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import apsw

from daemon.symbols import FileGraph

#: The symbol graph's tables, each with a `file` column (`sym_files.id`: a file's rows go
#: together, and a path is stored once, not on each of its ~130 rows).
GRAPH_TABLES = ("sym_defs", "sym_refs", "sym_impls", "sym_imports")
#: A commit of at most this many files keeps their rows (a save; not a cold batch).
KEEP_FOR_COMMITS_OF = 4
#: Files whose rows are kept (the most recently written).
KEEP_FILES = 8

_Row = tuple[int | str, ...]
#: A file's graph: the rows of each of `GRAPH_TABLES`, without their `file` column.
TableRows = tuple[list[Sequence[int | str]], ...]

_COLUMNS = {
    "sym_defs": ("symbol", "name", "kind", "line", "end_line"),
    "sym_refs": ("name", "written", "kind", "enclosing", "targets", "lines"),
    "sym_impls": (
        "trait_name",
        "trait",
        "trait_targets",
        "type_name",
        "self_type",
        "type_targets",
        "line",
        "symbol",
    ),
    "sym_imports": ("module", "alias", "target", "line"),
}


@dataclass(frozen=True, slots=True)
class FileRows:
    """One file's rows as written (without their `file` column), per table."""

    file: int
    tables: tuple[Counter[_Row], ...]


def joined_targets(targets: Iterable[str]) -> str:
    """A reference's (or an impl side's) candidate symbols as one column."""
    return "\n".join(targets)


def split_targets(column: object) -> list[str]:
    """The candidate symbols `joined_targets` stored, in order."""
    return [c for c in str(column).split("\n") if c]


def rows_of(graph: FileGraph) -> TableRows:
    """The rows of `graph`, per table of `GRAPH_TABLES`."""
    impls = (
        (
            i.trait.rsplit("::", 1)[-1],
            i.trait,
            joined_targets(i.trait_targets),
            i.self_type.rsplit("::", 1)[-1],
            i.self_type,
            joined_targets(i.type_targets),
            i.line,
            i.symbol,
        )
        for i in graph.impls
    )
    return (list(graph.defs), list(_ref_rows(graph)), list(impls), [*graph.imports, *graph.aliases])


def encode_rows(rows: TableRows) -> bytes:
    """A graph's rows as the chunk cache keeps them: compact JSON, compressed."""
    return zlib.compress(json.dumps(rows, separators=(",", ":")).encode(), 1)


def decode_rows(blob: bytes) -> TableRows:
    return tuple(json.loads(zlib.decompress(blob)))


def _counted(rows: TableRows) -> tuple[Counter[_Row], ...]:
    return tuple(Counter(map(tuple, table)) for table in rows)


def _ref_rows(graph: FileGraph) -> Iterator[_Row]:
    """One row per distinct reference of a file, with every line it is written on (a
    third of a file's references repeat one already made from the same item)."""
    lines: dict[tuple[str, str, str, str, str], list[str]] = {}
    for r in graph.refs:
        key = (r.name, r.written, r.kind, r.enclosing, joined_targets(r.targets))
        lines.setdefault(key, []).append(str(r.line))
    for key, at in lines.items():
        yield (*key, " ".join(at))


class GraphRows:
    """Writes the graph rows of a commit (in the caller's transaction) and remembers
    those of the files it may see again soon."""

    def __init__(self) -> None:
        self._known: OrderedDict[str, FileRows] = OrderedDict()

    def write(
        self,
        db: apsw.Connection,
        touched: list[str],
        graphs: Mapping[str, TableRows],
        checked: Collection[str] = (),
    ) -> dict[str, FileRows]:
        """Replace the rows of `touched` paths with those of `graphs` (a touched path
        without a graph loses its rows); a `checked` path's rows are read back and left
        when equal (a forced reindex). Returns what to `remember` once the commit holds."""
        keep: dict[str, FileRows] = {}
        small = len(touched) <= KEEP_FOR_COMMITS_OF
        for path in touched:
            old = self._known.pop(path, None)
            graph = graphs.get(path)
            if path in checked and graph is not None:
                held = _stored(db, path)
                if held is not None and _same(held[1], graph):
                    if small:
                        keep[path] = FileRows(held[0], _counted(graph))
                    continue
                old = None  # rewritten whole, so its rows stay in the order written
            if old is not None and graph is not None:
                new = _counted(graph)
                _write_difference(db, old, new)
                keep[path] = FileRows(old.file, new)
                continue
            _drop(db, path)
            if graph is not None:
                file = _insert(db, path, graph)
                if small:
                    keep[path] = FileRows(file, _counted(graph))
        return keep

    def remember(self, written: dict[str, FileRows]) -> None:
        """The commit holding `written` is durable: the next write of these files may
        write only their difference."""
        for path, rows in written.items():
            self._known[path] = rows
            self._known.move_to_end(path)
        while len(self._known) > KEEP_FILES:
            self._known.popitem(last=False)

    def forget(self) -> None:
        """A commit failed or the tables were cleared: what was kept may be wrong."""
        self._known.clear()


def _stored(db: apsw.Connection, path: str) -> tuple[int, TableRows] | None:
    """The id and rows (in the order written) state.db holds for `path`: reading them
    back costs about a third of rewriting them (a forced reindex of medium: 157k rows)."""
    found = db.execute("SELECT id FROM sym_files WHERE path=?", (path,)).fetchone()
    if found is None:
        return None
    file = int(found[0])
    sql = "SELECT {} FROM {} WHERE file=? ORDER BY rowid"
    tables = tuple(
        list(db.execute(sql.format(",".join(_COLUMNS[t]), t), (file,))) for t in GRAPH_TABLES
    )
    return file, tables


def _same(stored: TableRows, graph: TableRows) -> bool:
    """Whether `stored` (as read back, in the order written) is `graph` row for row."""
    return all(
        len(s) == len(g) and s == [tuple(r) for r in g] for s, g in zip(stored, graph, strict=True)
    )


def _drop(db: apsw.Connection, path: str) -> None:
    ids = [(r[0],) for r in db.execute("SELECT id FROM sym_files WHERE path=?", (path,))]
    for table in GRAPH_TABLES:
        db.executemany(f"DELETE FROM {table} WHERE file=?", ids)
    db.executemany("DELETE FROM sym_files WHERE id=?", ids)


def _insert(db: apsw.Connection, path: str, graph: TableRows) -> int:
    db.execute("INSERT INTO sym_files(path) VALUES(?)", (path,))
    file = db.last_insert_rowid()
    for table, rows in zip(GRAPH_TABLES, graph, strict=True):
        _insert_rows(db, table, file, rows)
    return file


def _insert_rows(
    db: apsw.Connection, table: str, file: int, rows: Iterable[Sequence[int | str]]
) -> None:
    marks = ",".join("?" * (len(_COLUMNS[table]) + 1))
    db.executemany(f"INSERT INTO {table} VALUES({marks})", ((file, *r) for r in rows))


def _write_difference(db: apsw.Connection, old: FileRows, new: tuple[Counter[_Row], ...]) -> None:
    """Delete the rows whose count changed and insert them again as many times as the
    new graph has them (a row is deleted with all its copies)."""
    for table, before, after in zip(GRAPH_TABLES, old.tables, new, strict=True):
        changed = [r for r in before.keys() | after.keys() if before[r] != after[r]]
        if not changed:
            continue
        where = " AND ".join(f"{c}=?" for c in _COLUMNS[table])
        db.executemany(
            f"DELETE FROM {table} WHERE file=? AND {where}", ((old.file, *r) for r in changed)
        )
        _insert_rows(db, table, old.file, (r for r in changed for _ in range(after[r])))
