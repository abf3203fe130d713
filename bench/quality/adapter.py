"""Fit the query adapter (`daemon/query_adapter.py`): a linear map W, question vector q →
normalize(W q), that moves a question in words towards the code answering it.

Training pairs come from Debian's packaged crates that are in no evaluation set (not in
dev, test or `bench.quality.unseen`, nor of their families, nor bindings): each public
item's first doc sentence (`corpus.doc_queries`) is a question, and its chunk, chunked
and embedded as the daemon does, the answer, among up to 200 other chunks of its crate.
Two views of every crate: doc comments blanked (code nobody documented), and with docs
(the answer keeps its doc comment; the questions of a user's index).
W minimizes the softmax loss of each answer among its crate's chunks, plus `lam`·‖W − I‖²
so it stays near the identity; a fifth of the crates (whole crates) is held out and the
MRR@10 on them is reported and recorded. Needs the packages in `PACKAGES`:

    apt-get install $(python -m bench.quality.adapter --packages)
    python -m bench.quality.adapter            # pairs cached under --work, then the fit

Writes daemon/model/query_adapter.npz and bench/results/quality-adapter.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize

from bench.harness import save
from bench.quality.corpora import REGISTRY, Corpus, blank_docs
from bench.quality.corpus import doc_queries
from bench.quality.evaluate import K, summary
from daemon.chunker import Chunk, chunk_source
from daemon.config import EmbeddingConfig
from daemon.embed_groups import EmbedPolicy, embedded_texts
from daemon.embedder import Embedder
from daemon.query_adapter import ADAPTER_FILE, QueryAdapter, base_model

Matrix = npt.NDArray[np.float32]

#: Crates of the evaluation (dev, test, unseen) and their families, the tests' crates,
#: and bindings or generated crates that are not code anyone searches.
EXCLUDE = re.compile(
    r"^(serde|regex-syntax|rayon|crossbeam|itertools|nom|tokio|bytes|syn|hashbrown|indexmap"
    r"|petgraph|smallvec|rand|tracing|either|scopeguard|rustc-std|compiler_builtins|winapi"
    r"|windows|linux-raw-sys|libc|web-sys|js-sys|unicode-ident)"
)
#: Debian packages installed for the fit (their dependencies come with them).
PACKAGES = """
    anyhow thiserror-impl clap regex aho-corasick hyper http futures-util base64 chrono time
    url uuid serde-json toml bitflags byteorder num-traits num-bigint walkdir globset ignore
    tempfile env-logger flate2 miniz-oxide unicode-segmentation unicode-width textwrap semver
    rustls ring sha2 digest generic-array half bstr encoding-rs nix ndarray num-complex slab
    futures-channel h2 mime httparse percent-encoding idna crc32fast csv csv-core tinyvec
    arrayvec bit-vec fnv dashmap async-trait futures-executor async-std pest combine quick-xml
    xml-rs png gimli object addr2line cc pkg-config rustc-demangle git2 ordered-float approx
    serde-yaml ron bincode zstd brotli rusqlite tar zip criterion proptest structopt indicatif
    console crossterm termcolor ansi-term strsim heck similar hex sha1 md5 blake2 aes cipher
    num-integer num-rational bit-set lru linked-hash-map typed-arena phf siphasher memmap2
    notify inotify signal-hook ctrlc jobserver filetime same-file dirs directories which shlex
    glob regex-automata fst unicode-normalization unicode-bidi lexical-core ryu itoa hashlink
    ahash async-io polling futures-lite event-listener blocking async-channel concurrent-queue
    parking waker-fn fastrand lock-api atomic bytemuck zerocopy pin-utils want tower-service
    rustix errno libloading syntect pulldown-cmark termion rustyline getopts euclid image gif
    jpeg-decoder tiff ttf-parser rusttype ab-glyph unicode-xid logos lalrpop-util
    codespan-reporting annotate-snippets colored yansi tabwriter
