"""A thin, blocking client for the rcmd socket; usable on its own by editor integrations."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ipc.errors import DaemonNotRunning, RcmdError, error_for_code
from ipc.paths import RuntimePaths
from ipc.protocol import PROTOCOL_VERSION, Request, decode_reply

NOT_RUNNING = "daemon not running; start it with: rcmd daemon"


class Client:
    """One connection; requests are answered in order."""

    def __init__(self, socket_path: Path, timeout: float = 60.0) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._timeout = timeout
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(socket_path))
        except (FileNotFoundError, ConnectionRefusedError):
            self._sock.close()
            raise DaemonNotRunning(NOT_RUNNING) from None
        self._file = self._sock.makefile("rb")
        self._ids = itertools.count(1)

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, **params: Any) -> Any:
        """Send one request and return its result, raising the daemon's error as an exception."""
        rid = next(self._ids)
        try:
            self._sock.sendall(Request(rid, method, params).encode())
            line = self._file.readline()
        except TimeoutError:
            raise RcmdError(
                f"the daemon did not answer {method!r} within {self._timeout:.0f}s; "
                "it may be busy, see: rcmd status"
            ) from None
        except OSError as exc:
            raise DaemonNotRunning(
                f"lost connection to the daemon ({exc}); {NOT_RUNNING}"
            ) from None
        if not line:
            raise DaemonNotRunning(f"the daemon closed the connection; {NOT_RUNNING}")
        reply = decode_reply(line)
        if reply.error_code is not None:
            raise error_for_code(reply.error_code, reply.error_message or "")
        return reply.result


def call(paths: RuntimePaths, method: str, timeout: float = 60.0, **params: Any) -> Any:
    with Client(paths.socket, timeout) as c:
        return c.call(method, **params)


def is_running(paths: RuntimePaths) -> bool:
    """Whether a daemon answers; under socket activation the first connection starts it,
    so allow for its start-up (loading the model) before giving up."""
    try:
        call(paths, "hello", timeout=30)
    except DaemonNotRunning:
        return False
    return True


def spawn_daemon(paths: RuntimePaths, timeout: float = 120.0) -> None:
    """Start a detached daemon (like watchman) and wait until its socket answers."""
    paths.log_dir.mkdir(parents=True, exist_ok=True)
    with open(paths.log_dir / "daemon.stderr", "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "--detached"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
            env=os.environ.copy(),
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_running(paths):
            return
        code = proc.poll()
        if code is not None and not is_running(paths):
            raise RcmdError(
                f"the daemon exited with code {code} while starting; "
                f"see {paths.log_dir / 'daemon.stderr'} and {paths.log_file}"
            )
        time.sleep(0.05)
    raise RcmdError(f"the daemon did not answer within {timeout:.0f}s; see {paths.log_file}")


def ensure_daemon(paths: RuntimePaths) -> None:
    """Start a daemon if none answers; refuse one that speaks another protocol version."""
    if not is_running(paths):
        spawn_daemon(paths)
    hello = call(paths, "hello")
    if hello.get("protocol") != PROTOCOL_VERSION:
        raise RcmdError(
            f"the running daemon speaks protocol {hello.get('protocol')}, this rcmd speaks "
            f"{PROTOCOL_VERSION}; restart it with: rcmd stop && rcmd index PATH"
        )
