"""structlog set-up: JSON lines to the log file, and a readable copy on a terminal."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, TextIO

import structlog

#: The log is rotated past this size, keeping `KEEP_LOGS` old files (rcmd.log.1 ...).
MAX_LOG_BYTES = 10 << 20
KEEP_LOGS = 3


class _Sink:
    """Final logger: writes each event as a JSON line, and pretty to a TTY if given one.
    The file is rotated by size, so an attack or a noisy root cannot fill the disk."""

    def __init__(self, path: Path, tty: TextIO | None, max_bytes: int = MAX_LOG_BYTES) -> None:
        self._path = path
        self._max = max_bytes
        self._file = self._open()
        self._tty = tty
        self._console = structlog.dev.ConsoleRenderer(colors=False) if tty else None
        self.dropped = 0

    def _open(self) -> TextIO:
        return open(self._path, "a", buffering=1, encoding="utf-8")

    def _rotate(self) -> None:
        self._file.close()
        for n in range(KEEP_LOGS - 1, 0, -1):
            older = self._path.with_name(f"{self._path.name}.{n}")
            if older.exists():
                os.replace(older, self._path.with_name(f"{self._path.name}.{n + 1}"))
        os.replace(self._path, self._path.with_name(f"{self._path.name}.1"))
        self._file = self._open()

    def _emit(self, **event: Any) -> None:
        try:
            self._file.write(json.dumps(event, default=str) + "\n")
            self._file.flush()
            if self._file.tell() >= self._max:
                self._rotate()
        except OSError:
            self.dropped += 1  # a full disk must not turn logging into a crash
            return
        if self._tty is not None and self._console is not None:
            self._tty.write(str(self._console(None, "", dict(event))) + "\n")
            self._tty.flush()

    debug = info = warning = warn = error = critical = exception = msg = _emit


def configure(log_file: Path, level: str, foreground: bool, max_bytes: int = MAX_LOG_BYTES) -> None:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    tty = sys.stderr if foreground and sys.stderr.isatty() else None
    sink = _Sink(log_file, tty, max_bytes)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            lambda _logger, _name, event: event,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=lambda *_args: sink,
        cache_logger_on_first_use=True,
    )
