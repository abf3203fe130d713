"""Navigation accuracy and latency on real code, against a `rg -w NAME` baseline.

    python -m bench.navigation [--per-bucket 10] [--seed 7] [--misses misses.json]

Corpora are held out whole: dev is rust-src's `library/alloc` and memchr, test is
itertools, crossbeam-channel, bytes and nom (Debian's crates), so nothing tuned on dev
is scored on test. Each corpus's graph is built in process into a real state.db (no
Tantivy or vectors: only the graph is asked) and queried through `daemon.graph.navigate`
by bare name, as an rg user would ask. Labels come from text alone
(`bench.navigation_truth`, whose docstring states each kind's rule), so the graph is
judged against something that cannot share its mistakes.

Queries, deterministic by seed, per corpus: `--per-bucket` names for each of `def`,
`refs`, `callers` and `impls` (traits and types) in each bucket, and as many `callees`
of unique fns. A name is `unique` when the corpus defines it once and no dependency
(core/alloc/std, the crates its Cargo.toml names) does, else `common` (`new`, `len`,
`push`): by-text labels of a common name count every item of that name, which is what a
bare-name query asks. Apart from `def`, only names with at least one labelled answer are
asked, and `refs`/`impls` skip names some item also declares as a type parameter (`T`),
whose uses text cannot tell from the item's. Figures per corpus and pooled per split:
precision (over the queries that got any answer) and recall (over all), averaged per
query, and pooled over answers (`micro_*`); the same for `rg -w` (which has no callees
answer); the p50/p95 latency of every method (in process, without the socket); the
seconds the chunker and the graph take.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw

from bench import navigation_truth as truth
from bench.harness import pct
from daemon.chunker import chunk_source
from daemon.crate_names import read_names
from daemon.graph import graph_of, navigate
from daemon.graph_rows import rows_of
from daemon.state import FileRecord, StateDB

RUST_SRC = Path("/usr/lib/rustlib/src/rust/library")
REGISTRY = Path("/usr/share/cargo/registry")
CORPORA: tuple[tuple[str, Path], ...] = (
    ("dev", RUST_SRC / "alloc"),
    ("dev", REGISTRY / "memchr-2.5.0"),
    ("test", REGISTRY / "itertools-0.10.3"),
    ("test", REGISTRY / "crossbeam-channel-0.5.6"),
    ("test", REGISTRY / "bytes-1.2.1"),
    ("test", REGISTRY / "nom-7.1.1"),
)
KINDS = ("def", "refs", "callers", "callees", "impls")
BUCKETS = ("unique", "common")
#: Item keywords of the names each kind asks about.
_POOLS = {
    "def": {"fn", "struct", "enum", "union", "trait", "type", "const", "static", "macro_rules"},
    "refs": {"fn", "struct", "enum", "union", "trait", "type", "const", "static", "macro_rules"},
    "callers": {"fn"},
    "callees": {"fn"},
    "impls": {"trait", "struct", "enum", "union"},
}
_NAME = re.compile(r"[A-Za-z_]\w*")
#: Big enough never to cut an answer (the protocol caps clients at 1000).
_LIMIT = 1_000_000
Key = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Query:
    kind: str
    name: str
    bucket: str
    site: truth.Definition | None = None  # callees: the one fn asked about


def build(corpus: Path, db: Path) -> tuple[StateDB, dict[str, str]]:
    """The corpus's graph in a real state.db, and its files' text."""
    state = StateDB(db)
    texts: dict[str, str] = {}
    graphs = {}
    for path in sorted(corpus.rglob("*.rs")):
        rel = path.relative_to(corpus).as_posix()
        data = path.read_bytes()
        texts[rel] = data.decode("utf-8", "replace")
        graphs[rel] = rows_of(graph_of(rel, data))
    records = [FileRecord(p, 0, 0, 0, b"", 0) for p in graphs]
    state.record(records, [], [], {}, graphs=graphs)
    return state, texts


def foreign_names(corpus: Path) -> frozenset[str]:
    """Names the corpus's dependencies define: rust-src's core, alloc and std (less the
    corpus itself), and the registry crates its Cargo.toml names."""
    roots = [RUST_SRC / lib for lib in ("core", "alloc", "std") if RUST_SRC / lib != corpus]
    roots += truth.dependencies(corpus, REGISTRY)
    out: set[str] = set()
    for root in roots:
        if root.is_dir():
            out |= truth.names_defined_in(root)
    return frozenset(out)


def labels(corpus: truth.Corpus, q: Query) -> set[Key]:
    """The query's labelled answers: (path, line), or (path, line, callee) for callees."""
    if q.kind == "def":
        return set(truth.definitions(corpus, q.name))
    if q.kind == "refs":
        return set(truth.refs(corpus, q.name))
    if q.kind == "callers":
        return set(truth.callers(corpus, q.name))
    if q.kind == "impls":
        return set(truth.impls(corpus, q.name))
    assert q.site is not None
    return set(truth.callees(corpus, q.site) or ())


