"""The index under a full disk and damaged store files: the daemon stays up, says what
failed, serves nothing wrong as if healthy, and catches up once the cause is gone. Disks
are tmpfs mounts in the daemon's own user and mount namespaces, never the host's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import Daemon, needs_userns, seed_cache, wait_until, write_new_code

pytestmark = pytest.mark.slow


def _in_daemon_ns(pid: int, script: str) -> str:
    """Run `script` in the daemon's user and mount namespaces (never the host's)."""
    nsenter = ["nsenter", "--user", "--mount", "--target", str(pid), "--preserve-credentials"]
    return subprocess.run(
        [*nsenter, "sh", "-c", script], check=True, capture_output=True, text=True
    ).stdout


def _private_tmpfs(over: Path, size: str) -> list[str]:
    """A daemon prefix: its own user and mount namespaces with a tmpfs over `over`."""
    mount = f'mount -t tmpfs -o size={size} tmpfs "$0" && exec "$@"'
    return [
        "unshare",
        "--user",
        "--map-current-user",
        "--mount",
        "--",
        "sh",
        "-c",
        mount,
        str(over),
    ]


def _fill_leaving(pid: int, folder: Path, free_kib: int) -> None:
    """Fill `folder`'s disk with `folder/filler` until `free_kib` KiB are left."""
    _in_daemon_ns(
        pid,
        f'avail=$(df -k --output=avail "{folder}" | tail -1); '
        f'head -c $(( (avail - {free_kib}) * 1024 )) /dev/zero > "{folder}/filler"',
    )


@needs_userns
def test_vectors_on_a_full_disk_fail_the_batch_not_the_daemon(
    tmp_path: Path, crate: Path, warm_cache: Path
) -> None:
    """Qdrant Edge writes through memory maps of sparse files: its vectors filling the
    disk were a SIGBUS that killed the daemon mid-batch (and again at each start). Now
    the write is refused while the disk is nearly full, status says so, search answers,
    and the vectors land once there is room."""
    home = tmp_path / "small"
    state = home / "state"
    state.mkdir(parents=True)
    seed_cache(home, warm_cache)
    d = Daemon(home, prefix=_private_tmpfs(state, "64m"), RCMD_INDEX_RETRY_AFTER_S="0.5")
    try:
        d.start()
        assert d.proc is not None
        pid = d.proc.pid
        d.cli("index", str(crate), "--wait")
        _fill_leaving(pid, state, 2048)
        # ~1,500 new chunks: their text fits in the 2 MB left, their vectors do not.
        write_new_code(crate / "src" / "gen", "spill", 30, 50)
        error = wait_until(lambda: d.root_status(crate)["last_error"], timeout=120)
        assert "No space left on device" in error, error
        assert d.proc.poll() is None, d.log.read_text()[-2000:]
        assert d.search("fetch_with_retry", "--mode", "bm25")
        _in_daemon_ns(pid, f'rm "{state}/filler"')
        wait_until(lambda: not d.root_status(crate)["last_error"], timeout=120)
        status = d.wait_idle(crate, timeout=300)
        assert status["vectors_pending"] == 0 and status["files"] == 7 + 30, status
        assert d.verify()["ok"], d.verify()
        assert d.search("spill_3_7", "--mode", "bm25")[0]["symbol"].endswith("spill_3_7")
    finally:
        d.stop()
        d.kill()
