"""`state.db`: the truth about what a root's indexes hold (apsw/SQLite, WAL).

One place defines the on-disk schema. A file's row (and its chunks' rows) is written only
after both indexes hold it; paths being written are listed in `inflight` first, so a
crash leaves a record of what to redo.

A big batch writes Tantivy first and leaves the embedding for later: its chunks are
recorded with a row in `pending_vectors` (the text to embed) until their vectors are in
Qdrant. A v1 database simply gains the empty table: "no vector pending" is what v1 meant.

The symbol graph (`graph_*` tables: definitions, references, impl relations, imports) is
written in the same transaction as its file's chunks and goes with them. A database from
before it gains the empty tables the same way; its root records no `symbol_graph`
version and is rebuilt through the caches when opened (`daemon.root`).

Schema 2 adds `files.ctime_ns`, the inode change time, to the stat fast path: a same-size
edit whose mtime was set back (`cp -p`, `tar x`, `touch -r`) still changes it, as no
user can set it. A v1 database gains the column in place, NULL ("unknown": the file is
read and hashed once, and only a changed hash re-indexes it); the version goes up
because a v1 daemon writes 7 values per row and would fail on the new table, while an
unknown version is set aside and rebuilt.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

from daemon.graph_rows import GRAPH_TABLES, GraphRows, TableRows
from daemon.sqlite import ReadPool, close_writer, connect, state_errors
from ipc.errors import StateError

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files(
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL, hash BLOB NOT NULL, chunks INTEGER NOT NULL,
    indexed_at REAL NOT NULL, ctime_ns INTEGER);
CREATE TABLE IF NOT EXISTS chunks(
    id TEXT PRIMARY KEY, path TEXT NOT NULL, start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL, symbol TEXT NOT NULL, kind TEXT NOT NULL,
    signature TEXT NOT NULL, text TEXT NOT NULL);
DROP INDEX IF EXISTS chunks_path;
CREATE INDEX IF NOT EXISTS chunks_item ON chunks(path, symbol, kind, start_line, end_line);
CREATE TABLE IF NOT EXISTS skipped(
    path TEXT PRIMARY KEY, reason TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS inflight(path TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS pending_vectors(
    id TEXT PRIMARY KEY, path TEXT NOT NULL, kind TEXT NOT NULL, embed_text TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS pending_vectors_path ON pending_vectors(path);
DROP TABLE IF EXISTS graph_defs;
DROP TABLE IF EXISTS graph_refs;
DROP TABLE IF EXISTS graph_impls;
DROP TABLE IF EXISTS graph_imports;
CREATE TABLE IF NOT EXISTS sym_files(id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS sym_defs(
    file INTEGER NOT NULL, symbol TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,
    line INTEGER NOT NULL, end_line INTEGER NOT NULL);
DROP INDEX IF EXISTS sym_defs_file;
CREATE INDEX IF NOT EXISTS sym_defs_file_symbol ON sym_defs(file, symbol);
CREATE INDEX IF NOT EXISTS sym_defs_name ON sym_defs(name);
CREATE INDEX IF NOT EXISTS sym_defs_symbol ON sym_defs(symbol);
CREATE TABLE IF NOT EXISTS sym_refs(
    file INTEGER NOT NULL, name TEXT NOT NULL, written TEXT NOT NULL, kind TEXT NOT NULL,
    enclosing TEXT NOT NULL, targets TEXT NOT NULL, lines TEXT NOT NULL);
DROP INDEX IF EXISTS sym_refs_file;
CREATE INDEX IF NOT EXISTS sym_refs_file_name ON sym_refs(file, name);
CREATE INDEX IF NOT EXISTS sym_refs_name ON sym_refs(name);
CREATE TABLE IF NOT EXISTS sym_impls(
    file INTEGER NOT NULL, trait_name TEXT NOT NULL, trait TEXT NOT NULL,
    trait_targets TEXT NOT NULL, type_name TEXT NOT NULL, self_type TEXT NOT NULL,
    type_targets TEXT NOT NULL, line INTEGER NOT NULL, symbol TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS sym_impls_file ON sym_impls(file);
CREATE INDEX IF NOT EXISTS sym_impls_trait ON sym_impls(trait_name);
CREATE INDEX IF NOT EXISTS sym_impls_type ON sym_impls(type_name);
CREATE TABLE IF NOT EXISTS sym_imports(
    file INTEGER NOT NULL, module TEXT NOT NULL, alias TEXT NOT NULL, target TEXT NOT NULL,
    line INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS sym_imports_file ON sym_imports(file);
CREATE INDEX IF NOT EXISTS sym_imports_alias ON sym_imports(module, alias);
CREATE INDEX IF NOT EXISTS sym_imports_name ON sym_imports(alias);
"""


