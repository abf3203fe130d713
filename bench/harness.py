"""What every benchmark needs: a real daemon in its own RCMD_HOME, percentiles, and a place
for results (`bench/results/<name>.json`, rendered into docs/PERFORMANCE.md by `report`)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ipc.client import call, is_running
from ipc.paths import RuntimePaths, runtime_paths

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


def wait_for(pred: Callable[[], Any], timeout: float, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"benchmark step did not finish within {timeout:g}s")


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary_ms(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 2) if ms else 0.0,
        "p95_ms": round(pct(ms, 0.95), 2),
        "p99_ms": round(pct(ms, 0.99), 2),
        "max_ms": round(max(ms), 2) if ms else 0.0,
    }


def lexical_done(r: dict[str, Any]) -> bool:
    """Whether a root's status says every file is recorded (BM25 covers the tree): its
    first batch finished, or a lexical-first batch has read every file and only vectors
    are pending."""
    p = r["progress"]
    return bool(
        r["counters"]["batches"] >= 1
        or (r.get("vectors_pending") and p["files_done"] >= p["files_total"])
    )


@dataclass
class BenchDaemon:
    """`python -m daemon` in `home`, driven over its socket."""

    home: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "RCMD_HOME": str(self.home), **self.env_extra}

    @property
    def paths(self) -> RuntimePaths:
        return runtime_paths(self.env)

    def start(self) -> float:
        """Start it; seconds until it answers."""
        self.home.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        log = open(self.home / "daemon.out", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon"], env=self.env, stdout=log, stderr=log, cwd=REPO
        )
        wait_for(lambda: is_running(self.paths), 120)
        return time.perf_counter() - t

    def call(self, method: str, **params: Any) -> Any:
        return call(self.paths, method, **params)

    def root(self) -> dict[str, Any]:
        return self.call("status")["roots"][0]  # type: ignore[no-any-return]

    def idle_after(self, batches: int) -> dict[str, Any] | None:
        r = self.root()
        return r if r["idle"] and r["counters"]["batches"] >= batches else None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.call("stop")
            except Exception:
                self.proc.terminate()
        self.proc.wait(120)
        self.proc = None


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        "commit": commit or "unknown",
    }


def save(name: str, command: str, data: dict[str, Any]) -> Path:
    """Write `bench/results/<name>.json` with the machine and the command that made it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(
        json.dumps({"name": name, "command": command, "machine": machine(), **data}, indent=2)
        + "\n"
    )
    return out


def copy_tree(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, symlinks=True)
    return dst
