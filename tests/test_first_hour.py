"""Issue 19: what a new user meets in the first hour, through the real CLI and daemon."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ipc.client import is_running, stop_daemon
from ipc.paths import runtime_paths
from tests.conftest import REPO, Daemon, run_rcmd, wait_until

ANSI = "\033["


def test_search_covers_the_root_you_are_in(daemon: Daemon, crate: Path, tmp_path: Path) -> None:
    """19.4: inside a root, search that root (paths open from the cwd); --all every root,
    each line naming its file absolutely; a plain folder for --path means that folder."""
    other = tmp_path / "other"
    (other / "src").mkdir(parents=True)
    (other / "src" / "lib.rs").write_text("pub fn fetch_with_retry_elsewhere() {}\n")
    daemon.cli("index", str(crate), "--wait")
    daemon.cli("index", str(other), "--wait")
    here = daemon.cli("search", "fetch_with_retry", "--mode", "bm25", "--json", cwd=other)
    assert {h["root"] for h in json.loads(here.stdout)["results"]} == {str(other.resolve())}
    lines = daemon.cli("search", "fetch_with_retry", "--mode", "bm25", cwd=crate / "src").stdout
    first = lines.splitlines()[0].split(":")[0]
    assert (crate / "src" / first).is_file(), lines
    every = daemon.cli("search", "fetch_with_retry", "--mode", "bm25", "--all", cwd=other).stdout
    heads = [line.split(":")[0] for line in every.splitlines() if not line.startswith(" ")]
    assert any(h.startswith(str(crate.resolve())) for h in heads), every
    net = daemon.search("retry", "--path", "net", "--limit", "20")
    assert net and all(h["path"].startswith("src/net/") for h in net)
    assert daemon.search("retry", "--path", "src/net/retry.rs")
    assert all(h["path"].startswith("src/net/") for h in daemon.search("retry", "--path", "src/n*"))


def test_search_into_a_closed_pipe_is_quiet(daemon: Daemon, crate: Path) -> None:
    """19.5: `rcmd search ... | head -1` prints no BrokenPipeError traceback."""
    daemon.cli("index", str(crate), "--wait")
    cmd = f"{sys.executable} -m ipc.cli search retry --limit 50 | head -1"
    env = {**daemon.env, "PYTHONPATH": str(REPO)}
    out = subprocess.run(["bash", "-c", cmd], env=env, capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and out.stdout.count("\n") == 1
    assert out.stderr == ""


def test_a_stopped_daemon_restarts_for_search_and_config_errors_name_the_key(
    daemon: Daemon, crate: Path, tmp_path: Path
) -> None:
    """19.6: with roots registered and no daemon, search starts one (status only says
    so: it must not undo a `stop`); a bad config value is one line naming the key and
    the file."""
    daemon.cli("index", str(crate), "--wait")
    daemon.stop()
    status = daemon.cli("status", check=False)
    assert status.returncode == 1 and status.stderr.count("\n") == 1, status.stderr
    assert "rcmd search" in status.stderr and not is_running(daemon.paths)
    try:
        assert daemon.search("fetch_with_retry", "--mode", "bm25")
    finally:
        if is_running(daemon.paths):
            stop_daemon(daemon.paths)
    home = tmp_path / "bad-home"
    home.mkdir()
    (home / "config.toml").write_text("[index]\ndebounce_ms = 'soon'\n")
    env = {**os.environ, "RCMD_HOME": str(home)}
    out = run_rcmd("index", str(crate), env=env, timeout=120)
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert "[index] debounce_ms in " + str(home / "config.toml") in out.stderr
    env["RCMD_INDEX_DEBOUNCE_MS"] = "later"
    out = run_rcmd("index", str(crate), env=env, timeout=120)
    assert "RCMD_INDEX_DEBOUNCE_MS" in out.stderr, out.stderr


def test_index_refuses_empty_broad_and_nested_paths(daemon: Daemon, crate: Path) -> None:
    """19.8: an empty path is a usage error; a folder inside a root needs --yes."""
    assert daemon.cli("index", "", check=False).returncode == 2
    assert "--yes" in daemon.cli("index", "/", check=False).stderr
    daemon.cli("index", str(crate), "--wait")
    nested = daemon.cli("index", str(crate / "src"), check=False)
    assert nested.returncode == 1 and "inside the indexed root" in nested.stderr
    assert f"rcmd index {crate.resolve() / 'src'} --yes" in nested.stderr
    around = daemon.cli("index", str(crate.parent), check=False)
    assert around.returncode == 1 and "around the indexed root" in around.stderr


def test_reindex_keeps_the_path_and_waits(daemon: Daemon, crate: Path) -> None:
    """19.9: the --force hint keeps the path; --wait shows the rebuilt root."""
    daemon.cli("index", str(crate), "--wait")
    refused = daemon.cli("reindex", str(crate), check=False)
    assert refused.returncode == 1
    assert f"rcmd reindex --force {crate.resolve()}" in refused.stderr
    done = daemon.cli("reindex", "--force", str(crate), "--wait")
    assert f"indexed {crate.resolve()}:" in done.stdout


def test_progress_says_starting_until_there_is_a_rate() -> None:
    """19.10: no ETA from a rate of zero."""
    from ipc.cli import _progress_line

    progress = {"files_done": 0, "files_total": 9, "chunks_done": 0, "chunks_total": 0}
    root = {"activity": "indexing", "progress": {**progress, "chunks_per_s": 0.0, "eta_s": None}}
    assert "starting…" in _progress_line(root) and "ETA" not in _progress_line(root)
    root["progress"] = {**progress, "chunks_per_s": 20.0, "eta_s": 12.0}
    assert "20 chunks/s, ETA 12s" in _progress_line(root)
    # Lexical-first: the vectors not yet written lag the chunks embedded by a step, so
    # the line shows only the latter (640/2507 beside "2251 pending" read as a bad sum).
    progress = {"files_done": 9, "files_total": 9, "chunks_done": 640, "chunks_total": 2507}
    root = {"activity": "embedding", "vectors_pending": 2251, "progress": progress}
    line = _progress_line(root)
    assert "BM25 ready; embedding 640/2507 chunks" in line and "pending" not in line


def _big_crate(where: Path, files: int) -> Path:
    (where / "src").mkdir(parents=True)
    for i in range(files):
        body = "\n".join(f"    let v{j} = x.wrapping_mul({i * 31 + j});" for j in range(6))
        (where / "src" / f"m{i}.rs").write_text(
            f"/// Item {i}.\npub fn item_{i}(x: u64) -> u64 {{\n{body}\n    x\n}}\n"
        )
    return where


def test_ctrl_c_leaves_indexing_running_and_stop_says_it_finishes(tmp_path: Path) -> None:
    """19.10: Ctrl-C in `index --wait` exits 130 saying indexing goes on; `rcmd stop`
    while indexing says the daemon finishes its current step, then stops it. The daemon
    holds its first write step until it is asked to stop (RCMD_TEST_HOLD_AT), so the
    root is still indexing when the signal and the stop arrive: no race with a batch
    that finishes first."""
    crate = _big_crate(tmp_path / "big", 40)
    d = Daemon(tmp_path / "home", RCMD_TEST_HOLD_AT="write_step")
    d.start()
    try:
        env = {**d.env, "PYTHONPATH": str(REPO)}
        cmd = [sys.executable, "-m", "ipc.cli", "index", str(crate), "--wait"]
        # Ctrl-C at a terminal always reaches the client, but a test run started in the
        # background (`cmd &`, nohup) inherits SIGINT ignored, and Python then leaves it so.
        proc = subprocess.Popen(
            cmd,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        wait_until(lambda: d.status()["roots"], timeout=120)
        assert not d.root_status(crate)["idle"]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "goes on in the background" in err and "Traceback" not in err
        # --verify reports a root busy all through its wait as not checked, and goes on.
        shown = d.cli("status", "--verify", check=False)
        assert shown.returncode == 1, shown.stderr
        assert f"verify {crate.resolve()}: indexing, not checked" in shown.stdout, shown.stdout
        stop = d.cli("stop")
        assert "finishes the current step" in stop.stdout and "daemon stopped" in stop.stdout
    finally:
        d.kill()


def test_embedding_counts_grow_while_a_long_fill_runs(tmp_path: Path) -> None:
    """The cache hits and misses in status were added only when a fill ended, so a cold
    index showed 0 and 0 for all of its minutes of embedding. The daemon holds after its
    first step of vectors (RCMD_TEST_HOLD_AT) until it is asked to stop."""
    crate = _big_crate(tmp_path / "big", 40)
    d = Daemon(tmp_path / "home", RCMD_TEST_HOLD_AT="vectors_filled")
    d.start()
    try:
        d.cli("index", str(crate))

        def counted() -> bool:
            said = d.status()
            embedding = said["embedding"]
            return embedding["cache_hits"] + embedding["cache_misses"] > 0

        wait_until(counted, timeout=120)
        assert not d.root_status(crate)["idle"]
        assert d.root_status(crate)["activity"] == "embedding"
        d.cli("stop")
    finally:
        d.kill()


def test_search_colours_on_request_and_keeps_a_token_budget(daemon: Daemon, crate: Path) -> None:
    """19.12: --color always paints paths and matches, never (and NO_COLOR) does not;
    --max-tokens trims the results and counts the cut hits."""
    daemon.cli("index", str(crate), "--wait")
    painted = daemon.cli("search", "retry", "--color", "always").stdout
    assert ANSI + "35m" in painted and ANSI + "1;31m" in painted
    assert ANSI not in daemon.cli("search", "retry", "--color", "never").stdout
    plain = run_rcmd("search", "retry", env={**daemon.env, "NO_COLOR": "1"})
    assert plain.returncode == 0 and ANSI not in plain.stdout
    full = json.loads(daemon.cli("search", "retry", "--limit", "20", "--json").stdout)
    assert "cut" not in full
    budget = 120
    out = json.loads(
        daemon.cli("search", "retry", "--limit", "20", "--max-tokens", str(budget), "--json").stdout
    )
    used = sum(len(json.dumps(h, ensure_ascii=False)) for h in out["results"]) / 4
    assert used <= budget and out["cut"] > 0
    assert len(out["results"]) + out["cut"] == len(full["results"])
    said = daemon.cli("search", "retry", "--limit", "20", "--max-tokens", str(budget))
    assert f"{out['cut']} more results cut" in said.stderr


def _modules_after(code: str, env: dict[str, str]) -> set[str]:
    """Modules loaded by `code` alone: -S keeps site's .pth hooks out (ipc is stdlib-only)."""
    run = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)), file=sys.stderr)"
    out = subprocess.run(
        [sys.executable, "-S", "-c", run], env=env, capture_output=True, text=True, cwd=REPO
    )
    return set(out.stderr.split())


