"""Trust (issue 17): what an attacker, an agent with only the tools, or a busy user did to
the daemon, each against a real daemon on a real socket."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ipc.client import Client
from ipc.errors import BadRequest, NotFound, RcmdError
from tests.conftest import REPO, Daemon, require_tools, seed_cache, wait_until

pytestmark = pytest.mark.slow


def _raw(daemon: Daemon, line: bytes) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(daemon.paths.socket))
        s.sendall(line)
        reply: dict[str, object] = json.loads(s.makefile("rb").readline())
        return reply


def test_read_serves_only_indexed_files_within_a_cap(daemon: Daemon, crate: Path) -> None:
    """17.2: `read` (and MCP `read_chunk`) once returned any file under a root."""
    (crate / ".env").write_text("TOKEN=secret\n")
    (crate / ".git").mkdir()
    (crate / ".git" / "config").write_text("[remote]\n  url = https://token@host/x\n")
    (crate / "target" / "debug").mkdir(parents=True)
    (crate / "target" / "debug" / "gen.rs").write_text("pub fn generated() {}\n")
    (crate / "src" / "wide.rs").write_text('pub const WIDE: &str = "' + "x" * 300_000 + '";\n')
    daemon.cli("index", str(crate), "--wait")
    for rel in (".env", ".git/config", "target/debug/gen.rs", "Cargo.toml"):
        with pytest.raises(NotFound, match="not an indexed file"):
            daemon.call("read", path=rel, root=str(crate))
    assert "pub fn" in daemon.call("read", path="src/lib.rs", root=str(crate))["text"]
    wide = daemon.call("read", path="src/wide.rs", root=str(crate))
    assert wide["truncated"] and len(wide["text"]) < 20_000
    hit = daemon.search("WIDE", "--mode", "bm25", "--symbol", "WIDE")[0]
    assert len(hit["snippet"]) < 1_000  # a one-line chunk is not sent back whole


def test_a_fifo_in_a_root_hangs_nothing(daemon: Daemon, crate: Path) -> None:
    """Opening a FIFO for reading blocks until a writer comes: one named `*.rs` in a
    checkout, or one put where an indexed file was, must neither hang the pipeline nor
    a `read` request (`daemon.regular`)."""
    os.mkfifo(crate / "src" / "pipe.rs")
    daemon.cli("index", str(crate), "--wait")
    with pytest.raises(NotFound):
        daemon.call("read", path="src/pipe.rs", root=str(crate))
    (crate / "src" / "lib.rs").unlink()
    os.mkfifo(crate / "src" / "lib.rs")
    with pytest.raises(NotFound):  # not a regular file, or no longer indexed
        daemon.call("read", path="src/lib.rs", root=str(crate))
    (crate / "src" / "late.rs").write_text("pub fn arrived_after_the_fifo() {}\n")

    def late() -> str | None:
        try:
            return str(daemon.call("read", path="src/late.rs", root=str(crate))["text"])
        except NotFound:
            return None

    assert "arrived_after_the_fifo" in wait_until(late)
    assert daemon.search("arrived_after_the_fifo", "--mode", "bm25")


def test_oversized_and_invalid_values_are_bad_requests(daemon: Daemon) -> None:
    """17.5 and 17.14: a 540 KB query once cost ~20 s of CPU; a NUL byte was `internal`;
    NaN ids were echoed as invalid JSON."""
    with pytest.raises(BadRequest, match="at most 1000"):
        daemon.call("search", query="a" * 540_000)
    with pytest.raises(BadRequest, match="NUL"):
        daemon.call("index", path="/tmp/a\0b")
    with pytest.raises(BadRequest, match="at most 4096"):
        daemon.call("remove", path="/" + "x" * 5000)
    for bad in (b'{"id": NaN, "method": "hello"}\n', b'{"id": 1e400, "method": "hello"}\n'):
        reply = _raw(daemon, bad)
        assert reply["id"] is None
        assert isinstance(reply["error"], dict) and reply["error"]["code"] == "bad_request"


def test_client_refuses_a_socket_it_does_not_own(tmp_path: Path) -> None:
    """17.3: a fake socket at the runtime path once received the query and its
    injected results were printed."""
    home = tmp_path / "home"
    run = home / "run"
    run.mkdir(parents=True, mode=0o700)
    fake = socket.socket(socket.AF_UNIX)
    fake.bind(str(run / "rcmd.sock"))
    fake.listen(1)
    try:
        os.chmod(run / "rcmd.sock", 0o666)
        with pytest.raises(RcmdError, match="open to other users"):
            Client(run / "rcmd.sock")
        os.chmod(run / "rcmd.sock", 0o600)
        if os.getuid() == 0:
            os.chown(run / "rcmd.sock", 65534, 65534)
            with pytest.raises(RcmdError, match="belongs to uid 65534"):
                Client(run / "rcmd.sock")
            os.chown(run / "rcmd.sock", 0, 0)
        os.chmod(run, 0o777)
        out = subprocess.run(
            [sys.executable, "-m", "ipc.cli", "search", "anything"],
            env={**os.environ, "RCMD_HOME": str(home)},
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
        assert out.returncode == 1 and "others can write to" in out.stderr
        assert out.stderr.count("\n") == 1 and not out.stdout
    finally:
        fake.close()


def test_idle_connections_cannot_starve_the_daemon(
    tmp_path: Path, crate: Path, warm_cache: Path
) -> None:
    """17.6: with a 1024-fd limit, 1,000 idle connections once made the daemon stop
    answering and batches fail with EMFILE."""
    require_tools("prlimit")
    home = tmp_path / "home"
    seed_cache(home, warm_cache)
    d = Daemon(home, prefix=["prlimit", "--nofile=1024:1024", "--"])
    d.start()
    conns: list[socket.socket] = []
    try:
        d.cli("index", str(crate), "--wait")
        for _ in range(1000):
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(d.paths.socket))
            conns.append(s)
        assert d.call("status")["roots"]  # answered: the longest-idle clients gave way
        (crate / "src" / "late.rs").write_text("pub fn written_under_pressure() {}\n")
        wait_until(
            lambda: any(
                h["symbol"].endswith("written_under_pressure")
                for h in d.search("written_under_pressure", "--mode", "bm25")
            ),
            timeout=60,
        )
        assert not d.root_status(crate)["last_error"]
    finally:
        for s in conns:
            s.close()
        d.stop()
        d.kill()


def test_cheap_requests_do_not_queue_behind_expensive_ones(daemon: Daemon, crate: Path) -> None:
    """17.7: 8 `verify` calls during a batch once delayed `hello` and `search` by 9.7 s.
    Here 8 verifies wait for a running batch (they need the root's lock), and `hello`,
    `status` and `search` still answer while they all wait."""
    daemon.cli("index", str(crate), "--wait")
    big = crate / "src" / "many"
    big.mkdir()
    for i in range(400):
        (big / f"f{i}.rs").write_text(f"pub fn many_{i}() -> u32 {{ {i} }}\n")
    wait_until(lambda: daemon.root_status(crate)["activity"] != "idle", timeout=30)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        verifies = [pool.submit(daemon.call, "verify") for _ in range(8)]
        assert daemon.call("hello")["pid"]
        assert daemon.call("status")["roots"]
        daemon.call("search", query="retry", mode="bm25")
        assert sum(not f.done() for f in verifies) >= 6  # they queue among themselves
        for f in verifies:
            # Busy is an answer too: the batch outlasted the verify's wait for the lock.
            with contextlib.suppress(RcmdError):
                f.result(timeout=120)


def test_stop_waits_for_the_process_or_fails(tmp_path: Path, warm_cache: Path) -> None:
    """17.8: `rcmd stop` once printed `daemon stopped` while the process went on at 97%
    CPU with its lock released, mid-embedding. Now a stop lands within a step and the
    lock goes only with the process."""
    from tests.test_head_of_line import _cold_crate

    home = tmp_path / "home"
    seed_cache(home, warm_cache)
    d = Daemon(home, RCMD_INDEX_CHUNKS_PER_STEP="100000")
    d.start()
    try:
        busy = _cold_crate(tmp_path)
        d.cli("index", str(busy))
        wait_until(lambda: d.root_status(busy)["vectors_pending"] > 0, timeout=120)
        assert d.proc is not None
        proc = d.proc
        out = d.cli("stop")
        assert out.stdout.splitlines()[-1].startswith("daemon stopped")  # 19.10: and why
        assert proc.wait(timeout=30) == 0  # it had exited (or was exiting) when stop said so
    finally:
        d.kill()


def test_five_concurrent_cold_index_commands_all_succeed(
    tmp_path: Path, crate: Path, warm_cache: Path
) -> None:
    """17.12: 1-4 of 5 once failed with 'the daemon exited with code 1 while starting'."""
    home = tmp_path / "home"
    seed_cache(home, warm_cache)
    d = Daemon(home)
    barrier = threading.Barrier(5)

    def index() -> subprocess.CompletedProcess[str]:
        barrier.wait()
        return d.cli("index", str(crate), check=False)

    try:
        with concurrent.futures.ThreadPoolExecutor(5) as pool:
            results = list(pool.map(lambda _i: index(), range(5)))
        assert [r.returncode for r in results] == [0] * 5, [r.stderr for r in results]
        pid = d.call("hello")["pid"]
        assert [r["path"] for r in d.call("status")["roots"]] == [str(crate.resolve())]
        assert pid == d.call("hello")["pid"]
    finally:
        d.call("stop")
