"""The one way rcmd opens SQLite (apsw): WAL, a busy timeout, and apsw's errors turned
into `StateError` in one place, so a damaged or foreign database is a clear error that
the caller can set aside, never an apsw exception leaking into a reply."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import apsw
import structlog

from ipc.errors import StateError

log = structlog.get_logger("rcmd.sqlite")
T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000


def connect(path: Path, *, readonly: bool = False, keep_wal: bool = False) -> apsw.Connection:
    """A connection to `path`; a writable one is in WAL mode, so readers never block it.
    With `keep_wal`, the last connection to close leaves the WAL and its index (-shm) in
    place: a database closed while idle and opened again (`daemon.state.StateDB.idle`)
    could not be read any more on a full disk, as the new -shm got no blocks."""
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
        if keep_wal:
            persist = ctypes.c_int(1)
            conn.file_control("main", apsw.SQLITE_FCNTL_PERSIST_WAL, ctypes.addressof(persist))
    return conn


def close_writer(conn: apsw.Connection) -> None:
    """Close a writer opened with `keep_wal`: its close checkpoints the WAL and, as the
    last connection, truncates it to nothing (the file stays): frames left in it, all
    checkpointed, would be laid over a database put back from elsewhere."""
    with contextlib.suppress(apsw.Error):
        conn.execute("PRAGMA journal_size_limit=0").fetchall()
    conn.close()


class ReadPool:
    """Read connections to one database, each lent to one thread for one read and kept
    (up to `keep` of them) for the next. A connection per thread that ever read held
    descriptors for threads × roots for good: 11 a dependency crate idle, about 11,000
    with 400 crates, past the common limit of 4,096. Its connections keep the WAL
    (`connect`): the pool is for a database closed while idle and opened again."""

    def __init__(self, path: Path, keep: int = 2) -> None:
        self._path = path
        self._keep = keep
        self._lock = threading.Lock()
        self._idle: list[apsw.Connection] = []
        self._lent = 0
        self._closed = False

    @contextmanager
    def lend(self) -> Iterator[apsw.Connection]:
        """A connection no other thread uses until this block ends (apsw refuses one
        used by two threads at once)."""
        with self._lock:
            if self._closed:
                raise StateError(f"{self._path}: closed")
            conn = self._idle.pop() if self._idle else None
            self._lent += 1
        try:
            conn = conn or connect(self._path, readonly=True, keep_wal=True)
            yield conn
        finally:
            self._give_back(conn)

    def _give_back(self, conn: apsw.Connection | None) -> None:
        with self._lock:
            self._lent -= 1
            if conn is not None and not self._closed and len(self._idle) < self._keep:
                self._idle.append(conn)
                return
        if conn is not None:
            conn.close()

    def trim(self) -> None:
        """Close the idle connections (a parked root holds no descriptors it can drop)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def counts(self) -> tuple[int, int]:
        """(idle, lent) connections now."""
        with self._lock:
            return len(self._idle), self._lent

    def close(self) -> None:
        """Close the idle connections now and each lent one when its read ends."""
        with self._lock:
            self._closed = True
        self.trim()


@contextmanager
def state_errors(path: Path) -> Iterator[None]:
    """Raise any apsw error inside as a `StateError` naming the database."""
    try:
        yield
    except apsw.Error as exc:
        raise StateError(f"{path}: {exc}") from exc


#: Errors that say the disk failed or refused (full, I/O, permissions), not that what
#: is on it is damaged: nothing is set aside for them (a full disk at start moved a
#: healthy cache aside, then failed to make the new one, and the daemon did not start).
#: A lock held by another process, or no memory, says nothing of the store either.
NOT_DAMAGE = (
    apsw.FullError,
    apsw.IOError,
    apsw.CantOpenError,
    apsw.ReadOnlyError,
    apsw.PermissionsError,
    apsw.BusyError,
    apsw.LockedError,
    apsw.NoMemError,
    OSError,
)

#: The same for Tantivy's and Qdrant's errors, which come as text holding Rust's
#: `Os { code: N, .. }`: full, over quota, I/O, read-only, permissions, no file
#: descriptor or memory left (a daemon out of descriptors at start took every root's
#: Tantivy and Qdrant open error for damage and set each healthy index aside).
DISK_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EIO,
        errno.EROFS,
        errno.EACCES,
        errno.EPERM,
        errno.EMFILE,
        errno.ENFILE,
        errno.ENOMEM,
    }
)
_RUST_OS_ERROR = re.compile(r"\bOs \{ code: (\d+)")


def is_damage(exc: StateError) -> bool:
    """Whether `exc` says a store is damaged (set it aside), not that its disk failed."""
    cause = exc.__cause__
    if isinstance(cause, NOT_DAMAGE):
        return False
    codes = {int(code) for code in _RUST_OS_ERROR.findall(str(cause or exc))}
    return not codes & DISK_ERRNOS


@contextmanager
def cache_write(path: Path) -> Iterator[None]:
    """A write to a database that is only a cache: one its disk refuses (full) loses the
    entry, not the batch, which failed at each retry and embedded its texts again."""
    try:
        with state_errors(path):
            yield
    except StateError as exc:
        if is_damage(exc):
            raise
        log.warning("cache_not_written", path=str(path), error=str(exc))


def open_or_set_aside(path: Path, opener: Callable[[Path], T]) -> T:
    """`opener(path)`, for a database that is only a cache: one that cannot be opened
    is set aside as `<name>.broken` (with its WAL files) and a new one started, so a
    damaged cache never keeps the daemon from starting. One on a disk that fails (full)
    is kept, and an empty cache in memory serves until the next start."""
    try:
        return opener(path)
    except StateError as exc:
        if not is_damage(exc):
            log.error("cache_unusable_kept_in_memory", path=str(path), error=str(exc))
            return opener(Path(":memory:"))
        aside = path.with_name(path.name + ".broken")
        log.error("cache_unusable_set_aside", path=str(path), error=str(exc), moved_to=str(aside))
        for suffix in ("", "-wal", "-shm"):
            src = path.with_name(path.name + suffix)
            if src.exists():
                os.replace(src, aside.with_name(aside.name + suffix))
        return opener(path)
