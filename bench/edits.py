"""What one save costs (issue 20): differential chunking against the code before it, in
the same run.

    python -m bench edits [--runs 3 --edits 15 --saves 50 --baseline 62c4c71]

Two scenarios, each on a real daemon of this checkout and on one of `--baseline` (the
commit exported with `git archive`, run from its own folder), in fresh homes seeded with
the same embedding cache (so neither embeds the unchanged code):

* big file: a ~1 MB Rust file of ~3,000 items; each save changes one line inside one
  fn (same line count). Edit→searchable is the time from the write to the answer of a
  `fresh` BM25 search that finds the new word (the daemon's cookie sync: no polling);
  daemon CPU is its utime+stime from the write until it is idle again (vector filled).
* typing: 50 saves of a 5,000-line file, a character typed into one fn per save, each
  followed by a fresh search; daemon CPU seconds over the session.

Each is repeated `--runs` times: medians and spreads across runs, with the load average
and `lscpu` of the machine.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

from bench.harness import REPO, BenchDaemon, cpu_s, machine_state, save


def rust_file(items: int, pad: int = 0) -> str:
    """`items` documented items (nine fns to a struct), each fn with `pad` extra lines."""
    parts = ["//! Generated for `python -m bench edits`.\nuse std::fmt;\n\n"]
    for i in range(items):
        if i % 10 == 9:
            parts.append(
                f"/// Record number {i}.\n#[derive(Debug, Clone)]\npub struct Rec{i} {{\n"
                "    pub a: u64,\n    pub b: String,\n}\n\n"
            )
            continue
        extra = "".join(f"    let p{k} = base ^ {k + i};\n" for k in range(pad))
        parts.append(
            f"/// Computes value {i} from its input and a label.\n"
            f"pub fn compute_{i}(x: u64, y: &str) -> u64 {{\n"
            f"    let base = x.wrapping_mul({i}) ^ (y.len() as u64);\n"
            f'    let label = "value {i} for the report";\n{extra}'
            f"    if base % 3 == 0 {{\n        return base + label.len() as u64;\n    }}\n"
            f"    base.rotate_left({i % 63})\n}}\n\n"
        )
    return "".join(parts)


def export_commit(commit: str, dst: Path) -> Path:
    """The tree of `commit` in `dst` (git archive: the repository is not touched)."""
    blob = subprocess.run(
        ["git", "archive", "--format=tar", commit], cwd=REPO, capture_output=True, check=True
    ).stdout
    dst.mkdir(parents=True)
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(dst, filter="data")
    return dst


def start(home: Path, source: Path, seed: Path | None) -> BenchDaemon:
    """A daemon of the code in `source`, its embedding cache seeded from `seed`."""
    if seed is not None:
        (home / "cache").mkdir(parents=True, exist_ok=True)
        shutil.copy(seed, home / "cache" / "embeddings.db")
    # `python -m daemon` imports from its working directory: run it in `source`.
    d = BenchDaemon(home, {"PYTHONPATH": str(source)}, ["env", "-C", str(source)])
    d.start()
    return d


def _save_and_find(d: BenchDaemon, path: Path, text: str, word: str) -> tuple[float, float]:
    """Write `text` (holding the new `word`); seconds until a fresh search finds it, and
    daemon CPU seconds until the daemon is idle again."""
    pid = d.proc.pid if d.proc else 0
    cpu0 = cpu_s(pid)
    t = time.perf_counter()
    path.write_text(text)
    hits = d.call("search", query=word, mode="bm25", limit=1, fresh=True)["results"]
    seconds = time.perf_counter() - t
    if not hits:
        raise RuntimeError(f"{word} not found after its save")
    d.wait(path.parent.parent)
    return seconds, cpu_s(pid) - cpu0


def _index(d: BenchDaemon, tree: Path) -> dict[str, Any]:
    d.call("index", path=str(tree))
    return d.wait(tree, 1800)


def big_file_run(d: BenchDaemon, tree: Path, base: str, edits: int) -> dict[str, Any]:
    """One run of the big-file scenario on a started daemon."""
    path = tree / "src" / "big.rs"
    path.write_text(base)
    _index(d, tree)
    latencies: list[float] = []
    cpus: list[float] = []
    written: list[int] = []
    parses: set[str] = set()
    text = base
    for i in range(edits):
        n = (i * 7919) % 2700 // 10 * 10 + 3  # a fn (not a struct), spread over the file
        word = f"marker{i}x{int(time.time() * 1000) % 100000}"
        # Edits accumulate, as in an editor: each save changes one more line.
        text = text.replace(f'"value {n} for the report"', f'"value {n} {word}"', 1)
        before = d.status()
        seconds, cpu = _save_and_find(d, path, text, word)
        after = d.status()
        latencies.append(seconds)
        cpus.append(cpu)
        # Counters, not last_batch: the vector batch that follows a save replaces it.
        counts = [s["roots"][0]["counters"]["chunks_written"] for s in (before, after)]
        written.append(counts[1] - counts[0])
        parses.add(_parse_of(before, after))
    return {
        "latency_s": latencies,
        "cpu_s": cpus,
        "chunks_written": written,
        "parse": sorted(parses),
        "rss_bytes": d.status()["rss_bytes"],
        "parse_cache": d.status().get("parse_cache"),
    }


def _parse_of(before: dict[str, Any], after: dict[str, Any]) -> str:
    """How a save was parsed, from the parse cache's counters (absent before issue 20)."""
    if "parse_cache" not in after:
        return "full (no parse cache)"
    was, now = before["parse_cache"], after["parse_cache"]
    grew = {k for k in ("incremental", "full") if now[k] > was[k]}
    return "+".join(sorted(grew)) or "none"


