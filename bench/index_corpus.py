"""Every daemon scenario of the performance issue on one corpus, with a real daemon.

    python -m bench index medium [--clients 50 --load-seconds 120 --edits 20 --queries 200]

In a fresh RCMD_HOME (empty embedding cache) on a private copy of the corpus:
cold index (progress timeline, time to the first BM25 hit, status latency, and `--clients`
searching throughout the first `--load-seconds`), peak and idle RSS, search latency
(hybrid and BM25) against `rg` on the same identifiers, edit-to-searchable, a forced
reindex on the warm cache, and a no-change restart. Writes bench/results/<corpus>.json.
"""

from __future__ import annotations

import random
import re
import shutil
import signal
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench.corpora import materialize
from bench.harness import BenchDaemon, dir_bytes, lexical_done, save, summary_ms, wait_for
from ipc.client import call

IDENT = re.compile(rb"\bpub fn ([a-z][a-z0-9_]{5,})")


def identifiers(tree: Path, n: int, seed: int = 1) -> list[str]:
    """`n` distinct public function names of the corpus, sampled with a fixed seed."""
    names: set[str] = set()
    for f in sorted(tree.rglob("*.rs")):
        try:
            names.update(m.decode() for m in IDENT.findall(f.read_bytes()))
        except OSError:
            continue
    pool = sorted(names)
    random.Random(seed).shuffle(pool)
    return pool[:n]


class Load:
    """`clients` threads, each searching in a loop until stopped; latencies and errors."""

    def __init__(self, d: BenchDaemon, queries: list[str], clients: int) -> None:
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(d, queries, i), daemon=True)
            for i in range(clients)
        ]

    def _run(self, d: BenchDaemon, queries: list[str], i: int) -> None:
        k = i
        while not self._stop.is_set():
            q = queries[k % len(queries)]
            k += len(self._threads)
            t = time.perf_counter()
            try:
                d.call("search", query=q, limit=10)
            except Exception as exc:
                with self._lock:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            with self._lock:
                self.latencies.append(time.perf_counter() - t)

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        for t in self._threads:
            t.join(30)
        return {
            "clients": len(self._threads),
            "searches": len(self.latencies),
            "errors": len(self.errors),
            "error_examples": self.errors[:3],
            "over_1s": sum(1 for s in self.latencies if s > 1.0),
            **summary_ms(self.latencies),
        }


def cold_index(d: BenchDaemon, tree: Path, args: Any, probes: list[str]) -> dict[str, Any]:
    status_s: list[float] = []
    timeline: list[dict[str, Any]] = []
    first_hit: float | None = None
    lexical_s: float | None = None
    load = Load(d, probes, args.clients) if args.clients else None
    t0 = time.perf_counter()
    d.call("index", path=str(tree))
    if load:
        load.start()
    load_result: dict[str, Any] | None = None
    last_sample = 0.0
    while True:
        now = time.perf_counter() - t0
        if load and load_result is None and now >= args.load_seconds:
            load_result = load.stop()
        t = time.perf_counter()
        r = d.root()
        status_s.append(time.perf_counter() - t)
        if first_hit is None:
            hits = d.call("search", query=probes[0], mode="bm25", limit=1)["results"]
            if hits:
                first_hit = time.perf_counter() - t0
        if now - last_sample >= 5:
            last_sample = now
            timeline.append(
                {
                    "t_s": round(now, 1),
                    "files": r["files"],
                    "chunks": r["chunks"],
                    "progress": r["progress"],
                    "rss_mb": d.call("status")["rss_bytes"] >> 20,
                }
            )
        if lexical_s is None and lexical_done(r):
            lexical_s = time.perf_counter() - t0  # every file is searchable with BM25
            if args.lexical_only:
                break
        if r["idle"] and r["counters"]["batches"] >= 1 and not r.get("vectors_pending"):
            break
        time.sleep(0.2)
    seconds = time.perf_counter() - t0
    if load and load_result is None:
        load_result = load.stop()
    status = d.call("status")
    return {
        "files": r["files"],
        "chunks": r["chunks"],
        "seconds": round(seconds, 1),
        "chunks_per_s": round(r["chunks"] / seconds, 1),
        "first_bm25_hit_s": round(first_hit, 1) if first_hit is not None else None,
        "lexical_complete_s": round(lexical_s, 1) if lexical_s is not None else None,
        "stages_s": r["counters"]["stages_s"],
        "cache_misses": status["embedding"]["cache_misses"],
        "peak_rss_mb": status["peak_rss_bytes"] >> 20,
        "status_latency": summary_ms(status_s),
        "load": load_result,
        "timeline": timeline,
    }


