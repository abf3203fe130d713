"""Resources the daemon must give back (issue 17): a removed root's files are closed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import Daemon, held_by

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")


def test_remove_closes_every_file_of_the_root(daemon: Daemon, crate: Path) -> None:
    daemon.cli("index", str(crate), "--wait")
    root_id = daemon.root_status(crate)["id"]
    for _ in range(12):  # several worker threads open their own state.db readers
        daemon.search("retry", "--mode", "bm25")
        daemon.call("status")
    assert daemon.proc is not None
    state = str(daemon.home / "state" / "roots" / root_id)
    assert held_by(daemon.proc.pid, state)  # the check sees them while the root lives
    daemon.cli("remove", str(crate))
    assert held_by(daemon.proc.pid, state) == []


def test_the_peak_rss_is_never_below_the_current(monkeypatch: pytest.MonkeyPatch) -> None:
    """Linux updates `ru_maxrss` lazily: status showed `peak_rss_bytes` under the
    `rss_bytes` beside it (498,249,728 against 498,561,024)."""
    import resource
    from types import SimpleNamespace

    from daemon import metrics

    monkeypatch.setattr(resource, "getrusage", lambda _who: SimpleNamespace(ru_maxrss=1))
    assert metrics.peak_rss_bytes() >= metrics.rss_bytes() > 1024
