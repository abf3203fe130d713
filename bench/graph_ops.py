"""The int8 embedding graph operator by operator: where one run's time goes.

    python -m bench ops [--checkout /tmp/old] [--texts 200] [--rounds 3]

Each text runs alone on a single-threaded onnxruntime session, as one of the embedder's
runs does (no padding). Tokens/s is the median of interleaved rounds; one more pass
under onnxruntime's profiler gives each operator type's share of the kernel time and its
time per call. With `--checkout`, an older checkout's graph (built by its own
`daemon/onnx_graph.py`, with its own session options) runs beside this one's.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.embedding import sample_texts
from bench.harness import machine_state, save

#: Run with the checkout on sys.path: its graph, built into the model folder given.
_BUILD = """
import json, sys
from pathlib import Path
import daemon.onnx_graph as g
from daemon.embedder import offline_model_dir
folder = offline_model_dir(Path(sys.argv[1]))
g.optimized_graph(folder / "model.onnx", folder, quantize=True)
(built,) = folder.glob("model-q8-*.onnx")
print(json.dumps({"graph": str(built), "disabled": list(getattr(g, "DISABLED_OPTIMIZERS", ()))}))
"""


def _graph_of(checkout: Path, cache: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _BUILD, str(cache)],
        cwd=checkout,
        env={**os.environ, "PYTHONPATH": str(checkout)},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _session(graph: dict[str, Any], profile_in: Path | None = None) -> Any:
    """A single-threaded session of `graph`; profiled into `profile_in` when given
    (onnxruntime writes its trace into the working directory otherwise)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if profile_in is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_in / "ort-profile")
    return ort.InferenceSession(
        graph["graph"],
        options,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=graph["disabled"],
    )


def _run_all(session: Any, ids: list[list[int]]) -> float:
    import numpy as np

    names = {i.name for i in session.get_inputs()}
    start = time.perf_counter()
    for tokens in ids:
        x = np.asarray([tokens], dtype=np.int64)
        feed = {"input_ids": x, "attention_mask": np.ones_like(x)}
        if "token_type_ids" in names:
            feed["token_type_ids"] = np.zeros_like(x)
        session.run(["last_hidden_state"], feed)
    return time.perf_counter() - start


def _ops(graph: dict[str, Any], ids: list[list[int]], folder: Path) -> dict[str, dict[str, float]]:
    session = _session(graph, profile_in=folder)
    _run_all(session, ids)
    events = json.loads(Path(session.end_profiling()).read_text())
    total: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            total[e["args"]["op_name"]] += e["dur"]
            calls[e["args"]["op_name"]] += 1
    whole = sum(total.values()) or 1
    return {
        op: {"share": round(us / whole, 3), "us_per_call": round(us / calls[op], 1)}
        for op, us in total.most_common(12)
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from tokenizers import Tokenizer

    from bench.harness import REPO

    texts = sample_texts("small", args.texts)
    out: dict[str, Any] = {"texts": len(texts), "machine_before": machine_state(), "graphs": {}}
    with tempfile.TemporaryDirectory(prefix="rcmd-bench-ops-") as tmp:
        checkouts = {"this": REPO, **({"checkout": Path(args.checkout)} if args.checkout else {})}
        graphs = {k: _graph_of(c, Path(tmp) / k) for k, c in checkouts.items()}
        tok = Tokenizer.from_file(str(Path(graphs["this"]["graph"]).parent / "tokenizer.json"))
        tok.enable_truncation(256)
        ids = [e.ids for e in tok.encode_batch(texts)]
        tokens = sum(len(i) for i in ids)
        sessions = {k: _session(g) for k, g in graphs.items()}
        rates: dict[str, list[float]] = {k: [] for k in graphs}
        for _ in range(args.rounds):
            for k, s in sessions.items():
                rates[k].append(tokens / _run_all(s, ids))
        for k, g in graphs.items():
            out["graphs"][k] = {
                "checkout": str(checkouts[k]),
                "disabled_optimizers": g["disabled"],
                "tokens_per_s_one_thread": round(statistics.median(rates[k])),
                "rounds": [round(r) for r in rates[k]],
                "ops": _ops(g, ids, Path(tmp)),
            }
    out["tokens"] = tokens
    out["machine_after"] = machine_state()
    save("graph-ops", f"python -m bench ops {' '.join(sys.argv[2:])}".strip(), out)
    return out
