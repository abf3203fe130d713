"""What a daemon costs while nothing changes: CPU and wake-ups per second with N idle
roots watched, this checkout against an older one measured in the same run.

Each measurement starts a daemon in a fresh home, registers N copies of the fixture
crate, waits until every root is idle and a few seconds more, then samples the
process's CPU time (/proc/PID/stat) and the context switches of all its threads
(/proc/PID/task/*/status: each wake-up of a sleeping thread is one) over `--seconds`;
then it times `EDITS` saves in the last root until a search finds what each added.
Checkouts and root counts are interleaved, run by run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import REPO, BenchDaemon, copy_tree, cpu_s, machine_state, save

FIXTURE = REPO / "tests" / "fixtures" / "demo_crate"
#: Seconds idle before sampling (the daemon's quiet-tick clean-up runs first).
SETTLE_S = 8.0
#: Edits timed after the idle sample, each until a search finds what it added.
EDITS = 5


def switches(pid: int) -> int:
    """Context switches of every thread of `pid` so far."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            text = status.read_text()
        except OSError:  # a thread that ended meanwhile
            continue
        for line in text.splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def measure(source: Path, roots: int, seconds: float, work: Path) -> dict[str, Any]:
    """One daemon of `source` with `roots` idle roots: CPU % and wake-ups/s."""
    d = BenchDaemon(work / "home", {"PYTHONPATH": str(source)}, source=source)
    d.start()
    try:
        trees = [copy_tree(FIXTURE, work / "roots" / f"crate{i}") for i in range(roots)]
        for tree in trees:
            d.call("index", path=str(tree))
        for tree in trees:
            d.wait(tree)
        time.sleep(SETTLE_S)
        assert d.proc is not None
        pid = d.proc.pid
        cpu0, sw0, t0 = cpu_s(pid), switches(pid), time.monotonic()
        time.sleep(seconds)
        cpu1, sw1, t1 = cpu_s(pid), switches(pid), time.monotonic()
        threads = sum(1 for _ in Path(f"/proc/{pid}/task").iterdir())
        edits = [edit_to_found(d, trees[-1], k) for k in range(EDITS)]
    finally:
        d.stop()
    return {
        "cpu_pct": round(100 * (cpu1 - cpu0) / (t1 - t0), 3),
        "wakeups_per_s": round((sw1 - sw0) / (t1 - t0), 1),
        "threads": threads,
        "edit_ms": [round(e * 1000, 1) for e in edits],
    }


def edit_to_found(d: BenchDaemon, tree: Path, k: int) -> float:
    """Seconds from appending a new fn to a file of `tree` until a symbol search finds it
    (polled every 5 ms)."""
    name = f"edit_probe_{k}"
    lib = tree / "src" / "lib.rs"
    t = time.perf_counter()
    with lib.open("a") as f:
        f.write(f"\npub fn {name}() -> u32 {{ {k} }}\n")
    deadline = t + 30
    while not d.call("search", symbol=name, limit=1)["results"]:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{name} not found after 30 s")
        time.sleep(0.005)
    return time.perf_counter() - t


def run(args: argparse.Namespace) -> None:
    counts = [int(n) for n in args.roots.split(",")]
    sources = {"this": REPO}
    if args.checkout:
        sources["baseline"] = Path(args.checkout).resolve()
    samples: dict[str, dict[int, list[dict[str, Any]]]] = {
        name: {n: [] for n in counts} for name in sources
    }
    before = machine_state()
    for i in range(args.runs):
        for n in counts:
            for name, source in sources.items():
                with tempfile.TemporaryDirectory(prefix="rcmd-bench-idle-") as tmp:
                    got = measure(source, n, args.seconds, Path(tmp))
                samples[name][n].append(got)
                print(f"run {i + 1} {name:8s} {n:3d} roots: {got}", flush=True)
    out = {
        "sources": {k: str(v) for k, v in sources.items()},
        "seconds": args.seconds,
        "runs": args.runs,
        "state_before": before,
        "state_after": machine_state(),
        "results": {
            name: {str(n): _summary(runs) for n, runs in by_n.items()}
            for name, by_n in samples.items()
        },
    }
    command = f"python -m bench idle --roots {args.roots} --runs {args.runs}"
    command += f" --seconds {args.seconds:g}" + (
        f" --checkout {args.checkout}" if args.checkout else ""
    )
    print(save("idle", command, out))


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    cpu = [r["cpu_pct"] for r in runs]
    wake = [r["wakeups_per_s"] for r in runs]
    return {
        "cpu_pct_median": round(statistics.median(cpu), 3),
        "cpu_pct_runs": cpu,
        "wakeups_per_s_median": round(statistics.median(wake), 1),
        "wakeups_per_s_runs": wake,
        "threads": runs[-1]["threads"],
        "edit_ms_median": round(statistics.median(e for r in runs for e in r["edit_ms"]), 1),
        "edit_ms_max": max(e for r in runs for e in r["edit_ms"]),
    }
