"""The daemon process: single-instance lock, logging, model, roots, socket, signals.

`rcmd daemon` runs this in the foreground (what systemd or launchd run); the CLI spawns
the same thing detached when a command needs a daemon and none is running.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import os
import resource
import shlex
import signal
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from daemon.config import Config, ensure_dirs, load_config
from daemon.metrics import trim_heap
from daemon.parking import park_idle
from daemon.systemd import Notifier, listen_socket
from ipc.errors import AlreadyRunning, RcmdError, StateError
from ipc.paths import LISTENING, STOPPING

if TYPE_CHECKING:
    from daemon.embedder import TextEmbedder
    from daemon.server import Server
    from daemon.service import Service

#: How often the service manager's status line is refreshed.
STATUS_EVERY_S = 2.0
#: How long a thread may hold the GIL while another waits for it (Python's default is
#: 5 ms). A search releases the GIL at every Tantivy and SQLite call and waits to get it
#: back from the chunker each time; at 1 ms, 50 clients searching through a medium
#: lexical pass saw p99 ~665 ms and one search over 1 s in 5 runs, instead of ~826 ms
#: and 1-16 over 1 s in each of 4 runs, for a lexical pass ~7% slower when nobody
#: searches (docs/RELIABILITY.md, Load).
GIL_SWITCH_INTERVAL_S = 0.001
#: The cyclic GC's thresholds (CPython's default is 700, 10, 10). A save of a 1 MB file
#: allocates ~200k short-lived objects (graph references, chunk lists): at 700 the
#: collector ran ~70 times a save and every other save paid a full collection, ~25 ms
#: of a ~100 ms save (in process, 20 saves, docs/PERFORMANCE.md). Reference counting
#: frees nearly all of them anyway; cycles wait a little longer.
GC_THRESHOLDS = (10_000, 10, 10)
#: How long the stopping daemon waits, once its stores are closed, for the requests it
#: was answering to send their reply (`Server.drain`).
DRAIN_S = 5.0


def _check_runtime_dir(path: Path) -> None:
    st = path.stat()
    if st.st_uid != os.getuid():
        raise StateError(f"{path} is owned by uid {st.st_uid}, not by you; refusing to use it")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StateError(f"{path} is writable by others; fix it with: chmod 700 {path}")


def raise_fd_limit() -> None:
    """Take the hard fd limit as the soft one (as watchman does): each root holds index
    files open, and each client a socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def acquire_lock(lock_path: Path) -> int:
    """Hold an exclusive flock for the process's life. The fd is never closed: only the
    process's exit (or a kill) releases the lock, so `rcmd stop` seeing it free means the
    daemon is gone, and no second daemon can start while this one still runs."""
    fd = _locked(lock_path)
    if fd is None:
        raise AlreadyRunning(
            f"another rcmd daemon is running (pid {_holder(lock_path)[0]}); stop it with: rcmd stop"
        )
    return fd


def acquire_state_lock(state_dir: Path, socket: Path) -> int:
    """Hold the index's own lock for the process's life. The single-instance lock lives
    beside the socket, so two shells that disagree on XDG_RUNTIME_DIR (an ssh session and
    a desktop one) would each start a daemon on the same index, and the two would set
    each other's stores aside as broken; this one, in the state folder, refuses the
    second and says where the first one listens."""
    lock_path = state_dir / "daemon.lock"
    fd = _locked(lock_path, f"{os.getpid()}\n{socket}")
    if fd is None:
        pid, where = _holder(lock_path)
        raise StateError(
            f"another rcmd daemon (pid {pid}) already serves the index in {state_dir}, on "
            f"{where}; reach it with: XDG_RUNTIME_DIR={shlex.quote(str(Path(where).parent.parent))}"
            f" rcmd ..., or stop it with: kill {pid}"
        )
    return fd


def mark(lock_fd: int, word: str) -> None:
    """Add `word` (`LISTENING`, `STOPPING`) to the lock file, for clients that find no
    socket to tell a daemon starting or stopping from one that lost its socket."""
    os.pwrite(lock_fd, f" {word}".encode(), os.fstat(lock_fd).st_size)


