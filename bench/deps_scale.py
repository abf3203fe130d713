"""What `rcmd index PROJECT --deps` costs a daemon once it is idle, for a project with
many dependency crates: threads, file descriptors, RSS and wake-ups a second.

A project's Cargo.lock names the N smallest crates of Debian's registry
(`/usr/share/cargo/registry`, found by `daemon.deps` as a user's would be); each becomes
one dependency root. Each run starts a daemon in a fresh home (its embedding cache
copied from the first run's, so later runs embed nothing), indexes the project alone,
samples it, indexes it with `--deps`, waits until every root is idle, `--idle-s`
(`[index] dependency_idle_s`, shortened from 300 s) and `SETTLE_S` more, and samples
again: threads (/proc/PID/task), descriptors (/proc/PID/fd), RSS and the context
switches of all threads over `--seconds` (each wake-up of a sleeping thread is one).
Then a `--deps` search is timed twice (the first opens parked crates' stores again),
and threads and descriptors are read again, after `STATUS_CLIENTS` status requests at
once, and in a restarted daemon idle as long.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.harness import REPO, BenchDaemon, cpu_s, machine_state, save
from bench.idle import switches
from daemon.deps import DEBIAN_REGISTRY

_CRATE = re.compile(r"^(?P<name>.+)-(?P<version>\d+\.\d+\.\d+.*)$")
#: A query that every small crate's code answers in part (BM25 and vectors both run).
QUERY = "return an error when the value is missing"
#: Seconds idle, past `--idle-s`, before a sample (the quiet-tick clean-up runs first).
SETTLE_S = 10.0
#: Status requests sent at once after the searches (the daemon serves 8 at a time).
STATUS_CLIENTS = 16


def smallest_crates(n: int) -> list[tuple[str, str]]:
    """(name, version) of the `n` registry crates with the fewest bytes of .rs files
    (one version a name), smallest first; ties by name."""
    sized: dict[str, tuple[int, str, str]] = {}
    for folder in sorted(DEBIAN_REGISTRY.iterdir()):
        m = _CRATE.match(folder.name)
        if not m or not (folder / "Cargo.toml").is_file():
            continue
        size = sum(f.stat().st_size for f in folder.rglob("*.rs") if f.is_file())
        if size == 0:
            continue
        entry = (size, m["name"], m["version"])
        sized[m["name"]] = min(sized.get(m["name"], entry), entry)
    return [(name, ver) for _size, name, ver in sorted(sized.values())[:n]]


def make_project(folder: Path, crates: list[tuple[str, str]]) -> Path:
    """A one-file crate whose Cargo.lock takes `crates` from crates.io."""
    (folder / "src").mkdir(parents=True, exist_ok=True)
    (folder / "Cargo.toml").write_text('[package]\nname = "app"\nversion = "0.1.0"\n')
    (folder / "src" / "lib.rs").write_text("/// Adds one.\npub fn inc(x: u32) -> u32 { x + 1 }\n")
    lock = ['version = 3\n\n[[package]]\nname = "app"\nversion = "0.1.0"\n']
    src = 'source = "registry+https://github.com/rust-lang/crates.io-index"'
    lock += [f'\n[[package]]\nname = "{n}"\nversion = "{v}"\n{src}\n' for n, v in crates]
    (folder / "Cargo.lock").write_text("".join(lock))
    return folder


def snapshot(pid: int) -> dict[str, Any]:
    """Threads (by name), descriptors (by kind) and RSS of `pid` now."""
    names: collections.Counter[str] = collections.Counter()
    for comm in Path(f"/proc/{pid}/task").glob("*/comm"):
        try:
            names[re.sub(r"[-_ ]?\d+$", "", comm.read_text().strip())] += 1
        except OSError:
            continue
    kinds: collections.Counter[str] = collections.Counter()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        kinds[_fd_kind(target)] += 1
    status = {
        k: int(v.split()[0]) // 1024
        for k, _, v in (
            ln.partition(":") for ln in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
        if k in ("VmRSS", "RssAnon", "RssFile")
    }
    return {
        "threads": sum(names.values()),
        "fds": sum(kinds.values()),
        "rss_mb": status["VmRSS"],
        "rss_file_mb": status["RssFile"],
        "thread_names": dict(names.most_common(12)),
        "fd_kinds": dict(kinds.most_common()),
    }


def _fd_kind(target: str) -> str:
    if not target.startswith("/"):
        return target.split(":", 1)[0]  # socket, pipe, anon_inode
    for part in ("state.db", "tantivy", "qdrant", "embeddings", "cache"):
        if part in target:
            return part
    return "other file"


def idle_rate(pid: int, seconds: float) -> dict[str, float]:
    cpu0, sw0, t0 = cpu_s(pid), switches(pid), time.monotonic()
    time.sleep(seconds)
    cpu1, sw1, t1 = cpu_s(pid), switches(pid), time.monotonic()
    return {
        "cpu_pct": round(100 * (cpu1 - cpu0) / (t1 - t0), 3),
        "wakeups_per_s": round((sw1 - sw0) / (t1 - t0), 1),
    }


def measure(args: argparse.Namespace, crates: list[tuple[str, str]], work: Path) -> dict[str, Any]:
    """One daemon: the project alone, then with its crates, idle and after a search."""
    home = work / "home"
    seed = Path(args.work) / "seed-cache"
    if seed.is_dir():
        shutil.copytree(seed, home / "cache")
    env = {"PYTHONPATH": str(REPO), "RCMD_INDEX_DEPENDENCY_IDLE_S": str(args.idle_s)}
    d = BenchDaemon(home, env, prefix=["nice", "-n", str(args.nice)])
    d.start()
    try:
        assert d.proc is not None
        pid = d.proc.pid
        proj = make_project(work / "proj", crates)
        d.call("index", path=str(proj))
        d.wait(proj)
        time.sleep(SETTLE_S)
        alone = {**snapshot(pid), **idle_rate(pid, args.seconds)}
        t = time.perf_counter()
        reply = d.call("index", path=str(proj), deps=True, timeout=600)
        for root in reply["deps"]["roots"]:
            d.wait(root["path"], timeout=3600)
        index_s = time.perf_counter() - t
        time.sleep(args.idle_s + SETTLE_S)
        idle = {**snapshot(pid), **idle_rate(pid, args.seconds)}
        searches = [_search_s(d, proj) for _ in range(2)]
        after = snapshot(pid)
        _status_burst(d, STATUS_CLIENTS)
        burst = snapshot(pid)
        restarted = _restarted(d, [Path(r["path"]) for r in reply["deps"]["roots"]], args.idle_s)
        roots = len(d.status()["roots"])
    finally:
        d.stop()
    if not seed.is_dir():
        shutil.copytree(home / "cache", seed)
    return {
        "dep_roots": len(reply["deps"]["roots"]),
        "roots_in_status": roots,
        "index_deps_s": round(index_s, 1),
        "project_alone": alone,
        "with_deps_idle": idle,
        "deps_search_ms": [round(s * 1000, 1) for s in searches],
        "after_search": {k: after[k] for k in ("threads", "fds", "rss_mb", "rss_file_mb")},
        "after_status_burst": {k: burst[k] for k in ("threads", "fds", "rss_mb", "rss_file_mb")},
        "restarted_idle": restarted,
    }


def _restarted(d: BenchDaemon, deps: list[Path], idle_s: float) -> dict[str, Any]:
    """Threads, descriptors and RSS once a restarted daemon (every store loaded from
    disk, none created) has been idle as long as the first."""
    d.stop()
    d.start()
    for dep in deps:
        d.wait(dep)
    time.sleep(idle_s + SETTLE_S)
    assert d.proc is not None
    got = snapshot(d.proc.pid)
    return {k: got[k] for k in ("threads", "fds", "rss_mb", "rss_file_mb")}


def _status_burst(d: BenchDaemon, clients: int) -> None:
    """`clients` status calls at once: each reads every root's state.db, on a read
    connection lent per read (`daemon.sqlite.ReadPool`; one per thread, for good, before)."""
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda _: d.status(), range(clients)))


def _search_s(d: BenchDaemon, proj: Path) -> float:
    t = time.perf_counter()
    got = d.call("search", query=QUERY, root=str(proj), deps=True, limit=10)
    took = time.perf_counter() - t
    if not any(h["root"] != str(proj) for h in got["results"]):
        raise AssertionError(f"a --deps search found nothing in the crates: {got}")
    return took


def run(args: argparse.Namespace) -> None:
    crates = smallest_crates(args.crates)
    before = machine_state()
    runs = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="rcmd-bench-deps-") as tmp:
            got = measure(args, crates, Path(tmp))
        runs.append(got)
        print(f"run {i + 1}: {got}", flush=True)
    out = {
        "crates": len(crates),
        "runs": args.runs,
        "seconds": args.seconds,
        "state_before": before,
        "state_after": machine_state(),
        "summary": _summary(runs),
        "last_run": runs[-1],
    }
    command = f"python -m bench depscale --crates {args.crates} --runs {args.runs}"
    command += f" --seconds {args.seconds:g} --idle-s {args.idle_s:g}"
    print(save("depscale", command, out))


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(part: str, key: str) -> float:
        return round(float(statistics.median(r[part][key] for r in runs)), 1)

    out: dict[str, Any] = {}
    for part in ("project_alone", "with_deps_idle"):
        for key in ("threads", "fds", "rss_mb", "rss_file_mb", "wakeups_per_s", "cpu_pct"):
            out[f"{part}.{key}_median"] = med(part, key)
    for key in ("threads", "fds", "rss_mb", "rss_file_mb"):
        out[f"after_search.{key}_median"] = med("after_search", key)
        out[f"after_status_burst.{key}_median"] = med("after_status_burst", key)
        out[f"restarted_idle.{key}_median"] = med("restarted_idle", key)
    out["wakeups_per_s_runs"] = [r["with_deps_idle"]["wakeups_per_s"] for r in runs]
    out["first_deps_search_ms_median"] = statistics.median(r["deps_search_ms"][0] for r in runs)
    out["second_deps_search_ms_median"] = statistics.median(r["deps_search_ms"][1] for r in runs)
    out["index_deps_s_runs"] = [r["index_deps_s"] for r in runs]
    return out
