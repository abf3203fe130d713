"""Every CLI failure is one line on stderr naming what to do, never a traceback: closed or
full stdout, an unusable RCMD_HOME, a deleted working directory, paths given to --path,
out-of-range numbers, and suggested commands that paste into a shell."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ipc.paths import runtime_paths
from tests.conftest import (
    FIXTURE_CRATE,
    REPO,
    USERNS_REASON,
    Daemon,
    read_only,
    run_rcmd,
    seed_cache,
    skip_or_fail,
    userns_available,
    wait_until,
)


def _one_line(proc: Any, code: int = 1) -> str:
    """The single stderr line of a failed command (no traceback)."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("rcmd: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return str(proc.stderr)


def _shell(script: str, *args: str, env: dict[str, str], cwd: Path = REPO) -> Any:
    """`bash -c script` with `$RCMD` the CLI (for redirections and deleted folders)."""
    env = {**env, "PYTHONPATH": str(REPO), "RCMD": f"{sys.executable} -m ipc.cli"}
    return subprocess.run(
        ["bash", "-c", script, "rcmd-test", *args],
        env=env,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_closed_stdout_and_an_unusable_rcmd_home_are_one_line(tmp_path: Path) -> None:
    """`>&-` is a write error; RCMD_HOME naming a file says so for every command."""
    env = {**os.environ, "RCMD_HOME": str(tmp_path / "home")}
    closed = _shell("$RCMD search retry >&-", env=env)
    assert "write error" in _one_line(closed)
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("")
    env["RCMD_HOME"] = str(a_file)
    for args in (["status"], ["search", "retry"], ["index", str(tmp_path)], ["stop"], ["daemon"]):
        line = _one_line(run_rcmd(*args, env=env, timeout=60))
        assert f"RCMD_HOME={a_file} is not a folder" in line, (args, line)


def test_a_read_only_rcmd_home_is_one_line(tmp_path: Path) -> None:
    """`rcmd index` with an RCMD_HOME it cannot write names the folder and the setting.
    Root ignores the mode, so there the folder is made read-only by a bind mount in a
    user and mount namespace of the child's own."""
    home = tmp_path / "home"
    home.mkdir(mode=0o555)
    env = {**os.environ, "RCMD_HOME": str(home), "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "ipc.cli", "index", str(FIXTURE_CRATE)]
    if os.access(home, os.W_OK):
        if not userns_available():
            skip_or_fail(USERNS_REASON + ", as root: to make a folder read-only")
        cmd = [*read_only(home), *cmd]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert f"RCMD_HOME={home} must be a folder you can write to" in _one_line(proc)


def test_numbers_out_of_range_are_usage_errors_naming_the_option(tmp_path: Path) -> None:
    """--limit and --max-tokens are checked against the protocol's bounds by argparse."""
    env = {**os.environ, "RCMD_HOME": str(tmp_path / "home")}
    for args, option in (
        (["search", "retry", "--limit", "1001"], "--limit"),
        (["search", "retry", "--limit", "0"], "--limit"),
        (["def", "Transport", "--limit", "1001"], "--limit"),
        (["search", "retry", "--max-tokens", "0"], "--max-tokens"),
    ):
        proc = run_rcmd(*args, env=env, timeout=60)
        assert proc.returncode == 2, (args, proc.stderr)
        assert f"argument {option}: must be an integer from 1 to" in proc.stderr, proc.stderr
        assert "'limit'" not in proc.stderr and "'max_tokens'" not in proc.stderr


def test_index_refuses_a_broad_folder_before_starting_the_daemon(tmp_path: Path) -> None:
    """A top-level folder, the home folder or one beside it needs --yes, and saying so
    starts no daemon; the message says which of these the folder is."""
    env = {**os.environ, "RCMD_HOME": str(tmp_path / "home"), "HOME": str(tmp_path / "me")}
    (tmp_path / "me").mkdir()
    beside = tmp_path / "other user"
    beside.mkdir()
    top = next(p for p in map(Path, ("/tmp", "/usr", "/home")) if p.is_dir())
    cases = (
        (top, "is a top-level folder"),
        (tmp_path / "me", "is your home folder"),
        (beside, "is beside your home folder"),
    )
    try:
        for folder, why in cases:
            line = _one_line(run_rcmd("index", str(folder), env=env, timeout=60))
            assert why in line and f"rcmd index {shlex.quote(str(folder))} --yes" in line, line
        assert not runtime_paths(env).socket.exists()
        assert not (tmp_path / "home" / "log").exists()  # nothing was spawned
    finally:
        if runtime_paths(env).socket.exists():  # a daemon started after all: stop it
            run_rcmd("stop", env=env, timeout=150)


def test_remove_help_says_the_index_goes_and_the_files_stay(tmp_path: Path) -> None:
    env = {**os.environ, "RCMD_HOME": str(tmp_path / "home")}
    text = " ".join(run_rcmd("remove", "--help", env=env, timeout=60).stdout.split())
    assert "delete its index" in text and "files in the root are not touched" in text


@pytest.fixture
def spaced(tmp_path: Path) -> Path:
    """The fixture crate in a folder whose name has a space."""
    dst = tmp_path / "sp ace" / "demo_crate"
    shutil.copytree(FIXTURE_CRATE, dst)
    return dst.resolve()


def _hit_paths(proc: Any) -> list[str]:
    assert proc.returncode == 0, proc.stderr
    return [h["path"] for h in json.loads(proc.stdout)["results"]]


def test_search_path_resolves_from_the_working_directory(daemon: Daemon, spaced: Path) -> None:
    """An absolute or `..` --path inside the searched root becomes root-relative; one
    outside every searched root is a usage error; globs and names are as they were."""
    daemon.cli("index", str(spaced), "--wait")
    q = ("search", "retry", "--mode", "bm25", "--json", "--limit", "20")
    net = _hit_paths(daemon.cli(*q, "--path", str(spaced / "src" / "net"), check=False))
    assert net and all(p.startswith("src/net/") for p in net), net
    up = _hit_paths(daemon.cli(*q, "--path", "../net", cwd=spaced / "src" / "net", check=False))
    assert up and all(p.startswith("src/net/") for p in up), up
    whole = _hit_paths(daemon.cli(*q, "--path", "..", cwd=spaced / "src", check=False))
    assert any(not p.startswith("src/net/") for p in whole), whole
    assert _hit_paths(daemon.cli(*q, "--path", "src/n*", check=False))
    for value, cwd in (("/etc", spaced), ("..", spaced), ("./src/net", REPO)):
        line = _one_line(daemon.cli(*q, "--path", value, cwd=cwd, check=False), 2)
        assert f"--path {value} is outside the roots searched ({spaced})" in line, line


def test_hits_print_paths_that_open_from_the_working_directory(
    daemon: Daemon, spaced: Path
) -> None:
    """Below the working directory a hit's path is relative to it, elsewhere absolute
    (a root-relative path opens from nowhere); a --root that does not exist says so."""
    daemon.cli("index", str(spaced), "--wait")
    q = ("search", "retry", "--mode", "bm25", "--limit", "1", "--root", str(spaced))
    for cwd, prefix in (
        (spaced, "src/"),
        (spaced.parent, f"{spaced.name}/src/"),
        (REPO, f"{spaced}/src/"),
    ):
        out = daemon.cli(*q, cwd=cwd).stdout
        assert out.startswith(prefix), (cwd, out)
        assert daemon.cli(
            "def", "fetch_with_retry", "--root", str(spaced), cwd=cwd
        ).stdout.startswith(prefix)
    nowhere = str(spaced.parent / "nowhere")
    line = _one_line(daemon.cli("search", "retry", "--root", nowhere, check=False))
    assert "does not exist; see the indexed roots with: rcmd status" in line, line


def test_full_stdout_and_a_deleted_working_directory(daemon: Daemon, spaced: Path) -> None:
    """`>/dev/full` is coreutils' write error; with the working directory deleted,
    search and def search every root and index asks for a folder that exists."""
    daemon.cli("index", str(spaced), "--wait")
    for args in ("status", "search retry --limit 50"):
        full = _shell(f"$RCMD {args} >/dev/full", env=daemon.env)
        assert _one_line(full) == "rcmd: write error: No space left on device\n"
    gone = spaced / "src" / "gone"
    for args in ("search retry --mode bm25", "def fetch_with_retry"):
        gone.mkdir()
        proc = _shell('cd "$1" && rmdir "$1" && $RCMD $2', str(gone), args, env=daemon.env)
        assert proc.returncode == 0 and "retry.rs" in proc.stdout, proc.stderr
        assert "Traceback" not in proc.stderr
    gone.mkdir()
    proc = _shell('cd "$1" && rmdir "$1" && $RCMD index .', str(gone), env=daemon.env)
    assert "the current directory no longer exists" in _one_line(proc)


def test_export_to_a_folder_or_an_unwritable_place_is_one_line(
    daemon: Daemon, spaced: Path, tmp_path: Path
) -> None:
    """A folder for FILE is named with a file to give instead; an OSError in the daemon
    is no internal error. Suggested commands quote paths with spaces."""
    daemon.cli("index", str(spaced), "--wait")
    line = _one_line(daemon.cli("export", str(spaced), str(tmp_path), check=False))
    assert f"{tmp_path} is a directory" in line
    assert f"rcmd export {shlex.quote(str(spaced))} {tmp_path}/demo_crate.rcmd.tar.gz" in line
    line = _one_line(daemon.cli("export", str(spaced), "/proc/x", check=False))
    assert "cannot write /proc/x" in line and "internal error" not in line
    nested = _one_line(daemon.cli("index", str(spaced / "src"), check=False))
    assert f"rcmd index {shlex.quote(str(spaced / 'src'))} --yes" in nested
    assert shlex.split(nested.split("rcmd index ")[1])[0] == str(spaced / "src")
    reindex = _one_line(daemon.cli("reindex", str(spaced), check=False))
    assert f"rcmd reindex --force {shlex.quote(str(spaced))}" in reindex


def test_the_daemon_starts_in_a_project_that_holds_python_files(
    tmp_path: Path, warm_cache: Path
) -> None:
    """A daemon the CLI starts runs from `/`: `python -m` puts the working directory
    first on the import path, so a project's own `json.py` replaced the standard module
    in it (the client here runs with -P, as the installed `rcmd` script never has the
    working directory on its path)."""
    project = tmp_path / "project"
    shutil.copytree(FIXTURE_CRATE, project)
    (project / "json.py").write_text("raise SystemExit('the project json.py was imported')\n")
    home = tmp_path / "home"
    seed_cache(home, warm_cache)
    env = {**os.environ, "RCMD_HOME": str(home), "PYTHONPATH": str(REPO)}
    cli = [sys.executable, "-P", "-m", "ipc.cli"]
    run = {"env": env, "cwd": project, "capture_output": True, "text": True, "timeout": 300}
    try:
        proc = subprocess.run([*cli, "index", str(project), "--wait"], check=False, **run)
        assert proc.returncode == 0, proc.stderr
        hits = subprocess.run([*cli, "search", "fetch_with_retry", "--json"], check=False, **run)
        assert json.loads(hits.stdout)["results"], hits.stderr
    finally:
        subprocess.run([*cli, "stop"], check=False, **run)


def test_a_lock_naming_a_dead_daemon_is_not_running(tmp_path: Path) -> None:
    """A daemon starting after a killed one holds the lock a moment before it rewrites
    the file, which still names the dead daemon as listening: a client asking then must
    hear "not running" (and wait for the new one), not "kill <dead pid>"."""
    import fcntl

    from ipc.client import not_running
    from ipc.errors import DaemonNotRunning

    folder = tmp_path / "rcmd"
    folder.mkdir(mode=0o700)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = folder / "rcmd.lock"
    lock.write_text(f"{dead.pid} listening")
    with open(lock) as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert isinstance(not_running(folder / "rcmd.sock"), DaemonNotRunning)
        lock.write_text(f"{os.getpid()} listening")
        lost = not_running(folder / "rcmd.sock")
    assert not isinstance(lost, DaemonNotRunning) and f"kill {os.getpid()}" in str(lost)


def test_a_daemon_that_bound_its_socket_meanwhile_is_not_lost(tmp_path: Path) -> None:
    """The client looked for the socket before a starting daemon bound it, and read the
    lock after the daemon marked it listening: that daemon is starting, not lost (a test
    fixture failed on "no longer listens ... kill <pid>" of a daemon just started)."""
    import fcntl
    import socket

    from ipc.client import not_running
    from ipc.errors import DaemonNotRunning

    folder = tmp_path / "rcmd"
    folder.mkdir(mode=0o700)
    lock = folder / "rcmd.lock"
    lock.write_text(f"{os.getpid()} listening")
    with open(lock) as held, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listening:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        listening.bind(str(folder / "rcmd.sock"))
        listening.listen(1)
        assert isinstance(not_running(folder / "rcmd.sock"), DaemonNotRunning)


def test_a_command_racing_a_stopping_daemon_starts_the_next_one(
    tmp_path: Path, crate: Path, warm_cache: Path
) -> None:
    """`rcmd stop` in one shell, `rcmd index` in another: the daemon it spawns finds the
    lock held by the one still stopping, and exits to wait for it; once that one is gone
    nothing answered, and the command failed after 120 s ("did not answer")."""
    import fcntl

    home = tmp_path / "home"
    seed_cache(home, warm_cache)
    env = {**os.environ, "RCMD_HOME": str(home), "PYTHONPATH": str(REPO)}
    paths = runtime_paths(env)
    paths.runtime_dir.mkdir(mode=0o700, parents=True)
    refused = paths.log_dir / "daemon.stderr"
    with open(paths.lock, "w") as stopping:  # a daemon finishing its last step
        fcntl.flock(stopping.fileno(), fcntl.LOCK_EX)
        stopping.write(f"{os.getpid()} listening stopping")
        stopping.flush()
        proc = subprocess.Popen(
            [sys.executable, "-m", "ipc.cli", "index", str(crate), "--wait"],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_until(
                lambda: refused.exists() and "another rcmd daemon" in refused.read_text(),
                timeout=120,
            )
        except BaseException:
            proc.kill()
            raise
    try:
        out, err = proc.communicate(timeout=100)  # under the client's own 120 s
        assert proc.returncode == 0, err
        assert "indexed" in out
    finally:
        proc.kill()
        run_rcmd("stop", env=env)


def test_search_and_def_say_when_a_root_is_still_being_indexed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A reply naming roots still `indexing` keeps the key in --json and says so on
    stderr: an empty answer from a root mid-way through its first scan read as final."""
    from ipc import cli

    busy = "/src/big"
    reply = {"results": [], "total": 0, "confidence": "low", "indexing": [busy]}
    monkeypatch.setattr(cli, "_search_here", lambda *_a, **_k: reply)
    for argv, wait in ((["search", "parse elf"], "--fresh waits"), (["def", "Elf"], None)):
        assert cli.main([*argv, "--json"]) == 0
        out, err = capsys.readouterr()
        assert json.loads(out)["indexing"] == [busy], out
        assert f"rcmd: {busy} is still being indexed; results may be incomplete" in err
        assert (wait in err) if wait else "--fresh" not in err, err


def test_a_root_outside_every_root_names_a_command_that_works(
    daemon: Daemon, spaced: Path, tmp_path: Path
) -> None:
    """--root naming a file outside every root suggests indexing its project (`rcmd
    index FILE` fails: not a directory), and a folder holding roots names them (indexing
    it would overlap them)."""
    daemon.cli("index", str(spaced), "--wait")
    loose = tmp_path / "loose" / "src"
    loose.mkdir(parents=True)
    (loose.parent / "Cargo.toml").write_text('[package]\nname = "loose"\n')
    (loose / "lib.rs").write_text("pub fn loose() {}\n")
    line = _one_line(daemon.cli("def", "loose", "--root", str(loose / "lib.rs"), check=False))
    assert line.endswith(f"add its project with: rcmd index {shlex.quote(str(loose.parent))}\n")
    proc = daemon.cli("index", shlex.split(line)[-1], check=False)
    assert proc.returncode == 0, proc.stderr
    above = spaced.parent
    line = _one_line(daemon.cli("search", "retry", "--root", str(above), check=False))
    assert line.endswith(f"give one of the roots in it: {spaced}\n"), line
