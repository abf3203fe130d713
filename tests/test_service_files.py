"""systemd units, the launchd agent, `rcmd service`, and shell completion."""

from __future__ import annotations

import json
import os
import plistlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ipc.cli import build_parser
from ipc.completion import script
from ipc.errors import ConfigError
from ipc.paths import runtime_paths
from ipc.units import (
    LAUNCHD_LABEL,
    SOCKET,
    exec_start_line,
    render_plist,
    render_service,
    service_files,
)
from tests.conftest import REPO, require_tools, wait_until
from tests.conftest import run_rcmd as rcmd

UNITS = REPO / "systemd"
PLIST = REPO / "packaging" / "launchd" / f"{LAUNCHD_LABEL}.plist"


def test_repo_files_are_the_rendered_defaults() -> None:
    assert (UNITS / "rcmd.service").read_text() == render_service()
    assert (UNITS / "rcmd.socket").read_text() == SOCKET
    rendered = plistlib.loads(
        render_plist(["/usr/local/bin/rcmd"], Path("~/Library/Logs/rcmd")).encode()
    )
    assert plistlib.loads(PLIST.read_bytes()) == rendered


@pytest.mark.skipif(sys.platform != "linux", reason="systemd is Linux-only")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    require_tools("systemd-analyze")
    analyze = shutil.which("systemd-analyze")
    assert analyze
    (tmp_path / "rcmd.service").write_text(render_service(f"{sys.executable} -m ipc.cli daemon"))
    (tmp_path / "rcmd.socket").write_text(SOCKET)
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    proc = subprocess.run(
        [
            analyze,
            "verify",
            "--user",
            str(tmp_path / "rcmd.socket"),
            str(tmp_path / "rcmd.service"),
        ],
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    # verify reports unknown keys and bad values as warnings with exit code 0: no output at all.
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "" and proc.stdout.strip() == ""
    service = render_service()
    for line in ("Type=notify", "Restart=on-failure", "StartLimitBurst=5", "NoNewPrivileges=yes"):
        assert line in service
    assert "ListenStream=%t/rcmd/rcmd.sock" in SOCKET and "SocketMode=0600" in SOCKET


def test_no_runtime_dir_variable_prints_no_warning(tmp_path: Path) -> None:
    """Without XDG_RUNTIME_DIR (ssh, containers, cron) platformdirs warns on every call and
    falls back to a private directory of the user's own; rcmd says only its one line."""
    env = {k: v for k, v in os.environ.items() if k not in ("RCMD_HOME", "XDG_RUNTIME_DIR")}
    env.update(HOME=str(tmp_path), TMPDIR=str(tmp_path))
    proc = rcmd("status", env=env, timeout=60)
    assert "Warning" not in proc.stderr, proc.stderr
    assert len(proc.stderr.splitlines()) <= 1, proc.stderr


def test_plist_keys() -> None:
    plist = plistlib.loads(
        render_plist(["/opt/bin/rcmd"], Path("/Users/me/Library/Logs/rcmd")).encode()
    )
    assert plist["Label"] == LAUNCHD_LABEL
    assert plist["ProgramArguments"] == ["/opt/bin/rcmd", "daemon"]
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["StandardErrorPath"].startswith("/Users/me/Library/Logs/rcmd/")


@pytest.mark.parametrize("manager", ["systemd", "launchd"])
def test_service_install_is_idempotent_and_uninstalls(tmp_path: Path, manager: str) -> None:
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / ".config"),
        "RCMD_HOME": str(tmp_path / "rcmd"),
    }
    spec = service_files(manager, runtime_paths(env), env)
    first = rcmd("service", "install", "--manager", manager, env=env)
    assert first.returncode == 0, first.stderr
    assert "wrote" in first.stdout and spec.enable in first.stdout
    for path, text in spec.files.items():
        assert path.read_text() == text
    again = rcmd("service", "install", "--manager", manager, env=env)
    assert "wrote" not in again.stdout and "up to date" in again.stdout
    status = rcmd("service", "status", "--manager", manager, env=env)
    assert "installed" in status.stdout and "not running" in status.stdout
    gone = rcmd("service", "uninstall", "--manager", manager, env=env)
    assert gone.returncode == 0 and spec.disable in gone.stdout
    assert not any(p.exists() for p in spec.files)
    assert "no " in rcmd("service", "uninstall", "--manager", manager, env=env).stdout


def test_exec_start_names_a_program_under_an_odd_path(tmp_path: Path) -> None:
    """An install path with a space, `%h` and `$X` used to be rendered by shlex: systemd
    expanded `%h` to the home folder and could not find the program."""
    require_tools("systemd-analyze")
    folder = tmp_path / "my tools%h$X"
    folder.mkdir()
    program = folder / "rcmd"
    shutil.copy("/bin/true", program)
    exec_start = exec_start_line([str(program), "daemon"])
    (tmp_path / "rcmd.service").write_text(render_service(exec_start))
    (tmp_path / "rcmd.socket").write_text(SOCKET)
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    units = [str(tmp_path / "rcmd.socket"), str(tmp_path / "rcmd.service")]
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--user", *units],
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    with pytest.raises(ConfigError, match="quote"):
        exec_start_line(['/opt/it"s/rcmd', "daemon"])


