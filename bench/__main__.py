"""rcmd's benchmarks (not tests): `python -m bench COMMAND --help`.

    python -m bench index small|medium|large|synthetic:N   the daemon scenarios on a corpus
    python -m bench search medium                           search latency on that index
    python -m bench embed                                   embedding throughput vs naive
    python -m bench vectors                                 qdrant-client local vs Qdrant Edge
    python -m bench hash                                    blake3 vs sha256
    python -m bench scale                                   cold index cost vs tree size
    python -m bench startup [large]                         no-change startup on a big tree
    python -m bench writes                                  Tantivy heap, vector upsert batch
    python -m bench refactor                                cache hits when code moves
    python -m bench cli                                     `rcmd` start-up: status, search
    python -m bench snapshots [small]                       export, adopt, seeded worktrees
    python -m bench edits                                   one save of a big file vs before
    python -m bench reindex medium                          reindex --force of an indexed tree
    python -m bench cluster                                 embedding: local vs Ray, 1 and 2 nodes
    python -m bench cold small crates:tokio                 whole cold runs: tokens/s vs ceiling
    python -m bench baseline /tmp/old crates:rayon          an older checkout, timed the same way
    python -m bench ops [--checkout /tmp/old]               the embedding graph, op by op
    python -m bench chaos --seed 1 [--kill]                 random churn, then index == fresh?
    python -m bench idle [--checkout /tmp/old]              idle CPU and wake-ups, N roots
    python -m bench depscale [--crates 50]                  idle cost of `index --deps`, N crates
    python -m bench hostile [--checkout /tmp/old]           RSS for a root of worst-case files
    python -m bench refresh                                 start-up after a graph revision change
    python -m bench report                                  bench/results → docs/PERFORMANCE.md

Each command writes bench/results/<name>.json (machine, date, commit, command, figures);
`report` renders them all into the generated section of docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    #: What `add_subparsers` returns (generic only to the type checker).
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

#: Subcommand -> (module, function taking the parsed arguments); imported when run.
COMMANDS = {
    "index": ("bench.index_corpus", "run"),
    "search": ("bench.index_corpus", "search_only"),
    "embed": ("bench.embedding", "run"),
    "vectors": ("bench.vector_stores", "run"),
    "hash": ("bench.micro", "hashing"),
    "scale": ("bench.micro", "scale"),
    "writes": ("bench.writes", "run"),
    "refactor": ("bench.micro", "refactor"),
    "startup": ("bench.micro", "startup"),
    "cli": ("bench.cli", "run"),
    "snapshots": ("bench.snapshots", "run"),
    "edits": ("bench.edits", "run"),
    "reindex": ("bench.reindex", "run"),
    "cluster": ("bench.cluster", "run"),
    "cold": ("bench.cold", "run"),
    "baseline": ("bench.baseline", "run"),
    "ops": ("bench.graph_ops", "run"),
    "chaos": ("bench.chaos", "run"),
    "idle": ("bench.idle", "run"),
    "depscale": ("bench.deps_scale", "run"),
    "hostile": ("bench.hostile_memory", "run"),
    "refresh": ("bench.graph_refresh", "run"),
}


def _daemon_and_model_commands(sub: Subparsers, work: str) -> None:
    """index, search, embed, vectors: the daemon on a corpus, the embedder, the stores."""
    p = sub.add_parser("index", help="the daemon scenarios on one corpus")
    p.add_argument("corpus", help="small, medium, large or synthetic:N")
    p.add_argument("--clients", type=int, default=50, help="searching clients during the index")
    p.add_argument("--load-seconds", type=float, default=120)
    p.add_argument("--edits", type=int, default=20)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--idle-wait", type=float, default=30, help="seconds idle before idle RSS")
    p.add_argument("--skip-reindex", action="store_true")
    p.add_argument(
        "--resume",
        type=float,
        metavar="COLD_S",
        help="reuse an earlier run's tree and index (its cold index took COLD_S seconds)",
    )
    p.add_argument(
        "--lexical-only", action="store_true", help="stop once BM25 covers the tree (target 2)"
    )
    p.add_argument("--profile", metavar="SVG", help="flame graph of the cold index (py-spy)")
    p.add_argument("--work", default=work)

    p = sub.add_parser("search", help="search latency on an earlier index run's tree")
    p.add_argument("corpus")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--work", default=work)

    p = sub.add_parser("embed", help="embedding throughput against a naive fastembed call")
    p.add_argument("--chunks", type=int, default=512)
    p.add_argument("--corpus", default="small")
    p.add_argument("--rounds", type=int, default=3)

    p = sub.add_parser("vectors", help="qdrant-client local mode against Qdrant Edge")
    p.add_argument("--points", type=int, nargs="+", default=[50_000, 200_000])
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--one", nargs=2, metavar=("STORE", "N"), help=argparse.SUPPRESS)


def _micro_commands(sub: Subparsers, work: str) -> None:
    """hash, scale, writes, refactor, startup, cli: one cost each, in isolation."""
    p = sub.add_parser("hash", help="blake3 against sha256")
    p.add_argument("--corpus", default="medium")

    p = sub.add_parser("scale", help="cold index time and RSS against tree size")
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    p.add_argument("--embed-up-to", type=int, default=5000, help="larger sizes: lexical only")
    p.add_argument("--work", default=work)

    p = sub.add_parser("writes", help="Tantivy heap/threads and vector upsert batch size")
    p.add_argument("--corpus", default="small")

    p = sub.add_parser("refactor", help="embedding-cache hits when functions move files")
    p.add_argument("--files", type=int, default=200)
    p.add_argument("--work", default=work)

    p = sub.add_parser("startup", help="no-change daemon startup on a big tree")
    p.add_argument("corpus", nargs="?", default="large")
    p.add_argument("--restarts", type=int, default=3)
    p.add_argument("--work", default=work)

    p = sub.add_parser("cli", help="wall time of rcmd status/search on a warm daemon")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument(
        "--python",
        help="interpreter of the timed console script: a venv with rcmd installed as a user "
        "gets it (packaging/install.sh), whose installed copy is timed (install the current "
        "tree into it first: VENV/bin/pip install --no-deps .); default: this one, with "
        "the source tree",
    )

    p = sub.add_parser("idle", help="idle CPU and wake-ups with N watched roots")
    p.add_argument("--roots", default="1,5,19", help="root counts, comma-separated")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=30, help="sampling time per measurement")
    p.add_argument("--checkout", help="an older checkout measured in the same run")

    p = sub.add_parser("depscale", help="threads, fds, RSS, wake-ups of N dependency roots")
    p.add_argument("--crates", type=int, default=50, help="registry crates in the lock file")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=30, help="idle sampling time")
    p.add_argument(
        "--idle-s", type=float, default=60, help="[index] dependency_idle_s of the daemon"
    )
    p.add_argument("--nice", type=int, default=10, help="the daemon's niceness")
    p.add_argument("--work", default=work, help="keeps the embedding cache of the first run")

    p = sub.add_parser("hostile", help="peak and settled RSS for a root of worst-case files")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--checkout", help="an older checkout measured in the same run")

    p = sub.add_parser("refresh", help="start-up after a graph revision change vs a plain one")
    p.add_argument("--runs", type=int, default=3)


def _scenario_commands(sub: Subparsers, work: str) -> None:
    """snapshots, edits, reindex, cluster, cold, baseline, ops, chaos."""
    p = sub.add_parser("snapshots", help="export, adopt with 1%% changed, seeded worktrees")
    p.add_argument("corpus", nargs="?", default="small")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--worktree-files", type=int, default=20)
    p.add_argument("--work", default=work)

    p = sub.add_parser("edits", help="cost of one save (differential chunking) vs a baseline")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--edits", type=int, default=15, help="saves of the big file per run")
    p.add_argument("--saves", type=int, default=50, help="saves of the typing session per run")
    p.add_argument("--baseline", default="62c4c71", help="commit to compare with")

    p = sub.add_parser("reindex", help="reindex --force of an earlier index run's tree")
    p.add_argument("corpus")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--checkout", help="run the daemon of this checkout instead (a baseline)")
    p.add_argument("--work", default=work)

    p = sub.add_parser("cluster", help="embedding: local against Ray with 1 and 2 nodes")
    p.add_argument("--chunks", type=int, default=384)
    p.add_argument("--corpus", default="small")
    p.add_argument(
        "--status-corpus",
        default="synthetic:300",
        help="tree cold-indexed locally and through the cluster while `status` is timed",
    )
    p.add_argument("--status-runs", type=int, default=3, help="rounds of that comparison")

    p = sub.add_parser("cold", help="whole cold index runs: tokens/s against the embedder's")
    p.add_argument("corpora", nargs="+", help="small, medium, synthetic:N or crates:a,b,...")
    p.add_argument("--runs", type=int, default=1)

    p = sub.add_parser("baseline", help="an older checkout's cold index or forced reindex, here")
    p.add_argument("checkout", help="a directory holding the older commit's tree")
    p.add_argument("corpus", help="small, medium, synthetic:N or crates:a,b,...")
    p.add_argument("--runs", type=int, default=3, help="cold runs, each in a fresh home")
    p.add_argument("--reindex", type=int, default=0, metavar="N", help="N forced rebuilds instead")
    p.add_argument("--seed-cache", help="an embeddings.db to start the home's cache from")

    p = sub.add_parser("ops", help="the int8 embedding graph operator by operator")
    p.add_argument("--checkout", help="an older checkout whose graph runs beside this one's")
    p.add_argument("--texts", type=int, default=200, help="chunk texts of library/alloc")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")

    p = sub.add_parser("chaos", help="random file churn on a live daemon; its index vs fresh")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--seconds", type=float, default=90, help="how long the churn goes on")
    p.add_argument(
        "--crates",
        default="6",
        help="the root's crates: how many of the built-in list, or registry folder names",
    )
    p.add_argument("--kill", action="store_true", help="SIGKILL and restart the daemon midway")
    p.add_argument("--work", default=work)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    work = str(Path(tempfile.gettempdir()) / "rcmd-bench")
    sub = parser.add_subparsers(dest="command", required=True)
    _daemon_and_model_commands(sub, work)
    _micro_commands(sub, work)
    _scenario_commands(sub, work)
    sub.add_parser("report", help="render bench/results into docs/PERFORMANCE.md")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "report":
        from bench.report import render

        print(render())
        return 0
    if args.command == "vectors" and args.one:
        from bench.vector_stores import one

        print(json.dumps(one(args.one[0], int(args.one[1]), args.queries)))
        return 0
    module, function = COMMANDS[args.command]
    out = getattr(importlib.import_module(module), function)(args)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