@dataclass(frozen=True, slots=True)
class FileRecord:
    path: str
    size: int
    mtime_ns: int
    inode: int
    hash: bytes
    chunks: int
    #: The inode change time; None in a record from schema 1 (unknown: read it once).
    ctime_ns: int | None = None

    @classmethod
    def of(cls, path: str, st: os.stat_result, digest: bytes, chunks: int) -> FileRecord:
        """The record of `path` as statted (`st`) and read (`digest`)."""
        return cls(path, st.st_size, st.st_mtime_ns, st.st_ino, digest, chunks, st.st_ctime_ns)

    def stat_agrees(self, st: os.stat_result, *, unknown: bool = False) -> bool:
        """Whether `st` is the stat data recorded, so the file need not be read; an
        unknown ctime agrees only when `unknown` says it may."""
        same = (self.size, self.mtime_ns, self.inode) == (st.st_size, st.st_mtime_ns, st.st_ino)
        return same and (st.st_ctime_ns == self.ctime_ns or (unknown and self.ctime_ns is None))


@dataclass(frozen=True, slots=True)
class ChunkRow:
    id: str
    path: str
    start_line: int
    end_line: int
    symbol: str
    kind: str
    signature: str
    text: str


#: The columns of a `ChunkRow`, in its fields' order.
_CHUNK_ROW = "id,path,start_line,end_line,symbol,kind,signature,text"


@dataclass(frozen=True, slots=True)
class ChunkPatch:
    """A file rewritten chunk by chunk (an edit): its other rows and pending vectors stay.
    `dropped` chunks are gone; `revectored` ones have a new embedded text, so a pending
    row of theirs is stale (a new one comes with the commit when still needed)."""

    path: str
    dropped: tuple[str, ...]
    revectored: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PendingVector:
    """A recorded chunk whose vector is not in the vector store yet."""

    id: str
    path: str
    kind: str
    embed_text: str


