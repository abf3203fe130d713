"""`rcmd stop` while a search runs: the stop closes the stores under it, and its client
got "internal error: RuntimeError: ... the lexical index is closed". Real daemon, real
stores; the search holds (RCMD_TEST_HOLD_AT=search) until the stop has closed them, so
there is no race with the search finishing first."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from daemon.server import REQUEST_WORKERS
from ipc.errors import Busy, Stopping
from tests.conftest import Daemon, seed_cache, wait_until


@contextmanager
def _held_at(
    tmp_path: Path, crate: Path, warm_cache: Path, point: str, **env: str
) -> Iterator[tuple[Daemon, Callable[[int], bool]]]:
    """A daemon with `crate` indexed whose requests hold at `point`
    (RCMD_TEST_HOLD_AT), and a check that `n` of them are holding (the log says so)."""
    home = tmp_path / "home"
    seed_cache(home, warm_cache)
    d = Daemon(home, RCMD_TEST_HOLD_AT=point, **env)
    d.start()
    log = home / "log" / "rcmd.log"

    def holding(n: int) -> bool:
        return log.is_file() and log.read_text().count("test_hold") >= n

    try:
        d.call("index", path=str(crate))
        d.wait(crate)
        yield d, holding
    finally:
        d.kill()


def test_a_search_cut_short_by_stop_is_told_the_daemon_is_stopping(
    tmp_path: Path, crate: Path, warm_cache: Path
) -> None:
    with _held_at(tmp_path, crate, warm_cache, "search") as (d, holding):
        with ThreadPoolExecutor(1) as pool:
            search = pool.submit(d.call, "search", query="retry failed requests")
            wait_until(lambda: holding(1), 60)
            stopped = d.cli("stop")
            assert "daemon stopped" in stopped.stdout
            with pytest.raises(Stopping) as told:
                search.result(timeout=60)
        assert isinstance(told.value, Busy)  # clients that catch Busy still do
        assert "the daemon is stopping" in str(told.value)
        assert "rcmd daemon" in str(told.value)
        assert d.proc is not None and d.proc.wait(60) == 0


def test_a_fresh_search_waiting_for_its_cookie_does_not_hold_the_stop(
    tmp_path: Path, crate: Path, warm_cache: Path
) -> None:
    """`search --fresh` waits until the watcher reports its cookie; the stop closes the
    watchers, so none came: the search held the stop for `fresh_timeout_s` (30 s each
    of 4 tries) and its client then lost the connection. Now the stop ends the wait and
    the search is told the daemon is stopping. The hold (RCMD_TEST_HOLD_AT=fresh) waits
    for the stop to close the stores before the cookie is written."""
    fresh_timeout = {"RCMD_SEARCH_FRESH_TIMEOUT_S": "600"}
    with _held_at(tmp_path, crate, warm_cache, "fresh", **fresh_timeout) as (d, holding):
        with ThreadPoolExecutor(1) as pool:
            search = pool.submit(d.call, "search", timeout=600, query="retry", fresh=True)
            wait_until(lambda: holding(1), 60)
            assert "daemon stopped" in d.cli("stop").stdout
            with pytest.raises(Stopping):
                search.result(timeout=120)
        assert d.proc is not None and d.proc.wait(120) == 0
        assert not list(crate.rglob(".rcmd-cookie-*"))


def test_a_request_queued_behind_busy_workers_at_the_stop_is_told_so(
    tmp_path: Path, crate: Path, warm_cache: Path
) -> None:
    """The stop shuts the request pools down, dropping what waits in them: a search
    queued behind eight running ones lost its connection with no reply. Each of the
    eight holds (RCMD_TEST_HOLD_AT=search) until the stop closed the stores, so the
    ninth is queued when the stop comes."""
    with _held_at(tmp_path, crate, warm_cache, "search") as (d, holding):
        with ThreadPoolExecutor(REQUEST_WORKERS + 1) as pool:
            searches = [
                pool.submit(d.call, "search", query=f"retry {i}")
                for i in range(REQUEST_WORKERS + 1)
            ]
            wait_until(lambda: holding(REQUEST_WORKERS), 60)
            assert "daemon stopped" in d.cli("stop").stdout
            for search in searches:
                with pytest.raises(Stopping):
                    search.result(timeout=60)
        assert d.proc is not None and d.proc.wait(60) == 0
