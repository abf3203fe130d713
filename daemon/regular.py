"""Opening a file inside a watched root for reading, safely.

A root is a tree anyone with write access shapes, and it changes under the daemon: a name
the scan saw as a regular file may be a FIFO, a socket or a device by the time it is
opened. Opening a FIFO for reading blocks until a writer comes, so one `mkfifo` in a
checkout could hang the pipeline or a `read` request forever. Every read of a file in a
root goes through `open_regular`: no final symlink followed, no blocking open, and
anything but a regular file refused.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


class NotRegularFile(OSError):
    """The name is something other than a regular file (a FIFO, socket, device)."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(errno.EINVAL, "not a regular file", str(path))


def open_regular(path: Path | str) -> tuple[int, os.stat_result]:
    """A read-only descriptor of `path` and its stat, for a regular file only; the caller
    closes it. Raises FileNotFoundError, NotRegularFile or another OSError. (O_NONBLOCK
    has no effect on a regular file's reads.)"""
    fd = os.open(path, _FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(path)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_regular(path: Path | str, max_bytes: int) -> tuple[bytes | None, os.stat_result]:
    """The bytes of the regular file `path` and its stat; None for the bytes when it
    holds more than `max_bytes` (by its size, or by what it grew to while read: at most
    one byte more is read)."""
    fd, st = open_regular(path)
    try:
        if st.st_size > max_bytes:
            return None, st
        parts: list[bytes] = []
        left = max_bytes + 1
        while left > 0:
            part = os.read(fd, min(left, 1 << 20))
            if not part:
                break
            parts.append(part)
            left -= len(part)
    finally:
        os.close(fd)
    data = b"".join(parts)
    return (None if len(data) > max_bytes else data), st


def read_text(path: Path | str, max_bytes: int) -> str:
    """The UTF-8 text of the regular file `path` (a manifest, a lock file): OSError when
    it is no regular file or holds more than `max_bytes` (a multiple of 1 MB), so a FIFO
    or a sparse file of terabytes cannot stall or fill the daemon."""
    data, _st = read_regular(path, max_bytes)
    if data is None:
        raise OSError(f"larger than {max_bytes >> 20} MB")
    return data.decode("utf-8")
