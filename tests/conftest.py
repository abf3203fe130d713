"""Shared fixtures: isolated RCMD_HOME, the real embedder, a real daemon process."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from ipc.driver import DaemonDriver

FIXTURE_CRATE = Path(__file__).parent / "fixtures" / "demo_crate"
REPO = Path(__file__).resolve().parent.parent


def run_rcmd(*args: str, env: dict[str, str], timeout: float = 300, cwd: Path | None = None) -> Any:
    """The real CLI in a child process: `rcmd ARGS` with `env` (in `cwd`, default the
    checkout, which is no indexed root)."""
    return subprocess.run(
        [sys.executable, "-m", "ipc.cli", *args],
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or REPO,
    )


def run_daemon_once(env: dict[str, str], timeout: float = 60) -> Any:
    """`python -m daemon` run to its end: for daemons expected to refuse or to crash."""
    return subprocess.run(
        [sys.executable, "-m", "daemon"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


#: RCMD_TEST_STRICT=1 (set by .ci/run, which installs every tool): a test that would
#: skip for a missing tool or privilege fails instead, so CI runs every test.
STRICT = os.environ.get("RCMD_TEST_STRICT") == "1"
#: Skip reasons of that kind start so; other skips (platform) stay skips.
NEEDS = "needs "


def skip_or_fail(reason: str) -> None:
    """Skip the test for `reason` ("needs ..."); under RCMD_TEST_STRICT=1, fail it."""
    if STRICT:
        pytest.fail(f"{reason} (RCMD_TEST_STRICT=1: install it, as .ci/run does)")
    pytest.skip(reason)


def require_tools(*tools: str) -> None:
    """Skip (fail when strict) unless every command in `tools` is on PATH."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        skip_or_fail(f"{NEEDS}{', '.join(missing)} on PATH (Debian: see .ci/run)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Under RCMD_TEST_STRICT=1, a `skipif` mark whose reason starts with "needs " fails."""
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        if reason.startswith(NEEDS):
            report.outcome = "failed"
            report.longrepr = f"{reason} (RCMD_TEST_STRICT=1: CI must run this test)"


#: Run a command in a user namespace of its own, mapped to the same uid.
OWN_USERNS = ["unshare", "--user", "--map-current-user", "--"]
#: The same with a mount namespace of its own: mounts made there never reach the host.
OWN_MOUNTNS = ["unshare", "--user", "--map-current-user", "--mount", "--"]


def userns_available() -> bool:
    if shutil.which("nsenter") is None:
        return False
    try:
        return subprocess.run([*OWN_USERNS, "true"], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


USERNS_REASON = "needs user namespaces (util-linux's unshare and nsenter, userns enabled)"

#: Tests that change kernel limits or mount file systems do it in a namespace of their
#: own, never on the host; where user namespaces are off they skip, saying why.
needs_userns = pytest.mark.skipif(not userns_available(), reason=USERNS_REASON)


def write_new_code(src: Path, name: str, files: int, fns: int) -> None:
    """`files` modules of `fns` small documented functions (`name_{file}_{fn}`) under `src`:
    code no embedding cache holds, so every chunk of it goes through the model."""
    src.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        body = "\n".join(
            f"/// {name} {i}-{j} computes a value.\npub fn {name}_{i}_{j}(x: u64) -> u64 "
            f"{{ x.wrapping_mul({j + 1}).rotate_left({i % 63}) ^ {i * 7919 + j} }}\n"
            for j in range(fns)
        )
        (src / f"{name}_{i}.rs").write_text(body)


def held_by(pid: int, prefix: str) -> list[str]:
    """The files under `prefix` that `pid` holds open (`fd PATH`) or mapped (`map PATH`)."""
    held = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith(prefix):
            held.append(f"fd {target}")
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith(prefix):
            held.append(f"map {parts[5]}")
    return held


def wait_until(pred: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll `pred` until it returns something truthy; fail with a message at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")


@pytest.fixture
def crate(tmp_path: Path) -> Path:
    """A private copy of the fixture crate, free to edit."""
    dst = tmp_path / "demo_crate"
    shutil.copytree(FIXTURE_CRATE, dst)
    return dst


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("RCMD_HOME", str(h))
    return h


@pytest.fixture(scope="session")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from daemon.config import EmbeddingConfig
    from daemon.embedder import Embedder

    return Embedder(EmbeddingConfig(), tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def warm_cache(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Path:
    """An embeddings.db holding the fixture crate's vectors, made once per session.

    The cache is keyed by content, so seeding a test's RCMD_HOME with it changes no result,
    only how long the test waits for the model. Tests about cold indexing do not use it.
    """
    from daemon.config import load_config
    from daemon.embed_cache import EmbedCache
    from daemon.pipeline import Collaborators, fill_vectors, run_batch
    from daemon.root import RootIndex

    base = tmp_path_factory.mktemp("warm")
    crate = base / "demo_crate"
    shutil.copytree(FIXTURE_CRATE, crate)
    config = load_config({"RCMD_HOME": str(base / "home")})
    config.paths.cache_dir.mkdir(parents=True)
    cache = EmbedCache(config.paths.embed_cache)
    root = RootIndex(crate.resolve(), config, embedder.model_id, embedder.dim)
    collab = Collaborators(config, embedder, cache)
    run_batch(root, None, collab)
    fill_vectors(root, collab, lambda: False)  # a batch leaves cache misses pending
    root.close()
    cache.close()
    # The embedding layout this machine measured, so each seeded daemon skips measuring.
    if embedder.layout_file.exists():
        shutil.copy(embedder.layout_file, config.paths.cache_dir / embedder.layout_file.name)
    return config.paths.embed_cache


def seed_cache(home: Path, warm: Path) -> None:
    (home / "cache").mkdir(parents=True, exist_ok=True)
    shutil.copy(warm, home / "cache" / "embeddings.db")
    for layout in warm.parent.glob("embed-layout.json"):
        shutil.copy(layout, home / "cache" / layout.name)


class Daemon(DaemonDriver):
    """A real `rcmd daemon` process in its own RCMD_HOME (ipc.driver), plus the real CLI."""

    def __init__(self, home: Path, prefix: Sequence[str] = (), **env: str) -> None:
        super().__init__(home, env, prefix)

    def cli(
        self, *args: str, check: bool = True, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc: subprocess.CompletedProcess[str] = run_rcmd(*args, env=self.env, cwd=cwd)
        if check and proc.returncode != 0:
            raise AssertionError(f"rcmd {' '.join(args)} -> {proc.returncode}\n{proc.stderr}")
        return proc

    def search(self, query: str, *extra: str) -> list[dict[str, Any]]:
        out = self.cli("search", query, "--json", *extra).stdout
        results: list[dict[str, Any]] = json.loads(out)["results"]
        return results

    def wait_idle(self, path: Path, timeout: float = 120) -> dict[str, Any]:
        return self.wait(path, timeout)

    def verify(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("verify")
        return result


@pytest.fixture
def daemon(tmp_path: Path, warm_cache: Path) -> Iterator[Daemon]:
    """A running daemon whose embedding cache already holds the fixture crate."""
    home = tmp_path / "home"
    home.mkdir()
    seed_cache(home, warm_cache)
    with running(Daemon(home)) as d:
        yield d


@contextlib.contextmanager
def running(d: Daemon) -> Iterator[Daemon]:
    """`d` started, then stopped (killed if it will not stop) whatever the test did."""
    d.start()
    try:
        yield d
    finally:
        try:
            d.stop()
        finally:
            d.kill()


@pytest.fixture
def setup(crate: Path, tmp_path: Path, embedder: Any, warm_cache: Path) -> Any:
    """In-process stores for the fixture crate: (crate, collaborators, open_root()); every
    root opened is closed at the end."""
    from daemon.config import load_config
    from daemon.embed_cache import EmbedCache
    from daemon.pipeline import Collaborators
    from daemon.root import RootIndex

    config = load_config({"RCMD_HOME": str(tmp_path / "home")})
    seed_cache(tmp_path / "home", warm_cache)
    cache = EmbedCache(config.paths.embed_cache)
    collab = Collaborators(config, embedder, cache)
    roots: list[Any] = []

    def open_root() -> Any:
        root = RootIndex(crate.resolve(), config, embedder.model_id, embedder.dim)
        roots.append(root)
        return root

    yield crate, collab, open_root
    for r in roots:
        r.close()
    cache.close()


def private_tmpfs(over: Path, size: str = "16m") -> list[str]:
    """A command prefix: its own user and mount namespaces with a tmpfs of `size` over
    `over` (the host's mounts are never touched; `needs_userns` says when this works)."""
    return [
        *OWN_MOUNTNS,
        "sh",
        "-c",
        f'mount -t tmpfs -o size={size} tmpfs "$0" && exec "$@"',
        str(over),
    ]


#: Python lines that fill the disk holding `disk` (a name the script defines) to the
#: last byte: for scripts run in a `private_tmpfs`.
FILL_DISK = """with open(disk / "filler", "wb") as f:
    try:
        while True:
            f.write(bytes(1 << 16))
    except OSError:
        pass
"""


def in_daemon_ns(pid: int, script: str) -> str:
    """Run `script` in the daemon's user and mount namespaces (never the host's)."""
    nsenter = ["nsenter", "--user", "--mount", "--target", str(pid), "--preserve-credentials"]
    return subprocess.run(
        [*nsenter, "sh", "-c", script], check=True, capture_output=True, text=True
    ).stdout


def run_on_tmpfs(disk: Path, size: str, script: str) -> subprocess.CompletedProcess[str]:
    """`script` run by Python (argv[1]: `disk`) with a tmpfs of `size` over `disk`."""
    disk.mkdir()
    return subprocess.run(
        [*private_tmpfs(disk, size), sys.executable, "-c", script, str(disk)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def fill_leaving(pid: int, folder: Path, free_kib: int) -> None:
    """Fill `folder`'s disk with `folder/filler` until `free_kib` KiB are left."""
    in_daemon_ns(
        pid,
        f'avail=$(df -k --output=avail "{folder}" | tail -1); '
        f'head -c $(( (avail - {free_kib}) * 1024 )) /dev/zero > "{folder}/filler"',
    )


def read_only(folder: Path) -> list[str]:
    """A command prefix that sees `folder` read-only (a bind mount in namespaces of its
    own): root ignores a folder's mode, so a test run as root cannot make it so."""
    remount = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    return [*OWN_MOUNTNS, "sh", "-c", remount, str(folder)]
