"""Navigation end to end: a real daemon indexes the fixture crate, the real CLI asks
def/refs/callers/callees/impls, and an edit or a deletion changes the file's graph rows."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon, running, seed_cache, wait_until

pytestmark = pytest.mark.slow


def nav(daemon: Daemon, method: str, name: str, root: Path) -> list[dict[str, Any]]:
    out = daemon.cli(method, name, "--root", str(root), "--json").stdout
    results: list[dict[str, Any]] = json.loads(out)["results"]
    return results


def test_navigation_follows_the_code_and_its_edits(daemon: Daemon, crate: Path) -> None:
    daemon.cli("index", str(crate), "--wait")
    root = str(crate.resolve())

    (hit,) = nav(daemon, "def", "RetryPolicy::next_delay", crate)
    assert hit == {
        "root": root,
        "path": "src/net/retry.rs",
        "line": 31,
        "symbol": "net::retry::RetryPolicy::next_delay",
        "kind": "method",
        "confidence": "resolved",
        "crate": "demo_crate",
        "stale": False,
    }
    refs = nav(daemon, "refs", "net::Transport", crate)
    assert {(h["path"], h["line"], h["kind"], h["confidence"]) for h in refs} >= {
        ("src/net/retry.rs", 6, "use", "resolved"),
        ("src/net/retry.rs", 47, "bound", "resolved"),
    }
    callers = nav(daemon, "callers", "next_delay", crate)
    assert [(h["symbol"], h["line"]) for h in callers] == [("net::retry::fetch_with_retry", 61)]
    impls = {(h["symbol"], h["confidence"]) for h in nav(daemon, "impls", "Storage", crate)}
    assert impls == {("store::MemoryStore", "resolved")}
    callees = {h["symbol"] for h in nav(daemon, "callees", "Transport::get", crate)}
    assert "net::Transport::send" in callees

    text = daemon.cli("callers", "next_delay", "--root", str(crate)).stdout
    assert text.splitlines()[0] == "net::retry::fetch_with_retry (fn)"
    # A cut answer says so (it used to end silently at the limit).
    total = len(refs)
    cut = daemon.cli("refs", "net::Transport", "--root", str(crate), "--limit", "1")
    assert len(cut.stdout.splitlines()) == 2  # the file, then its one reference
    assert cut.stderr.strip() == (
        f"rcmd: showing 1 of {total} answers; "
        f"see them all with: rcmd refs net::Transport --root {shlex.quote(str(crate))}"
        f" --limit {total}"
    )
    as_json = daemon.cli("refs", "net::Transport", "--root", str(crate), "--json", "--limit", "1")
    assert json.loads(as_json.stdout)["total"] == total

    # An edit changes the file's rows with its chunks; a deleted file's rows go with it.
    store = crate / "src" / "store.rs"
    store.write_text(
        store.read_text() + "\npub fn audit() -> u16 {\n    crate::macros::check_status(200)\n}\n"
    )
    (crate / "src" / "unicode.rs").unlink()
    wait_until(
        lambda: (
            [h["symbol"] for h in nav(daemon, "callers", "macros::check_status", crate)]
            == ["store::audit"]
        ),
        timeout=60,
    )
    wait_until(lambda: nav(daemon, "def", "zähle_zeichen", crate) == [], timeout=60)
    assert daemon.verify()["ok"]
    missing = daemon.cli("def", "NoSuchThing", "--root", str(crate))
    assert "rcmd search NoSuchThing" in missing.stderr


def test_a_root_started_from_a_snapshot_has_its_graph(
    daemon: Daemon, crate: Path, tmp_path: Path
) -> None:
    """A snapshot carries no graph: the adopted files get theirs from disk when it is
    installed, so navigation works at once, also on files that did not change."""
    daemon.cli("index", str(crate), "--wait")
    file = tmp_path / "demo.rcmd.tar.gz"
    daemon.cli("export", str(crate), str(file))
    other = tmp_path / "other"
    shutil.copytree(crate, other)
    daemon.cli("remove", str(crate))
    daemon.cli("index", str(other), "--from", str(file), "--wait")
    (hit,) = nav(daemon, "impls", "Storage", other)
    assert (hit["path"], hit["symbol"]) == ("src/store.rs", "store::MemoryStore")
    assert daemon.verify()["ok"]


def _stale(daemon: Daemon, crate: Path) -> Path:
    """The crate's state.db with its graph rows made by revision 1 (and no references)."""
    import apsw

    (state,) = [
        p.parent / "state.db"
        for p in daemon.home.rglob("root.txt")
        if p.read_text().strip() == str(crate.resolve())
    ]
    db = apsw.Connection(str(state))
    db.execute("DELETE FROM sym_refs")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'graph_revision'")
    db.close()
    return state


