"""Hostile clients and odd files: a protocol fuzz against the live daemon, many clients at
once, file names with spaces, newlines and non-ASCII, and an unsafe runtime directory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests.conftest import Daemon, needs_userns, private_tmpfs, run_daemon_once, running

pytestmark = pytest.mark.slow

FUZZ_REQUESTS = int(os.environ.get("RCMD_FUZZ_REQUESTS", "10000"))
#: Methods without side effects on the user's machine (no registering "/", no stop).
SAFE_METHODS = ["hello", "status", "search", "verify", "read", "similar", "nope", ""]
UNSAFE_METHODS = {"index", "reindex", "remove", "stop"}
PARAM_KEYS = ["query", "limit", "mode", "root", "path", "kind", "start_line", "end_line", "x"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**63, -(2**70), 10**300])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(PARAM_KEYS) | st.text(max_size=4), inner, max_size=5)
    ),
    max_leaves=16,
)
methods = st.sampled_from(SAFE_METHODS) | st.text(max_size=8).filter(
    lambda m: m not in UNSAFE_METHODS
)
requests = st.fixed_dictionaries(
    {"id": st.integers(0, 2**31) | json_values, "method": methods},
    optional={"params": json_values},
)


def _encode(value: Any) -> bytes:
    # Lone surrogates from st.text() become invalid UTF-8: one more kind of bad line.
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


fuzz_lines = st.one_of(
    st.binary(max_size=60).map(lambda b: b.replace(b"\n", b" ")),
    json_values.map(_encode),
    st.integers(1000, 100_000).map(lambda n: b"[" * n + b"]" * n),
    requests.map(_encode),
)


def test_protocol_fuzz_every_line_gets_a_reply(daemon: Daemon, crate: Path) -> None:
    """Hypothesis writes the lines; one connection to an indexed daemon carries them all."""
    daemon.cli("index", str(crate), "--wait")
    errors = 0
    sent = 0
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(120)
        sock.connect(str(daemon.paths.socket))
        reader = sock.makefile("rb")

        @settings(max_examples=FUZZ_REQUESTS, deadline=None, database=None, derandomize=True)
        @given(line=fuzz_lines)
        def exchange(line: bytes) -> None:
            nonlocal errors, sent
            assume(line.strip())  # blank lines get no reply, by design
            sock.sendall(line + b"\n")
            reply = json.loads(reader.readline())
            assert ("result" in reply) != ("error" in reply), reply
            assert reply.get("error", {}).get("code") != "internal", (line[:200], reply)
            sent += 1
            errors += "error" in reply

        exchange()
    assert sent > FUZZ_REQUESTS * 0.9
    assert daemon.call("hello")["protocol"] == 1
    assert daemon.verify()["ok"]
    print(f"fuzz: {sent} requests, {errors} error replies")


def test_two_hundred_clients_at_once(daemon: Daemon, crate: Path) -> None:
    daemon.cli("index", str(crate), "--wait")
    conns = []
    for _ in range(200):
        c = socket.socket(socket.AF_UNIX)
        c.settimeout(120)
        c.connect(str(daemon.paths.socket))
        conns.append(c)
    try:
        for i, c in enumerate(conns):
            method = "search" if i % 2 else "status"
            params = {"query": "retry", "limit": 3} if method == "search" else {}
            c.sendall(json.dumps({"id": i, "method": method, "params": params}).encode() + b"\n")
        for i, c in enumerate(conns):
            reply = json.loads(c.makefile("rb").readline())
            assert reply["id"] == i and "result" in reply
    finally:
        for c in conns:
            c.close()


def test_odd_file_names_are_indexed(daemon: Daemon, crate: Path) -> None:
    odd = ["with space.rs", "naïve_ünïcödé.rs", "new\nline.rs", "日本語.rs"]
    for i, name in enumerate(odd):
        (crate / "src" / name).write_text(f"pub fn odd_name_marker_{i}() {{}}\n")
    daemon.cli("index", str(crate), "--wait")
    for i, name in enumerate(odd):
        hits = daemon.search(f"odd_name_marker_{i}", "--mode", "bm25")
        assert hits[0]["path"] == f"src/{name}"
    assert daemon.verify()["ok"]


def test_unsafe_runtime_dir_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "run").mkdir(parents=True)
    os.chmod(home / "run", 0o777)
    proc = run_daemon_once({**os.environ, "RCMD_HOME": str(home)})
    assert proc.returncode == 1
    assert "writable by others" in proc.stderr and "chmod 700" in proc.stderr
    assert not (home / "run" / "rcmd.sock").exists()


def _in_daemon_ns(pid: int, script: str) -> None:
    """Run `script` in the daemon's user and mount namespaces (never the host's)."""
    subprocess.run(
        [
            "nsenter",
            "--user",
            "--mount",
            "--target",
            str(pid),
            "--preserve-credentials",
            "sh",
            "-c",
            script,
        ],
        check=True,
    )


@needs_userns
@pytest.mark.parametrize(
    ("fault", "worker_files"), [("full", "200"), ("read_only", "200"), ("full", "1")]
)
def test_full_or_read_only_state_dir_is_reported_and_recovered(
    tmp_path: Path, crate: Path, warm_cache: Path, fault: str, worker_files: str
) -> None:
    """The state dir on a 16 MB tmpfs of the daemon's own mount namespace: fill it (or
    remount it read-only), edit a file, see the failure in status while search keeps
    answering, undo the fault, and the edit lands by itself. Nothing is mounted on the
    host. With `worker_files` 1, every batch writes Tantivy in a worker process, whose
    failed commit must fail the batch the same way."""
    from tests.conftest import seed_cache, wait_until

    home = tmp_path / "small"
    state = home / "state"
    state.mkdir(parents=True)
    seed_cache(home, warm_cache)
    d = Daemon(
        home,
        prefix=private_tmpfs(state),
        RCMD_INDEX_RETRY_AFTER_S="0.5",
        RCMD_INDEX_LEXICAL_WORKER_FILES=worker_files,
    )
    try:
        d.start()
        assert d.proc is not None
        pid = d.proc.pid
        d.cli("index", str(crate), "--wait")
        assert not any(state.iterdir())  # the host sees none of it
        if fault == "full":
            _in_daemon_ns(pid, f'head -c 32M /dev/zero > "{state}/filler" || true')
        else:  # a read-only bind mount over the state folder: new files cannot be made
            _in_daemon_ns(
                pid, f'mount --bind "{state}" "{state}" && mount -o remount,bind,ro "{state}"'
            )
        store = crate / "src" / "store.rs"
        store.write_text(store.read_text() + "\npub fn state_fault_marker() {}\n")
        error = wait_until(lambda: d.root_status(crate)["last_error"], timeout=60)
        print(f"{fault}: {error}")
        status = d.root_status(crate)
        assert status["activity"] == "failed" and status["progress"]["eta_s"] is None
        assert d.search("fetch_with_retry", "--mode", "bm25")  # still answering
        fresh = d.cli("search", "state_fault_marker", "--fresh", check=False)
        assert fresh.returncode == 1 and "cannot answer" in fresh.stderr, fresh.stderr
        if fault == "full":
            _in_daemon_ns(pid, f'rm "{state}/filler"')
        else:
            # Lazy: the daemon keeps index files open under the bind mount.
            _in_daemon_ns(pid, f'umount -l "{state}"')
        wait_until(
            lambda: (
                (h := d.search("state_fault_marker", "--mode", "bm25"))
                and h[0]["symbol"] == "store::state_fault_marker"
            ),
            timeout=120,
        )
        wait_until(lambda: not d.root_status(crate)["last_error"], timeout=60)
        d.wait_idle(crate)
        assert d.verify()["ok"], d.verify()
        in_worker = d.root_status(crate)["counters"]["lexical_worker_batches"]
        assert (in_worker > 0) == (worker_files == "1"), in_worker
    finally:
        d.stop()
        d.kill()


@needs_userns
def test_a_new_root_on_a_full_disk_gets_a_clear_error(
    tmp_path: Path, crate: Path, warm_cache: Path
) -> None:
    """Issue 17.14: adding a root with no room for its index once answered
    `internal error: OSError`; it must name the cause and the next step."""
    from tests.conftest import seed_cache

    home = tmp_path / "small"
    state = home / "state"
    state.mkdir(parents=True)
    seed_cache(home, warm_cache)
    d = Daemon(home, prefix=private_tmpfs(state))
    try:
        d.start()
        assert d.proc is not None
        _in_daemon_ns(d.proc.pid, f'head -c 32M /dev/zero > "{state}/filler" || true')
        out = d.cli("index", str(crate), check=False)
        assert out.returncode == 1, out
        assert "internal" not in out.stderr and "free some space" in out.stderr, out.stderr
        assert out.stderr.count("\n") == 1
        assert d.call("hello")["pid"] == d.proc.pid  # and the daemon goes on
    finally:
        d.stop()
        d.kill()


@pytest.fixture
def bare_daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A daemon with no roots and a cold cache: for requests refused before any work. Like
    every test daemon it is started from the checkout, a folder holding a Rust crate."""
    with running(Daemon(tmp_path / "home")) as d:
        yield d


