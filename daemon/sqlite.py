"""The one way rcmd opens SQLite (apsw): WAL, a busy timeout, and apsw's errors turned
into `StateError` in one place, so a damaged or foreign database is a clear error that
the caller can set aside, never an apsw exception leaking into a reply."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import apsw

from ipc.errors import StateError

BUSY_TIMEOUT_MS = 5000


def connect(path: Path, *, readonly: bool = False) -> apsw.Connection:
    """A connection to `path`; a writable one is in WAL mode, so readers never block it."""
    flags = (
        apsw.SQLITE_OPEN_READONLY
        if readonly
        else apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
    )
    with state_errors(path):
        conn = apsw.Connection(str(path), flags=flags)
        conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        if not readonly:
            # Each pragma on its own: apsw stops a multi-statement execute at the first
            # statement that returns rows.
            conn.execute("PRAGMA journal_mode=WAL").fetchall()
            conn.execute("PRAGMA synchronous=NORMAL").fetchall()
    return conn


@contextmanager
def state_errors(path: Path) -> Iterator[None]:
    """Raise any apsw error inside as a `StateError` naming the database."""
    try:
        yield
    except apsw.Error as exc:
        raise StateError(f"{path}: {exc}") from exc
