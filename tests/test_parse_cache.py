"""Incremental parsing (issue 20.2): the edit derived from two versions, and the
property that chunking from the previous tree always equals chunking the new file from
scratch, over many random edits (insertions, deletions, edits inside strings and
comments, edits that merge or split items)."""

from __future__ import annotations

from pathlib import Path

import blake3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.chunker import chunk_source
from daemon.graph_edit import GraphMemo
from daemon.graph_edit import extract as edited_graph
from daemon.parse_cache import (
    ENTRY_BYTES_PER_NODE,
    ENTRY_BYTES_PER_SOURCE_BYTE,
    ParseCache,
    derive_edit,
)
from daemon.symbols import extract
from daemon.units import chunk_tree
from tests.conftest import FIXTURE_CRATE

BASE = """//! A module with one of everything.
use std::fmt;

/// Says hello.
#[inline]
pub fn hello(name: &str) -> String {
    let greeting = "hello, { world } // not a comment";
    format!("{greeting} {name}")
}

// A plain comment above a struct.
pub struct Point { pub x: i32, pub y: i32 }

impl Point {
    /// The origin.
    pub const ORIGIN: Point = Point { x: 0, y: 0 };

    pub fn norm(&self) -> i32 {
        /* block comment with fn fake() {} inside */
        self.x.abs() + self.y.abs()
    }
}

pub trait Shape {
    fn area(&self) -> f64;
    fn name(&self) -> &str { "shape" }
}

mod inner {
    //! Inner docs.
    pub fn deep() -> u8 { 1 }
}

macro_rules! make {
    ($n:ident) => { pub fn $n() {} };
}

"""
#: Two items on one row: the whole file is cut by the whole walk (nothing reused).
SHARED_ROW = BASE + "fn a() {} fn b() {}\n"
#: Enough items that an edit leaves pieces before and after its window.
MANY = BASE + "".join(
    f"/// f{i}\n{'#[inline]' if i % 3 else '// plain'}\nfn f{i}() -> u8 {{ {i} }}\n\n"
    for i in range(30)
)

SNIPPETS = [
    "\n",
    "\n\n",
    "}",
    "{",
    '"',
    "/*",
    "*/",
    "// c\n",
    "/// doc\n",
    "#[inline]\n",
    "fn x() -> u8 { 7 }\n",
    "impl Point {\n",
    "mod m {\n",
    "let q = 1;",
    "é",
    "zz",
    " ",
]
MARKERS = ['"', "//", "/*", "fn ", "}\n", "{\n", "\n\n", "impl", "///"]


def _bases() -> list[str]:
    files = sorted(p for p in FIXTURE_CRATE.rglob("*.rs") if p.name != "broken.rs")
    return [BASE, SHARED_ROW, MANY, MANY] + [p.read_text() for p in files[:3]]


