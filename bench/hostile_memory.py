"""What a root of made-up worst-case files costs the daemon's memory: peak and settled
RSS, this checkout against an older one measured in the same run.

The root holds files just under the 1 MiB limit that stress each step differently: one
line of 120,000 terms (one huge chunk for the tokenizer), 100,000 nested parentheses and
120,000 nested blocks (deep trees), 30,000 consts and 3,000 nested modules (both skipped
as too complex). Each measurement starts a daemon in a fresh home, indexes an empty root
(the daemon up, no model loaded yet: `start_peak_mib`), then the hostile root (the model
loads for its few chunks), and reads the daemon's `rss_bytes` and `peak_rss_bytes` right
after and `SETTLE_S` later. Checkouts
are interleaved, run by run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import REPO, BenchDaemon, machine_state, save

#: Seconds after the hostile root is idle before the settled RSS is read.
SETTLE_S = 8.0
MIB = 1 << 20


def hostile_root(root: Path) -> Path:
    """Write the worst-case crate into `root` (each file under the 1 MiB file limit)."""
    src = root / "src"
    src.mkdir(parents=True)
    files = {
        "longline.rs": "pub fn f() -> u64 { " + " + ".join(map(str, range(120_000))) + " }\n",
        "parens.rs": "pub fn g() -> u64 { " + "(" * 100_000 + "1" + ")" * 100_000 + " }\n",
        "consts.rs": "".join(f"pub const C{i}: u64 = {i};\n" for i in range(30_000)),
        "blocks.rs": "pub fn h() { " + "{" * 120_000 + "}" * 120_000 + " }\n",
        "mods.rs": "".join(f"mod m{i} {{ " for i in range(3_000)) + "fn x() {}" + "}" * 3_000,
    }
    for name, text in files.items():
        (src / name).write_text(text)
    (root / "Cargo.toml").write_text('[package]\nname = "hostile"\nversion = "0.1.0"\n')
    return root


def measure(source: Path, work: Path) -> dict[str, Any]:
    """One daemon of `source`: RSS (MiB) at start, after the hostile root, and settled."""
    d = BenchDaemon(work / "home", {"PYTHONPATH": str(source)}, source=source)
    d.start()
    try:
        empty = work / "empty"
        empty.mkdir()
        d.call("index", path=str(empty))
        d.wait(empty)
        start = d.status()["peak_rss_bytes"] // MIB
        hostile = hostile_root(work / "hostile")
        d.call("index", path=str(hostile))
        d.wait(hostile, timeout=600)
        after = d.status()
        time.sleep(SETTLE_S)
        settled = d.status()
    finally:
        d.stop()
    return {
        "start_peak_mib": start,
        "peak_mib": after["peak_rss_bytes"] // MIB,
        "after_mib": after["rss_bytes"] // MIB,
        "settled_mib": settled["rss_bytes"] // MIB,
    }


def run(args: argparse.Namespace) -> None:
    sources = {"this": REPO}
    if args.checkout:
        sources["baseline"] = Path(args.checkout).resolve()
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in sources}
    before = machine_state()
    for i in range(args.runs):
        for name, source in sources.items():
            with tempfile.TemporaryDirectory(prefix="rcmd-bench-hostile-") as tmp:
                got = measure(source, Path(tmp))
            samples[name].append(got)
            print(f"run {i + 1} {name:8s}: {got}", flush=True)
    out = {
        "sources": {k: str(v) for k, v in sources.items()},
        "runs": args.runs,
        "state_before": before,
        "state_after": machine_state(),
        "results": {
            name: {k: statistics.median(r[k] for r in runs) for k in runs[0]} | {"runs": runs}
            for name, runs in samples.items()
        },
    }
    command = f"python -m bench hostile --runs {args.runs}" + (
        f" --checkout {args.checkout}" if args.checkout else ""
    )
    print(save("hostile-memory", command, out))
