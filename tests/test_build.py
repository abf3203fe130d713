"""`rcmd build ROOT -o FILE`: a snapshot made without a daemon, which a daemon adopts
with nothing left to embed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon, run_rcmd

pytestmark = pytest.mark.slow


def build_and_adopt(crate: Path, tmp_path: Path, *extra: str, **env: str) -> dict[str, Any]:
    """Build a snapshot of `crate` with the CLI, then adopt it in a fresh daemon; the
    daemon's status once idle."""
    out = tmp_path / "crate.rcmd"
    build_env = {"RCMD_HOME": str(tmp_path / "build-home"), **env}
    proc = run_rcmd("build", str(crate), "-o", str(out), *extra, env={**os.environ, **build_env})
    assert proc.returncode == 0, proc.stderr
    assert "built" in proc.stdout and out.is_file()
    assert "the cluster was not used" not in proc.stderr  # with --cluster: embedded there
    d = Daemon(tmp_path / "home", **env)
    d.start()
    try:
        d.cli("index", str(crate), "--from", str(out), "--wait")
        status: dict[str, Any] = d.call("status")
        assert d.verify()["ok"]
        assert d.search("retry failed http requests")
    finally:
        d.stop()
        d.kill()
    (root,) = status["roots"]
    assert root["vectors_pending"] == 0 and root["files"] > 0
    assert status["embedding"]["cache_misses"] == 0  # every vector came with the file
    return status


def test_build_without_a_daemon_then_adopt(crate: Path, tmp_path: Path) -> None:
    build_and_adopt(crate, tmp_path)


def test_build_refuses_a_missing_root(tmp_path: Path) -> None:
    env = {**os.environ, "RCMD_HOME": str(tmp_path / "h")}
    proc = run_rcmd("build", str(tmp_path / "nope"), "-o", str(tmp_path / "x.rcmd"), env=env)
    assert proc.returncode != 0 and "is not a directory" in proc.stderr