def search_latency(d: BenchDaemon, tree: Path, names: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in ("hybrid", "bm25"):
        times = []
        for q in names:
            t = time.perf_counter()
            call(d.paths, "search", query=q, mode=mode, limit=10)
            times.append(time.perf_counter() - t)
        out[mode] = summary_ms(times)
    rg = shutil.which("rg")
    if rg:
        rg_times, ours = [], []
        for q in names[:50]:
            t = time.perf_counter()
            subprocess.run([rg, "-n", "-w", "-F", q, str(tree)], capture_output=True)
            rg_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            call(d.paths, "search", query=q, mode="hybrid", limit=10)
            ours.append(time.perf_counter() - t)
        out["rg_vs_hybrid"] = {
            "queries": len(rg_times),
            "rg_p50_ms": round(statistics.median(rg_times) * 1000, 1),
            "hybrid_p50_ms": round(statistics.median(ours) * 1000, 1),
            "speedup": round(statistics.median(rg_times) / statistics.median(ours), 1),
        }
    return out


def navigation_latency(d: BenchDaemon, names: list[str]) -> dict[str, Any]:
    """Client wall time of each navigation query (issue 23: p50 <= 20 ms on medium) over
    the corpus's public fn names, and how many answers each gave."""
    out: dict[str, Any] = {"queries": len(names)}
    for method in ("def", "refs", "callers", "callees", "impls"):
        times, answers = [], []
        for name in names:
            t = time.perf_counter()
            reply = call(d.paths, method, name=name, limit=50)
            times.append(time.perf_counter() - t)
            answers.append(reply["total"])
        out[method] = {**summary_ms(times), "answers_p50": statistics.median(answers)}
    return out


def state_size(home: Path) -> dict[str, Any]:
    """Bytes the root's state takes on disk, and the symbol graph's share: its `sym_*`
    tables and indexes in state.db (dbstat), against everything else the root keeps
    (issue 23: the graph adds <= 15%). The shared caches are not the root's state."""
    import apsw

    (root_dir,) = (home / "state" / "roots").iterdir()
    total = dir_bytes(root_dir)
    db = apsw.Connection(str(root_dir / "state.db"), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        row = db.execute("SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'sym%'").fetchone()
    finally:
        db.close()
    graph = int(row[0] or 0) if row else 0
    return {
        "root_mb": round(total / 1e6, 1),
        "graph_mb": round(graph / 1e6, 1),
        "graph_vs_rest": round(graph / max(total - graph, 1), 3),
    }


def words_latency(d: BenchDaemon) -> dict[str, Any]:
    """Questions in words: the library corpus's first 150 doc-comment queries and its
    hand-written questions (bench.quality), written about the code the small and medium
    trees hold; each mode's client wall time and the reply's own `took_ms`."""
    from bench.quality.corpora import BY_NAME
    from bench.quality.runs import CorpusSets

    sets = CorpusSets.load(BY_NAME["library"])
    questions = [q.query for q in sets.doc[:150]] + [q.query for q in sets.hand]
    out: dict[str, Any] = {"queries": len(questions)}
    for mode in ("hybrid", "bm25", "vector"):
        wall, took = [], []
        for q in questions:
            t = time.perf_counter()
            reply = call(d.paths, "search", query=q, mode=mode, limit=10)
            wall.append(time.perf_counter() - t)
            took.append(reply["took_ms"] / 1000)
        out[mode] = {"client": summary_ms(wall), "server": summary_ms(took)}
    return out


def edits(d: BenchDaemon, tree: Path, n: int) -> dict[str, Any]:
    files = sorted(tree.rglob("*.rs"))
    latencies = []
    missed: list[str] = []
    for i in range(n):
        target = files[(i * 7919) % len(files)]
        word = f"edit_marker_{i}_{int(time.time())}"
        text = target.read_text(errors="replace")
        t = time.perf_counter()
        target.write_text(text + f"\npub fn {word}() {{}}\n")

        def found(w: str = word) -> bool:
            hits = d.call("search", query=w, mode="hybrid", limit=1)["results"]
            return bool(hits) and hits[0]["symbol"].endswith(w)

        try:
            wait_for(found, 60, 0.01)
        except TimeoutError:
            missed.append(target.relative_to(tree).as_posix())
            continue
        latencies.append(time.perf_counter() - t)
    s = summary_ms(latencies)
    return {
        "n": n,
        "not_found_within_60s": missed,
        **{f"{k}_s": round(s[f"{k}_ms"] / 1000, 3) for k in ("p50", "p95", "max")},
    }


def forced_reindex(d: BenchDaemon, tree: Path, cold_s: float) -> dict[str, Any]:
    # The edits before it wait for BM25 only: their vectors may still be on the way, and
    # a text not embedded yet is a cache miss that says nothing about the cache.
    d.wait(tree, 600)
    before = d.call("status")["embedding"]
    t = time.perf_counter()
    d.call("reindex", path=str(tree), force=True)
    r = d.wait(tree, 7200)  # the rebuild is queued before `reindex` answers
    seconds = time.perf_counter() - t
    after = d.call("status")["embedding"]
    return {
        "seconds": round(seconds, 2),
        "chunks": r["chunks"],
        "cache_hits": after["cache_hits"] - before["cache_hits"],
        "cache_misses": after["cache_misses"] - before["cache_misses"],
        "speedup_vs_cold": round(cold_s / seconds, 1),
    }


def restart(d: BenchDaemon) -> dict[str, Any]:
    """Stop, start again, and time until the startup scan found nothing to do."""
    d.stop()
    t = time.perf_counter()
    answer_s = d.start()
    r = d.wait(d.root()["path"], 600)  # the startup scan is queued before the socket answers
    seconds = time.perf_counter() - t
    files = r["counters"]["files_statted"]
    scan = r["counters"]["stages_s"].get("scan", 0.0)
    return {
        "seconds_to_up_to_date": round(seconds, 2),
        "seconds_to_answer": round(answer_s, 2),
        "files_statted": files,
        "files_read": r["counters"]["files_read"],
        "scan_us_per_file": round(scan / max(files, 1) * 1e6, 1),
        "rss_mb": d.call("status")["rss_bytes"] >> 20,
    }


def _profile(d: BenchDaemon, svg: str) -> subprocess.Popen[bytes]:
    """py-spy sampling the daemon (and its children) until interrupted."""
    spy = shutil.which("py-spy")
    if spy is None or d.proc is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    return subprocess.Popen(
        [spy, "record", "--pid", str(d.proc.pid), "--rate", "20", "--subprocesses", "-o", svg],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run(args: Any) -> dict[str, Any]:
    work = Path(args.work) / args.corpus.replace(":", "_")
    home = work / "home"
    if args.resume:
        # The tree and index of an earlier run: everything after the cold index.
        tree = work / "tree"
        if not (tree.is_dir() and home.is_dir()):
            raise SystemExit(f"--resume needs an earlier run's {tree} and {home}")
    else:
        tree = materialize(args.corpus, work / "tree")
        shutil.rmtree(home, ignore_errors=True)
    names = identifiers(tree, max(args.queries, 1))
    d = BenchDaemon(home)
    d.start()
    out: dict[str, Any] = {"corpus": args.corpus}
    profiler = _profile(d, args.profile) if args.profile else None
    try:
        if args.resume:
            out["resumed"] = True
            out["start_rss_mb"] = d.call("status")["rss_bytes"] >> 20
            r = d.wait(tree, 600)
            out["cold"] = {"seconds": args.resume, "files": r["files"], "chunks": r["chunks"]}
        else:
            out["cold"] = cold_index(d, tree, args, names)
        if args.lexical_only:
            return out
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)  # py-spy writes the flame graph and exits
            profiler.wait(120)
            out["profile"] = args.profile
        print(f"cold: {out['cold']['seconds']} s, {out['cold']['chunks']} chunks", flush=True)
        time.sleep(args.idle_wait)
        out["idle_rss_mb"] = d.call("status")["rss_bytes"] >> 20
        out["search"] = search_latency(d, tree, names[: args.queries])
        out["navigation"] = navigation_latency(d, names[: args.queries])
        out["state"] = state_size(home)
        out["edits"] = edits(d, tree, args.edits)
        if not args.skip_reindex:
            out["reindex_force"] = forced_reindex(d, tree, out["cold"]["seconds"])
        out["restart"] = restart(d)
        out["verify_ok"] = d.call("verify")["ok"]
        out["final_rss_mb"] = d.call("status")["rss_bytes"] >> 20
    except Exception as exc:  # keep what was measured
        out["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        d.stop()
        flags = " --lexical-only" if args.lexical_only else ""
        flags += f" --resume {args.resume:g}" if args.resume else ""
        flags += f" --clients {args.clients}"
        flags += f" --load-seconds {args.load_seconds:g}" if args.clients else ""
        # A lexical pass under search load is the load scenario: its own result, so it
        # does not replace the quiet lexical pass that target 2 reads.
        kind = "index" if not args.lexical_only else "load" if args.clients else "lexical"
        name = f"{kind}-{args.corpus.replace(':', '_')}"
        save(name, f"python -m bench index {args.corpus}{flags}", out)
    return out


def search_only(args: Any) -> dict[str, Any]:
    """Search latency (and the `rg` comparison) on the tree and index an earlier
    `python -m bench index CORPUS` run left in the work dir; pending vectors, if any,
    keep filling in meanwhile, so the figure is a conservative one."""
    work = Path(args.work) / args.corpus.replace(":", "_")
    tree, home = work / "tree", work / "home"
    if not (tree.is_dir() and home.is_dir()):
        raise SystemExit(f"run `python -m bench index {args.corpus}` first ({tree})")
    d = BenchDaemon(home)
    d.start()
    try:
        wait_for(lambda: d.root()["counters"]["batches"] >= 1, 600, 0.1)
        r = d.root()
        out: dict[str, Any] = {
            "corpus": args.corpus,
            "chunks": r["chunks"],
            "vectors_pending": r["vectors_pending"],
            "search": search_latency(d, tree, identifiers(tree, args.queries)),
            "words": words_latency(d),
        }
    finally:
        d.stop()
    save(f"search-{args.corpus.replace(':', '_')}", f"python -m bench search {args.corpus}", out)
    return out