"""
VIEWS = ("blank", "docs")
MAX_QUERIES = 150
MAX_OTHERS = 200
DIM = 384


@dataclasses.dataclass(frozen=True)
class Pairs:
    """One crate in one view: question vectors, candidate chunk vectors, and the index
    of each question's answer among the candidates."""

    name: str
    questions: Matrix
    chunks: Matrix
    answers: npt.NDArray[np.int64]


def training_crates() -> list[Corpus]:
    """The newest installed version of every registry crate outside `EXCLUDE`."""
    latest: dict[str, Path] = {}
    for d in sorted(REGISTRY.iterdir()):
        m = re.match(r"^(.*)-(\d+\.\d+.*)$", d.name)
        if m and not EXCLUDE.match(m.group(1)) and (d / "src").is_dir():
            latest[m.group(1)] = d
    return [
        Corpus(name=n, split="train", style="", source=d, include=("src",), exclude=(), package="")
        for n, d in sorted(latest.items())
    ]


def _chunks(corpus: Corpus, docs: bool) -> list[tuple[Chunk, str]]:
    out: list[tuple[Chunk, str]] = []
    for f in corpus.files():
        raw = f.read_bytes()
        try:
            chunks = chunk_source(corpus.rel(f), raw if docs else blank_docs(raw))
        except ValueError:
            continue
        out.extend(zip(chunks, embedded_texts(chunks, EmbedPolicy()), strict=True))
    return out


def crate_pairs(corpus: Corpus, view: str, embedder: Embedder) -> Pairs | None:
    """`view`'s pairs of one crate; None when it has fewer than 3 usable questions."""
    rng = random.Random(corpus.name)
    queries = doc_queries(corpus)
    rng.shuffle(queries)
    chunks = _chunks(corpus, docs=view == "docs")
    answers: dict[int, list[str]] = {}
    for q in queries[:MAX_QUERIES]:
        it = q.item
        hit = next(
            (
                i
                for i, (c, _) in enumerate(chunks)
                if c.path == it.path and c.start_line <= it.decl_line <= c.end_line
            ),
            None,
        )
        if hit is not None:
            answers.setdefault(hit, []).append(q.query)
    if sum(len(v) for v in answers.values()) < 3:
        return None
    others = [i for i in range(len(chunks)) if i not in answers]
    rng.shuffle(others)
    use = sorted(set(answers) | set(others[:MAX_OTHERS]))
    where = {i: k for k, i in enumerate(use)}
    vectors = np.asarray(embedder.embed([chunks[i][1] for i in use]), dtype=np.float32)
    pairs = [(q, where[i]) for i, qs in answers.items() for q in qs]
    questions = np.asarray([embedder.embed_query(q) for q, _ in pairs], dtype=np.float32)
    return Pairs(corpus.name, questions, vectors, np.array([k for _, k in pairs]))


def load_pairs(work: Path, embedder: Embedder) -> dict[str, list[Pairs]]:
    """Every view's pairs of every training crate, cached under `work` per crate."""
    work.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[Pairs]] = {v: [] for v in VIEWS}
    for corpus in training_crates():
        for view in VIEWS:
            cached = work / f"{corpus.name}.{view}.npz"
            if not cached.exists():
                pairs = crate_pairs(corpus, view, embedder)
                arrays = dataclasses.asdict(pairs) if pairs else {}
                np.savez(cached, **{k: v for k, v in arrays.items() if k != "name"})
            with np.load(cached) as z:
                if "answers" in z:
                    out[view].append(Pairs(corpus.name, z["questions"], z["chunks"], z["answers"]))
        print(f"  {corpus.name}", flush=True)
    return out


def loss_and_grad(
    flat: npt.NDArray[np.float64], data: list[Pairs], scale: float, lam: float
) -> tuple[float, npt.NDArray[np.float64]]:
    """Mean softmax loss of each answer among its crate's chunks (cosines × `scale`),
    plus lam·‖W − I‖², and its gradient in W."""
    w = flat.reshape(DIM, DIM)
    n = sum(len(p.answers) for p in data)
    total, grad = 0.0, np.zeros_like(w)
    for p in data:
        u = p.questions @ w.T
        norm = np.linalg.norm(u, axis=1, keepdims=True)
        v = u / norm
        logits = scale * v @ p.chunks.T
        logits -= logits.max(1, keepdims=True)
        prob = np.exp(logits)
        prob /= prob.sum(1, keepdims=True)
        rows = np.arange(len(p.answers))
        total -= float(np.log(prob[rows, p.answers] + 1e-12).sum())
        prob[rows, p.answers] -= 1
        dv = scale * prob @ p.chunks
        du = (dv - v * (v * dv).sum(1, keepdims=True)) / norm
        grad += du.T @ p.questions
    shift = w - np.eye(DIM)
    return total / n + lam * float((shift * shift).sum()), (grad / n + 2 * lam * shift).ravel()


