"""structlog set-up: JSON lines to the log file, and a readable copy on a terminal."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, TextIO

import structlog


class _Sink:
    """Final logger: writes each event as a JSON line, and pretty to a TTY if given one."""

    def __init__(self, file: TextIO, tty: TextIO | None) -> None:
        self._file = file
        self._tty = tty
        self._console = structlog.dev.ConsoleRenderer(colors=False) if tty else None
        self.dropped = 0

    def _emit(self, **event: Any) -> None:
        try:
            self._file.write(json.dumps(event, default=str) + "\n")
            self._file.flush()
        except OSError:
            self.dropped += 1  # a full disk must not turn logging into a crash
            return
        if self._tty is not None and self._console is not None:
            self._tty.write(str(self._console(None, "", dict(event))) + "\n")
            self._tty.flush()

    debug = info = warning = warn = error = critical = exception = msg = _emit


def configure(log_file: Path, level: str, foreground: bool) -> None:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    file = open(log_file, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 (lives as long as the process)
    tty = sys.stderr if foreground and sys.stderr.isatty() else None
    sink = _Sink(file, tty)
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