def test_start_up_imports_only_what_the_command_needs(daemon: Daemon) -> None:
    """19.13: `--version` loads no CLI at all; `status` loads no daemon, no subprocess,
    no service, completion-time or MCP modules (timing is the benchmark's job:
    python -m bench cli)."""
    env = {**daemon.env, "PYTHONPATH": str(REPO)}
    version = _modules_after(
        "sys.argv = ['rcmd', '--version']\nfrom ipc.main import main\nmain()", env
    )
    assert "ipc" in version and not {"argparse", "ipc.cli", "json", "socket"} & version
    status = _modules_after(
        "sys.argv = ['rcmd', 'status']\nfrom ipc.main import main\nassert main() == 0", env
    )
    assert "ipc.cli" in status
    heavy = {"daemon", "subprocess", "ipc.units", "ipc.mcp_bridge", "mcp", "platformdirs"}
    assert not heavy & status, heavy & status
    # argparse's own formatter imports shutil (with zlib, bz2, lzma) for the terminal
    # width; rcmd's does not (-S above: an editable install's finder loads it at start).
    assert "shutil" not in status


def test_launchd_agent_gets_rcmd_home(tmp_path: Path) -> None:
    """19.14: RCMD_HOME at install time reaches the daemon launchd starts."""
    import plistlib

    from ipc.units import service_files

    env = {"HOME": str(tmp_path), "RCMD_HOME": str(tmp_path / "rc")}
    spec = service_files("launchd", runtime_paths(env), env)
    (text,) = spec.files.values()
    assert plistlib.loads(text.encode())["EnvironmentVariables"] == {"RCMD_HOME": env["RCMD_HOME"]}
    plain = service_files("launchd", runtime_paths(env), {"HOME": str(tmp_path)})
    assert "EnvironmentVariables" not in plistlib.loads(next(iter(plain.files.values())).encode())


@pytest.mark.parametrize("shell", ["bash", "fish"])
def test_completion_offers_values(shell: str, tmp_path: Path) -> None:
    """19.11: the shells themselves complete `service`, `--mode` and `--kind` values."""
    from tests.conftest import require_tools

    require_tools(shell)
    script = tmp_path / "rcmd.completion"
    script.write_text(run_rcmd("completion", shell, env=dict(os.environ)).stdout)
    if shell == "fish":
        probe = "; ".join(
            f'complete -C "{line}"'
            for line in ("rcmd service ", "rcmd search --mode ", "rcmd search --kind ")
        )
        cmd = ["fish", "-c", f"source {script}; {probe}"]
    else:
        probe = "; ".join(
            f"COMP_WORDS=({words}); COMP_CWORD={n}; _rcmd; echo ${{COMPREPLY[@]}}"
            for words, n in (
                ("rcmd service ''", 2),
                ("rcmd search --mode ''", 3),
                ("rcmd search --kind ''", 3),
            )
        )
        cmd = ["bash", "-c", f"source {script}; {probe}"]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    words = set(out.split())
    assert {"install", "uninstall", "status", "hybrid", "bm25", "vector", "fn", "struct"} <= words