def pick(
    corpus: truth.Corpus, foreign: frozenset[str], per: int, seed: int, label: str
) -> list[Query]:
    """`per` names a kind and bucket, drawn by seed among the corpus's definitions; only
    names with a labelled answer (all have a definition)."""
    out: list[Query] = []
    names = sorted(n for n in corpus.defs if _NAME.fullmatch(n))
    bucket = {n: "unique" if truth.is_unique(corpus, n, foreign) else "common" for n in names}
    for kind in KINDS:
        for b in BUCKETS if kind != "callees" else ("unique",):
            pool = [
                n
                for n in names
                if bucket[n] == b
                and _POOLS[kind] & {d.keyword for d in corpus.defs[n]}
                and (kind in ("def", "callers", "callees") or n not in corpus.generics)
            ]
            random.Random(f"{seed}:{label}:{kind}:{b}").shuffle(pool)
            taken = 0
            for name in pool:
                if taken == per:
                    break
                q = _query(corpus, kind, name, b)
                if q is not None and labels(corpus, q):
                    out.append(q)
                    taken += 1
    return out


def _query(corpus: truth.Corpus, kind: str, name: str, bucket: str) -> Query | None:
    if kind != "callees":
        return Query(kind, name, bucket)
    fns = [d for d in corpus.defs[name] if d.keyword == "fn"]
    return Query(kind, name, bucket, fns[0]) if len(fns) == 1 else None


def answer(conn: apsw.Connection, root: str, q: Query) -> tuple[set[Key], float]:
    """The graph's answer as label keys, and the query's milliseconds."""
    t = time.perf_counter()
    hits = navigate([(conn, root, None, read_names(Path(root)))], q.kind, q.name, _LIMIT)["results"]
    ms = (time.perf_counter() - t) * 1000
    if q.kind == "callees":
        return {(h["path"], h["line"], _last(h["symbol"])) for h in hits}, ms
    return {(h["path"], h["line"]) for h in hits}, ms


def _last(symbol: str) -> str:
    return symbol.replace(" ", "").replace("\n", "").rsplit("::", 1)[-1]


@dataclass
class Tally:
    """Precision and recall of one tool over a set of queries."""

    precision: list[float] = field(default_factory=list)
    recall: list[float] = field(default_factory=list)
    hit: int = 0
    got: int = 0
    want: int = 0

    def add(self, got: set[Key], want: set[Key]) -> None:
        hit = len(got & want)
        if got:
            self.precision.append(hit / len(got))
        self.recall.append(hit / len(want) if want else 1.0)
        self.hit, self.got, self.want = self.hit + hit, self.got + len(got), self.want + len(want)

    def summary(self) -> dict[str, Any]:
        def mean(v: list[float]) -> float | None:
            return round(statistics.mean(v), 3) if v else None

        return {
            "p": mean(self.precision),
            "r": mean(self.recall),
            "micro_p": round(self.hit / self.got, 3) if self.got else None,
            "micro_r": round(self.hit / self.want, 3) if self.want else None,
            "answered": len(self.precision),
        }


Tallies = dict[tuple[str, str, str, str], Tally]  # (scope, kind, bucket, tool)


