"""Where rcmd keeps its files. Shared by client and daemon so both find the same socket.

`RCMD_HOME=DIR` puts everything under DIR (tests and benchmarks run isolated that way);
otherwise platformdirs' per-user directories are used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


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

    runtime = platformdirs.user_runtime_dir("rcmd")
    return RuntimePaths(
        state_dir=Path(platformdirs.user_state_dir("rcmd")),
        cache_dir=Path(platformdirs.user_cache_dir("rcmd")),
        runtime_dir=Path(runtime),
        log_dir=Path(platformdirs.user_log_dir("rcmd")),
        config_file=Path(platformdirs.user_config_dir("rcmd")) / "config.toml",
    )
