"""End to end: a real daemon process, the real CLI, real files and real events."""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ipc.client import NOT_RUNNING, Client
from ipc.errors import BadRequest, DaemonNotRunning, NotFound, Timeout
from tests.conftest import (
    REPO,
    Daemon,
    run_daemon_once,
    run_rcmd,
    seed_cache,
    wait_until,
    write_new_code,
)

pytestmark = pytest.mark.slow


def hits_for(d: Daemon, query: str, *extra: str) -> list[str]:
    return [f"{h['path']}:{h['symbol']}" for h in d.search(query, *extra)]


def index(d: Daemon, path: Path) -> None:
    d.cli("index", str(path), "--wait")


@pytest.fixture
def cold_daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A daemon with an empty embedding cache."""
    home = tmp_path / "cold-home"
    home.mkdir()
    d = Daemon(home)
    d.start()
    try:
        yield d
    finally:
        d.stop()
        d.kill()


def test_index_search_status_verify(cold_daemon: Daemon, crate: Path) -> None:
    daemon = cold_daemon
    out = daemon.cli("index", str(crate), "--wait")
    assert "indexed" in out.stdout and "files" in out.stdout

    results = daemon.search("where do we retry failed http requests")
    top = results[0]
    assert set(top) == {
        "root",
        "path",
        "start_line",
        "end_line",
        "symbol",
        "kind",
        "score",
        "snippet",
        "stale",
    }
    assert top["path"] == "src/net/retry.rs" and top["stale"] is False
    assert top["root"] == str(crate.resolve())
    assert top["symbol"] == "net::retry::fetch_with_retry"
    lines = (crate / top["path"]).read_text().splitlines()
    assert 1 <= top["start_line"] <= top["end_line"] <= len(lines)
    assert top["snippet"].splitlines()[0] in lines[top["start_line"] - 1 : top["end_line"]]

    for mode in ("bm25", "vector"):
        assert daemon.search("fetch_with_retry", "--mode", mode), mode

    status = json.loads(daemon.cli("status", "--json").stdout)
    assert status["pid"] == daemon.proc.pid if daemon.proc else False
    assert status["socket"] == str(daemon.paths.socket)
    (root,) = status["roots"]
    assert root["path"] == str(crate.resolve())
    assert root["files"] == sum(1 for _ in crate.rglob("*.rs"))
    assert root["chunks"] > root["files"]
    assert root["idle"] is True
    assert len(root["merkle_root"]) == 64
    assert status["embedding"]["cache_misses"] > 0
    human = daemon.cli("status").stdout
    assert str(crate.resolve()) in human and "merkle root" in human

    verify = daemon.cli("status", "--verify")
    assert verify.returncode == 0 and "ok" in verify.stdout


def test_socket_is_private(daemon: Daemon) -> None:
    mode = stat.S_IMODE(os.stat(daemon.paths.socket).st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(os.stat(daemon.paths.runtime_dir).st_mode) == 0o700


def test_edits_are_followed(daemon: Daemon, crate: Path) -> None:
    index(daemon, crate)
    src = crate / "src"

    # add
    (src / "fresh.rs").write_text("/// Counts quokkas.\npub fn count_quokkas() -> u32 { 3 }\n")
    wait_until(lambda: "src/fresh.rs:fresh::count_quokkas" in hits_for(daemon, "count_quokkas"))

    # change (an editor's atomic save: temp file + rename)
    tmp = src / ".fresh.rs.tmp"
    tmp.write_text("/// Counts wombats.\npub fn count_wombats() -> u32 { 4 }\n")
    os.replace(tmp, src / "fresh.rs")
    wait_until(lambda: "src/fresh.rs:fresh::count_wombats" in hits_for(daemon, "count_wombats"))
    assert "count_quokkas" not in str(hits_for(daemon, "count_quokkas", "--mode", "bm25"))

    # rename a file
    (src / "fresh.rs").rename(src / "renamed.rs")
    wait_until(lambda: "src/renamed.rs:renamed::count_wombats" in hits_for(daemon, "count_wombats"))
    wait_until(lambda: not any("fresh.rs" in h for h in hits_for(daemon, "count_wombats")))

    # rename a directory: inotify reports only the directory itself
    (src / "net").rename(src / "web")
    wait_until(
        lambda: (
            (h := hits_for(daemon, "fetch_with_retry", "--mode", "bm25"))
            and h[0].startswith("src/web/retry.rs")
        )
    )
    assert not any(h.startswith("src/net/") for h in hits_for(daemon, "fetch_with_retry"))

    # delete
    (src / "renamed.rs").unlink()
    wait_until(lambda: not any("wombats" in h for h in hits_for(daemon, "count_wombats")))

    daemon.wait_idle(crate)
    verify = daemon.verify()
    assert verify["ok"], verify


def test_restart_rereads_only_changed_files(tmp_path: Path, crate: Path) -> None:
    home = tmp_path / "home2"
    home.mkdir()
    d = Daemon(home)
    d.start()
    try:
        index(d, crate)
        before = d.root_status(crate)
        assert d.stop() == 0

        (crate / "src" / "store.rs").write_text(
            (crate / "src" / "store.rs").read_text() + "\npub fn restart_marker_one() {}\n"
        )
        (crate / "src" / "lib.rs").write_text(
            (crate / "src" / "lib.rs").read_text() + "\npub fn restart_marker_two() {}\n"
        )
        d.start()
        after = d.wait_idle(crate)
        assert after["counters"]["files_read"] == 2
        assert after["counters"]["files_statted"] == before["files"]
        # src/net/ held no change: the stat trees' diff skipped it as a whole (21.4).
        assert after["counters"]["dirs_skipped"] >= 1
        assert after["files"] == before["files"]
        assert hits_for(d, "restart_marker_one", "--mode", "bm25")[0] == (
            "src/store.rs:store::restart_marker_one"
        )
        assert hits_for(d, "restart_marker_two", "--mode", "bm25")[0] == (
            "src/lib.rs:restart_marker_two"
        )
        assert d.verify()["ok"]
    finally:
        d.stop()
        d.kill()


def test_forced_reindex_rereads_every_file_and_embeds_nothing(daemon: Daemon, crate: Path) -> None:
    """Every file is read and chunked again and every Tantivy doc rewritten; the vectors
    already right are kept (those that are not come from the embedding cache)."""
    index(daemon, crate)
    first = daemon.call("status")
    chunks, files = first["roots"][0]["chunks"], first["roots"][0]["files"]
    misses = first["embedding"]["cache_misses"]
    out = daemon.cli("reindex", str(crate), "--force")
    assert "rebuilding" in out.stdout
    wait_until(lambda: daemon.call("status")["roots"][0]["counters"]["files_read"] >= 2 * files)
    daemon.wait_idle(crate)
    after = daemon.call("status")
    assert after["embedding"]["cache_misses"] == misses
    assert after["roots"][0]["chunks"] == chunks
    last = after["roots"][0]["last_batch"]
    assert last["kind"] == "force" and last["chunks_written"] == chunks
    assert last["chunks_kept"] == chunks and last["chunks"] == 0
    assert daemon.verify()["ok"]


def test_reindex_requires_force(daemon: Daemon) -> None:
    out = daemon.cli("reindex", check=False)
    assert out.returncode == 1 and "--force" in out.stderr


def test_several_roots_and_root_filter(daemon: Daemon, crate: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    (other / "src").mkdir(parents=True)
    (other / "src" / "lib.rs").write_text("pub fn fetch_with_retry_elsewhere() {}\n")
    index(daemon, crate)
    index(daemon, other)
    roots = {
        h["root"] for h in daemon.search("fetch_with_retry", "--mode", "bm25", "--limit", "50")
    }
    assert roots == {str(crate.resolve()), str(other.resolve())}
    narrowed = daemon.search("fetch_with_retry", "--root", str(other), "--mode", "bm25")
    assert {h["root"] for h in narrowed} == {str(other.resolve())}
    missing = daemon.cli("search", "x", "--root", str(tmp_path / "nowhere"), check=False)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    (tmp_path / "elsewhere").mkdir()
    outside = daemon.cli("search", "x", "--root", str(tmp_path / "elsewhere"), check=False)
    assert outside.returncode == 1 and "rcmd index" in outside.stderr


def test_several_roots_rank_on_one_scale(daemon: Daemon, crate: Path, tmp_path: Path) -> None:
    """Issue 18.5: a root that only mentions the name (many times) must not outrank, on a
    scale of its own, the root that defines it: at --limit 1, in every mode, the one hit
    is the definition. Scores lie in [0, 1]."""
    decoy = tmp_path / "decoy"
    (decoy / "src").mkdir(parents=True)
    (decoy / "src" / "lib.rs").write_text(
        "// fetch with retry: fetch, retry, fetch again, retry with backoff\n"
        + "".join(f"pub fn fetch_{i}() {{ retry(); fetch(); retry(); }}\n" for i in range(30))
    )
    index(daemon, crate)
    index(daemon, decoy)
    for mode in ("hybrid", "bm25", "vector"):
        (top,) = daemon.search("fetch_with_retry", "--mode", mode, "--limit", "1")
        assert top["root"] == str(crate.resolve()), (mode, top)
        assert top["symbol"].endswith("fetch_with_retry"), (mode, top)
    every = daemon.search("fetch_with_retry", "--limit", "50")
    assert all(0.0 <= h["score"] <= 1.0 for h in every)
    assert [h["score"] for h in every] == sorted((h["score"] for h in every), reverse=True)


def test_roots_that_tie_list_in_path_order_whatever_their_registration(
    daemon: Daemon, tmp_path: Path
) -> None:
    """Two roots holding the same function tie on every list, the exact-symbol list
    too: equal scores, in the roots' path order, not in the order they were registered
    (which a restart loses)."""
    twin = "pub fn frobnicate_widget(level: u32) -> u32 {\n    level * 7 + 3\n}\n"
    zeta, alpha = tmp_path / "zeta", tmp_path / "alpha"
    for root in (zeta, alpha):
        (root / "src").mkdir(parents=True)
        (root / "src" / "lib.rs").write_text(twin)
        index(daemon, root)
    expected = [str(alpha.resolve()), str(zeta.resolve())]
    for query in ("frobnicate widget level", "frobnicate_widget", "frobnicate"):
        hits = daemon.search(query, "--mode", "bm25", "--limit", "2")
        assert [h["root"] for h in hits] == expected, query
        assert hits[0]["score"] == hits[1]["score"], query


def raw_exchange(path: Path, payload: bytes) -> list[dict[str, Any]]:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(str(path))
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        except BrokenPipeError:
            pass  # the daemon refused the rest of an oversized line; its reply is queued
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return [json.loads(line) for line in data.splitlines()]


def test_malformed_input_gets_errors_and_the_daemon_lives(daemon: Daemon) -> None:
    bad = [
        b"this is not json",
        b"[1, 2, 3]",
        b'{"id": 1, "method": "no_such_method"}',
        b'{"id": 2, "method": "search", "params": {"query": 5}}',
        b'{"id": 3, "method": "search", "params": {"query": "x", "limit": 10000000000000}}',
        b'{"id": 4, "method": "search", "params": {"query": "x", "mode": "psychic"}}',
        b'{"id": 5, "method": "index", "params": {"path": "/definitely/not/here"}}',
        b"[" * 50_000 + b"]" * 50_000,
        b'{"id": 6, "method": "status", "params": "nope"}',
        b"\xff\xfe\x00garbage",
    ]
    replies = raw_exchange(daemon.paths.socket, b"\n".join(bad) + b"\n")
    assert len(replies) == len(bad)
    assert all("error" in r for r in replies)
    codes = [r["error"]["code"] for r in replies]
    assert codes[2] == "unknown_method" and codes[6] == "not_found"
    assert [r["id"] for r in replies[2:7]] == [1, 2, 3, 4, 5]

    oversized = b'{"id":1,"method":"hello","x":"' + b"a" * (2 << 20) + b'"}\n'
    huge = raw_exchange(daemon.paths.socket, oversized + b'{"id":2,"method":"hello"}\n')
    assert huge[0]["error"]["code"] == "bad_request"
    assert huge[1]["id"] == 2 and huge[1]["result"]["protocol"] == 1

    # A client that sends half a line and stalls does not hold anyone up.
    with socket.socket(socket.AF_UNIX) as stalled:
        stalled.connect(str(daemon.paths.socket))
        stalled.sendall(b'{"id": 1, "meth')
        assert daemon.call("hello")["protocol"] == 1
    assert daemon.call("status")["pid"] > 0
    # A folder of a kernel file system is no root (`/proc/self` was one, named by pid).
    if Path("/proc/self").is_dir():
        with pytest.raises(BadRequest, match="kernel file system"):
            daemon.call("index", path="/proc/self")
        assert [r["path"] for r in daemon.call("status")["roots"]] == []


def test_status_answers_while_a_big_batch_indexes(daemon: Daemon, tmp_path: Path) -> None:
    """About 300 new chunks keep the embedder busy for several seconds on two cores."""
    FILES = 60
    big = tmp_path / "big" / "src"
    write_new_code(big, "helper", FILES, 5)
    daemon.cli("index", str(big.parent))
    worst = 0.0
    busy_answers = 0
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        t = time.perf_counter()
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)  # generous: a stall of this length would fail the test
            s.connect(str(daemon.paths.socket))
            s.sendall(b'{"id":1,"method":"status"}\n')
            reply = json.loads(s.makefile("rb").readline())
        worst = max(worst, time.perf_counter() - t)
        root = reply["result"]["roots"][0]
        busy_answers += not root["idle"]
        if root["idle"] and root["files"] == FILES:
            break
        time.sleep(0.05)
    assert busy_answers >= 3, "status did not answer repeatedly while the batch ran"
    assert root["files"] == FILES
    # The bound is the socket timeout above (10 s, far above any healthy answer): a reply
    # that slow means a handler queued behind the batch, which is what this test is for.
    assert worst < 10, f"status took {worst:.1f} s while indexing"
    print(f"worst status latency while indexing: {worst * 1000:.0f} ms")


def test_second_daemon_refuses(daemon: Daemon) -> None:
    proc = run_daemon_once(daemon.env)
    assert proc.returncode == 75  # AlreadyRunning.exit_status: a spawning client waits on
    assert "already running" in proc.stderr or "another rcmd daemon" in proc.stderr
    assert daemon.call("hello")


def test_a_second_daemon_on_the_same_index_refuses(tmp_path: Path) -> None:
    """Two shells that disagree on XDG_RUNTIME_DIR (an ssh session, a desktop) find
    different sockets but the same index: the second daemon must refuse, not set the
    first one's stores aside as broken, and say where the first one listens."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("XDG_") and k != "RCMD_HOME"}
    envs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir(mode=0o700)
        envs.append({**base, "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path / name)})
    first = subprocess.Popen(
        [sys.executable, "-m", "daemon"],
        env=envs[0],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        socket_a = tmp_path / "a" / "rcmd" / "rcmd.sock"
        deadline = time.monotonic() + 120
        while not _answers(socket_a):
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc = run_daemon_once(envs[1])
        assert proc.returncode == 1, proc.stderr
        assert "already serves the index" in proc.stderr and f"kill {first.pid}" in proc.stderr
        assert str(socket_a) in proc.stderr
        assert not (tmp_path / "b" / "rcmd" / "rcmd.sock").exists()
        assert _answers(socket_a)
    finally:
        first.terminate()
        first.wait(timeout=60)


def _answers(sock: Path) -> bool:
    try:
        with Client(sock, timeout=30) as c:
            return bool(c.call("hello"))
    except DaemonNotRunning:
        return False


def test_a_lost_socket_names_the_daemon_to_stop(daemon: Daemon) -> None:
    """A daemon alive whose socket was deleted: a command says which process to stop,
    at once, instead of spawning a second daemon that waits on the lock for 120 s."""
    pid = daemon.call("hello")["pid"]
    daemon.paths.socket.unlink()
    for args in (("status",), ("stop",), ("search", "anything")):
        proc = run_rcmd(*args, env=daemon.env, timeout=60)
        assert proc.returncode == 1, proc.stderr
        assert "no longer listens" in proc.stderr and f"kill {pid}" in proc.stderr


def test_sigterm_commits_and_exits_cleanly(daemon: Daemon, crate: Path) -> None:
    index(daemon, crate)
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=60) == 0
    assert not daemon.paths.socket.exists()
    daemon.start()
    status = daemon.wait_idle(crate)
    assert status["counters"]["files_read"] == 0
    assert daemon.verify()["ok"]


def test_stale_socket_and_lock_after_kill_are_taken_over(daemon: Daemon, crate: Path) -> None:
    index(daemon, crate)
    daemon.kill()
    assert daemon.paths.socket.exists()
    daemon.start()
    daemon.wait_idle(crate)
    assert daemon.verify()["ok"]


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "RCMD_HOME": str(tmp_path / "nobody")}

    def rcmd(*args: str) -> subprocess.CompletedProcess[str]:
        result: subprocess.CompletedProcess[str] = run_rcmd(*args, env=env, timeout=60)
        return result

    out = rcmd("search", "anything")
    assert out.returncode == 1
    assert out.stderr.strip() == f"rcmd: {NOT_RUNNING}" and "rcmd index" in out.stderr
    assert rcmd("status").returncode == 1
    assert rcmd("search").returncode == 2
    assert rcmd("frobnicate").returncode == 2
    notdir = rcmd("index", str(tmp_path / "missing"))
    assert notdir.returncode == 1 and notdir.stderr.count("\n") == 1
    assert "rcmd" in rcmd("--version").stdout
    assert "examples" in rcmd("--help").stdout


def test_missing_root_keeps_its_index_until_it_returns(daemon: Daemon, crate: Path) -> None:
    index(daemon, crate)
    files = daemon.root_status(crate)["files"]
    assert daemon.stop() == 0
    away = crate.with_name("demo_crate_away")
    crate.rename(away)
    daemon.start()
    status = daemon.root_status(crate)
    assert status["watcher"].startswith("root missing")
    assert status["files"] == files
    refused = daemon.cli("reindex", str(crate), "--force", check=False)
    assert refused.returncode == 1 and "missing" in refused.stderr
    assert daemon.root_status(crate)["files"] == files
    assert daemon.stop() == 0  # a root without a watcher still shuts down cleanly
    daemon.start()
    away.rename(crate)
    index(daemon, crate)
    back = daemon.wait_idle(crate)
    assert back["files"] == files
    assert back["counters"]["files_read"] == 0  # same inodes and mtimes: nothing re-read
    assert daemon.verify()["ok"]


def test_too_long_socket_path_is_a_clear_error(tmp_path: Path) -> None:
    home = tmp_path / ("x" * 100)
    proc = run_daemon_once({**os.environ, "RCMD_HOME": str(home)})
    assert proc.returncode == 1
    assert "set RCMD_HOME to a shorter directory" in proc.stderr


def test_vector_store_url_selects_qdrant_client(
    tmp_path: Path, crate: Path, warm_cache: Path
) -> None:
    """`RCMD_VECTOR_STORE_URL` switches the backend; ":memory:" is qdrant-client's own
    in-process engine, so the server code path runs without a server."""
    home = tmp_path / "home-url"
    seed_cache(home, warm_cache)
    d = Daemon(home, RCMD_VECTOR_STORE_URL=":memory:", RCMD_TEST_MEMORY_VECTORS="1")
    d.start()
    try:
        index(d, crate)
        assert d.call("status")["vector_store"] == "qdrant-server"
        hits = d.search("retry a failed http request with backoff", "--mode", "vector")
        assert hits and hits[0]["path"] == "src/net/retry.rs"
        assert d.verify()["ok"]
    finally:
        d.stop()
        d.kill()


def test_concurrent_clients_while_indexing(daemon: Daemon, crate: Path) -> None:
    import concurrent.futures

    daemon.cli("index", str(crate))

    pid = daemon.call("hello")["pid"]

    def one(i: int) -> bool:
        """Each answer is checked, not only that it came."""
        kind = ("search", "status", "hello")[i % 3]
        if kind == "search":
            hits = daemon.call(kind, query="retry backoff", limit=5)["results"]
            return all(h["path"].endswith(".rs") and h["root"] for h in hits)
        if kind == "status":
            return [r["path"] for r in daemon.call(kind)["roots"]] == [str(crate.resolve())]
        return bool(daemon.call(kind)["pid"] == pid)

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(one, range(200)))
    assert answers == [True] * 200
    daemon.wait_idle(crate)
    assert daemon.verify()["ok"]