def evaluate(
    split: str, corpus: Path, per: int, seed: int, work: Path, tallies: Tallies
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One corpus: its figures (tallied under the corpus and its split) and its misses."""
    state, texts = build(corpus, work / f"{corpus.name}.db")
    labelled = truth.load(texts)
    queries = pick(labelled, foreign_names(corpus), per, seed, corpus.name)
    with state.reading() as conn:
        lat, misses = _ask(conn, corpus, queries, labelled, split, tallies)
    state.close()
    out: dict[str, Any] = {"corpus": str(corpus), "split": split, "files": len(texts)}
    out["queries"] = {k: sum(q.kind == k for q in queries) for k in KINDS}
    out["accuracy"] = _accuracy(tallies, corpus.name)
    for method in KINDS:
        out[f"{method}_p50_ms"] = round(pct(lat[method], 0.5), 2)
        out[f"{method}_p95_ms"] = round(pct(lat[method], 0.95), 2)
    return out, misses


def _ask(
    conn: apsw.Connection,
    corpus: Path,
    queries: list[Query],
    labelled: truth.Corpus,
    split: str,
    tallies: Tallies,
) -> tuple[dict[str, list[float]], list[dict[str, Any]]]:
    """Every query of one corpus, tallied under the corpus and its split: the latencies
    by kind and the misses."""
    lat: dict[str, list[float]] = defaultdict(list)
    misses: list[dict[str, Any]] = []
    for q in queries:
        want = labels(labelled, q)
        got, ms = answer(conn, str(corpus), q)
        lat[q.kind].append(ms)
        rg = None if q.kind == "callees" else set(truth.rg(labelled, q.name))
        for scope in (corpus.name, split):
            tallies[(scope, q.kind, q.bucket, "rcmd")].add(got, want)
            if rg is not None:
                tallies[(scope, q.kind, q.bucket, "rg")].add(rg, want)
        if got != want:
            misses.append(_miss(labelled, corpus.name, q, got, want))
    return lat, misses


def _miss(
    corpus: truth.Corpus, name: str, q: Query, got: set[Key], want: set[Key]
) -> dict[str, Any]:
    """A query the graph got wrong, with the lines, for reading."""

    def show(keys: Iterable[Key]) -> list[str]:
        return [
            f"{k[0]}:{k[1]}{' ' + k[2] if len(k) > 2 else ''}: "
            + corpus.raw[k[0]][k[1] - 1].strip()[:120]
            for k in sorted(keys)[:25]
        ]

    return {
        "corpus": name,
        "kind": q.kind,
        "bucket": q.bucket,
        "name": q.name,
        "extra": show(got - want),
        "missing": show(want - got),
    }


def _accuracy(tallies: Tallies, scope: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in KINDS:
        for bucket in BUCKETS:
            rows: dict[str, Any] = {
                tool: t.summary()
                for (s, k, b, tool), t in tallies.items()
                if (s, k, b) == (scope, kind, bucket)
            }
            if rows:
                rows["n"] = len(tallies[(scope, kind, bucket, "rcmd")].recall)
                out.setdefault(kind, {})[bucket] = rows
    return out


def targets(summary: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets on test's unique names: def precision >= 0.95; callers and refs
    precision >= 0.9 at recall >= 0.85."""
    test = summary.get("test", {})

    def fig(kind: str, key: str) -> float:
        value = test.get(kind, {}).get("unique", {}).get("rcmd", {}).get(key)
        return float(value) if value is not None else 0.0

    out: dict[str, Any] = {"def_p>=0.95": fig("def", "p") >= 0.95}
    for kind in ("callers", "refs"):
        out[f"{kind}_p>=0.9"] = fig(kind, "p") >= 0.9
        out[f"{kind}_r>=0.85"] = fig(kind, "r") >= 0.85
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


def table(results: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    """Precision/recall per scope, kind and bucket: rcmd against rg -w."""

    def f(row: dict[str, Any], tool: str, key: str) -> str:
        value = row.get(tool, {}).get(key)
        return "  -  " if value is None else f"{value:.3f}"

    head = f"{'scope':<26}{'kind':<9}{'bucket':<8}{'n':>4}  rcmd P  rcmd R    rg P    rg R"
    lines = [head, "-" * len(head)]
    scopes = [(Path(r["corpus"]).name, r["accuracy"]) for r in results]
    scopes += [(f"POOLED {s}", summary[s]) for s in ("dev", "test") if s in summary]
    for scope, acc in scopes:
        for kind in KINDS:
            for bucket, row in acc.get(kind, {}).items():
                lines.append(
                    f"{scope:<26}{kind:<9}{bucket:<8}{row['n']:>4}  {f(row, 'rcmd', 'p')}"
                    f"  {f(row, 'rcmd', 'r')}   {f(row, 'rg', 'p')}   {f(row, 'rg', 'r')}"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.navigation")
    parser.add_argument("--per-bucket", type=int, default=10, help="names a kind and bucket")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("bench/results/navigation.json"))
    parser.add_argument("--misses", type=Path, help="write the graph's wrong answers here")
    args = parser.parse_args(argv)
    results, misses = [], []
    tallies: Tallies = defaultdict(Tally)
    with tempfile.TemporaryDirectory() as tmp:
        for split, corpus in CORPORA:
            if corpus.is_dir():
                row, wrong = evaluate(split, corpus, args.per_bucket, args.seed, Path(tmp), tallies)
                row.update(cost(corpus))
                results.append(row)
                misses += wrong
    summary: dict[str, Any] = {s: _accuracy(tallies, s) for s in ("dev", "test")}
    summary["targets_on_test"] = targets(summary)
    print(table(results, summary))
    print(json.dumps(summary["targets_on_test"]))
    report: dict[str, Any] = {
        "command": "python -m bench.navigation",
        "date": time.strftime("%Y-%m-%d"),
        "results": results,
        "summary": summary,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.misses:
        args.misses.write_text(json.dumps(misses, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
