"""Start-up cost of the `rcmd` command (issue 19.13): wall time of whole `rcmd` calls
against a warm daemon, hyperfine-style (warm-up runs, then the median of N), with
`python -c pass` measured in the same run as the floor no Python CLI can beat.

The command runs through a console script written the way pip writes one, so the figure
is what a user's shell sees; the old entry point (`ipc.cli:main`) runs beside the new one
(`ipc.main:main`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import REPO, BenchDaemon, save

CRATE = REPO / "tests" / "fixtures" / "demo_crate"
#: pip's console-script template (distlib), pointed at one entry point.
SCRIPT = """#!{python}
# -*- coding: utf-8 -*-
import re
import sys
from {module} import {func}
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit({func}())
"""


def _script(folder: Path, name: str, entry: str, python: str) -> str:
    module, func = entry.split(":")
    path = folder / name
    path.write_text(SCRIPT.format(python=python, module=module, func=func))
    path.chmod(0o755)
    return str(path)


def _time(cmd: list[str], env: dict[str, str], runs: int, warmup: int) -> dict[str, float]:
    times = []
    for i in range(warmup + runs):
        t = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True, cwd=REPO)
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1000)
    return {
        "median_ms": round(statistics.median(times), 1),
        "min_ms": round(min(times), 1),
        "max_ms": round(max(times), 1),
    }


def _client_env(env: dict[str, str], installed: bool) -> dict[str, str]:
    """The environment of the timed calls. With `--python`, the client is that venv's
    installed copy (byte-compiled by pip, as a user has it), so the repo is taken off
    PYTHONPATH: from a source tree under PYTHONDONTWRITEBYTECODE every call would
    compile `ipc` again (~12 ms) and time the compiler, not rcmd."""
    if installed:
        env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    return env


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rcmd-bench-cli-") as tmp:
        work = Path(tmp)
        d = BenchDaemon(work / "home", {"PYTHONPATH": str(REPO)})
        d.start()
        try:
            d.call("index", path=str(CRATE.resolve()))
            d.wait(CRATE)
            py = args.python or sys.executable
            new = _script(work, "rcmd", "ipc.main:main", py)
            old = _script(work, "rcmd-old", "ipc.cli:main", py)
            cases = {
                "python -c pass": [py, "-c", "pass"],
                "rcmd --version": [new, "--version"],
                "rcmd status": [new, "status"],
                "rcmd search fetch_with_retry": [new, "search", "fetch_with_retry"],
                "rcmd search 'retry failed requests'": [new, "search", "retry failed requests"],
                "old entry (ipc.cli:main) status": [old, "status"],
            }
            env = _client_env({**os.environ, **d.env}, installed=bool(args.python))
            figures = {name: _time(cmd, env, args.runs, args.warmup) for name, cmd in cases.items()}
        finally:
            d.stop()
    floor = figures["python -c pass"]["median_ms"]
    result = {
        "runs": args.runs,
        "python": args.python or sys.executable,
        "client": "installed copy" if args.python else "source tree (PYTHONPATH)",
        "load_1min_after": os.getloadavg()[0],
        "figures": figures,
        "above_python_ms": {k: round(v["median_ms"] - floor, 1) for k, v in figures.items()},
        "target": "rcmd search/status <= 60 ms wall on a warm daemon",
    }
    flag = f" --python {args.python}" if args.python else ""
    save("cli", f"python -m bench cli --runs {args.runs}{flag}", result)
    return result
