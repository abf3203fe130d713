"""Items written inside `macro_rules!` bodies are items (issue 18.3): chunked with their
own line ranges and symbols, found by symbol search, and a hit on one never spans the
whole macro. On the real `core::num` sources when rust-src is installed, and on a small
macro of our own always."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from daemon.chunker import MAX_MACRO_NESTING, MAX_NESTING, chunk_source
from daemon.config import load_config
from daemon.embed_cache import EmbedCache
from daemon.pipeline import Collaborators, run_batch
from daemon.root import RootIndex
from daemon.search import search_roots
from daemon.symbols import extract
from ipc.requests import SearchRequest

CORE_NUM = Path("/usr/lib/rustlib/src/rust/library/core/src/num")

MACRO = b"""\
macro_rules! int_impl {
    ($SelfT:ty, $BITS:expr) => {
        /// Adds, `None` on overflow.
        pub const fn checked_add(self, rhs: Self) -> Option<Self> {
            let (a, b) = self.overflowing_add(rhs);
            if b { None } else { Some(a) }
        }

        pub const BITS: u32 = $BITS;

        pub fn from_parts(x: $SelfT) -> Self { x }
    };
}
"""


@contextmanager
def _core_num(tmp_path: Path, embedder: Any) -> Iterator[RootIndex]:
    """A root holding a copy of `core/src/num`, through its lexical pass (BM25 answers)."""
    tree = tmp_path / "library" / "core" / "src"
    shutil.copytree(CORE_NUM, tree / "num")
    config = load_config({"RCMD_HOME": str(tmp_path / "home")})
    config.paths.cache_dir.mkdir(parents=True)
    cache = EmbedCache(config.paths.embed_cache)
    root = RootIndex((tmp_path / "library").resolve(), config, embedder.model_id, embedder.dim)
    try:
        run_batch(root, None, Collaborators(config, embedder, cache))
        yield root
    finally:
        root.close()
        cache.close()


def test_items_in_a_macro_body_are_chunks() -> None:
    chunks = {c.symbol: c for c in chunk_source("src/num.rs", MACRO)}
    add = chunks["num::int_impl::checked_add"]
    assert (add.kind, add.start_line, add.end_line) == ("method", 3, 7)
    assert chunks["num::int_impl::BITS"].kind == "const"
    assert chunks["num::int_impl::from_parts"].kind == "fn"
    assert "$SelfT" in chunks["num::int_impl::from_parts"].signature  # the real text
    rest = chunks["num::int_impl"]  # the macro keeps only its own lines
    assert rest.kind == "macro" and rest.end_line - rest.start_line < 3


@pytest.mark.skipif(not CORE_NUM.is_dir(), reason="needs rust-src (apt-get install rust-src)")
def test_core_num_methods_are_found_by_symbol(
    tmp_path: Path, embedder: Any, warm_cache: Path
) -> None:
    with _core_num(tmp_path, embedder) as root:
        for name in ("saturating_mul", "leading_zeros", "wrapping_neg", "is_power_of_two"):
            req = SearchRequest(symbol=name, mode="bm25", limit=50)
            hits = search_roots([root], req, embed_query=None)
            assert hits, name
            assert all(h.symbol.endswith("::" + name) for h in hits)
            assert {"core/src/num/int_macros.rs", "core/src/num/uint_macros.rs"} & {
                h.path for h in hits
            }
        req = SearchRequest(symbol="checked_add", mode="bm25", limit=50)
        spans = [h.end_line - h.start_line + 1 for h in search_roots([root], req, embed_query=None)]
        assert spans and max(spans) <= 60, spans


@pytest.mark.skipif(not CORE_NUM.is_dir(), reason="needs rust-src (apt-get install rust-src)")
def test_an_identifier_is_matched_whole_before_its_parts(
    tmp_path: Path, embedder: Any, warm_cache: Path
) -> None:
    """Issue 18.4: `NonZeroU32` (written only as macro arguments in `nonzero.rs`) once had
    no `nonzero.rs` hit in its top 10, behind `u32` and `zero_pow2`."""
    with _core_num(tmp_path, embedder) as root:
        req = SearchRequest(query="NonZeroU32", mode="hybrid", limit=3)
        top3 = search_roots([root], req, embed_query=embedder.embed_query)
        assert "core/src/num/nonzero.rs" in {h.path for h in top3}, top3


CALLS = b"""\
use std::time::Duration;

cfg_time! {
    /// Error returned by `send_timeout`.
    pub enum SendTimeoutError<T> {
        Timeout(T),
        Closed(T),
    }
}

impl Receiver {
    cfg_process_driver! {
        /// Whether the value changed.
        pub(crate) fn try_has_changed(&mut self) -> bool {
            self.changed
        }
    }
}

thread_local! {
    static DEPTH: Cell<u32> = Cell::new(0);
}