def _exchange(daemon: Daemon, lines: list[bytes]) -> list[dict[str, Any]]:
    """Send `lines` on one connection, each after the last one's reply; the replies."""
    replies = []
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(60)
        sock.connect(str(daemon.paths.socket))
        reader = sock.makefile("rb")
        for line in lines:
            sock.sendall(line + b"\n")
            reply = reader.readline()
            assert reply, f"the daemon closed the connection after {line!r}"
            replies.append(json.loads(reply))
    return replies


def test_a_lone_surrogate_is_a_bad_request_and_the_connection_goes_on(bare_daemon: Daemon) -> None:
    """`\\ud800` is valid JSON syntax but no UTF-8: as an id it killed the connection (the
    reply could not be encoded), as a path it was an internal UnicodeEncodeError."""
    bad = [
        (rb'{"id":"\ud800","method":"hello"}', None, "'id'"),
        (
            rb'{"id":2,"method":"search","params":{"query":"x","root":"/t\udc80"}}',
            2,
            "'params.root'",
        ),
        (rb'{"id":3,"method":"index","params":{"path":"/tmp/\ud800"}}', 3, "'params.path'"),
        (rb'{"id":4,"method":"read","params":{"path":"/tmp/\udfff.rs"}}', 4, "'params.path'"),
        (b'{"id":5,"method":"remove","params":{"path":"/tmp/\xed\xa0\x80"}}', 5, "'params.path'"),
    ]
    lines = [line for pair in bad for line in (pair[0], b'{"id":"next","method":"hello"}')]
    replies = _exchange(bare_daemon, lines)
    for (line, rid, where), reply, after in zip(bad, replies[::2], replies[1::2], strict=True):
        assert reply["id"] == rid and reply["error"]["code"] == "bad_request", (line, reply)
        assert reply["error"]["message"].startswith(f"{where} is not valid Unicode"), reply
        assert after["id"] == "next" and after["result"]["protocol"] == 1, (line, after)
    assert bare_daemon.status()["roots"] == []
    assert "Unhandled exception" not in bare_daemon.log.read_text()