def typing_run(d: BenchDaemon, tree: Path, base: str, saves: int) -> dict[str, Any]:
    """One run of the typing scenario: `saves` saves, a character typed into one fn each."""
    path = tree / "src" / "typed.rs"
    path.write_text(base)
    _index(d, tree)
    pid = d.proc.pid if d.proc else 0
    cpu0 = cpu_s(pid)
    typed = ""
    latencies = []
    for i in range(saves):
        typed += "abcdefghijklmnopqrstuvwxyz"[i % 26]
        word = f"typed{typed}"
        text = base.replace('"value 301 for the report"', f'"value 301 {word}"', 1)
        latencies.append(_save_and_find(d, path, text, word)[0])
    return {"cpu_s": cpu_s(pid) - cpu0, "latency_s": latencies}


def _spread(values: list[float], scale: float = 1.0, digits: int = 1) -> dict[str, float]:
    v = [x * scale for x in values]
    return {
        "median": round(statistics.median(v), digits),
        "min": round(min(v), digits),
        "max": round(max(v), digits),
    }


Runner = Callable[[BenchDaemon, Path, str, int], dict[str, Any]]


def _scenario(
    work: Path, sources: dict[str, Path], seed: Path, run_one: Runner, base: str, n: int, runs: int
) -> dict[str, list[dict[str, Any]]]:
    """`runs` rounds of `run_one` per code version, alternating versions each round."""
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in sources}
    for r in range(runs):
        for name, source in sources.items():
            tree = work / f"tree-{name}-{r}"
            (tree / "src").mkdir(parents=True)
            (tree / "src" / "lib.rs").write_text("pub mod big;\npub mod typed;\n")
            d = start(work / f"home-{name}-{r}-{run_one.__name__}", source, seed)
            try:
                out[name].append(run_one(d, tree, base, n))
            finally:
                d.stop()
            shutil.rmtree(tree)
    return out


def _warm_seed(work: Path, texts: dict[str, str]) -> Path:
    """An embedding cache that holds every chunk of `texts` (made by this checkout)."""
    tree = work / "seed-tree"
    (tree / "src").mkdir(parents=True)
    for name, text in texts.items():
        (tree / "src" / name).write_text(text)
    d = start(work / "seed-home", REPO, None)
    try:
        _index(d, tree)
    finally:
        d.stop()
    return work / "seed-home" / "cache" / "embeddings.db"


def _summarize(results: dict[str, list[dict[str, Any]]], key: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, runs in results.items():
        if key == "typing":
            out[name] = {
                "cpu_s_total": _spread([r["cpu_s"] for r in runs], digits=2),
                "latency_p50_ms": _spread([statistics.median(r["latency_s"]) for r in runs], 1000),
            }
            continue
        out[name] = {
            "latency_p50_ms": _spread([statistics.median(r["latency_s"]) for r in runs], 1000),
            "latency_max_ms": _spread([max(r["latency_s"]) for r in runs], 1000),
            "cpu_per_save_ms": _spread([statistics.median(r["cpu_s"]) for r in runs], 1000),
            "chunks_written_max": max(max(r["chunks_written"]) for r in runs),
            "parse": sorted({p for r in runs for p in r["parse"]}),
            "rss_mb": _spread([r["rss_bytes"] / 2**20 for r in runs]),
            "parse_cache": runs[-1]["parse_cache"],
        }
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    big = rust_file(3000, pad=2)
    typed = rust_file(515, pad=0)
    with tempfile.TemporaryDirectory(prefix="rcmd-bench-edits-") as tmp:
        work = Path(tmp)
        sources = {"new": REPO, "baseline": export_commit(args.baseline, work / "baseline")}
        before = machine_state()
        seed = _warm_seed(work, {"big.rs": big, "typed.rs": typed})
        big_runs = _scenario(work, sources, seed, big_file_run, big, args.edits, args.runs)
        typing_runs = _scenario(work, sources, seed, typing_run, typed, args.saves, args.runs)
    out = {
        "baseline": args.baseline,
        "big_file": {"bytes": len(big.encode()), "lines": big.count("\n"), "items": 3000},
        "typing_file": {"bytes": len(typed.encode()), "lines": typed.count("\n")},
        "runs": args.runs,
        "edits_per_run": args.edits,
        "saves_per_run": args.saves,
        "machine_before": before,
        "machine_after": machine_state(),
        "big": _summarize(big_runs, "big"),
        "typing": _summarize(typing_runs, "typing"),
        "raw": {"big": big_runs, "typing": typing_runs},
    }
    save("edits", f"python -m bench edits --runs {args.runs} --edits {args.edits}", out)
    return {k: v for k, v in out.items() if k != "raw"}