def test_graph_rows_of_an_older_extraction_are_made_again_at_start(
    daemon: Daemon, crate: Path
) -> None:
    """A navigation fix (GRAPH_REVISION) reaches roots indexed before it: at start, a root
    whose rows an older extraction made is read again (a forced batch; its stores are
    kept). Here the old rows lost every reference; the new start makes them again."""
    import apsw

    daemon.cli("index", str(crate), "--wait")
    callers = nav(daemon, "callers", "next_delay", crate)
    assert callers
    daemon.stop()
    state = _stale(daemon, crate)
    daemon.start()
    daemon.wait_idle(crate)
    assert nav(daemon, "callers", "next_delay", crate) == callers
    daemon.stop()
    db = apsw.Connection(str(state))
    (revision,) = db.execute("SELECT value FROM meta WHERE key = 'graph_revision'").fetchone()
    db.close()
    assert revision != "1"


def test_a_stale_root_missing_at_start_is_read_again_when_it_returns(
    daemon: Daemon, crate: Path
) -> None:
    """A root unmounted while the daemon starts has no forced batch then; its return
    (a full rescan) must read its files again, not pass them by on their stat data: its
    graph rows stayed an older extraction's until the next start."""
    daemon.cli("index", str(crate), "--wait")
    callers = nav(daemon, "callers", "next_delay", crate)
    daemon.stop()
    _stale(daemon, crate)
    away = crate.with_name("away")
    crate.rename(away)
    daemon.start()
    missing = "root missing"
    wait_until(lambda: missing in daemon.cli("status").stdout, timeout=60)
    away.rename(crate)
    wait_until(lambda: missing not in daemon.cli("status").stdout, timeout=60)
    daemon.wait_idle(crate)
    assert nav(daemon, "callers", "next_delay", crate) == callers
    assert daemon.verify()["ok"]


def test_answers_from_a_file_changed_since_it_was_read_are_stale(
    tmp_path: Path, crate: Path, warm_cache: Path
) -> None:
    """A navigation hit says `stale`, as a search hit does, while its file's change
    waits to be indexed: an editor jumped to a moved line, or to a deleted file."""
    home = tmp_path / "home"
    home.mkdir()
    seed_cache(home, warm_cache)
    slow = {"RCMD_INDEX_DEBOUNCE_MS": "600000", "RCMD_INDEX_MAX_WAIT_MS": "600000"}
    with running(Daemon(home, **slow)) as daemon:
        daemon.cli("index", str(crate), "--wait")
        (fresh,) = nav(daemon, "def", "RetryPolicy::next_delay", crate)
        assert fresh["stale"] is False
        (crate / "src" / "net" / "retry.rs").unlink()  # its batch waits for the debounce
        (gone,) = nav(daemon, "def", "RetryPolicy::next_delay", crate)
        assert (gone["path"], gone["stale"]) == ("src/net/retry.rs", True)
        said = daemon.cli("callers", "RetryPolicy::next_delay", "--root", str(crate)).stdout
        assert "[changed since indexed]" in said, said