def test_installed_unit_runs_this_rcmd(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    spec = service_files("systemd", runtime_paths({"RCMD_HOME": str(tmp_path)}), env)
    service = next(t for p, t in spec.files.items() if p.name == "rcmd.service")
    exec_line = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    program = exec_line.removeprefix("ExecStart=").split()[0]
    assert Path(program).is_absolute() and os.access(program, os.X_OK)
    assert exec_line.endswith(" daemon")


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell: str) -> None:
    text = script(shell, build_parser())
    for command in ("index", "search", "status", "reindex", "service", "mcp"):
        assert command in text
    assert "--mode" in text or "mode" in text
    require_tools(shell)
    checker = shutil.which(shell)
    assert checker
    flag = "--no-execute" if shell == "fish" else "-n"
    proc = subprocess.run([checker, flag], input=text, capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    out = rcmd("completion", shell, env=dict(os.environ))
    assert out.returncode == 0 and out.stdout == text


def _unit_value(unit: str, key: str) -> str:
    """`key`'s value in `unit` as systemd reads it: `%%` is `%`, and an Environment=
    assignment in double quotes is unquoted with C escapes."""
    value = next(line for line in unit.splitlines() if line.startswith(f"{key}="))
    value = value.removeprefix(f"{key}=").replace("%%", "%")
    if value.startswith('"'):
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


@pytest.mark.skipif(sys.platform != "linux", reason="systemd is Linux-only")
def test_systemd_units_serve_rcmd_home(tmp_path: Path) -> None:
    """The reported case: the socket unit listened at %t/rcmd/rcmd.sock and the service
    served the default state, while the CLI under RCMD_HOME connected to RCMD_HOME's
    socket. Now the units carry it: installed by the real CLI, checked by systemd, and
    the daemon they describe started as systemd would (socket activation) answers the
    CLI from RCMD_HOME."""
    require_tools("systemd-analyze", "systemd-socket-activate")
    with tempfile.TemporaryDirectory(prefix="rcmd-", dir="/tmp") as short:
        home = Path(short) / 'my "h%ome\\x'  # a space, a quote, a specifier, a backslash
        env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
        env["RCMD_HOME"] = str(home)
        proc = rcmd("service", "install", "--manager", "systemd", env=env)
        assert proc.returncode == 0, proc.stderr
        units = tmp_path / "cfg" / "systemd" / "user"
        socket_unit, service = (units / n for n in ("rcmd.socket", "rcmd.service"))
        listen = _unit_value(socket_unit.read_text(), "ListenStream")
        assert listen == str(runtime_paths(env).socket) == f"{home}/run/rcmd.sock"
        assert _unit_value(service.read_text(), "Environment") == f"RCMD_HOME={home}"
        runtime = tmp_path / "xdg"
        runtime.mkdir(mode=0o700)
        verify = subprocess.run(
            ["systemd-analyze", "verify", "--user", str(socket_unit), str(service)],
            env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
        _activate_and_ask(env, Path(listen), home)


def _activate_and_ask(env: dict[str, str], listen: Path, home: Path) -> None:
    """Listen at `listen` as rcmd.socket says (0600, in a 0700 folder), start the daemon
    on the first connection with the service's RCMD_HOME, and ask it through the CLI."""
    listen.parent.mkdir(parents=True, mode=0o700)
    home.chmod(0o700)
    env_args = ["-E", f"RCMD_HOME={home}", "-E", f"PYTHONPATH={REPO}"]
    daemon = [sys.executable, "-m", "ipc.cli", "daemon"]
    activate = subprocess.Popen(
        ["systemd-socket-activate", "-l", str(listen), *env_args, *daemon],
        cwd="/",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(listen.exists, timeout=30)
        listen.chmod(0o600)  # SocketMode=0600
        status = rcmd("status", "--json", env=env, timeout=120)
        assert status.returncode == 0, status.stderr
        said = json.loads(status.stdout)
        assert said["socket"] == str(listen) and said["pid"] == activate.pid
        assert rcmd("stop", env=env, timeout=120).returncode == 0
        activate.wait(timeout=60)
    finally:
        if activate.poll() is None:
            activate.kill()
            activate.wait()


def test_service_install_refuses_an_rcmd_home_too_long_for_a_socket(tmp_path: Path) -> None:
    """systemd could not bind RCMD_HOME's socket: say so at install, not at first use."""
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    env["RCMD_HOME"] = str(tmp_path / ("h" * 120))
    proc = rcmd("service", "install", "--manager", "systemd", env=env)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "longer than 103 bytes; set RCMD_HOME to a shorter directory" in proc.stderr
    assert not (tmp_path / "cfg").exists()
