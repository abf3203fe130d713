"""state.db's read connections are lent one read at a time (`daemon.sqlite.ReadPool`):
a connection per thread that ever read held descriptors for threads × roots for good
(1,450 after 16 status calls with 50 dependency crates). Real SQLite through apsw."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import apsw
import pytest

from daemon.state import FileRecord, StateDB
from ipc.errors import StateError
from tests.conftest import FILL_DISK, needs_userns, run_on_tmpfs


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


_IDLE_ON_A_FULL_DISK = """
import sys
from pathlib import Path
from daemon.state import FileRecord, StateDB
from ipc.errors import StateError
disk = Path(sys.argv[1])
state = StateDB(disk / "state.db")
state.record([FileRecord(f"src/{i}.rs", 1, 1, 1, b"h" * 32, 0) for i in range(200)], [], [], {})
state.idle()  # a parked root: nothing of state.db open
FILL
print("files", len(state.files()), "meta", state.get_meta("schema_version"))
"""


@needs_userns
def test_a_state_closed_while_idle_is_read_again_on_a_full_disk(tmp_path: Path) -> None:
    """The last connection's close deleted the WAL and its -shm index; on a full disk
    the next reader could not map a new -shm (disk I/O error), and every search of a
    parked crate with a hit failed, while an open state.db was read as before."""
    script = _IDLE_ON_A_FULL_DISK.replace("FILL", FILL_DISK)
    proc = run_on_tmpfs(tmp_path / "disk", "4m", script)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["files", "200", "meta", "2"]


def test_a_read_that_fails_is_a_state_error(state: StateDB) -> None:
    """A read's apsw error reached the reply as "internal error: NotADBError"; it names
    the database now, as a write's does."""
    state.idle()
    for suffix in ("-wal", "-shm"):
        Path(f"{state.path}{suffix}").unlink(missing_ok=True)
    state.path.write_bytes(b"not a database at all" * 300)
    with pytest.raises(StateError, match=r"state\.db"):
        state.files()
    with pytest.raises(StateError, match=r"state\.db"):
        state.get_meta("schema_version")


def test_a_state_db_put_back_is_read_as_it_is(state: StateDB, tmp_path: Path) -> None:
    """The WAL now outlives the last connection (for a full disk): its frames, all
    checkpointed, were kept and laid over a state.db copied back in their place."""
    (tmp_path / "other").mkdir()
    other = StateDB(tmp_path / "other" / "state.db")
    other.record([FileRecord("src/other.rs", 2, 2, 2, b"o", 0)], [], [], {})
    other.close()
    state.idle()
    assert Path(f"{state.path}-shm").is_file()  # kept, with the WAL, emptied
    assert Path(f"{state.path}-wal").stat().st_size == 0
    state.close()
    shutil.copyfile(other.path, state.path)
    again = StateDB(state.path)
    assert list(again.files()) == ["src/other.rs"]
    again.close()
