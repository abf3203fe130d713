"""`rcmd stop` while a search runs: the stop closes the stores under it, and its client
got "internal error: RuntimeError: ... the lexical index is closed". Real daemon, real
stores; the search holds (RCMD_TEST_HOLD_AT=search) until the stop has closed them, so
there is no race with the search finishing first."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from daemon.server import REQUEST_WORKERS
from ipc.errors import Busy, Stopping
from tests.conftest import Daemon, seed_cache, wait_until


def test_a_search_cut_short_by_stop_is_told_the_daemon_is_stopping(
    tmp_path: Path, crate: Path, warm_cache: Path
) -> None:
    home = tmp_path / "home"
    seed_cache(home, warm_cache)
    d = Daemon(home, RCMD_TEST_HOLD_AT="search")
    d.start()
    try:
        d.call("index", path=str(crate))
        d.wait(crate)
        log = home / "log" / "rcmd.log"
        with ThreadPoolExecutor(1) as pool:
            search = pool.submit(d.call, "search", query="retry failed requests")
            wait_until(lambda: log.is_file() and "test_hold" in log.read_text(), 60)
            stopped = d.cli("stop")
            assert "daemon stopped" in stopped.stdout
            with pytest.raises(Stopping) as told:
                search.result(timeout=60)
        assert isinstance(told.value, Busy)  # clients that catch Busy still do
        assert "the daemon is stopping" in str(told.value)
        assert "rcmd daemon" in str(told.value)
        assert d.proc is not None and d.proc.wait(60) == 0
    finally:
        d.kill()


def test_a_fresh_search_waiting_for_its_cookie_does_not_hold_the_stop(
    tmp_path: Path, crate: Path, warm_cache: Path
) -> None:
    """`search --fresh` waits until the watcher reports its cookie; the stop closes the
    watchers, so none came: the search held the stop for `fresh_timeout_s` (30 s each
    of 4 tries) and its client then lost the connection. Now the stop ends the wait and
    the search is told the daemon is stopping. The hold (RCMD_TEST_HOLD_AT=fresh) waits
    for the stop to close the stores before the cookie is written."""
    home = tmp_path / "home"
    seed_cache(home, warm_cache)
    d = Daemon(home, RCMD_TEST_HOLD_AT="fresh", RCMD_SEARCH_FRESH_TIMEOUT_S="600")
    d.start()
    try:
        d.call("index", path=str(crate))
        d.wait(crate)
        log = home / "log" / "rcmd.log"
        with ThreadPoolExecutor(1) as pool:
            search = pool.submit(d.call, "search", timeout=600, query="retry", fresh=True)
            wait_until(lambda: log.is_file() and "test_hold" in log.read_text(), 60)
            assert "daemon stopped" in d.cli("stop").stdout
            with pytest.raises(Stopping):
                search.result(timeout=120)
        assert d.proc is not None and d.proc.wait(120) == 0
        assert not list(crate.rglob(".rcmd-cookie-*"))
    finally:
        d.kill()


def test_a_request_queued_behind_busy_workers_at_the_stop_is_told_so(
    tmp_path: Path, crate: Path, warm_cache: Path
) -> None:
    """The stop shuts the request pools down, dropping what waits in them: a search
    queued behind eight running ones lost its connection with no reply. Each of the
    eight holds (RCMD_TEST_HOLD_AT=search) until the stop closed the stores, so the
    ninth is queued when the stop comes."""
    home = tmp_path / "home"
    seed_cache(home, warm_cache)
    d = Daemon(home, RCMD_TEST_HOLD_AT="search")
    d.start()
    try:
        d.call("index", path=str(crate))
        d.wait(crate)
        log = home / "log" / "rcmd.log"
        with ThreadPoolExecutor(REQUEST_WORKERS + 1) as pool:
            searches = [
                pool.submit(d.call, "search", query=f"retry {i}")
                for i in range(REQUEST_WORKERS + 1)
            ]
            wait_until(lambda: log.read_text().count("test_hold") >= REQUEST_WORKERS, 60)
            assert "daemon stopped" in d.cli("stop").stdout
            for search in searches:
                with pytest.raises(Stopping):
                    search.result(timeout=60)
        assert d.proc is not None and d.proc.wait(60) == 0
    finally:
        d.kill()
