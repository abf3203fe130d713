"""Resources the daemon must give back (issue 17): a removed root's files are closed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.conftest import Daemon

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")


def _held(pid: int, prefix: str) -> list[str]:
    """Open fds and memory maps of `pid` under `prefix`."""
    held = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(prefix):
            held.append(f"fd {target}")
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith(prefix):
            held.append(f"map {parts[5]}")
    return held


def test_remove_closes_every_file_of_the_root(daemon: Daemon, crate: Path) -> None:
    daemon.cli("index", str(crate), "--wait")
    root_id = daemon.root_status(crate)["id"]
    for _ in range(12):  # several worker threads open their own state.db readers
        daemon.search("retry", "--mode", "bm25")
        daemon.call("status")
    assert daemon.proc is not None
    state = str(daemon.home / "state" / "roots" / root_id)
    assert _held(daemon.proc.pid, state)  # the check sees them while the root lives
    daemon.cli("remove", str(crate))
    assert _held(daemon.proc.pid, state) == []