@st.composite
def edit_sessions(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A base text and the versions a few random edits make of it."""
    text = draw(st.sampled_from(_bases()))
    versions = []
    for _ in range(draw(st.integers(1, 6))):
        at_marker = draw(st.booleans())
        marks = [i for m in MARKERS for i in range(len(text)) if text.startswith(m, i)]
        if at_marker and marks:
            pos = draw(st.sampled_from(marks)) + draw(st.integers(0, 2))
        else:
            pos = draw(st.integers(0, len(text)))
        pos = min(pos, len(text))
        cut = draw(st.integers(0, 40)) if draw(st.booleans()) else 0
        insert = draw(st.sampled_from(["", *SNIPPETS]))
        text = text[:pos] + insert + text[pos + cut :]
        versions.append(text)
    return versions[0], versions


def _has_error(text: str) -> bool:
    import tree_sitter

    from daemon.chunker import language, normalize

    return bool(tree_sitter.Parser(language()).parse(normalize(text.encode())).root_node.has_error)


def _digest(text: str) -> bytes:
    return blake3.blake3(text.encode()).digest()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(edit_sessions())
def test_incremental_chunks_equal_a_full_rechunk(session: tuple[str, list[str]]) -> None:
    first, versions = session
    cache = ParseCache(64 << 20)
    rel = "src/shapes.rs"
    cache.chunk(("r", rel), BASE.encode(), _digest(BASE))
    memo = GraphMemo()
    for text in [BASE, first, *versions]:
        got = cache.chunk(("r", rel), text.encode(), _digest(text))
        # A text with a syntax error is parsed afresh (error recovery may differ).
        assert got.incremental or _has_error(text)
        assert got.chunks == chunk_source(rel, text.encode())
        # The symbol graph read from the cache's (incremental) tree is a fresh parse's,
        # and so is the one that reuses the previous version's unchanged items.
        parsed = cache.tree_for(("r", rel), _digest(text))
        assert parsed is not None
        whole = extract(rel, text.encode())
        assert extract(rel, text.encode(), parsed) == whole
        assert edited_graph(rel, *parsed, memo) == whole


def test_edit_inside_one_fn_rechunks_one_item() -> None:
    cache = ParseCache(64 << 20)
    rel = "src/shapes.rs"
    first = cache.chunk(("r", rel), BASE.encode(), _digest(BASE))
    assert not first.incremental and first.items_reparsed == 6
    edited = BASE.replace("self.x.abs()", "self.x.abs() * 2")
    again = cache.chunk(("r", rel), edited.encode(), _digest(edited))
    assert again.incremental and again.items_reparsed == 1
    assert again.chunks == chunk_source(rel, edited.encode())
    # No tree structure changes inside a string: the edited bytes alone mark the item.
    inside_string = edited.replace("not a comment", "still not a comment")
    third = cache.chunk(("r", rel), inside_string.encode(), _digest(inside_string))
    assert third.items_reparsed == 1
    # Two edits far apart make one derived edit spanning the items between them, and
    # tree-sitter reports the whole span as changed: all five are chunked again.
    far = BASE.replace("mod inner", "mod outer")
    fourth = cache.chunk(("r", rel), far.encode(), _digest(far))
    assert fourth.items_reparsed == 5
    assert fourth.chunks == chunk_source(rel, far.encode())
    assert third.chunks == chunk_source(rel, inside_string.encode())


def test_an_edit_keeps_the_pieces_around_it() -> None:
    cache = ParseCache(64 << 20)
    rel = "src/many.rs"
    cache.chunk(("r", rel), MANY.encode(), _digest(MANY))
    text = MANY
    for i, (old, new) in enumerate([("{ 14 }", "{ 140 }"), ("{ 3 }", "{\n    3\n}"), ("f29", "g")]):
        text = text.replace(old, new)
        got = cache.chunk(("r", rel), text.encode(), _digest(text))
        assert got.items_reparsed == 1, i
        assert got.chunks == chunk_source(rel, text.encode())


def test_lines_inserted_above_shift_reused_chunks() -> None:
    cache = ParseCache(64 << 20)
    rel = "src/shapes.rs"
    cache.chunk(("r", rel), BASE.encode(), _digest(BASE))
    moved = BASE.replace("use std::fmt;\n", "use std::fmt;\nuse std::io;\n\n")
    got = cache.chunk(("r", rel), moved.encode(), _digest(moved))
    assert got.items_reparsed == 0 and got.chunks == chunk_source(rel, moved.encode())
    shared = cache.chunk(("r", rel), SHARED_ROW.encode(), _digest(SHARED_ROW))
    assert shared.items_reparsed == 8 and shared.chunks == chunk_source(rel, SHARED_ROW.encode())


def test_derive_edit_is_the_smallest_single_replacement() -> None:
    old, new = b"fn a() {\n    1\n}\n", b"fn a() {\n    22\n}\n"
    e = derive_edit(old, new)
    assert e is not None
    assert (e.start_byte, e.old_end_byte, e.new_end_byte) == (13, 14, 15)
    assert (e.start_point, e.old_end_point, e.new_end_point) == ((1, 4), (1, 5), (1, 6))
    assert new[: e.start_byte] + new[e.start_byte : e.new_end_byte] + old[e.old_end_byte :] == new
    grown = derive_edit(b"aaa", b"aaaa")  # prefix and suffix never overlap
    assert grown is not None and (grown.start_byte, grown.old_end_byte, grown.new_end_byte) == (
        3,
        3,
        4,
    )
    big = bytes(range(256)) * 100
    cut = derive_edit(big, big[:5000] + big[5010:])
    assert cut is not None and (cut.start_byte, cut.old_end_byte, cut.new_end_byte) == (
        5000,
        5010,
        5000,
    )
    assert derive_edit(old, old) is None


def test_cache_is_bounded_least_recently_used_first() -> None:
    text = BASE.encode()
    cache = ParseCache(3 * len(text) * ENTRY_BYTES_PER_SOURCE_BYTE)
    for i in range(5):
        cache.chunk(("r", f"src/m{i}.rs"), text, b"d")
    assert len(cache) == 3 and cache.evicted == 2
    assert cache.size <= 3 * len(text) * ENTRY_BYTES_PER_SOURCE_BYTE
    assert cache.chunks_for(("r", "src/m4.rs"), b"d") is not None
    assert cache.chunks_for(("r", "src/m0.rs"), b"d") is None
    assert not cache.chunk(("r", "src/m0.rs"), text, b"d").incremental
    tiny = ParseCache(10)
    tiny.chunk(("r", "src/a.rs"), text, b"d")
    assert len(tiny) == 0  # an entry that cannot fit is not kept


def test_a_source_dense_in_nodes_is_counted_by_its_nodes() -> None:
    """120k nested blocks in 240 KB make 480k nodes (46 MB of tree, 200 bytes a source
    byte): counted at 56 bytes a source byte, two such files held 95 MB under a 64 MB
    budget. Real code is counted by its bytes, as before."""
    dense = b"pub fn h() { " + b"{" * 20_000 + b"}" * 20_000 + b" }\n"
    cache = ParseCache(1 << 30)
    cache.chunk(("r", "src/blocks.rs"), dense, b"d")
    assert cache.size >= 40_000 * ENTRY_BYTES_PER_NODE > len(dense) * ENTRY_BYTES_PER_SOURCE_BYTE
    text = BASE.encode()
    plain = ParseCache(1 << 30)
    plain.chunk(("r", "src/m.rs"), text, b"d")
    assert plain.size == len(text) * ENTRY_BYTES_PER_SOURCE_BYTE


def test_units_equal_the_whole_walk_on_real_files() -> None:
    """Every fixture file, and a slice of rust-src when it is installed."""
    import tree_sitter

    from daemon.chunker import language, normalize

    files = sorted(FIXTURE_CRATE.rglob("*.rs"))
    library = Path("/usr/lib/rustlib/src/rust/library/core/src/num")
    files += sorted(library.rglob("*.rs"))[:40] if library.is_dir() else []
    parser = tree_sitter.Parser(language())
    for f in files:
        source = normalize(f.read_bytes())
        rel = f.name
        got = chunk_tree(rel, source, parser.parse(source))
        assert got.chunks == chunk_source(rel, source), f


def test_edits_of_real_files_equal_a_full_rechunk() -> None:
    """Lines inserted, changed, deleted and commented in real files (the fixture crate,
    and a slice of rust-src's alloc when it is installed)."""
    import random

    files = sorted(FIXTURE_CRATE.rglob("*.rs"))
    library = Path("/usr/lib/rustlib/src/rust/library/alloc/src")
    files += sorted(library.rglob("*.rs"))[:30] if library.is_dir() else []
    rnd = random.Random(7)
    cache = ParseCache(256 << 20)
    for f in files:
        text = f.read_bytes()
        rel = f.relative_to(f.parents[1]).as_posix()
        cache.chunk(("r", rel), text, b"")
        memo = GraphMemo()
        parsed = cache.tree_for(("r", rel), b"")
        assert parsed is not None
        edited_graph(rel, *parsed, memo)
        for op in range(4):
            lines = text.split(b"\n")
            i = rnd.randrange(len(lines))
            if op == 0:
                lines.insert(i, b"")
            elif op == 1:
                lines[i] += b" x"
            elif op == 2:
                del lines[i]
            else:
                lines.insert(i, b"// note")
            text = b"\n".join(lines)
            got = cache.chunk(("r", rel), text, bytes([op]))
            assert got.chunks == chunk_source(rel, text), (f, op, i)
            parsed = cache.tree_for(("r", rel), bytes([op]))
            assert parsed is not None
            assert edited_graph(rel, *parsed, memo) == extract(rel, text), (f, op, i)


def test_an_edited_files_graph_follows_its_scope() -> None:
    """Unchanged items keep their references only while the file's scope does: a `use`
    deleted (or a definition added, a field's type or a method's return type changed)
    changes what their names resolve to."""
    base = (
        "use std::cell::Cell;\n\nfn a() -> Cell<u8> { Cell::new(1) }\n\n"
        "fn b() { a(); }\n\nfn c() { helper(); }\n\nstruct S { f: Cell<u8> }\n\n"
        "impl S { fn g(&self) { self.f.get(); } }\n"
    )
    made = "fn e(s: S) {{ let x = s.mk(); x.get(); }}\n\nimpl S {{ fn mk(&self) -> {} {{ }} }}\n"
    edits = [
        base.replace("helper();", "helper(); b();"),  # one item changed
        base.replace("f: Cell<u8>", "f: Local"),  # a field's type: `self.f.get()` is Local's
        base.replace("use std::cell::Cell;\n", ""),  # a use gone
        base.replace("fn c()", "fn helper() {}\nfn c()"),  # a definition added
        "\n\n" + base,  # every item moved
        '#[path = "w.rs"]\nmod imp;\n' + base + "fn d() { imp::f(); }\n",  # w.rs's `f`
        '#[path = "v.rs"]\nmod imp;\n' + base + "fn d() { imp::f(); }\n",  # ... then v.rs's
        "#[cfg(test)]\nmod imp;\n" + base + "fn d() { imp::f(); }\n",  # ... then its own
        base + "type Shared = Cell<u8>;\n",  # an alias: an import of std's Cell
        base + "type Shared = S;\n",  # ... then of the file's S
        "\n" + base + "type Shared = S;\n",  # ... moved
        base.replace("use std::cell::Cell;\n", "") + "type Shared = Cell<u8>;\n",  # `Cell` gone
        base + made.format("Local"),  # `x.get()` on what `mk` gives back: Local's
        base + made.format("Cell<u8>"),  # ... then Cell's: `e` unchanged, its `x` not
    ]
    cache = ParseCache(64 << 20)
    memo = GraphMemo()
    rel = "src/lib.rs"
    for k, text in enumerate([base, base, *edits, base]):
        digest = bytes([k])
        cache.chunk(("r", rel), text.encode(), digest)
        parsed = cache.tree_for(("r", rel), digest)
        assert parsed is not None
        assert edited_graph(rel, *parsed, memo) == extract(rel, text.encode()), k


def test_an_edited_files_path_imports_follow_the_mod_after_the_attribute() -> None:
    """A `#[path]` import is placed at its attribute but depends on the `mod` after it:
    an attribute added before an unchanged `mod`, or a comment or an impl put between
    them or taken out, kept the last version's imports in the incremental graph."""
    tail = "fn a() {}\n\nfn d() { imp::f(); }\n"
    sessions = [
        ["#[cfg(unix)]\nmod imp;\n", '#[cfg(unix)]\n#[path = "x.rs"]\nmod imp;\n'],
        ['#[path = "w.rs"]\nmod imp;\n', '#[path = "w.rs"]\nimpl A {}\nmod imp;\n'],
        ['#[path = "w.rs"]\nimpl A {}\nmod imp;\n', '#[path = "w.rs"]\nmod imp;\n'],
        ['#[path = "w.rs"]\nmod imp;\n', '#[path = "w.rs"]\n// note\nmod imp;\n'],
    ]
    rel = "src/lib.rs"
    for n, heads in enumerate(sessions):
        cache = ParseCache(64 << 20)
        memo = GraphMemo()
        for k, text in enumerate([tail, *(head + tail for head in heads)]):
            digest = bytes([n, k])
            cache.chunk(("r", rel), text.encode(), digest)
            parsed = cache.tree_for(("r", rel), digest)
            assert parsed is not None
            assert edited_graph(rel, *parsed, memo) == extract(rel, text.encode()), (n, k)
