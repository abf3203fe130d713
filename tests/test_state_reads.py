"""state.db's read connections are lent one read at a time (`daemon.sqlite.ReadPool`):
a connection per thread that ever read held descriptors for threads × roots for good
(1,450 after 16 status calls with 50 dependency crates). Real SQLite through apsw."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import apsw
import pytest

from daemon.state import FileRecord, StateDB


def _held(db: Path) -> list[str]:
    """This process's descriptors on `db` and its WAL files."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(db)):
            held.append(target)
    return held


@pytest.fixture
def state(tmp_path: Path) -> StateDB:
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc")
    db = StateDB(tmp_path / "state.db")
    db.record([FileRecord("src/lib.rs", 1, 1, 1, b"h", 0)], [], [], {})
    return db


def test_reads_from_many_threads_hold_no_descriptor_once_idle(state: StateDB) -> None:
    together = threading.Barrier(16)
    seen: list[int] = []

    def read() -> None:
        with state.reading() as conn:  # all 16 at once: each needs its own
            together.wait(timeout=30)
            seen.append(len(conn.execute("SELECT path FROM files").fetchall()))

    threads = [threading.Thread(target=read) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [1] * 16 and len(_held(state.path)) > 16
    state.idle()  # what a parked root does: nothing of state.db stays open
    assert _held(state.path) == []
    assert list(state.files()) == ["src/lib.rs"]  # reads and writes open one again
    state.set_meta("k", "v")
    assert state.get_meta("k") == "v"
    state.close()
    assert _held(state.path) == []


def test_a_reader_lent_when_the_state_closes_is_closed_when_given_back(
    state: StateDB,
) -> None:
    with state.reading() as conn:
        state.close()
        assert conn.execute("SELECT count(*) FROM files").fetchone() == (1,)
    with pytest.raises(apsw.ConnectionClosedError):
        conn.execute("SELECT 1")
    assert _held(state.path) == []
