"""A thin, blocking client for the rcmd socket; usable on its own by editor integrations."""

from __future__ import annotations

import itertools
import json
import os
import socket
import stat
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ipc import __version__
from ipc.errors import AlreadyRunning, DaemonNotRunning, RcmdError, Timeout, error_for_code
from ipc.paths import LISTENING, STOPPING, RuntimePaths
from ipc.protocol import PROTOCOL_VERSION, Request, decode_reply
from ipc.requests import MethodRequest, StatusRequest, WaitRequest

if TYPE_CHECKING:
    import subprocess

NOT_RUNNING = (
    "daemon not running; add a root with: rcmd index PATH (starts it), "
    "or run it as a service: rcmd service install"
)
STOPPED_WITH_ROOTS = (
    "daemon not running; its roots and indexes are kept and it resumes them when it "
    "starts: a search starts it (rcmd search QUERY), or run it as a service: "
    "rcmd service install"
)
#: How long `stop_daemon` waits for the daemon to commit and exit.
STOP_WAIT_S = 120.0
#: Seconds one `wait` request blocks before `wait_root` shows progress and asks again.
WAIT_STEP_S = 0.5
#: Socket timeout beyond a `wait` request's own deadline.
WAIT_SLACK_S = 30.0


def check_socket(path: Path) -> None:
    """Refuse to talk to a socket another user could have put there: it and its folder
    must be ours, the socket reachable by us alone, and the folder writable by us alone.
    A query (and the code it returns) must never go to, or come from, someone else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise not_running(path) from None
    folder = os.lstat(path.parent)
    uid = os.getuid()
    problem = None
    if not stat.S_ISSOCK(st.st_mode):
        problem = "is not a socket"
    elif st.st_uid != uid:
        problem = f"belongs to uid {st.st_uid}, not to you (uid {uid})"
    elif st.st_mode & 0o077:
        problem = f"is open to other users (mode {stat.S_IMODE(st.st_mode):o})"
    elif not stat.S_ISDIR(folder.st_mode) or folder.st_uid != uid:
        problem = f"is in {path.parent}, which is not a folder of yours"
    elif folder.st_mode & 0o022:
        problem = f"is in {path.parent}, which others can write to"
    if problem is not None:
        raise RcmdError(
            f"refusing the socket {path}: it {problem}; "
            "remove it (and stop whatever made it), then start rcmd again"
        )


def not_running(socket_path: Path) -> RcmdError:
    """The error for a socket nobody answers on. A daemon that holds the lock beside it
    and says it listens, not that it is stopping, has lost its socket (deleted by hand,
    or overwritten): starting another cannot help, so say which process to stop.

    A starting daemon races the client: the socket looked for before it bound, the lock
    read after it said so (the socket answers now); or the lock read after the next
    daemon took it but before it rewrote the file naming a killed one (read again, and
    the pid checked). Each is "not running" yet, which callers wait on."""
    lock = socket_path.with_name("rcmd.lock")
    words = _lock_words(lock)
    if not _says_listening(words) or lock_released(lock):
        return DaemonNotRunning(NOT_RUNNING)
    if _lock_words(lock) != words or not _alive(words[0]) or _connects(socket_path):
        return DaemonNotRunning(NOT_RUNNING)
    return RcmdError(
        f"the daemon (pid {words[0]}) no longer listens on {socket_path} (was the socket "
        f"deleted?); stop it with: kill {words[0]}, then run the command again"
    )


def _lock_words(lock: Path) -> list[str]:
    try:
        return lock.read_text(errors="replace").split()
    except OSError:
        return []


def _says_listening(words: list[str]) -> bool:
    return bool(words) and LISTENING in words and STOPPING not in words


def _connects(socket_path: Path) -> bool:
    """Whether something listens on `socket_path` now."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(socket_path))
        except OSError:
            return False
    return True


