"""The two systems measured: rcmd through two real daemons (blanked roots, real roots),
and the naive baseline in-process, each over every query set of every corpus."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.quality.corpora import Corpus, copy_root
from bench.quality.corpus import DocQuery, Item
from bench.quality.evaluate import (
    MODES,
    Result,
    Searcher,
    run_doc,
    run_hand,
    run_identifiers,
)
from bench.quality.hand import Question, load_questions
from bench.quality.queries import load
from bench.quality.rcmd_side import RcmdDaemon

#: Sets run on the doc-blanked copy, and on the copy as it is.
BLANK_SETS = ("doc", "ident")
REAL_SETS = ("hand", "absent")


@dataclass(frozen=True, slots=True)
class CorpusSets:
    corpus: Corpus
    doc: list[DocQuery]
    ident: list[Item]
    hand: list[Question]
    absent: list[Question]

    @classmethod
    def load(cls, corpus: Corpus) -> CorpusSets:
        docs, ident = load(corpus)
        qs = [q for q in load_questions() if q.corpus == corpus.name]
        return cls(
            corpus, docs, ident, [q for q in qs if not q.absent], [q for q in qs if q.absent]
        )

    def counts(self) -> dict[str, int]:
        return {k: len(getattr(self, k)) for k in ("doc", "ident", "hand", "absent")}


def evaluate_corpus(
    search: Searcher, sets: CorpusSets, which: Sequence[str], label: str
) -> dict[str, Any]:
    """{set: {mode: figures}} for the sets named in `which`."""
    out: dict[str, Any] = {}
    for mode in MODES:
        t = time.perf_counter()
        for name in which:
            if name == "doc":
                run = run_doc(search, sets.doc, mode)
            elif name == "ident":
                run = run_identifiers(search, sets.corpus.name, sets.ident, mode)
            else:
                run = run_hand(search, getattr(sets, name), mode)
            out.setdefault(name, {})[mode] = run.to_json()
        figures = "  ".join(f"{k} MRR {out[k][mode]['mrr@10']:.3f}" for k in which if k != "absent")
        print(
            f"{label} {sets.corpus.name:18s} {mode:6s} {figures}  ({time.perf_counter() - t:.0f}s)",
            flush=True,
        )
    return out


def _daemon_searcher(daemon: RcmdDaemon, root: Path | None, names: dict[str, str]) -> Searcher:
    """Search `root` (every root when None); results carry their corpus's name."""

    def search(query: str, mode: str, limit: int) -> tuple[list[Result], float]:
        params: dict[str, Any] = {"mode": mode, "limit": limit}
        if root is not None:
            params["root"] = str(root)
        hits, ms = daemon.search(query, **params)
        rs = [
            Result(
                h["path"],
                h["start_line"],
                h["end_line"],
                h["symbol"],
                float(h.get("score", 0.0)),
                names.get(h["root"], "?"),
                h.get("kind", ""),
            )
            for h in hits
        ]
        return rs, ms

    return search


def _home(work: Path, blank: bool) -> Path:
    """The daemon home; the real daemon shares the blank one's embedding cache."""
    home = work / ("home" if blank else "home-real")
    shared = work / "home" / "cache"
    shared.mkdir(parents=True, exist_ok=True)
    if not blank:
        home.mkdir(parents=True, exist_ok=True)
        link = home / "cache"
        if not link.exists() and not link.is_symlink():
            link.symlink_to(shared.resolve())
    return home


def _index_all(daemon: RcmdDaemon, roots: list[Path], reindex: bool) -> list[dict[str, Any]]:
    """Forget roots of an earlier run that are not selected now (the unfiltered run must
    see only these), then index (or rebuild) every root and wait for each."""
    for r in daemon.status()["roots"]:
        if Path(r["path"]) not in roots:
            daemon.call("remove", path=r["path"], timeout=300)
    for r in roots:
        if reindex:
            daemon.call("reindex", path=str(r), force=True)
        else:
            daemon.call("index", path=str(r))
    return [daemon.wait_indexed(r) for r in roots]


