"""The Unix-socket server: newline-delimited JSON, many clients, handlers on threads.

The event loop only frames lines and routes them; every handler runs on a worker thread,
so one slow search, or one client that stalls mid-line, holds up nobody else. Calls run
on three pools by cost: cheap ones (`hello`, `status`, `search`) on their own workers,
heavy ones (`verify`, `read`, `similar`, opening a root) on a small pool that can only
delay each other, and long ones (`wait`) on a pool of their own.

Bounded by design: a line over MAX_LINE_BYTES is refused without being buffered whole;
a connection idle for IDLE_TIMEOUT_S is closed; a reply the client does not read is
dropped with its connection after WRITE_TIMEOUT_S; and the number of connections stays
below the fd limit less a reserve, the longest-idle client giving way to a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import resource
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import structlog

from ipc.errors import (
    STOPPING_MESSAGE,
    BadRequest,
    Busy,
    RcmdError,
    StateError,
    Stopping,
    UnknownMethod,
)
from ipc.protocol import (
    MAX_LINE_BYTES,
    decode_request,
    encode_error,
    encode_result,
    request_id_of,
)
from ipc.requests import REQUESTS

log = structlog.get_logger("rcmd.server")

Handler = Callable[[dict[str, Any]], Any]
#: Pending connections the kernel queues before accept: a burst of clients (an editor
#: opening many files, an agent fanning out) must not see EAGAIN on connect.
BACKLOG = 1024
#: Connections accepted per wake-up of the event loop, before admission runs.
ACCEPT_BURST = 32
#: sockaddr_un.sun_path is 108 bytes on Linux (104 on macOS), NUL included.
SUN_PATH_MAX = 104
#: Threads for the other calls (`hello`, `status`, `search`, navigation, ...).
REQUEST_WORKERS = 8
#: Threads for long calls (`wait`): this many clients can wait at once; more queue behind
#: them, never behind or in front of other requests.
LONG_WORKERS = 64
#: Threads for heavy calls (`verify`, `read`, `similar`, opening a root): these queue
#: among themselves, never in front of `hello`, `status` or `search`.
HEAVY_WORKERS = 2
#: A connection with no request for this long is closed (clients reconnect on demand).
IDLE_TIMEOUT_S = 300.0
#: A reply the client does not read within this long is dropped with the connection.
WRITE_TIMEOUT_S = 30.0
#: File descriptors kept for the daemon's own work (at least; a quarter of the limit).
FD_RESERVE = 256


def bind_socket(path: Path) -> socket.socket:
    """A listening Unix socket at `path`, created 0600 (no window where others can connect)."""
    if len(os.fsencode(path)) >= SUN_PATH_MAX:
        raise StateError(
            f"socket path {path} is longer than {SUN_PATH_MAX - 1} bytes; "
            "set RCMD_HOME to a shorter directory"
        )
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


#: How long a client may take to finish sending a refused oversized line.
SKIP_TIMEOUT_S = 10.0


async def _skip_line(reader: asyncio.StreamReader, consumed: int) -> None:
    """Discard the rest of an oversized line without buffering it, so the stream resyncs
    at the next request (closing instead would reset the socket and lose the error reply)."""
    while True:
        await reader.readexactly(consumed)
        try:
            await reader.readuntil(b"\n")
            return
        except asyncio.LimitOverrunError as exc:
            consumed = exc.consumed


class Server:
    def __init__(self, handlers: dict[str, Handler], workers: int = REQUEST_WORKERS) -> None:
        self._handlers = handlers
        self._pools = {
            "cheap": ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rcmd-req"),
            "heavy": ThreadPoolExecutor(max_workers=HEAVY_WORKERS, thread_name_prefix="rcmd-heavy"),
            "long": ThreadPoolExecutor(max_workers=LONG_WORKERS, thread_name_prefix="rcmd-wait"),
        }
        self._server: asyncio.AbstractServer | None = None
        self._conns = Connections(max_connections())
        #: Requests answered and connections closed: after a burst of either (big
        #: replies, many clients, half-sent lines buffered) the daemon's loop hands the
        #: freed heap back once a quiet tick follows.
        self.activity = 0
        #: Requests being answered, until their reply is sent (`drain`).
        self._answering: set[asyncio.Task[None]] = set()

    async def serve(self, sock: socket.socket) -> None:
        # asyncio accepts up to `backlog` connections per wake-up before any of them is
        # admitted: keep that burst small (fds are the limit), then give the kernel's
        # listen queue its full depth again so a burst of clients still connects.
        self._server = await asyncio.start_unix_server(
            self._client, sock=sock, limit=MAX_LINE_BYTES, backlog=ACCEPT_BURST
        )
        sock.listen(BACKLOG)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)

    async def drain(self, timeout: float) -> None:
        """Wait up to `timeout` for the requests still being answered to send their
        reply: a search the stop cut short would otherwise lose its connection with the
        process, instead of being told the daemon is stopping."""
        if self._answering:
            await asyncio.wait(set(self._answering), timeout=timeout)

    def _call(self, method: str, params: dict[str, Any]) -> Any:
        handler = self._handlers.get(method)
        if handler is None:
            raise UnknownMethod(f"unknown method {method!r}; known: {', '.join(self._handlers)}")
        return handler(params)

    def _pool(self, method: str, params: dict[str, Any]) -> ThreadPoolExecutor:
        schema = REQUESTS.get(method)
        if schema is not None and schema.long:
            return self._pools["long"]
        if schema is not None and schema.is_heavy(params):
            return self._pools["heavy"]
        return self._pools["cheap"]

    async def _handle_line(self, line: bytes) -> bytes:
        req_id: Any = None
        try:
            req = decode_request(line)
            req_id = req.id
            if (schema := REQUESTS.get(req.method)) is not None and schema.instant:
                return encode_result(req_id, self._call(req.method, req.params))
            loop = asyncio.get_running_loop()
            pool = self._pool(req.method, req.params)
            try:
                job = loop.run_in_executor(pool, self._call, req.method, req.params)
            except RuntimeError as exc:  # a line read as `close` shut the pools down
                raise Stopping(STOPPING_MESSAGE) from exc
            try:
                return encode_result(req_id, await job)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if job.cancelled() and task is not None and not task.cancelling():
                    # Queued behind busy workers when the stop shut the pools down: its
                    # client lost the connection without a reply.
                    raise Stopping(STOPPING_MESSAGE) from None
                raise
        except RcmdError as exc:
            return encode_error(req_id if req_id is not None else request_id_of(line), exc)
        except Exception as exc:
            log.exception("handler_failed")
            return encode_error(req_id, RcmdError(f"internal error: {type(exc).__name__}: {exc}"))

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._conns.admit(writer):
            log.warning("connection_refused", open=len(self._conns), limit=self._conns.limit)
            writer.write(encode_error(None, Busy(self._conns.refusal())))
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.drain(), 1.0)
            writer.close()
            return
        try:
            await self._serve_client(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            return
        finally:
            self._conns.release(writer)
            writer.close()
            self.activity += 1

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Answer one connection's requests in order until it closes or idles out."""
        while True:
            self._conns.idle(writer, True)
            try:
                line = await asyncio.wait_for(reader.readuntil(b"\n"), IDLE_TIMEOUT_S)
            except asyncio.IncompleteReadError as exc:
                line = exc.partial  # the last request may lack its newline
            except asyncio.LimitOverrunError as exc:
                self._conns.idle(writer, False)
                error = BadRequest(f"request line over {MAX_LINE_BYTES} bytes")
                await _send(writer, encode_error(None, error))
                await asyncio.wait_for(_skip_line(reader, exc.consumed), SKIP_TIMEOUT_S)
                continue
            self._conns.idle(writer, False)
            if not line:
                return
            if not line.strip():
                continue
            self.activity += 1
            answer = asyncio.ensure_future(self._answer(writer, line))
            self._answering.add(answer)
            answer.add_done_callback(self._answering.discard)
            await answer

    async def _answer(self, writer: asyncio.StreamWriter, line: bytes) -> None:
        await _send(writer, await self._handle_line(line))