def fit(data: list[Pairs], scale: float, lam: float, iters: int) -> Matrix:
    start = np.eye(DIM).ravel()
    res = minimize(
        loss_and_grad,
        start,
        args=(data, scale, lam),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": iters},
    )
    return np.asarray(res.x.reshape(DIM, DIM), dtype=np.float32)


def mrr(w: Matrix, data: list[Pairs]) -> float:
    """MRR@10 of the answers among their crate's chunks, questions mapped by `w`."""
    ranks: list[int | None] = []
    for p in data:
        v = p.questions @ w.T
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        sims = v @ p.chunks.T
        for i, a in enumerate(p.answers):
            rank = int((sims[i] > sims[i, a]).sum()) + 1
            ranks.append(rank if rank <= K else None)
    return float(summary(ranks)["mrr@10"])


def split(pairs: dict[str, list[Pairs]]) -> tuple[set[str], list[Pairs]]:
    """A fifth of the crates held out (whole crates, by a fixed seed), and the training
    pairs of the rest over every view."""
    names = sorted({p.name for ps in pairs.values() for p in ps})
    order = np.random.default_rng(3).permutation(len(names))
    held = {names[i] for i in order[: len(names) // 5]}
    return held, [p for ps in pairs.values() for p in ps if p.name not in held]


def run(work: Path, scale: float, lam: float, iters: int, out: Path) -> dict[str, Any]:
    embedder = Embedder(EmbeddingConfig(), work / "model-cache")
    pairs = load_pairs(work / "pairs", embedder)
    held, train = split(pairs)
    t = time.perf_counter()
    w = fit(train, scale, lam, iters)
    seconds = round(time.perf_counter() - t, 1)
    held_out = {
        view: {"identity": mrr(np.eye(DIM, dtype=np.float32), ps), "adapter": mrr(w, ps)}
        for view, ps in ((v, [p for p in pairs[v] if p.name in held]) for v in VIEWS)
    }
    # The shipped map is fitted on every crate, held-out ones too, with the same settings.
    final = fit([p for ps in pairs.values() for p in ps], scale, lam, iters)
    QueryAdapter(base_model(embedder.model_id), final).save(out)
    return {
        "crates": len({p.name for ps in pairs.values() for p in ps}),
        "questions": {v: int(sum(len(p.answers) for p in ps)) for v, ps in pairs.items()},
        "held_out_crates": sorted(held),
        "held_out_mrr@10": held_out,
        "settings": {"scale": scale, "lam": lam, "iters": iters},
        "fit_seconds": seconds,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--work", type=Path, default=Path.home() / ".cache" / "rcmd-adapter")
    p.add_argument("--scale", type=float, default=60.0, help="cosine → logit scale")
    p.add_argument("--lam", type=float, default=0.03, help="weight of ‖W − I‖²")
    p.add_argument("--iters", type=int, default=150)
    p.add_argument("--out", type=Path, default=ADAPTER_FILE)
    p.add_argument("--packages", action="store_true", help="print the apt packages and exit")
    args = p.parse_args()
    if args.packages:
        print(" ".join(f"librust-{name}-dev" for name in PACKAGES.split()))
        return 0
    figures = run(args.work, args.scale, args.lam, args.iters, args.out)
    print(figures["held_out_mrr@10"])
    settings = f"--scale {args.scale} --lam {args.lam} --iters {args.iters}"
    command = f"python -m bench.quality.adapter {settings}"
    save("quality-adapter", command, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
