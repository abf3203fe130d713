"""Where rcmd keeps its files. Shared by client and daemon so both find the same socket.

`RCMD_HOME=DIR` puts everything under DIR (tests and benchmarks run isolated that way);
otherwise platformdirs' per-user directories are used.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

#: Words a daemon adds to its lock file (after its pid) as it goes: its socket is bound,
#: then closed on purpose. A client that finds no socket while the lock's holder says
#: it listens knows the socket was lost, not that the daemon is starting or stopping.
LISTENING = "listening"
STOPPING = "stopping"


@dataclass(frozen=True, slots=True)
class RuntimePaths:
    state_dir: Path
    cache_dir: Path
    runtime_dir: Path
    log_dir: Path
    config_file: Path

    @property
    def socket(self) -> Path:
        return self.runtime_dir / "rcmd.sock"

    @property
    def lock(self) -> Path:
        return self.runtime_dir / "rcmd.lock"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "rcmd.log"

    @property
    def embed_cache(self) -> Path:
        return self.cache_dir / "embeddings.db"


def runtime_paths(env: dict[str, str] | None = None) -> RuntimePaths:
    env = dict(os.environ) if env is None else env
    home = env.get("RCMD_HOME")
    if home:
        base = Path(home).expanduser().resolve()
        return RuntimePaths(
            state_dir=base / "state",
            cache_dir=base / "cache",
            runtime_dir=base / "run",
            log_dir=base / "log",
            config_file=base / "config.toml",
        )
    import platformdirs  # deferred: only the no-RCMD_HOME path needs it

    # absolute(): a relative XDG_* variable is taken as is by platformdirs; the daemon
    # leaves its working directory once it has read these.
    runtime = _user_runtime_dir(env)
    return RuntimePaths(
        state_dir=Path(platformdirs.user_state_dir("rcmd")).absolute(),
        cache_dir=Path(platformdirs.user_cache_dir("rcmd")).absolute(),
        runtime_dir=Path(runtime).absolute(),
        log_dir=Path(platformdirs.user_log_dir("rcmd")).absolute(),
        config_file=Path(platformdirs.user_config_dir("rcmd")).absolute() / "config.toml",
    )


def _user_runtime_dir(env: dict[str, str]) -> str:
    """platformdirs' runtime directory, without the warning it prints on every command
    when XDG_RUNTIME_DIR is unset (ssh without a login session, containers, cron): the
    fallback it then takes (`/run/user/UID`, else `$TMPDIR/runtime-UID`) is checked to be
    the user's own private directory, so there is nothing to tell. A variable that is set
    but rejected (not owned by the user, not 0700) still warns: that is worth fixing."""
    import platformdirs

    category = getattr(platformdirs, "RuntimeDirWarning", None)
    with warnings.catch_warnings():
        if category is not None and not env.get("XDG_RUNTIME_DIR"):
            warnings.simplefilter("ignore", category)
        return platformdirs.user_runtime_dir("rcmd")
