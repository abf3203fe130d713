"""State is private whoever starts the daemon (issue 17.4), and the log is bounded
(issue 17.14): a daemon spawned by the CLI from a shell with umask 022 must not leave
chunk text world-readable."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, Daemon, seed_cache


def _others_can_read(path: Path) -> bool:
    return bool(path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))


def test_spawned_daemon_keeps_state_private(tmp_path: Path, crate: Path, warm_cache: Path) -> None:
    home = tmp_path / "home"
    seed_cache(home, warm_cache)
    os.chmod(home, 0o755)
    d = Daemon(home)
    proc = subprocess.run(
        [sys.executable, "-m", "ipc.cli", "index", str(crate), "--wait"],
        env=d.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: os.umask(0o022),
    )
    try:
        assert proc.returncode == 0, proc.stderr
        root_id = d.root_status(crate)["id"]
        for path in (
            home / "state",
            home / "cache",
            home / "log",
            home / "state" / "roots" / root_id,
            home / "state" / "roots" / root_id / "state.db",
            home / "state" / "roots.json",
            home / "log" / "rcmd.log",
        ):
            assert not _others_can_read(path), f"{path}: {oct(path.stat().st_mode)}"
    finally:
        d.call("stop")


def test_log_is_rotated_by_size(tmp_path: Path, crate: Path, warm_cache: Path) -> None:
    home = tmp_path / "home"
    seed_cache(home, warm_cache)
    d = Daemon(home, RCMD_LOG_MAX_BYTES="300")
    d.start()
    try:
        d.cli("index", str(crate), "--wait")
        for _ in range(4):  # each batch logs a line of ~1 KB
            d.cli("reindex", str(crate), "--force")
            d.wait_idle(crate)
    finally:
        d.stop()
        d.kill()
    logs = sorted(p.name for p in (home / "log").glob("rcmd.log*"))
    assert "rcmd.log.1" in logs and len(logs) <= 4, logs
    # Rotated after the line that crossed the bound: never more than one line past it.
    assert all(p.stat().st_size < 300 + 4096 for p in (home / "log").glob("rcmd.log*"))