def test_cli_stop_returns_after_the_daemon_exited(daemon: Daemon, crate: Path) -> None:
    index(daemon, crate)
    from ipc.client import lock_released

    out = daemon.cli("stop")
    assert out.stdout.strip() == "daemon stopped"
    # The single-instance lock is free: `rcmd stop && rcmd index X` can start a new daemon.
    assert lock_released(daemon.paths.lock)
    assert daemon.proc is not None and daemon.proc.wait(timeout=60) == 0


@pytest.mark.parametrize("damage", ["schema", "garbage_state", "tantivy_meta", "qdrant"])
def test_damaged_state_is_set_aside_and_rebuilt(daemon: Daemon, crate: Path, damage: str) -> None:
    import apsw

    index(daemon, crate)
    before = daemon.root_status(crate)
    assert daemon.stop() == 0
    root_dir = daemon.home / "state" / "roots" / before["id"]
    if damage == "schema":  # an index from another schema version
        db = apsw.Connection(str(root_dir / "state.db"))
        db.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
        db.close()
    elif damage == "garbage_state":
        (root_dir / "state.db").write_bytes(b"this is not a database" * 100)
        for extra in ("state.db-wal", "state.db-shm"):
            (root_dir / extra).unlink(missing_ok=True)
    elif damage == "tantivy_meta":
        (root_dir / "tantivy" / "meta.json").write_text("{ truncated")
    else:
        for f in (root_dir / "qdrant").rglob("*"):
            if f.is_file():
                f.write_bytes(b"\0garbage")
    daemon.start()
    after = daemon.wait_idle(crate)
    assert (after["files"], after["chunks"]) == (before["files"], before["chunks"])
    assert daemon.verify()["ok"]
    assert (root_dir.parent / (root_dir.name + ".broken")).is_dir()
    log = (daemon.home / "log" / "rcmd.log").read_text()
    assert "root_state_unusable_rebuilding" in log


