"""One driver for a real daemon process, shared by the tests and both benchmarks.

It starts `python -m daemon` in its own RCMD_HOME, calls methods over the socket, waits
for a root with the `wait` method (the daemon answers the moment the root is idle, no
status polling) and stops or kills the process. Start, stop, kill and wait live here
once; tests and benches add their conveniences in small subclasses.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ipc
from ipc.client import call, wait_root
from ipc.errors import DaemonNotRunning, RcmdError
from ipc.paths import RuntimePaths, runtime_paths

#: The directory `python -m daemon` runs in: the source checkout holding `ipc` and `daemon`.
SOURCE_ROOT = Path(ipc.__file__).resolve().parent.parent


class DaemonDriver:
    """A `python -m daemon` process in `home`; `env` entries override the environment
    (and may be changed between a `stop` and the next `start`)."""

    def __init__(
        self,
        home: Path,
        env: Mapping[str, str] | None = None,
        prefix: Sequence[str] = (),
        source: Path = SOURCE_ROOT,
    ) -> None:
        self.home = home
        #: The checkout whose daemon runs (another one's: a baseline in a benchmark).
        self.source = source
        self.env: dict[str, str] = {**os.environ, "RCMD_HOME": str(home), **(env or {})}
        self.paths: RuntimePaths = runtime_paths(self.env)
        #: A command the daemon runs under (`unshare -U -r --`, `prlimit --nofile=...`).
        self.prefix = list(prefix)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        """Where the process's stdout and stderr go."""
        return self.home / "daemon.out"

    def start(self, timeout: float = 180.0) -> float:
        """Start the daemon; returns the seconds until it answered `hello`."""
        self.home.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        with open(self.log, "ab") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [*self.prefix, sys.executable, "-m", "daemon"],
                env=self.env,
                stdout=out,
                stderr=out,
                cwd=self.source,
            )
        deadline = time.monotonic() + timeout
        try:
            while not self._answers():
                if time.monotonic() > deadline:
                    raise RcmdError(
                        f"the daemon did not answer within {timeout:g}s; see {self.log}"
                    )
                time.sleep(0.05)
        except BaseException:
            self.kill()  # a start that failed leaves no daemon behind
            raise
        return time.perf_counter() - t

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RcmdError(
                f"the daemon exited with {self.proc.returncode}:\n{self.log.read_text()}"
            )
        try:
            self.call("hello", timeout=30)
        except DaemonNotRunning:
            return False
        return True

    def call(self, method: str, timeout: float = 60.0, **params: Any) -> Any:
        return call(self.paths, method, timeout, **params)

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("status")
        return result

    def root_status(self, path: Path | str) -> dict[str, Any]:
        want = str(Path(path).resolve())
        return next(r for r in self.status()["roots"] if r["path"] == want)

    def wait(
        self,
        path: Path | str,
        timeout: float = 600.0,
        *,
        step_s: float = 60.0,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """The root's status once it is idle (work queued before this call counts);
        `progress` gets the root's status every `step_s` until then."""
        return wait_root(
            self.paths, str(Path(path).resolve()), timeout=timeout, step_s=step_s, progress=progress
        )

    def stop(self, timeout: float = 120.0) -> int:
        """Ask the daemon to stop (SIGTERM if it does not answer); its exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            try:
                self.call("stop")
            except RcmdError:
                self.proc.terminate()
        code = self.proc.wait(timeout)
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
