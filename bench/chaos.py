"""An attack, not a benchmark of speed: random file-system churn against a live daemon,
then the question "is its index exactly what a fresh index of the final tree would be?"

A root is built from real crates (Debian's `librust-*-dev` sources). While the daemon
indexes it, seeded random operations hit it: edits, atomic saves, deletions,
truncations, invalid UTF-8, directory renames, whole crates copied in and removed, deep
trees, files over the size cap, directories named `*.rs`, FIFOs (also in place of an
indexed file) and symlinks out of the root. `status` and `search` are timed throughout,
with a `fresh` search for a fn saved just before (is it found?), and every 250 operations
comes a forced rebuild or a graceful stop and start.
With `--kill`, the daemon is SIGKILLed a third of the way in, the churn goes on while it
is down, and it is started again. Once it is idle: `verify` (disk, state.db, Tantivy
and Qdrant agree), then a second daemon indexes a copy of the final tree and the two
`state.db`s are compared row by row (files and hashes, chunks with their text, the
symbol graph).

    python -m bench chaos --seed 1 --seconds 90
    python -m bench chaos --seed 4 --seconds 90 --kill
    python -m bench chaos --seed 10 --crates tokio-1.24.2,syn-1.0.107,serde-1.0.152
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import stat
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import BenchDaemon, save, summary_ms

REGISTRY = Path("/usr/share/cargo/registry")
CRATES = (
    "itertools-0.10.3",
    "nom-7.1.1",
    "bytes-1.2.1",
    "either-1.6.1",
    "log-0.4.17",
    "smallvec-1.9.0",
    "memchr-2.5.0",
    "petgraph-0.6.2",
    "indexmap-1.9.2",
    "hashbrown-0.12.3",
)
#: The daemon's default `[index] max_file_bytes`: a fresh check saves into smaller files.
MAX_FILE_BYTES = 1 << 20
GRAPH_TABLES = ("sym_defs", "sym_refs", "sym_impls", "sym_imports", "sym_files")

Op = Callable[[random.Random, Path], None]


def _crates(chosen: str) -> list[str]:
    """`--crates`: how many of `CRATES`, or registry folder names, comma-separated."""
    return list(CRATES[: int(chosen)]) if chosen.isdigit() else chosen.split(",")


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.rs") if p.is_file() and not p.is_symlink()]


def _dirs(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_dir() and not p.is_symlink()] + [root]


def _write_text(path: Path, text: str) -> None:
    """`path.write_text(text)`, failing (ENXIO, counted as raced) where an earlier op left
    a FIFO at that name: opened for writing, a FIFO blocks until a reader comes, and a
    run hung there for good (`too_large` after `fifo_over_file` took its big file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK, 0o644)
    with open(fd, "w") as f:
        f.write(text)


def append(rnd: random.Random, root: Path) -> None:
    with open(rnd.choice(_files(root)), "a") as f:
        f.write(f"\npub fn chaos_{rnd.randrange(10**6)}() -> u32 {{ {rnd.randrange(99)} }}\n")


def atomic_save(rnd: random.Random, root: Path) -> None:
    f = rnd.choice(_files(root))
    tmp = f.with_name(f".{f.name}.tmp")
    _write_text(tmp, f.read_text(errors="replace") + "\n// edited\n")
    os.replace(tmp, f)


def delete(rnd: random.Random, root: Path) -> None:
    rnd.choice(_files(root)).unlink()


def truncate(rnd: random.Random, root: Path) -> None:
    open(rnd.choice(_files(root)), "w").close()


def invalid_utf8(rnd: random.Random, root: Path) -> None:
    with open(rnd.choice(_files(root)), "ab") as f:
        f.write(b"\n// \xff\xfe\xc3\x28 bad\n")


def rename_dir(rnd: random.Random, root: Path) -> None:
    d = rnd.choice([d for d in _dirs(root) if d != root])
    d.rename(d.with_name(f"{d.name}_mv{rnd.randrange(1000)}"))


def fifo(rnd: random.Random, root: Path) -> None:
    os.mkfifo(rnd.choice(_dirs(root)) / f"pipe{rnd.randrange(1000)}.rs")


def fifo_over_file(rnd: random.Random, root: Path) -> None:
    f = rnd.choice(_files(root))
    f.unlink()
    os.mkfifo(f)


def link_out(rnd: random.Random, root: Path) -> None:
    (rnd.choice(_dirs(root)) / f"link{rnd.randrange(1000)}.rs").symlink_to("/etc/passwd")


def deep_tree(rnd: random.Random, root: Path) -> None:
    d = root.joinpath(*[f"d{i}" for i in range(rnd.randrange(5, 40))])
    d.mkdir(parents=True, exist_ok=True)
    _write_text(d / "deep.rs", "pub struct Deep;\n")