def test_root_that_fails_to_open_stays_registered(daemon: Daemon, crate: Path) -> None:
    """A Qdrant server that is down is not damage: the root stays registered and shown."""
    index(daemon, crate)
    assert daemon.stop() == 0
    down = Daemon(daemon.home, RCMD_VECTOR_STORE_URL="http://127.0.0.1:9")
    down.start()
    try:
        status = down.call("status")
        assert status["roots"] == []
        (failed,) = status["failed_roots"]
        assert failed["path"] == str(crate.resolve())
        assert "failed to open" in down.cli("status").stdout
        registry = json.loads((daemon.home / "state" / "roots.json").read_text())
        assert registry["roots"] == [str(crate.resolve())]
        down.cli("remove", str(crate))
        registry = json.loads((daemon.home / "state" / "roots.json").read_text())
        assert registry["roots"] == []
    finally:
        down.stop()
        down.kill()


def test_root_deleted_while_watched_then_restored(tmp_path: Path, warm_cache: Path) -> None:
    """inotify loses a deleted root for good: the watcher notices, keeps the index, waits
    for the root to come back, rescans and watches again."""
    home = tmp_path / "home-del"
    seed_cache(home, warm_cache)
    d = Daemon(home, RCMD_INDEX_POLL_INTERVAL_S="0.2")
    crate = tmp_path / "crate"
    shutil.copytree(REPO / "tests" / "fixtures" / "demo_crate", crate)
    d.start()
    try:
        index(d, crate)
        files = d.root_status(crate)["files"]
        backup = tmp_path / "backup"
        shutil.copytree(crate, backup)
        shutil.rmtree(crate)
        wait_until(lambda: d.root_status(crate)["watcher"].startswith("root missing"))
        assert d.root_status(crate)["files"] == files  # the index is kept meanwhile
        shutil.copytree(backup, crate)
        wait_until(lambda: d.root_status(crate)["watcher"] == "watching")
        d.wait_idle(crate)
        # and the new watch works: an edit is followed
        (crate / "src" / "lib.rs").write_text(
            (crate / "src" / "lib.rs").read_text() + "\npub fn after_return_marker() {}\n"
        )
        wait_until(
            lambda: (
                (h := d.search("after_return_marker", "--mode", "bm25"))
                and h[0]["symbol"] == "after_return_marker"
            )
        )
        d.wait_idle(crate)
        assert d.verify()["ok"]
    finally:
        d.stop()
        d.kill()