class StateDB:
    """One writer connection, used under a lock, plus a few read connections lent one
    read at a time (`daemon.sqlite.ReadPool`).

    apsw refuses a connection used by two threads at once, and the indexer writes while
    requests read: so every read borrows a connection of its own (WAL lets it see the
    last commit), and every write holds `_lock`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._reads = ReadPool(path)
        self._writer: apsw.Connection | None = connect(path, keep_wal=True)
        self._closed = False
        self._graph_rows = GraphRows()
        with state_errors(path), self._db:
            self._db.execute(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            #: True when this open created the database (nothing was recorded before).
            self.created = row is None
            if row is None:
                self.set_meta("schema_version", str(SCHEMA_VERSION))
            elif row[0] == "1":  # no ctime yet: every record's is unknown (NULL)
                self._db.execute("ALTER TABLE files ADD COLUMN ctime_ns INTEGER")
                self.set_meta("schema_version", str(SCHEMA_VERSION))
            elif row[0] != str(SCHEMA_VERSION):
                raise StateError(f"{path}: schema version {row[0]}, expected {SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the writer and the readers (a removed root's files must not stay open);
        a reader lent out closes when its read ends."""
        with self._lock:
            self._closed = True
            self._close_writer()
            self._reads.close()

    def idle(self) -> None:
        """Close every connection not in use; the next read or write opens one again. A
        parked root holds no descriptor then: SQLite keeps a closed reader's file open
        while another connection to it holds a lock (the writer, in WAL mode, always)."""
        with self._lock:
            self._reads.trim()
            self._close_writer()

    def _close_writer(self) -> None:
        if self._writer is not None:
            close_writer(self._writer)
            self._writer = None

    @property
    def _db(self) -> apsw.Connection:
        """The writer, opened again after `idle` closed it; used under `_lock`."""
        if self._writer is None:
            if self._closed:
                raise StateError(f"{self.path}: closed")
            self._writer = connect(self.path, keep_wal=True)
        return self._writer

    def reading(self) -> AbstractContextManager[apsw.Connection]:
        """A read connection for several queries (the symbol graph's, `daemon.graph`),
        this thread's alone until the block ends."""
        return self._reads.lend()

    # ---- meta ----
    def get_meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key=?", (key,))
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES(?,?)", (key, value))

    # ---- files ----
    def files(self) -> dict[str, FileRecord]:
        return {
            r[0]: FileRecord(r[0], r[1], r[2], r[3], bytes(r[4]), r[5], r[6])
            for r in self._all("SELECT path,size,mtime_ns,inode,hash,chunks,ctime_ns FROM files")
        }

    def counts(self) -> tuple[int, int]:
        """(files, chunks) as recorded; read on the caller's thread."""
        files = self._one("SELECT count(*) FROM files")
        chunks = self._one("SELECT count(*) FROM chunks")
        return int(files[0] if files else 0), int(chunks[0] if chunks else 0)

    def chunk_ids_by_path(self) -> dict[str, set[str]]:
        return _ids_by_path(self._all("SELECT path, id FROM chunks"))

    def chunk_ids_of(self, path: str) -> set[str]:
        """The chunk ids recorded for one file."""
        return {r[0] for r in self._all("SELECT id FROM chunks WHERE path=?", (path,))}

    def chunk_rows(self, ids: Iterable[str]) -> dict[str, ChunkRow]:
        """Result metadata for chunk ids; ids not recorded (yet, or any more) are absent."""
        id_list = list(ids)
        if not id_list:
            return {}
        marks = ",".join("?" * len(id_list))
        rows = self._all(f"SELECT {_CHUNK_ROW} FROM chunks WHERE id IN ({marks})", id_list)
        return {r[0]: ChunkRow(*r) for r in rows}

    def chunk_rows_of(self, path: str) -> dict[str, ChunkRow]:
        """Every chunk row recorded for one file, by id."""
        rows = self._all(f"SELECT {_CHUNK_ROW} FROM chunks WHERE path=?", (path,))
        return {r[0]: ChunkRow(*r) for r in rows}

    def chunk_symbols(self, ids: Iterable[str]) -> dict[str, str]:
        """The symbol of each recorded chunk id: what an exact-symbol lookup checks,
        without reading the chunks' text."""
        id_list = list(ids)
        if not id_list:
            return {}
        marks = ",".join("?" * len(id_list))
        rows = self._all(f"SELECT id, symbol FROM chunks WHERE id IN ({marks})", id_list)
        return {cid: symbol for cid, symbol in rows}

    def symbol_spans(
        self, items: Iterable[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], list[tuple[int, int]]]:
        """For each (path, symbol, kind): (start, end) of every chunk of that path with
        that symbol and kind, in line order — the parts of a split item (and of any other
        item of the same name there). One query for all of them: a search asks for a page
        of hits at once."""
        keys = list(set(items))
        if not keys:
            return {}
        values = ",".join("(?,?,?)" for _ in keys)
        rows = self._all(
            f"WITH k(p, s, kd) AS (VALUES {values}) "
            "SELECT c.path, c.symbol, c.kind, c.start_line, c.end_line "
            "FROM k JOIN chunks c ON c.path = k.p AND c.symbol = k.s AND c.kind = k.kd "
            "ORDER BY c.start_line",
            [v for key in keys for v in key],
        )
        out: dict[tuple[str, str, str], list[tuple[int, int]]] = {key: [] for key in keys}
        for path, symbol, kind, start, end in rows:
            out[(path, symbol, kind)].append((int(start), int(end)))
        return out

    def inflight(self) -> set[str]:
        return {r[0] for r in self._all("SELECT path FROM inflight")}

    def mark_inflight(self, paths: Iterable[str]) -> None:
        with self._lock, self._db:
            self._db.executemany("INSERT OR IGNORE INTO inflight VALUES(?)", ((p,) for p in paths))

    def record(
        self,
        files: Iterable[FileRecord],
        chunks: Iterable[ChunkRow],
        deleted: Iterable[str],
        skipped: dict[str, tuple[str, str]],
        pending: Iterable[PendingVector] = (),
        merkle_root: str | None = None,
        patches: Iterable[ChunkPatch] = (),
        graphs: Mapping[str, TableRows] | None = None,
        checked: Collection[str] = (),
    ) -> None:
        """Record what the indexes now hold, in one transaction; `pending` are chunks of
        these files that Tantivy holds and the vector store does not yet; `merkle_root`
        is the tree's root hash over the records as they are after this commit; `graphs`
        the files' symbol graphs (those of `checked` files compared with the rows held,
        and written only when they differ). A file with a patch keeps the chunk rows that
        `chunks` does not replace."""
        file_list, deleted_list = list(files), list(deleted)
        touched = [f.path for f in file_list] + deleted_list
        with self._lock:
            try:
                with state_errors(self.path), self._db:
                    _drop_chunks(self._db, touched, list(patches))
                    written = self._graph_rows.write(self._db, touched, graphs or {}, checked)
                    _write_records(self._db, file_list, chunks, deleted_list, skipped, pending)
                    if merkle_root is not None:
                        self.set_meta("merkle_root", merkle_root)
            except BaseException:
                self._graph_rows.forget()
                raise
            self._graph_rows.remember(written)

    def graph_paths(self) -> set[str]:
        """Every path that has symbol graph rows (verify: each must have a record)."""
        return {str(r[0]) for r in self._all("SELECT path FROM sym_files")}

    def update_stat(self, records: Iterable[FileRecord]) -> None:
        """Refresh the stat data of files whose content hash did not change."""
        with self._lock, self._db:
            self._db.executemany(
                "UPDATE files SET size=?, mtime_ns=?, inode=?, ctime_ns=? WHERE path=?",
                ((r.size, r.mtime_ns, r.inode, r.ctime_ns, r.path) for r in records),
            )

    def pending_vectors(
        self, limit: int, after: tuple[str, str] | None = None
    ) -> list[PendingVector]:
        """Up to `limit` chunks waiting for their vectors, a few files at a time, in
        (path, id) order; past `after` (a (path, id) already handled, not yet cleared)."""
        args: tuple[object, ...]
        if after is None:
            sql, args = "", (limit,)
        else:
            sql, args = "WHERE (path, id) > (?, ?)", (*after, limit)
        rows = self._all(
            f"SELECT id, path, kind, embed_text FROM pending_vectors {sql} "
            "ORDER BY path, id LIMIT ?",
            args,
        )
        return [PendingVector(*r) for r in rows]

    def pending_count(self) -> int:
        row = self._one("SELECT count(*) FROM pending_vectors")
        return int(row[0]) if row else 0

    def pending_ids(self) -> set[str]:
        return {r[0] for r in self._all("SELECT id FROM pending_vectors")}

    def pending_ids_by_path(self) -> dict[str, set[str]]:
        return _ids_by_path(self._all("SELECT path, id FROM pending_vectors"))

    def vectors_written(self, ids: Iterable[str]) -> None:
        """These chunks' vectors are flushed to the vector store."""
        with state_errors(self.path), self._lock, self._db:
            self._db.executemany("DELETE FROM pending_vectors WHERE id=?", ((i,) for i in ids))
            self.set_meta("last_commit", repr(time.time()))

    def skipped(self) -> list[tuple[str, str, str]]:
        return self._all("SELECT path, reason, detail FROM skipped ORDER BY path")

    def _all(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        """Every row of one query, on a borrowed read connection; apsw's errors as
        `StateError` (a disk that failed reached a reply as "internal error")."""
        with state_errors(self.path), self._reads.lend() as db:
            return db.execute(sql, args).fetchall()

    def _one(self, sql: str, args: Sequence[object] = ()) -> Any:
        """The first row of one query (None without one), as `_all`."""
        with state_errors(self.path), self._reads.lend() as db:
            return db.execute(sql, args).fetchone()

    def clear(self) -> None:
        """Forget everything recorded."""
        with self._lock, self._db:
            self._graph_rows.forget()
            tables = ("files", "chunks", "skipped", "inflight", "pending_vectors", "sym_files")
            for table in (*tables, *GRAPH_TABLES):
                self._db.execute(f"DELETE FROM {table}")


def _ids_by_path(rows: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path, cid in rows:
        out.setdefault(path, set()).add(cid)
    return out


def _write_records(
    db: apsw.Connection,
    file_list: list[FileRecord],
    chunks: Iterable[ChunkRow],
    deleted_list: list[str],
    skipped: dict[str, tuple[str, str]],
    pending: Iterable[PendingVector],
) -> None:
    """The rows of `record` other than the graph's (in its transaction)."""
    now = time.time()
    touched = [f.path for f in file_list] + deleted_list
    db.executemany(
        "INSERT OR REPLACE INTO pending_vectors VALUES(?,?,?,?)",
        ((v.id, v.path, v.kind, v.embed_text) for v in pending),
    )
    db.executemany("DELETE FROM files WHERE path=?", ((p,) for p in deleted_list))
    db.executemany(
        "INSERT OR REPLACE INTO files(path,size,mtime_ns,inode,hash,chunks,indexed_at,ctime_ns)"
        " VALUES(?,?,?,?,?,?,?,?)",
        (
            (f.path, f.size, f.mtime_ns, f.inode, f.hash, f.chunks, now, f.ctime_ns)
            for f in file_list
        ),
    )
    db.executemany(
        "INSERT OR REPLACE INTO chunks VALUES(?,?,?,?,?,?,?,?)",
        (
            (
                c.id,
                c.path,
                c.start_line,
                c.end_line,
                c.symbol,
                c.kind,
                c.signature,
                c.text,
            )
            for c in chunks
        ),
    )
    for path, (reason, detail) in skipped.items():
        if reason:
            db.execute("INSERT OR REPLACE INTO skipped VALUES(?,?,?)", (path, reason, detail))
        else:
            db.execute("DELETE FROM skipped WHERE path=?", (path,))
    db.executemany("DELETE FROM inflight WHERE path=?", ((p,) for p in [*touched, *skipped]))
    db.execute("INSERT OR REPLACE INTO meta VALUES(?,?)", ("last_commit", repr(now)))


def _drop_chunks(db: apsw.Connection, touched: list[str], patches: list[ChunkPatch]) -> None:
    """Delete the chunk rows and pending vectors that a commit replaces: every one of
    a file written whole, only the dropped (and re-embedded) ones of a patched file."""
    patched = {p.path for p in patches}
    whole = [(p,) for p in touched if p not in patched]
    db.executemany("DELETE FROM chunks WHERE path=?", whole)
    db.executemany("DELETE FROM pending_vectors WHERE path=?", whole)
    for patch in patches:
        db.executemany("DELETE FROM chunks WHERE id=?", ((i,) for i in patch.dropped))
        db.executemany(
            "DELETE FROM pending_vectors WHERE id=?",
            ((i,) for i in (*patch.dropped, *patch.revectored)),
        )