def add_crate(rnd: random.Random, root: Path) -> None:
    name = rnd.choice(CRATES)
    shutil.copytree(REGISTRY / name, root / f"{name}_{rnd.randrange(1000)}", symlinks=True)


def remove_crate(rnd: random.Random, root: Path) -> None:
    tops = [d for d in root.iterdir() if d.is_dir()]
    if len(tops) > 3:
        shutil.rmtree(rnd.choice(tops))


def too_large(rnd: random.Random, root: Path) -> None:
    _write_text(rnd.choice(_dirs(root)) / f"big{rnd.randrange(100)}.rs", "// x\n" * 300_000)


def dir_named_rs(rnd: random.Random, root: Path) -> None:
    (rnd.choice(_dirs(root)) / f"notafile{rnd.randrange(100)}.rs").mkdir(exist_ok=True)


#: Each operation and its weight.
OPS: dict[str, tuple[Op, int]] = {
    "append": (append, 10),
    "atomic_save": (atomic_save, 8),
    "delete": (delete, 4),
    "truncate": (truncate, 2),
    "invalid_utf8": (invalid_utf8, 2),
    "rename_dir": (rename_dir, 3),
    "fifo": (fifo, 1),
    "fifo_over_file": (fifo_over_file, 1),
    "link_out": (link_out, 1),
    "deep_tree": (deep_tree, 1),
    "add_crate": (add_crate, 1),
    "remove_crate": (remove_crate, 1),
    "too_large": (too_large, 1),
    "dir_named_rs": (dir_named_rs, 1),
}


def _one_op(rnd: random.Random, root: Path, done: Counter[str]) -> None:
    name = rnd.choices(list(OPS), [w for _, w in OPS.values()])[0]
    try:
        OPS[name][0](rnd, root)
        done[name] += 1
    except (OSError, IndexError):  # raced with an earlier op (a gone file): skip it
        done["raced"] += 1


def _regular_or_dir_or_link(folder: str, names: list[str]) -> list[str]:
    """copytree's ignore: what it cannot copy (FIFOs)."""
    keep = (stat.S_ISDIR, stat.S_ISREG, stat.S_ISLNK)
    return [n for n in names if not any(k(os.lstat(os.path.join(folder, n)).st_mode) for k in keep)]


def _state(home: Path) -> dict[str, Any]:
    """What a state.db holds, keyed by root-relative path (so two roots compare)."""
    db = sqlite3.connect(next(home.glob("state/roots/*/state.db")))
    try:
        chunks = db.execute(
            "SELECT path, start_line, end_line, symbol, kind, signature, text FROM chunks"
        )
        return {
            "files": dict(db.execute("SELECT path, hash FROM files")),
            "chunks": Counter(chunks),
            **{t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in GRAPH_TABLES},
        }
    finally:
        db.close()


def _compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {
        "files": [len(a["files"]), len(b["files"])],
        "file_hashes_differ": sum(1 for p, h in a["files"].items() if b["files"].get(p) != h)
        + len(set(b["files"]) - set(a["files"])),
        "chunks": [sum(a["chunks"].values()), sum(b["chunks"].values())],
        "chunks_only_in_churned": sum((a["chunks"] - b["chunks"]).values()),
        "chunks_only_in_fresh": sum((b["chunks"] - a["chunks"]).values()),
        "graph_rows": {t: [a[t], b[t]] for t in GRAPH_TABLES},
    }