def test_wait_after_index_or_reindex_sees_the_queued_work(daemon: Daemon, crate: Path) -> None:
    """`wait` right after `index`/`reindex` answered never reports the moment between the
    work being queued and its batch starting: the scan it waited for has run."""
    files = sum(1 for _ in crate.rglob("*.rs"))
    root = daemon.call("index", path=str(crate))["path"]
    got = daemon.call("wait", path=root, timeout_s=120, timeout=150)
    assert got["idle"] and got["files"] == files and got["counters"]["batches"] >= 1
    for _ in range(3):
        before = got["counters"]["batches"]
        daemon.call("reindex", path=root, force=True)
        got = daemon.call("wait", path=root, timeout_s=120, timeout=150)
        assert got["idle"] and got["counters"]["batches"] > before
        assert got["counters"]["files_read"] >= files
    assert daemon.call("wait", path=str(crate / "src"), timeout_s=0)["path"] == root
    with pytest.raises(NotFound):
        daemon.call("wait", path=str(crate.parent / "elsewhere"), timeout_s=1)
    with pytest.raises(BadRequest):
        daemon.call("wait", path=root, timeout_s=-1)


def test_status_answers_while_clients_wait(daemon: Daemon, tmp_path: Path) -> None:
    """More clients block in `wait` than the server has workers: `wait` runs on threads of
    its own, so status still answers; each waiter gets the root's status once it is idle,
    and a wait that reaches its deadline is a `timeout` error."""
    files = 60
    big = tmp_path / "big" / "src"
    write_new_code(big, "waiter", files, 5)
    root = daemon.call("index", path=str(big.parent))["path"]
    with pytest.raises(Timeout):
        daemon.call("wait", path=root, timeout_s=0)  # embedding 300 chunks takes seconds

    waiters = 10  # > the 8 request workers
    with concurrent.futures.ThreadPoolExecutor(max_workers=waiters) as pool:
        futures = [
            pool.submit(daemon.call, "wait", timeout=400, path=root, timeout_s=300)
            for _ in range(waiters)
        ]
        # Status answers and counts every waiter blocked at once.
        wait_until(lambda: daemon.call("status", timeout=10)["waiting"] == waiters, 120, 0.02)
        assert daemon.call("hello", timeout=10)["protocol"] == 1
        results = [f.result(timeout=400) for f in futures]
    assert all(r["idle"] and r["files"] == files for r in results)
    assert daemon.call("status")["waiting"] == 0