forward!(a, b);
"""


def test_items_in_a_braced_macro_call_are_chunks() -> None:
    """`cfg_rt! { pub fn spawn … }` (tokio), `thread_local! { static … }`: the items are
    the module's (or the impl's) with their own rows and docs; the call's own lines are
    no part of the loose code around it; a call whose arguments hold no item stays loose
    code."""
    chunks = [
        (c.kind, c.symbol, c.start_line, c.end_line) for c in chunk_source("src/lib.rs", CALLS)
    ]
    assert chunks == [
        ("code", "lib", 1, 1),
        ("enum", "SendTimeoutError", 4, 8),
        ("method", "Receiver::try_has_changed", 13, 16),
        ("static", "DEPTH", 21, 21),
        ("code", "lib", 24, 24),
    ]
    doc = {c.symbol: c.doc for c in chunk_source("src/lib.rs", CALLS)}
    assert doc["Receiver::try_has_changed"] == "Whether the value changed."


def test_nested_macro_calls_are_items_to_a_bounded_depth() -> None:
    """Each nested call's body is parsed again, so nesting past `MAX_MACRO_NESTING`
    (which no real crate comes near; a 38 KB file of 1,600 levels cost 32 s) is loose
    code; the chunker and the symbol graph stop at the same depth."""
    depth = MAX_MACRO_NESTING + 4
    src = "".join(f"m{i}! {{\nfn a{i}() {{}}\n" for i in range(depth)) + "}\n" * depth
    fns = {c.symbol for c in chunk_source("src/lib.rs", src.encode()) if c.kind == "fn"}
    assert fns == {f"a{i}" for i in range(MAX_MACRO_NESTING)}
    graph = {d.symbol for d in extract("src/lib.rs", src.encode()).defs if d.kind == "fn"}
    assert graph == fns


def test_a_mod_between_nested_macro_calls_does_not_restart_the_count() -> None:
    """`m! { mod a { m! { mod b { … } } } }`: the chunker counted the calls from 0 again
    inside each `mod`, so each level parsed the rest of the file again (838 KB, 30
    levels: 11.8 s against 0.6 s for one) and made chunks of items the graph had not."""
    depth = MAX_MACRO_NESTING + 4
    src = "".join(f"m{i}! {{\nmod s{i} {{\nfn a{i}() {{}}\n" for i in range(depth))
    src += "}\n}\n" * depth
    fns = {c.symbol for c in chunk_source("src/lib.rs", src.encode()) if c.kind == "fn"}
    assert fns == {
        "::".join([*(f"s{j}" for j in range(i + 1)), f"a{i}"]) for i in range(MAX_MACRO_NESTING)
    }
    graph = {d.symbol for d in extract("src/lib.rs", src.encode()).defs if d.kind == "fn"}
    assert graph == fns


def test_nested_macro_rules_in_the_graph_stop_at_the_chunkers_depth() -> None:
    """Each `macro_rules!` level parses its body again. The chunker skips a file nested
    past `MAX_NESTING` as too complex, but a snapshot's adoption builds the graph of the
    files it adopts without chunking them: 1,500 levels cost 11 s there."""
    depth = MAX_NESTING + 10
    src = "".join(f"macro_rules! m{i} {{ () => {{ fn f{i}() {{}}\n" for i in range(depth))
    src += "} };\n" * depth
    fns = {d.symbol for d in extract("src/lib.rs", src.encode()).defs if d.kind == "fn"}
    assert fns and max(len(s.split("::")) for s in fns) <= MAX_NESTING + 1
    assert len(fns) < depth


CFG_IF = b"""cfg_if! {
    if #[cfg(unix)] {
        #[path = "unix.rs"]
        mod imp;
        pub use self::imp::pin;
        impl Handle { pub fn as_raw(&self) -> i32 { 0 } }
    } else {
        #[path = "generic.rs"]
        mod imp;
        pub fn fallback() {}
    }
}
pub struct Handle;
"""


def test_the_branches_of_cfg_if_hold_items_imports_and_path_mods() -> None:
    """crossbeam-epoch's `pin` is `pub use`d inside `cfg_if! { if #[cfg(..)] { … } }`,
    parking_lot_core's `imp` is a `#[path]` mod there, crossbeam-utils' unix impls sit
    there: the braces after `if #[cfg]` and `else` were one unparsable call."""
    chunks = {(c.symbol, c.kind, c.start_line) for c in chunk_source("src/lib.rs", CFG_IF)}
    assert ("Handle::as_raw", "method", 6) in chunks and ("fallback", "fn", 10) in chunks
    graph = extract("src/lib.rs", CFG_IF)
    imports = {(i.alias, i.target) for i in graph.imports}
    assert {("pin", "imp::pin"), ("imp", "unix"), ("imp", "generic")} <= imports, imports
