"""Exact symbol lookups (`rcmd search --symbol`, the protocol's `symbol`) and how
identifier queries rank, through a real daemon and the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ipc.errors import BadRequest
from tests.conftest import Daemon

pytestmark = pytest.mark.slow


def test_symbol_lookup(daemon: Daemon, crate: Path) -> None:
    daemon.cli("index", str(crate), "--wait")
    # A bare lookup: every `new` and nothing else, no query needed.
    out = daemon.cli("search", "--symbol", "new", "--json", "--limit", "50").stdout
    news = json.loads(out)["results"]
    assert news and all(h["symbol"].endswith("::new") or h["symbol"] == "new" for h in news)
    assert "net::retry::RetryPolicy::new" in {h["symbol"] for h in news}

    # Qualified: exactly that method; matching is on `::` boundaries and case-sensitive.
    exact = daemon.search("delay", "--symbol", "RetryPolicy::next_delay")
    assert [h["symbol"] for h in exact] == ["net::retry::RetryPolicy::next_delay"]
    assert daemon.search("delay", "--symbol", "Policy::next_delay") == []
    assert daemon.search("delay", "--symbol", "retrypolicy::next_delay") == []

    # With other filters and modes.
    assert daemon.search("x", "--symbol", "RetryPolicy::new", "--kind", "struct") == []
    vec = daemon.search("make a policy", "--symbol", "RetryPolicy::new", "--mode", "vector")
    assert [h["symbol"] for h in vec] == ["net::retry::RetryPolicy::new"]

    # A path as the crate's users write it: the crate's name and its `pub use`, for
    # `search --symbol` and `def` alike (lib.rs: `pub use net::retry::RetryPolicy`).
    public = daemon.search("delay", "--symbol", "demo_crate::RetryPolicy::next_delay")
    assert [h["symbol"] for h in public] == ["net::retry::RetryPolicy::next_delay"]
    defs = json.loads(daemon.cli("def", "demo_crate::RetryPolicy", "--json").stdout)["results"]
    assert [d["symbol"] for d in defs] == ["net::retry::RetryPolicy"]
    assert daemon.search("delay", "--symbol", "demo_crate::Nowhere::next_delay") == []

    # The protocol: `query` may be left out with `symbol`, not otherwise.
    res = daemon.call("search", symbol="MemoryStore::get")["results"]
    assert [h["symbol"] for h in res] == ["store::MemoryStore::get"]
    with pytest.raises(BadRequest):
        daemon.call("search", query="  ")
    with pytest.raises(BadRequest):
        daemon.call("search", query="x", symbol=" ")
    usage = daemon.cli("search", check=False)
    assert usage.returncode == 2 and "--symbol" in usage.stderr


def test_a_symbol_no_item_can_have_is_refused(daemon: Daemon, crate: Path) -> None:
    """Every item's symbol is a path of identifiers: `--symbol 'a:::b'` (three colons),
    `'a: :b'` or `':b'` answered "no results" as if it had looked, as `'::::'` did."""
    daemon.cli("index", str(crate), "--wait")
    bad_names = ("MemoryStore:::get", "MemoryStore: :get", ":get", "MemoryStore:get", "a b")
    for bad in (*bad_names, "::::", "a::::b", "Vec::"):
        with pytest.raises(BadRequest, match="is not a Rust name or path"):
            daemon.call("search", symbol=bad)
    refused = daemon.cli("search", "--symbol", "MemoryStore:::get", check=False)
    assert refused.returncode != 0 and "rcmd search --symbol Vec::push" in refused.stderr
    # Names as the code writes them still answer: generics, a macro as it is called.
    ok = daemon.call("search", symbol="MemoryStore::get")["results"]
    assert [h["symbol"] for h in ok] == ["store::MemoryStore::get"]
    assert daemon.call("search", query="x", symbol=" MemoryStore::get ")["results"]
    daemon.call("search", symbol="Wrapper<T>::fmt")
    daemon.call("search", symbol="println!")


def test_identifier_query_ranks_the_exact_symbol_first(daemon: Daemon, crate: Path) -> None:
    daemon.cli("index", str(crate), "--wait")
    for query, symbol in [
        ("RetryPolicy::next_delay", "net::retry::RetryPolicy::next_delay"),
        ("fetch_with_retry", "net::retry::fetch_with_retry"),
        ("MemoryStore::get", "store::MemoryStore::get"),
    ]:
        hits = daemon.search(query)
        assert hits[0]["symbol"] == symbol, (query, [h["symbol"] for h in hits[:3]])
    # No hit repeats lines of a better one in the same file.
    hits = daemon.search("retry policy delay", "--limit", "20")
    for i, a in enumerate(hits):
        for b in hits[:i]:
            if a["path"] == b["path"]:
                assert a["end_line"] < b["start_line"] or b["end_line"] < a["start_line"]


def test_exact_identifiers_say_whether_they_exist(daemon: Daemon, crate: Path) -> None:
    """Issue 18.4/18.6: an identifier the tree defines comes first and `exact.found` is
    true; one it does not gets `found: false` and a line on stderr; a question in words
    carries no `exact` key but a confidence, low when nothing matches it closely."""
    daemon.cli("index", str(crate), "--wait")
    found = json.loads(daemon.cli("search", "RetryPolicy::next_delay", "--json").stdout)
    assert found["exact"] == {"symbol": "RetryPolicy::next_delay", "found": True}
    assert found["results"][0]["symbol"] == "net::retry::RetryPolicy::next_delay"
    absent = daemon.cli("search", "HashMap::with_capacity", "--json")
    reply = json.loads(absent.stdout)
    assert reply["exact"] == {"symbol": "HashMap::with_capacity", "found": False}
    assert "no symbol named HashMap::with_capacity" in absent.stderr
    # Filters narrow where it must be defined: a folder without it says it is not there.
    elsewhere = daemon.cli("search", "RetryPolicy::next_delay", "--path", "store.rs", "--json")
    assert json.loads(elsewhere.stdout)["exact"]["found"] is False
    assert "is defined where --path/--kind look" in elsewhere.stderr
    there = daemon.cli("search", "RetryPolicy::next_delay", "--path", "net", "--json")
    assert json.loads(there.stdout)["exact"]["found"] is True
    as_struct = daemon.cli("search", "RetryPolicy::next_delay", "--kind", "struct", "--json")
    assert json.loads(as_struct.stdout)["exact"]["found"] is False
    question = json.loads(
        daemon.cli("search", "where do we retry failed http requests", "--json").stdout
    )
    assert "exact" not in question and question["confidence"] == "high"
    unrelated = daemon.cli("search", "render a triangle mesh with opengl shaders", "--json")
    assert json.loads(unrelated.stdout)["confidence"] == "low"
    assert "low confidence" in unrelated.stderr


def test_a_bare_lookup_lists_the_item_before_impls_bearing_its_name(
    daemon: Daemon, tmp_path: Path
) -> None:
    """`--symbol Graph` in petgraph listed `impl From<StableGraph> for Graph` (an earlier
    file) before the struct, every hit at score 0.5. Items now come first, and each
    exact match of a bare lookup scores 1."""
    crate = tmp_path / "crate"
    (crate / "src" / "model").mkdir(parents=True)
    (crate / "src" / "conv.rs").write_text(
        "use crate::model::things::Thing;\n\n/// Convert a byte.\n///\n/// Keeps it.\n"
        "impl From<u8> for Thing {\n"
        "    fn from(n: u8) -> Thing {\n        Thing { n }\n    }\n}\n"
    )
    (crate / "src" / "model" / "things.rs").write_text("pub struct Thing {\n    pub n: u8,\n}\n")
    (crate / "src" / "model" / "mod.rs").write_text("pub mod things;\n")
    (crate / "src" / "lib.rs").write_text("mod conv;\npub mod model;\n")
    daemon.cli("index", str(crate), "--wait")
    hits = json.loads(daemon.cli("search", "--symbol", "Thing", "--json").stdout)["results"]
    assert [(h["path"], h["kind"]) for h in hits] == [
        ("src/model/things.rs", "struct"),
        ("src/conv.rs", "impl"),
    ]
    assert hits[0]["score"] == 1.0


def test_each_sides_first_hit_is_in_the_hybrid_top_three(daemon: Daemon, crate: Path) -> None:
    """Fusion may outvote a side's best answer but not bury it (`fusion.keep_leaders`):
    weighted RRF ranked a BM25-only first hit below every vector-only one up to the
    21st. Real daemon, real model, questions in words over the fixture crate."""
    daemon.cli("index", str(crate), "--wait")
    questions = (
        "retry a failed http request with backoff",
        "store a value in memory under a key",
        "parse the configuration file",
        "register a handler for an event source with a token",
    )
    for q in questions:
        top3 = [(h["path"], h["start_line"]) for h in daemon.search(q, "--limit", "3")]
        for mode in ("bm25", "vector"):
            first = daemon.search(q, "--mode", mode, "--limit", "1")
            assert (first[0]["path"], first[0]["start_line"]) in top3, (q, mode, top3)
        # The first hit does not depend on the limit (with a demoted fragment first, a
        # list of 1 read 2 candidates and showed the better of those two).
        for mode in ("bm25", "vector", "hybrid"):
            one, ten = (daemon.search(q, "--mode", mode, "--limit", n)[0] for n in ("1", "10"))
            assert (one["path"], one["start_line"]) == (ten["path"], ten["start_line"]), (q, mode)
