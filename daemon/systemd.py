"""What systemd hands a service, without libsystemd: a listening socket (socket
activation, `LISTEN_FDS`) and a notification socket (`Type=notify`, `NOTIFY_SOCKET`).

Both protocols are a few lines (sd_listen_fds(3), sd_notify(3)); under launchd or in a
terminal neither variable is set and these functions do nothing.
"""

from __future__ import annotations

import os
import socket

SD_LISTEN_FDS_START = 3


def listen_socket(env: dict[str, str] | None = None) -> socket.socket | None:
    """The Unix listening socket systemd passed us, if any (the first one)."""
    env = dict(os.environ) if env is None else env
    try:
        pid = int(env.get("LISTEN_PID", "0"))
        count = int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        return None
    if pid != os.getpid() or count < 1:
        return None
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)  # not for our children
    sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        sock.detach()
        return None
    sock.setblocking(False)
    return sock


class Notifier:
    """Sends sd_notify messages (READY=1, STATUS=..., STOPPING=1) when NOTIFY_SOCKET is set."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        env = dict(os.environ) if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace
        self._address = address
        self._last_status = ""

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, message: str) -> bool:
        if not self._address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.sendto(message.encode(), self._address)
        except OSError:
            return False
        return True

    def ready(self, status: str) -> None:
        self.send(f"READY=1\nSTATUS={status}\nMAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        if status != self._last_status:
            self._last_status = status
            self.send(f"STATUS={status}")

    def stopping(self) -> None:
        self.send("STOPPING=1\nSTATUS=stopping")
