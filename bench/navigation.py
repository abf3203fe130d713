"""Navigation accuracy and latency on real code, against a `rg -w NAME` baseline.

    python -m bench.navigation [--queries 120] [--seed 7]

The corpora are rust-src's `library/alloc` and a few Debian crates. Each root's graph is
built in process into a real state.db (no Tantivy or vectors: only the graph is asked).
Names are drawn from the fns and methods defined there; for each, the reference sets are
found by text, independently of tree-sitter: definitions by `fn NAME` (and the other item
keywords), call sites by `NAME(` / `.NAME(` / `NAME::<..>(` outside `fn NAME(`. `rg -w`
(emulated with the same word regex when rg is absent) returns every line naming the word.
Figures: precision and recall of `def` and `callers` (by name, as an rg user would ask)
against those sets, the baseline's precision, the p50/p95 latency of each query (in
process, without the socket), and the seconds the chunker and the graph take.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from daemon.chunker import chunk_source
from daemon.graph import graph_of, navigate
from daemon.state import FileRecord, StateDB

CORPORA = (
    Path("/usr/lib/rustlib/src/rust/library/alloc"),
    Path("/usr/share/cargo/registry/memchr-2.5.0"),
    Path("/usr/share/cargo/registry/itertools-0.10.3"),
    Path("/usr/share/cargo/registry/crossbeam-channel-0.5.6"),
)
_ITEM = r"\b(?:fn|struct|enum|union|trait|type|const|static|mod|macro_rules!)\s+{}\b"
_CALL = r"(?:(?<![\w$])|\.\s*){}\s*(?:::<[^()]*>)?\s*\("


def build(corpus: Path, db: Path) -> tuple[StateDB, dict[str, list[str]]]:
    """The corpus's graph in a real state.db, and its files' lines."""
    state = StateDB(db)
    lines: dict[str, list[str]] = {}
    graphs = {}
    for path in sorted(corpus.rglob("*.rs")):
        rel = path.relative_to(corpus).as_posix()
        data = path.read_bytes()
        lines[rel] = data.decode("utf-8", "replace").split("\n")
        graphs[rel] = graph_of(rel, data)
    records = [FileRecord(p, 0, 0, 0, b"", 0) for p in graphs]
    state.record(records, [], [], {}, graphs=graphs)
    return state, lines


def text_sets(lines: dict[str, list[str]], name: str) -> dict[str, set[tuple[str, int]]]:
    """(path, line) sets by text: `rg` (word), `defs`, `calls`."""
    word = re.compile(rf"\b{re.escape(name)}\b")
    item = re.compile(_ITEM.format(re.escape(name)))
    call = re.compile(_CALL.format(re.escape(name)))
    out: dict[str, set[tuple[str, int]]] = {"rg": set(), "defs": set(), "calls": set()}
    for path, text in lines.items():
        for i, line in enumerate(text, 1):
            if not word.search(line):
                continue
            out["rg"].add((path, i))
            if line.lstrip().startswith("//"):
                continue  # comments and doc tests name code, they do not call it
            if item.search(line):
                out["defs"].add((path, i))
            elif call.search(line):
                out["calls"].add((path, i))
    return out


def _pr(got: set[tuple[str, int]], want: set[tuple[str, int]]) -> tuple[float, float]:
    hit = len(got & want)
    return (hit / len(got) if got else 1.0, hit / len(want) if want else 1.0)


def evaluate(corpus: Path, queries: int, seed: int, work: Path) -> dict[str, Any]:
    state, lines = build(corpus, work / f"{corpus.name}.db")
    conn = state.graph_reader()
    names = sorted(
        {
            str(r[0])
            for r in conn.execute("SELECT name FROM graph_defs WHERE kind IN ('fn','method')")
        }
    )
    picked = random.Random(seed).sample(names, min(queries, len(names)))
    rows: dict[str, list[float]] = {k: [] for k in ("def_p", "def_r", "call_p", "call_r", "rg_p")}
    lat: dict[str, list[float]] = {"def": [], "callers": []}
    for name in picked:
        truth = text_sets(lines, name)
        got = {}
        for method in ("def", "callers"):
            t = time.perf_counter()
            res = navigate([(conn, str(corpus), None)], method, name, 1000)["results"]
            lat[method].append((time.perf_counter() - t) * 1000)
            got[method] = {(h["path"], h["line"]) for h in res}
        for key, method, want in (("def", "def", "defs"), ("call", "callers", "calls")):
            p, r = _pr(got[method], truth[want])
            rows[f"{key}_p"].append(p)
            rows[f"{key}_r"].append(r)
        rows["rg_p"].append(_pr(truth["rg"], truth["defs"] | truth["calls"])[0])
    state.close()
    out: dict[str, Any] = {"corpus": str(corpus), "files": len(lines), "queries": len(picked)}
    out.update({k: round(statistics.mean(v), 3) for k, v in rows.items() if v})
    for method, values in lat.items():
        values.sort()
        out[f"{method}_p50_ms"] = round(values[len(values) // 2], 2)
        out[f"{method}_p95_ms"] = round(values[int(len(values) * 0.95)], 2)
    return out


def cost(corpus: Path) -> dict[str, Any]:
    """Seconds the chunker and the graph take over the corpus, file by file as the
    pipeline runs them (the graph reuses the chunker's parse)."""
    chunk_s = graph_s = 0.0
    for path in sorted(corpus.rglob("*.rs")):
        rel, data = path.relative_to(corpus).as_posix(), path.read_bytes()
        t = time.perf_counter()
        chunk_source(rel, data)
        t2 = time.perf_counter()
        graph_of(rel, data)
        chunk_s += t2 - t
        graph_s += time.perf_counter() - t2
    return {"chunk_s": round(chunk_s, 3), "graph_s": round(graph_s, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.navigation")
    parser.add_argument("--queries", type=int, default=40, help="names per corpus")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("bench/results/navigation.json"))
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for corpus in CORPORA:
            if corpus.is_dir():
                results.append(evaluate(corpus, args.queries, args.seed, Path(tmp)))
                results[-1].update(cost(corpus))
                print(json.dumps(results[-1]))
    report: dict[str, Any] = {
        "command": "python -m bench.navigation",
        "date": time.strftime("%Y-%m-%d"),
        "results": results,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
