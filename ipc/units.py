"""Service-manager files for rcmd: systemd user units and a launchd agent.

The texts are defined here, once; `systemd/` and `packaging/launchd/` hold the defaults
rendered from them (a test keeps them in step), and `rcmd service install` renders them
with the current user's paths.
"""

from __future__ import annotations

import os
import plistlib
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ipc.errors import ConfigError
from ipc.paths import RuntimePaths

LAUNCHD_LABEL = "com.github.rcmd.daemon"
DEFAULT_EXEC = "%h/.local/bin/rcmd daemon"  # where pipx and `pip install --user` put it
#: The socket of the default state (no RCMD_HOME): platformdirs' runtime dir is %t/rcmd.
DEFAULT_LISTEN = "%t/rcmd/rcmd.sock"
#: sockaddr_un.sun_path, NUL included (104 on macOS, 108 on Linux: daemon.server's limit).
SUN_PATH_MAX = 104

SERVICE = """\
# rcmd code-search daemon, as a systemd user service.
# Install it for the current user with: rcmd service install
[Unit]
Description=rcmd code-search daemon for Rust projects
Requires=rcmd.socket
After=rcmd.socket
# Restart on failure, but give up after 5 crashes in a minute.
StartLimitIntervalSec=60
StartLimitBurst=5

[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_start}
{environment}Restart=on-failure
RestartSec=2
TimeoutStopSec=60
# Stay out of the way of the user's editor and compiler.
Nice=10
CPUWeight=20
IOSchedulingClass=idle
# Hardening that still lets it read the user's code and write its own state.
NoNewPrivileges=yes
LockPersonality=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
SystemCallArchitectures=native
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
UMask=0077

[Install]
WantedBy=default.target
"""

SOCKET_TEMPLATE = """\
# Socket activation for rcmd: systemd listens where the CLI connects and starts
# rcmd.service on the first connection. Install it with: rcmd service install
[Unit]
Description=rcmd code-search daemon socket

[Socket]
ListenStream={listen}
SocketMode=0600
DirectoryMode=0700
RemoveOnStop=yes

[Install]
WantedBy=sockets.target
"""

SOCKET = SOCKET_TEMPLATE.format(listen=DEFAULT_LISTEN)


@dataclass(frozen=True, slots=True)
class ServiceFiles:
    manager: str
    files: dict[Path, str]
    enable: str
    disable: str


def rcmd_command() -> list[str]:
    """How a service manager should start this very rcmd."""
    exe = shutil.which("rcmd")
    if exe:
        return [str(Path(exe).resolve())]
    return [sys.executable, "-m", "ipc.cli"]


def render_service(exec_start: str = DEFAULT_EXEC, rcmd_home: str | None = None) -> str:
    """The service unit; `rcmd_home` (RCMD_HOME at install time) is passed to the daemon,
    which would otherwise serve the default state while the CLI looks under RCMD_HOME."""
    environment = ""
    if rcmd_home is not None:
        quoted = rcmd_home.replace("\\", "\\\\").replace('"', '\\"')
        environment = f'Environment="RCMD_HOME={_unit_text(quoted)}"\n'
    return SERVICE.format(exec_start=exec_start, environment=environment)


def render_socket(listen: str = DEFAULT_LISTEN) -> str:
    return SOCKET_TEMPLATE.format(listen=listen)


def exec_start_line(argv: list[str]) -> str:
    """`argv` as an ExecStart= value systemd reads back word for word.

    `%` starts a specifier everywhere and `$` a variable in the arguments (not in the
    program's path, which systemd takes as written); a word with a space is quoted. systemd
    refuses a program path holding a quote or a backslash at all, so such an install is
    refused here, in one line, rather than by the service manager at the first start."""
    program, *args = argv
    if any(c in program for c in "\"'\\") or _has_control(program):
        raise ConfigError(
            f"systemd cannot start a program whose path has a quote, a backslash or a control "
            f"character: {program!r}; install rcmd under a plainer path (e.g. pipx install)"
        )
    words = [_unit_text(program)] + [_unit_text(a).replace("$", "$$") for a in args]
    return " ".join(f'"{w}"' if " " in w else w for w in words)


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def _unit_text(text: str) -> str:
    """`text` as a unit file takes it literally: `%` starts a specifier."""
    return text.replace("%", "%%")


def _home_socket(paths: RuntimePaths, rcmd_home: str) -> str:
    """ListenStream for RCMD_HOME's socket, where the CLI connects; refused (one line)
    when a unit file cannot say it or the kernel cannot bind it."""
    if _has_control(rcmd_home):
        raise ConfigError(f"RCMD_HOME={rcmd_home!r} has a control character; a unit cannot hold it")
    if len(os.fsencode(paths.socket)) >= SUN_PATH_MAX:
        raise ConfigError(
            f"socket path {paths.socket} is longer than {SUN_PATH_MAX - 1} bytes; "
            "set RCMD_HOME to a shorter directory"
        )
    return _unit_text(str(paths.socket))


def render_plist(program: list[str], log_dir: Path, rcmd_home: str | None = None) -> str:
    """The launchd agent; `rcmd_home` (RCMD_HOME at install time) is passed to the daemon,
    which otherwise would look for its state, socket and config elsewhere."""
    plist: dict[str, object] = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": [*program, "daemon"],
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},  # restart after a crash, not after `rcmd stop`
        "ThrottleInterval": 10,
        "ProcessType": "Background",
        "Nice": 10,
        "LowPriorityIO": True,
        "StandardOutPath": str(log_dir / "launchd.stdout.log"),
        "StandardErrorPath": str(log_dir / "launchd.stderr.log"),
    }
    if rcmd_home:
        plist["EnvironmentVariables"] = {"RCMD_HOME": rcmd_home}
    return plistlib.dumps(plist).decode()


def default_manager() -> str:
    return "launchd" if sys.platform == "darwin" else "systemd"


def service_files(
    manager: str, paths: RuntimePaths, env: dict[str, str] | None = None
) -> ServiceFiles:
    """The files for `manager`, rendered for this user; with RCMD_HOME set, both managers'
    files carry it, so the service serves the state the CLI looks for."""
    env = dict(os.environ) if env is None else env
    home = Path(env.get("HOME", str(Path.home())))
    # RCMD_HOME as the CLI resolved it (a relative one would name another folder from /).
    rcmd_home = str(paths.config_file.parent) if env.get("RCMD_HOME") else None
    if manager == "systemd":
        unit_dir = Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "systemd" / "user"
        exec_start = exec_start_line([*rcmd_command(), "daemon"])
        listen = DEFAULT_LISTEN if rcmd_home is None else _home_socket(paths, rcmd_home)
        return ServiceFiles(
            manager,
            {
                unit_dir / "rcmd.service": render_service(exec_start, rcmd_home),
                unit_dir / "rcmd.socket": render_socket(listen),
            },
            enable="systemctl --user daemon-reload && systemctl --user enable --now rcmd.socket",
            disable="systemctl --user disable --now rcmd.socket rcmd.service",
        )
    if manager == "launchd":
        agent = home / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
        return ServiceFiles(
            manager,
            {agent: render_plist(rcmd_command(), paths.log_dir, rcmd_home)},
            enable=f"launchctl bootstrap gui/$(id -u) {shlex.quote(str(agent))}",
            disable=f"launchctl bootout gui/$(id -u)/{LAUNCHD_LABEL}",
        )
    raise ValueError(f"unknown service manager {manager!r}")