def _fresh_check(
    d: BenchDaemon, root: Path, rnd: random.Random
) -> tuple[float, dict[str, Any] | None]:
    """Save a new fn into a file and search for it with `fresh`: the seconds from the
    save to the answer ("up to date the moment I save"), and what was seen when the fn
    was not found (None when it was)."""
    name = f"saved_just_now_{rnd.randrange(10**9)}"
    target = rnd.choice([f for f in _files(root) if f.stat().st_size < MAX_FILE_BYTES // 2])
    t = time.perf_counter()
    with open(target, "a") as f:
        f.write(f"\npub fn {name}() {{}}\n")
    try:
        reply = d.call("search", query=name, mode="bm25", limit=3, fresh=True, timeout=120)
    except Exception as exc:  # a timeout or an error reply: reported as not found
        return time.perf_counter() - t, {"path": str(target.relative_to(root)), "error": str(exc)}
    took = time.perf_counter() - t
    if any(r["symbol"].endswith(name) for r in reply["results"]):
        return took, None
    return took, {"path": str(target.relative_to(root)), "results": reply["results"][:1]}


class _Churn:
    """The churn loop's counters and timings."""

    def __init__(self) -> None:
        self.done: Counter[str] = Counter()
        self.status_s: list[float] = []
        self.status_at: list[float] = []
        self.search_s: list[float] = []
        self.search_at: list[float] = []
        self.fresh_s: list[float] = []
        self.fresh_misses: list[dict[str, Any]] = []
        self.daemon_ops: Counter[str] = Counter()

    def to_json(self) -> dict[str, Any]:
        return {
            "ops": dict(self.done),
            "daemon_ops": dict(self.daemon_ops),
            "status": summary_ms(self.status_s),
            "slowest_status_at_s": sorted(zip(self.status_s, self.status_at, strict=True))[-3:],
            "search": summary_ms(self.search_s),
            "slowest_searches_at_s": sorted(zip(self.search_s, self.search_at, strict=True))[-3:],
            "fresh_searches": summary_ms(self.fresh_s),
            "fresh_missed": len(self.fresh_misses),
            "fresh_misses": self.fresh_misses[:10],
        }


def _timed_requests(d: BenchDaemon, root: Path, rnd: random.Random, c: _Churn, at: float) -> None:
    t = time.perf_counter()
    d.status()
    c.status_s.append(time.perf_counter() - t)
    c.status_at.append(round(at, 1))
    t = time.perf_counter()
    d.call("search", query="iterator adaptor", limit=10)
    c.search_s.append(time.perf_counter() - t)
    c.search_at.append(round(at, 1))
    took, miss = _fresh_check(d, root, rnd)
    c.fresh_s.append(took)
    if miss is not None:
        c.fresh_misses.append(miss)


def _daemon_op(d: BenchDaemon, root: Path, rnd: random.Random, c: _Churn) -> None:
    """Now and then: a forced rebuild, or a graceful stop and start, mid-churn."""
    if rnd.random() < 0.5:
        d.call("reindex", path=str(root), force=True)
        c.daemon_ops["reindex_force"] += 1
    else:
        d.stop()
        d.start()
        d.call("index", path=str(root))
        c.daemon_ops["stop_start"] += 1


def _churn(
    d: BenchDaemon, root: Path, rnd: random.Random, seconds: float, kill: bool
) -> dict[str, Any]:
    c = _Churn()
    killed_at = None
    start = time.monotonic()
    while (now := time.monotonic() - start) < seconds:
        if kill and killed_at is None and now > seconds / 3:
            killed_at = round(now, 1)
            d.kill()  # SIGKILL: nothing is committed or closed
            for _ in range(150):  # while it is down
                _one_op(rnd, root, c.done)
            d.start()
            d.call("index", path=str(root))
        _one_op(rnd, root, c.done)
        ops = sum(c.done.values())
        if ops % 10 == 0:
            _timed_requests(d, root, rnd, c, now)
        if ops % 250 == 0:
            _daemon_op(d, root, rnd, c)
        time.sleep(rnd.random() * 0.05)
    return {**c.to_json(), "killed_at_s": killed_at}


def run(args: argparse.Namespace) -> dict[str, Any]:
    base = Path(args.work) / f"chaos-{args.seed}"
    shutil.rmtree(base, ignore_errors=True)
    root, final = base / "root", base / "final"
    for name in _crates(args.crates):
        shutil.copytree(REGISTRY / name, root / name, symlinks=True)
    rnd = random.Random(args.seed)
    churned = BenchDaemon(base / "home-churned")
    churned.start()
    try:
        churned.call("index", path=str(root))
        churn = _churn(churned, root, rnd, args.seconds, args.kill)
        churned.wait(root, timeout=1800)
        verify = churned.call("verify", timeout=600)["roots"][0]
    finally:
        churned.stop()
    shutil.copytree(root, final, symlinks=True, ignore=_regular_or_dir_or_link)
    fresh = BenchDaemon(base / "home-fresh")
    fresh.start()
    try:
        fresh.call("index", path=str(final))
        fresh.wait(final, timeout=1800)
    finally:
        fresh.stop()
    compared = _compare(_state(base / "home-churned"), _state(base / "home-fresh"))
    out = {
        "seed": args.seed,
        "seconds": args.seconds,
        "kill": args.kill,
        **churn,
        "verify_ok": verify["ok"],
        "verify_problems": verify["problems"][:10],
        "state_vs_fresh_index": compared,
        "same_as_fresh": compared["file_hashes_differ"] == 0
        and compared["chunks_only_in_churned"] == compared["chunks_only_in_fresh"] == 0
        and all(a == b for a, b in compared["graph_rows"].values()),
    }
    flags = (" --kill" if args.kill else "") + (
        f" --crates {args.crates}" if args.crates != "6" else ""
    )
    save(
        f"chaos-{args.seed}{'-kill' if args.kill else ''}",
        f"python -m bench chaos --seed {args.seed} --seconds {args.seconds:g}{flags}",
        out,
    )
    return out