def _locked(lock_path: Path, content: str | None = None) -> int | None:
    """An fd holding `lock_path`'s exclusive flock, with `content` (default: our pid)
    written in it; None when another process holds it."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, (content or str(os.getpid())).encode())
    return fd


def _holder(lock_path: Path) -> tuple[str, str]:
    """The pid (and socket, where recorded) a held lock file names."""
    try:
        lines = lock_path.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    first = lines[0].split() if lines else []
    return (first[0] if first else "?"), (lines[1] if len(lines) > 1 else "?")


def _embedder(config: Config) -> TextEmbedder:
    """The local model, behind a Ray pool when `[cluster] address` is set (Ray is
    imported, and checked for, only then: before the model's loader thread starts)."""
    from daemon.embedder import Embedder

    if config.cluster.address:
        from daemon.cluster import require_ray

        require_ray(config.cluster.address)
    local = Embedder(config.embedding, config.paths.cache_dir, background=True)
    if not config.cluster.address:
        return local
    from daemon.cluster import ClusterEmbedder

    return ClusterEmbedder(local, config.cluster)


async def _serve(config: Config, lock_fd: int) -> None:
    from daemon.chunk_cache import ChunkCache
    from daemon.embed_cache import open_cache
    from daemon.server import Server, bind_socket
    from daemon.service import Service
    from daemon.sqlite import open_or_set_aside

    log = structlog.get_logger("rcmd.daemon")
    notifier = Notifier()
    # Bind (or take systemd's socket) first, so a bad path fails before the model loads.
    activated = listen_socket()
    sock = activated if activated is not None else bind_socket(config.paths.socket)
    socket_path = Path(sock.getsockname())
    mark(lock_fd, LISTENING)
    notifier.status("starting")
    embedder = _embedder(config)
    chunks = open_or_set_aside(
        config.paths.cache_dir / "chunks.db",
        lambda path: ChunkCache(
            path, config.index.chunk_cache_mb << 20, config.index.cache_max_age_days * 86_400
        ),
    )
    service = Service(
        config, embedder, open_cache(config.paths.embed_cache), socket_path, chunk_cache=chunks
    )
    service.start()
    server = Server(service.handlers)
    await server.serve(sock)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.stop_requested.set)
    log.info(
        "daemon_ready",
        pid=os.getpid(),
        socket=str(socket_path),
        socket_activated=activated is not None,
        model=embedder.model_id,
    )
    notifier.ready(service.summary())
    await _tick_until_stopped(service, server, notifier, config.index.dependency_idle_s)
    log.info("daemon_stopping")
    notifier.stopping()
    mark(lock_fd, STOPPING)
    await server.close()
    if activated is None:
        socket_path.unlink(missing_ok=True)  # systemd owns an activated socket
    await loop.run_in_executor(None, service.shutdown)
    await server.drain(DRAIN_S)  # a search cut short by the stop is told so (Stopping)
    await loop.run_in_executor(None, embedder.join)


async def _tick_until_stopped(
    service: Service, server: Server, notifier: Notifier, idle_s: float
) -> None:
    """Every STATUS_EVERY_S until a stop is asked: the service manager's status line,
    idle dependency roots parked, failed roots tried again (`daemon.reopen`), and the
    heap trimmed after a burst of requests."""
    loop = asyncio.get_running_loop()
    last_seen = trimmed_at = 0
    while not await loop.run_in_executor(None, service.stop_requested.wait, STATUS_EVERY_S):
        if notifier.enabled:  # the summary reads every root; nobody asks for it otherwise
            notifier.status(service.summary())
        # Off the loop: closing a few hundred shards at once takes a while.
        await loop.run_in_executor(None, park_idle, service.registry, service.indexer, idle_s)
        # A root that failed to open (a full disk) is tried again once its backoff is over.
        await loop.run_in_executor(None, service.adopter.reopen_due)
        # After a burst of requests or connections (big reads, many clients, half-sent
        # lines) hand the freed heap back once a quiet tick follows, as the indexer does
        # after batches. The GC thresholds are high (GC_THRESHOLDS), so the cycles that
        # hold a closed connection's buffers are collected first: ~15 ms on medium.
        if server.activity == last_seen != trimmed_at:
            gc.collect()  # a closed connection's buffers sit in asyncio's cycles
            trim_heap()
            trimmed_at = last_seen
        last_seen = server.activity


def run(foreground: bool = True) -> int:
    """Run the daemon until `stop` or SIGTERM; returns the process exit code."""
    # State holds every chunk's text: private whoever started us (the systemd unit says
    # UMask=0077; a daemon spawned by the CLI inherits the shell's umask otherwise).
    os.umask(0o077)
    raise_fd_limit()
    try:
        config = load_config()
        # Work from `/`, as a daemon should, once the config's paths are absolute: the
        # folder a CLI user happened to start it from would stay pinned (a mount that
        # cannot be unmounted, a deleted folder kept alive), and nothing may resolve
        # against it: every path in a request is absolute (ipc.requests).
        os.chdir("/")
        ensure_dirs(config.paths)
        _check_runtime_dir(config.paths.runtime_dir)
        lock_fd = acquire_lock(config.paths.lock)
        acquire_state_lock(config.paths.state_dir, config.paths.socket)
    except AlreadyRunning as exc:
        print(f"rcmd daemon: {exc}", file=sys.stderr)
        return AlreadyRunning.exit_status
    except RcmdError as exc:
        print(f"rcmd daemon: {exc}", file=sys.stderr)
        return 1
    from daemon.logs import configure

    configure(config.paths.log_file, config.log.level, foreground, config.log.max_bytes)
    log = structlog.get_logger("rcmd.daemon")
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        asyncio.run(_serve(config, lock_fd))
    except RcmdError as exc:
        log.error("daemon_failed", error=str(exc))
        print(f"rcmd daemon: {exc}", file=sys.stderr)
        return 1
    except Exception:
        log.exception("daemon_crashed")
        raise
    return 0
