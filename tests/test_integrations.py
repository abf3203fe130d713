"""The daemon as service managers, editors and agents see it: socket activation and
sd_notify like systemd, the confined `read` and `similar` methods, search filters, and the
MCP bridge driven by the official SDK's own client over stdio."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ipc import __version__
from ipc.client import Client, is_running, stop_daemon
from ipc.errors import BadRequest, NotFound
from tests.conftest import REPO, Daemon, require_tools, run_rcmd, seed_cache, wait_until

pytestmark = pytest.mark.slow


def recv_until(sock: socket.socket, needle: str, timeout: float = 120) -> list[str]:
    sock.settimeout(timeout)
    seen: list[str] = []
    while True:
        msg = sock.recv(4096).decode()
        seen.append(msg)
        if needle in msg:
            return seen


def test_socket_activation_and_sd_notify(tmp_path: Path, warm_cache: Path, crate: Path) -> None:
    home = tmp_path / "home"
    seed_cache(home, warm_cache)
    sock_path = tmp_path / "activated.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_path))
    os.chmod(sock_path, 0o600)  # as the unit's SocketMode=0600 makes systemd do
    listener.listen(16)
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    fd = listener.fileno()

    def as_systemd() -> None:  # runs in the child: the socket becomes fd 3, as systemd does
        os.dup2(fd, 3)
        os.set_inheritable(3, True)

    env = {
        **os.environ,
        "RCMD_HOME": str(home),
        "LISTEN_FDS": "1",
        "NOTIFY_SOCKET": str(notify_path),
    }
    # LISTEN_PID must be the daemon's own pid: the shell exports its pid, then becomes Python.
    proc = subprocess.Popen(
        ["sh", "-c", f'LISTEN_PID=$$ exec "{sys.executable}" -m daemon'],
        env=env,
        cwd=REPO,
        pass_fds=(3,) if fd == 3 else (),
        preexec_fn=as_systemd,
        close_fds=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        messages = recv_until(notify, "READY=1")
        assert any(f"MAINPID={proc.pid}" in m for m in messages)
        with Client(sock_path) as c:
            hello = c.call("hello")
            assert hello["pid"] == proc.pid
            assert c.call("status")["socket"] == str(sock_path)
            c.call("index", path=str(crate))
            c.call("wait", path=str(crate), timeout_s=120)
            (root,) = c.call("status")["roots"]
            # The service manager's status line, once idle: the chunks status counts.
            recv_until(notify, f"STATUS=idle: 1 root(s), {root['chunks']} chunks")
            c.call("stop")
        recv_until(notify, "STOPPING=1")
        assert proc.wait(60) == 0
        assert sock_path.exists()  # systemd's socket is left for systemd to remove
        assert not (home / "run" / "rcmd.sock").exists()  # and the daemon bound none itself
    finally:
        if proc.poll() is None:
            proc.kill()
        listener.close()
        notify.close()


def test_read_is_confined_to_roots(daemon: Daemon, crate: Path, tmp_path: Path) -> None:
    daemon.cli("index", str(crate), "--wait")
    root = str(crate.resolve())
    got = daemon.call("read", root=root, path="src/lib.rs", start_line=1, end_line=3)
    assert got["path"] == "src/lib.rs"
    assert got["text"].splitlines() == (crate / "src/lib.rs").read_text().splitlines()[:3]
    absolute = daemon.call("read", path=str(crate / "src" / "store.rs"))
    assert absolute["root"] == root and absolute["start_line"] == 1

    secret = tmp_path / "secret.rs"
    secret.write_text('pub const KEY: &str = "hunter2";\n')
    (crate / "src" / "escape.rs").symlink_to(secret)
    for params in (
        {"root": root, "path": "../secret.rs"},
        {"path": str(secret)},
        {"root": root, "path": "src/escape.rs"},
        {"root": root, "path": "/etc/passwd"},
    ):
        with pytest.raises(NotFound):
            daemon.call("read", **params)
    with pytest.raises(BadRequest):
        daemon.call("read", path="src/lib.rs")  # relative without a root
    with pytest.raises(BadRequest):
        daemon.call("read", root=root, path="src/lib.rs", start_line=10_000)


def test_similar_excludes_the_range_itself(daemon: Daemon, crate: Path) -> None:
    daemon.cli("index", str(crate), "--wait")
    retry = crate / "src" / "net" / "retry.rs"
    lines = retry.read_text().splitlines()
    start = next(i for i, line in enumerate(lines, 1) if "pub fn fetch_with_retry" in line)
    result = daemon.call("similar", path=str(retry), start_line=start, end_line=start + 12)
    hits = result["results"]
    assert hits and set(result) == {"results"}  # `degraded` only when a store failed
    for h in hits:
        overlapping = (
            h["path"] == "src/net/retry.rs"
            and h["start_line"] <= start + 12
            and h["end_line"] >= start
        )
        assert not overlapping


def test_search_filters(daemon: Daemon, crate: Path) -> None:
    daemon.cli("index", str(crate), "--wait")
    structs = daemon.search("retry policy", "--kind", "struct", "--limit", "20")
    assert structs and all(h["kind"] == "struct" for h in structs)
    net = daemon.search("retry", "--path", "src/net/*", "--limit", "20")
    assert net and all(h["path"].startswith("src/net/") for h in net)
    bad = daemon.cli("search", "x", "--kind", "spaceship", check=False)
    assert bad.returncode == 2


def test_mcp_bridge_with_the_sdk_client(daemon: Daemon, crate: Path) -> None:
    from mcp.client import Client as McpClient
    from mcp.client.stdio import StdioServerParameters

    daemon.cli("index", str(crate), "--wait")
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "ipc.cli", "mcp"],
        env={"RCMD_HOME": str(daemon.home), "PYTHONPATH": str(REPO)},
        cwd=str(REPO),
    )

    def payload(result: Any) -> dict[str, Any]:
        assert not result.is_error, result
        if result.structured_content is not None:
            data: dict[str, Any] = result.structured_content
            return data.get("result", data) if set(data) == {"result"} else data
        return json.loads(result.content[0].text)  # type: ignore[no-any-return]

    async def session() -> None:
        async with McpClient(params, read_timeout_seconds=120) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            assert tools == {
                "search",
                "status",
                "reindex",
                "read_chunk",
                "similar_code",
                "definitions",
                "references",
                "callers",
                "callees",
                "implementations",
            }
            defs = payload(await client.call_tool("definitions", {"name": "fetch_with_retry"}))
            assert [(d["path"], d["kind"]) for d in defs["results"]] == [("src/net/retry.rs", "fn")]

            found = payload(
                await client.call_tool("search", {"query": "retry failed http requests"})
            )
            top = found["results"][0]
            assert top["path"] == "src/net/retry.rs"

            chunk = payload(
                await client.call_tool(
                    "read_chunk",
                    {
                        "root": top["root"],
                        "path": top["path"],
                        "start_line": top["start_line"],
                        "end_line": top["end_line"],
                    },
                )
            )
            assert "retry" in chunk["text"].lower()

            outside = await client.call_tool("read_chunk", {"path": "/etc/passwd"})
            assert outside.is_error
            # 19.7: the one-line reason reaches the agent, not only "Error executing tool".
            assert "is not inside an indexed root" in outside.content[0].text
            # A symbol lookup needs no query (the schema's default), as the tool says.
            named = payload(await client.call_tool("search", {"symbol": "fetch_with_retry"}))
            assert [h["path"] for h in named["results"]] == ["src/net/retry.rs"], named
            empty = await client.call_tool("search", {"query": ""})
            assert empty.is_error and "'query' must not be empty" in empty.content[0].text
            assert len(empty.content[0].text.splitlines()) == 1

            similar = payload(
                await client.call_tool(
                    "similar_code",
                    {"path": str(crate / top["path"]), "start_line": 1, "end_line": 10},
                )
            )
            assert similar["results"]
            status = payload(await client.call_tool("status", {}))
            assert status["roots"][0]["path"] == str(crate.resolve())

    asyncio.run(session())


def test_mcp_starts_the_daemon_if_needed(tmp_path: Path, crate: Path, warm_cache: Path) -> None:
    """No daemon runs: the first tool call starts one (like the CLI does)."""
    from mcp.client import Client as McpClient
    from mcp.client.stdio import StdioServerParameters

    home = tmp_path / "mcp-home"
    seed_cache(home, warm_cache)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "ipc.cli", "mcp"],
        env={"RCMD_HOME": str(home), "PYTHONPATH": str(REPO)},
        cwd=str(REPO),
    )

    async def session() -> None:
        async with McpClient(params, read_timeout_seconds=120) as client:
            result = await client.call_tool("status", {})
            assert not result.is_error

    d = Daemon(home)
    try:
        asyncio.run(session())
        wait_until(lambda: d.paths.socket.exists())
        assert d.call("hello")["protocol"] == 1
    finally:
        d.call("stop")
        wait_until(lambda: not d.paths.socket.exists(), timeout=60)


PLUGIN = REPO / "packaging" / "editors" / "rcmd.lua"


def test_neovim_plugin_searches_the_daemon(daemon: Daemon, crate: Path, tmp_path: Path) -> None:
    """The example plugin, run for real in headless Neovim against the daemon."""
    require_tools("nvim")
    daemon.cli("index", str(crate), "--wait")
    out = tmp_path / "results.json"
    script = tmp_path / "run.lua"
    script.write_text(
        f"""