def _alive(pid: str) -> bool:
    """Whether process `pid` exists (one of another user's counts: it holds the lock)."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, OverflowError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


class Client:
    """One connection; requests are answered in order."""

    def __init__(self, socket_path: Path, timeout: float = 60.0) -> None:
        check_socket(socket_path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._timeout = timeout
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(socket_path))
        except (FileNotFoundError, ConnectionRefusedError):
            self._sock.close()
            raise not_running(socket_path) from None
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

    def request(self, req: MethodRequest) -> Any:
        """Send a request built from its schema (`ipc.requests`)."""
        return self.call(req.method, **req.to_params())


def call(paths: RuntimePaths, method: str, timeout: float = 60.0, **params: Any) -> Any:
    with Client(paths.socket, timeout) as c:
        return c.call(method, **params)


def request(paths: RuntimePaths, req: MethodRequest, timeout: float = 60.0) -> Any:
    """One request built from its schema, on a connection of its own."""
    with Client(paths.socket, timeout) as c:
        return c.request(req)


def wait_root(
    paths: RuntimePaths,
    root: str,
    *,
    timeout: float | None = None,
    step_s: float = WAIT_STEP_S,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The root's status once the daemon reports it idle (the `wait` method: the daemon
    answers the moment the root's work is done). Asks in steps of `step_s`, calling
    `progress` with the root's status between them; raises `Timeout` after `timeout`."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with Client(paths.socket, step_s + WAIT_SLACK_S) as c:
        while True:
            left = step_s if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                result: dict[str, Any] = c.request(WaitRequest(root, min(step_s, left)))
                return result
            except Timeout:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
            if progress is not None:
                status = c.request(StatusRequest())
                info = next((r for r in status["roots"] if r["path"] == root), None)
                if info is not None:
                    progress(info)


def is_running(paths: RuntimePaths) -> bool:
    """Whether a daemon answers; under socket activation the first connection starts it,
    so allow for its start-up (loading the model) before giving up."""
    try:
        call(paths, "hello", timeout=30)
    except DaemonNotRunning:
        return False
    return True


def has_roots(paths: RuntimePaths) -> bool:
    """Whether roots are registered (a daemon that is down has work to resume)."""
    try:
        data = json.loads((paths.state_dir / "roots.json").read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and bool(data.get("roots"))


def request_starting(paths: RuntimePaths, req: MethodRequest, timeout: float = 60.0) -> Any:
    """`request`, starting the daemon first when it is down but roots are registered
    (after a reboot); with nothing registered, say which command adds a root."""
    try:
        return request(paths, req, timeout)
    except DaemonNotRunning:
        if not has_roots(paths):
            raise
    ensure_daemon(paths)
    return request(paths, req, timeout)


def _last_line(path: Path, offset: int) -> str:
    """The last non-empty line written to `path` past `offset` (a daemon's reason to exit)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].removeprefix("rcmd daemon: ") if lines else ""


def daemon_env(env: Mapping[str, str]) -> dict[str, str]:
    """The spawned daemon's environment. It starts in `/`, not in the user's folder:
    `python -m` puts the working directory first on the import path, where a `json.py`
    or `signal.py` of the user's project would replace the standard module. A client
    run from a checkout puts that checkout on the path instead (an installed one is
    found where it is installed), so client and daemon are the same version."""
    import site

    source = str(Path(__file__).resolve().parent.parent)
    sites = [*site.getsitepackages(), site.getusersitepackages()]
    installed = {str(Path(p).resolve()) for p in sites}
    rest = env.get("PYTHONPATH", "")
    if source in installed or source in rest.split(os.pathsep):
        return dict(env)
    return {**env, "PYTHONPATH": source + (os.pathsep + rest if rest else "")}


def spawn_daemon(paths: RuntimePaths, timeout: float = 120.0) -> None:
    """Start a detached daemon (like watchman) and wait until its socket answers. One
    that found the lock held waits for the holder; when the holder lets go without
    answering (it was stopping: `rcmd stop` racing this command), another is started."""
    paths.log_dir.mkdir(parents=True, exist_ok=True)
    err_file = paths.log_dir / "daemon.stderr"
    offset = err_file.stat().st_size if err_file.exists() else 0
    proc = _popen_daemon(err_file)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_running(paths):
            return
        code = proc.poll()
        if code == AlreadyRunning.exit_status:
            if lock_released(paths.lock) and not is_running(paths):
                proc = _popen_daemon(err_file)  # the holder was stopping, and is gone
        elif code is not None and not is_running(paths):
            reason = _last_line(err_file, offset) or f"it exited with code {code}"
            raise RcmdError(
                f"the daemon could not start: {reason}; fix that, then run the command "
                f"again (details: {err_file})"
            )
        time.sleep(0.05)
    raise RcmdError(f"the daemon did not answer within {timeout:.0f}s; see {paths.log_file}")


def _popen_daemon(err_file: Path) -> subprocess.Popen[bytes]:
    import subprocess  # here: the CLI's start stays light

    with open(err_file, "ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "daemon", "--detached"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
            env=daemon_env(os.environ),
            cwd="/",
        )


def lock_released(lock: Path) -> bool:
    """Whether no daemon holds the single-instance lock (it keeps it until its last step)."""
    import fcntl

    try:
        with open(lock, "a") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            return True
    except FileNotFoundError:
        return True


def stop_daemon(
    paths: RuntimePaths,
    timeout: float = STOP_WAIT_S,
    waiting: Callable[[float], None] | None = None,
) -> None:
    """Ask the running daemon to stop and return once it has exited (its lock is free), so
    a new daemon can start right after. `waiting` gets the seconds waited so far, about
    twice a second, while the daemon finishes its current step."""
    pid = call(paths, "hello")["pid"]
    call(paths, "stop")
    start = time.monotonic()
    deadline = start + timeout
    polls = 0
    while time.monotonic() < deadline:
        if lock_released(paths.lock):
            return
        polls += 1
        if waiting is not None and polls % 10 == 0:
            waiting(time.monotonic() - start)
        time.sleep(0.05)
    raise RcmdError(
        f"the daemon (pid {pid}) is still finishing after {timeout:.0f}s; "
        f"check again with: rcmd status, or see {paths.log_file}"
    )


def _current(hello: dict[str, Any]) -> bool:
    return hello.get("protocol") == PROTOCOL_VERSION and hello.get("version") == __version__


def ensure_daemon(paths: RuntimePaths) -> None:
    """Start a daemon if none answers. One of another version or protocol (left running
    by an upgrade) is stopped and replaced, as dmypy does, with one line on stderr."""
    if not is_running(paths):
        spawn_daemon(paths)
    hello = call(paths, "hello")
    if _current(hello):
        return
    print(
        f"rcmd: restarting the daemon (pid {hello.get('pid')}, version {hello.get('version')}, "
        f"protocol {hello.get('protocol')}) as version {__version__}",
        file=sys.stderr,
    )
    stop_daemon(paths)
    if not is_running(paths):  # under socket activation the service manager starts it
        spawn_daemon(paths)
    hello = call(paths, "hello")
    if not _current(hello):
        raise RcmdError(
            f"the daemon still runs version {hello.get('version')} (protocol "
            f"{hello.get('protocol')}), this rcmd is {__version__} (protocol "
            f"{PROTOCOL_VERSION}); update the service (rcmd service install) and restart it"
        )