def test_relative_paths_are_refused_and_register_nothing(
    bare_daemon: Daemon, tmp_path: Path
) -> None:
    """Relative paths resolved against the daemon's working directory: `index ""`
    registered the folder it was started from, and `remove` of a path relative to it
    dropped a root. Now every location must be absolute, and the daemon works from `/`."""
    proj = tmp_path / "proj"
    proj.mkdir()
    bare_daemon.call("index", path=str(proj))
    rel = os.path.relpath(proj, bare_daemon.source)  # `proj`, from the daemon's start folder
    refused = [
        ("index", {"path": ""}),
        ("index", {"path": "."}),
        ("index", {"path": "tests/fixtures/demo_crate"}),
        ("index", {"path": rel}),
        ("remove", {"path": ""}),
        ("remove", {"path": rel}),
        ("reindex", {"path": "", "force": True}),
        ("wait", {"path": rel, "timeout_s": 0}),
        ("verify", {"root": rel}),
        ("search", {"query": "x", "root": rel}),
        ("def", {"name": "x", "root": ""}),
    ]
    lines = [
        json.dumps({"id": i, "method": m, "params": p}).encode() for i, (m, p) in enumerate(refused)
    ]
    for (method, params), reply in zip(refused, _exchange(bare_daemon, lines), strict=True):
        assert reply["error"]["code"] == "bad_request", (method, params, reply)
        assert "must be absolute" in reply["error"]["message"], (method, reply)
    assert [r["path"] for r in bare_daemon.status()["roots"]] == [str(proj.resolve())]
    pid = bare_daemon.call("hello")["pid"]
    assert Path(f"/proc/{pid}/cwd").readlink() == Path("/")