package.path = {json.dumps(str(PLUGIN.parent) + "/?.lua")} .. ";" .. package.path
local rcmd = require("rcmd")
local results, err = rcmd.search("where do we retry failed http requests", {{ limit = 5 }})
local bad_result, bad_err = rcmd.request("no_such_method", {{}})
local f = io.open({json.dumps(str(out))}, "w")
f:write(vim.json.encode({{ results = results, err = err, qf = rcmd.to_qf(results or {{}}),
                           bad = bad_err, socket = rcmd.socket_path() }}))
f:close()
vim.cmd("qall!")
"""
    )
    proc = subprocess.run(
        ["nvim", "--headless", "-u", "NONE", "-c", f"luafile {script}"],
        env={**daemon.env, "XDG_RUNTIME_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(out.read_text())
    assert got["socket"] == str(daemon.paths.socket)
    assert got.get("err") is None
    assert got["results"][0]["path"] == "src/net/retry.rs"
    assert got["qf"][0]["filename"] == str(crate.resolve() / "src/net/retry.rs")
    assert got["bad"].startswith("unknown_method")


def test_client_restarts_a_daemon_of_another_version(
    tmp_path: Path, crate: Path, warm_cache: Path
) -> None:
    """After an upgrade the old daemon still runs: the first command that needs a daemon
    stops it, starts this version's, and says so in one line."""
    home = tmp_path / "home"
    seed_cache(home, warm_cache)
    old = Daemon(home, RCMD_TEST_VERSION="0.0.0-old")
    old.start()
    try:
        assert old.call("hello")["version"] == "0.0.0-old"
        env = {k: v for k, v in old.env.items() if k != "RCMD_TEST_VERSION"}
        out = run_rcmd("index", str(crate), "--wait", env=env)
        assert out.returncode == 0, out.stderr
        notes = [line for line in out.stderr.splitlines() if "restarting the daemon" in line]
        assert len(notes) == 1 and "0.0.0-old" in notes[0], out.stderr
        assert old.proc is not None and old.proc.wait(timeout=60) == 0
        hello = old.call("hello")
        assert hello["version"] == __version__ and hello["pid"] != old.proc.pid
        assert old.root_status(crate)["idle"]
    finally:
        if is_running(old.paths):
            stop_daemon(old.paths)
        old.kill()