async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Write a reply; a client that does not read it within WRITE_TIMEOUT_S is dropped
    (TimeoutError), so unread replies never pile up in the daemon's memory."""
    writer.write(data)
    await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)


def max_connections() -> int:
    """Connections served at once: the fd limit less a reserve for the daemon's own work
    (indexes, state, log), so clients can never make a batch fail with EMFILE."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(16, soft - max(FD_RESERVE, soft // 4))


class Connections:
    """The open connections and which of them wait idle for a request. At the limit, a
    new client takes the place of the longest-idle one (an editor reconnects on demand);
    only when every connection is mid-request is the new one refused."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._since: dict[asyncio.StreamWriter, float] = {}  # idle since (monotonic), or inf

    def __len__(self) -> int:
        return len(self._since)

    def admit(self, writer: asyncio.StreamWriter) -> bool:
        if len(self._since) >= self.limit:
            idle = [(t, id(w), w) for w, t in self._since.items() if t != math.inf]
            if not idle:
                return False
            _t, _id, oldest = min(idle)
            self.release(oldest)
            oldest.close()  # its pending read ends; its handler cleans up
        self._since[writer] = math.inf
        return True

    def idle(self, writer: asyncio.StreamWriter, idle: bool) -> None:
        if writer in self._since:
            self._since[writer] = time.monotonic() if idle else math.inf

    def release(self, writer: asyncio.StreamWriter) -> None:
        self._since.pop(writer, None)

    def refusal(self) -> str:
        return (
            f"the daemon serves {self.limit} connections at most and every one is busy; "
            "retry in a moment, or see: rcmd status"
        )
