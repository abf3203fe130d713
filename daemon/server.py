"""The Unix-socket server: newline-delimited JSON, many clients, handlers on threads.

The event loop only frames lines and routes them; every handler runs on a worker thread,
so one slow search, or one client that stalls mid-line, holds up nobody else. Methods that
block for long by design (`wait`, marked `long` in `ipc.requests`) run on a pool of their
own, so clients waiting for a root never take the workers other requests need. A line
over MAX_LINE_BYTES is refused without being buffered whole.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import structlog

from ipc.errors import BadRequest, RcmdError, StateError, UnknownMethod
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
#: sockaddr_un.sun_path is 108 bytes on Linux (104 on macOS), NUL included.
SUN_PATH_MAX = 104
#: Threads for long calls (`wait`): this many clients can wait at once; more queue behind
#: them, never behind or in front of other requests.
LONG_WORKERS = 64


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
    def __init__(self, handlers: dict[str, Handler], workers: int = 8) -> None:
        self._handlers = handlers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rcmd-req")
        self._long_pool = ThreadPoolExecutor(
            max_workers=LONG_WORKERS, thread_name_prefix="rcmd-wait"
        )
        self._long = frozenset(name for name, schema in REQUESTS.items() if schema.long)
        self._server: asyncio.AbstractServer | None = None
        self.requests = 0

    async def serve(self, sock: socket.socket) -> None:
        self._server = await asyncio.start_unix_server(
            self._client, sock=sock, limit=MAX_LINE_BYTES, backlog=BACKLOG
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._long_pool.shutdown(wait=False, cancel_futures=True)

    def _call(self, method: str, params: dict[str, Any]) -> Any:
        handler = self._handlers.get(method)
        if handler is None:
            raise UnknownMethod(f"unknown method {method!r}; known: {', '.join(self._handlers)}")
        return handler(params)

    async def _handle_line(self, line: bytes) -> bytes:
        req_id: Any = None
        try:
            req = decode_request(line)
            req_id = req.id
            loop = asyncio.get_running_loop()
            pool = self._long_pool if req.method in self._long else self._pool
            result = await loop.run_in_executor(pool, self._call, req.method, req.params)
            return encode_result(req_id, result)
        except RcmdError as exc:
            return encode_error(req_id if req_id is not None else request_id_of(line), exc)
        except Exception as exc:
            log.exception("handler_failed")
            return encode_error(req_id, RcmdError(f"internal error: {type(exc).__name__}: {exc}"))

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError as exc:
                    line = exc.partial  # the last request may lack its newline
                except asyncio.LimitOverrunError as exc:
                    writer.write(
                        encode_error(None, BadRequest(f"request line over {MAX_LINE_BYTES} bytes"))
                    )
                    await writer.drain()
                    await asyncio.wait_for(_skip_line(reader, exc.consumed), SKIP_TIMEOUT_S)
                    continue
                if not line:
                    return
                if not line.strip():
                    continue
                self.requests += 1
                writer.write(await self._handle_line(line))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            return
        finally:
            writer.close()
