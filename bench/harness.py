"""What every benchmark needs: a real daemon in its own RCMD_HOME (the shared driver of
ipc.driver), percentiles, and a place for results (`bench/results/<name>.json`, rendered
into docs/PERFORMANCE.md by `report`)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ipc.driver import DaemonDriver

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


def pct(values: Sequence[float], q: float) -> float:
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


class BenchDaemon(DaemonDriver):
    """`python -m daemon` in `home` (ipc.driver), for benchmarks of a single root."""

    def root(self) -> dict[str, Any]:
        return self.status()["roots"][0]  # type: ignore[no-any-return]


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


def dir_bytes(path: Path) -> int:
    """The sizes of every file under `path`, added up."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def copy_tree(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, symlinks=True)
    return dst


#: Ticks of /proc/<pid>/stat utime and stime per second.
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def machine_state() -> dict[str, Any]:
    """`lscpu`'s lines that explain a figure (CPU, threads per core, flags that matter
    to the model: VNNI) and the load average, now."""
    from daemon.cpus import VNNI_FLAGS

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in lscpu.splitlines())}
    keep = ("Model name", "CPU(s)", "Thread(s) per core", "CPU max MHz", "L3 cache")
    info = {k: fields[k] for k in keep if k in fields}
    info["vnni"] = str(not VNNI_FLAGS.isdisjoint(fields.get("Flags", "").split()))
    return {"lscpu": info, "loadavg": list(os.getloadavg())}