def test_agents_absolute_paths_cross_root_reads_and_trait_methods(
    daemon: Daemon, crate: Path, tmp_path: Path
) -> None:
    """Three answers an agent got wrong: a search `path` given absolute matched nothing,
    silently; `read` with a root and `../other/…` read another root's file; a trait's
    required method (no chunk of its own) was said not to exist."""
    other = tmp_path / "other"
    (other / "src").mkdir(parents=True)
    (other / "src" / "lib.rs").write_text("pub fn elsewhere() {}\\n")
    index(daemon, crate)
    index(daemon, other)
    absolute = daemon.call("search", query="retry", mode="bm25", path=str(crate / "src" / "net"))
    assert absolute["results"] and all(
        h["path"].startswith("src/net/") and h["root"] == str(crate.resolve())
        for h in absolute["results"]
    )
    with pytest.raises(BadRequest, match="leads out of"):
        daemon.call("read", path=f"../{other.name}/src/lib.rs", root=str(crate))
    assert daemon.call("search", query="Transport::send", mode="bm25")["exact"]["found"] is True


def test_a_start_that_fails_leaves_no_daemon_behind(tmp_path: Path) -> None:
    """A driver whose start gave up (here: no answer within a millisecond) kills the
    process it started: a CI run's failed fixture left its daemon running for good."""
    from ipc.errors import RcmdError

    d = Daemon(tmp_path / "home")
    with pytest.raises(RcmdError, match="did not answer"):
        d.start(timeout=0.001)
    assert d.proc is None or d.proc.poll() is not None