def _rcmd_side(
    work: Path, sets: list[CorpusSets], env: dict[str, str], blank: bool, flags: dict[str, bool]
) -> dict[str, Any]:
    """One daemon over one copy of every corpus: per-root runs, then the unfiltered one."""
    which = BLANK_SETS if blank else REAL_SETS
    roots = [copy_root(s.corpus, work, blank=blank) for s in sets]
    names = {str(r): s.corpus.name for r, s in zip(roots, sets, strict=True)}
    daemon = RcmdDaemon(_home(work, blank), env)
    daemon.start()
    try:
        t = time.perf_counter()
        infos = _index_all(daemon, roots, flags["reindex"])
        index_s = round(time.perf_counter() - t, 1)
        _daemon_searcher(daemon, None, names)("warm up", "hybrid", 10)
        out: dict[str, Any] = {"corpora": {}, "all_roots": {}}
        label = "rcmd " + ("blank" if blank else "real ")
        for s, r, info in zip(sets, roots, infos, strict=True):
            figs = evaluate_corpus(_daemon_searcher(daemon, r, names), s, which, label)
            figs["index"] = {"files": info["files"], "chunks": info["chunks"]}
            out["corpora"][s.corpus.name] = figs
        if flags["all_roots"]:
            every = _daemon_searcher(daemon, None, names)
            for s in sets:
                out["all_roots"][s.corpus.name] = evaluate_corpus(every, s, which, label + "*")
        out["index_seconds"] = index_s
        out["embedding"] = daemon.status()["embedding"]
        return out
    finally:
        daemon.stop()


def run_rcmd(
    work: Path, sets: list[CorpusSets], env: dict[str, str], *, reindex: bool, all_roots: bool
) -> dict[str, Any]:
    """rcmd's figures: {corpora: {name: {set: {mode: ...}}}, all_roots: {...}}."""
    flags = {"reindex": reindex, "all_roots": all_roots}
    blank = _rcmd_side(work, sets, env, True, flags)
    real = _rcmd_side(work, sets, env, False, flags)
    out: dict[str, Any] = {"corpora": {}, "all_roots": {}}
    for key in ("corpora", "all_roots"):
        for name, figs in blank[key].items():
            theirs = dict(real[key].get(name, {}))
            if "index" in theirs:
                theirs["index_real"] = theirs.pop("index")
            out[key][name] = {**figs, **theirs}
    out["index_seconds"] = [blank["index_seconds"], real["index_seconds"]]
    out["embedding"] = real["embedding"]
    return out


def run_naive(work: Path, sets: list[CorpusSets]) -> dict[str, Any]:
    """The naive baseline over the same copies (its embeddings cached under WORK/naive)."""
    from bench.quality.naive import NaiveIndex
    from daemon.config import EmbeddingConfig
    from daemon.embedder import Embedder

    (work / "naive").mkdir(parents=True, exist_ok=True)
    embedder = Embedder(EmbeddingConfig(), work / "naive")
    out: dict[str, Any] = {"corpora": {}}
    for s in sets:
        figs: dict[str, Any] = {}
        for blank, which in ((True, BLANK_SETS), (False, REAL_SETS)):
            index = NaiveIndex(
                copy_root(s.corpus, work, blank=blank),
                embedder.embed,
                embedder.embed_query,
                embedder.model_id,
                work / "naive" / "emb.db",
            )
            figs.update(evaluate_corpus(_naive_searcher(index), s, which, "naive"))
            figs["index" if blank else "index_real"] = {"chunks": len(index.chunks)}
        out["corpora"][s.corpus.name] = figs
    return out


def _naive_searcher(index: Any) -> Searcher:
    search_index: Callable[[str, str, int], Any] = index.search

    def search(query: str, mode: str, limit: int) -> tuple[list[Result], float]:
        t = time.perf_counter()
        hits = search_index(query, mode, limit)
        ms = (time.perf_counter() - t) * 1000
        return [Result(h.path, h.start_line, h.end_line) for h in hits], ms

    return search
