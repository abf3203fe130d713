"""Unit tests for daemon.chunker against the real tree-sitter-rust grammar (no mocks)."""

from __future__ import annotations

import dataclasses
import itertools
import re
import time
from pathlib import Path
from typing import Any

import pytest

from daemon.chunker import (
    DEFAULT_BUDGET,
    KINDS,
    MAX_NESTING,
    MAX_TYPE_CHARS,
    Chunk,
    TooComplex,
    chunk_source,
    estimate_tokens,
    module_path,
    strip_attributes,
)

CRATE = Path(__file__).parent / "fixtures" / "demo_crate"
FIXTURE_FILES = sorted(p.relative_to(CRATE).as_posix() for p in CRATE.rglob("*.rs"))


def chunks_of(rel: str, **kwargs: Any) -> list[Chunk]:
    """Fixture chunks; whole items unless the test sets a budget."""
    kwargs.setdefault("budget", 10_000)
    return chunk_source(rel, (CRATE / rel).read_bytes(), **kwargs)


def by_symbol(chunks: list[Chunk], symbol: str, kind: str | None = None) -> Chunk:
    found = [c for c in chunks if c.symbol == symbol and (kind is None or c.kind == kind)]
    assert len(found) == 1, (symbol, kind, [(c.symbol, c.kind) for c in chunks])
    return found[0]


def line_of(rel: str, needle: str) -> int:
    """1-based number of the first line of a fixture file containing ``needle``."""
    for number, line in enumerate((CRATE / rel).read_text("utf-8").split("\n"), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {rel}")


def snippet(source: str, rel: str = "src/snippet.rs", **kwargs: Any) -> list[Chunk]:
    return chunk_source(rel, source.encode("utf-8"), **kwargs)


# --------------------------------------------------------------------------- module paths


@pytest.mark.parametrize(
    ("rel", "expected"),
    [
        ("src/lib.rs", ""),
        ("src/main.rs", ""),
        ("src/net/mod.rs", "net"),
        ("src/net/retry.rs", "net::retry"),
        ("src/bin/tool.rs", "bin::tool"),
        ("build.rs", "build"),
        ("benches/x.rs", "benches::x"),
        ("tests/it/mod.rs", "tests::it"),
        ("crates/my-db/src/lib.rs", "my_db"),
        ("crates/my-db/src/wal/segment.rs", "my_db::wal::segment"),
        ("./src/store.rs", "store"),
    ],
)
def test_module_path(rel: str, expected: str) -> None:
    assert module_path(rel) == expected


# --------------------------------------------------------------------------- fixture crate


def test_fixture_covers_every_kind() -> None:
    kinds = {c.kind for rel in FIXTURE_FILES for c in chunks_of(rel)}
    assert kinds == set(KINDS)


@pytest.mark.parametrize("rel", FIXTURE_FILES)
def test_line_ranges_are_exact(rel: str) -> None:
    lines = (CRATE / rel).read_text("utf-8").split("\n")
    chunks = chunks_of(rel)
    assert chunks
    for c in chunks:
        assert 1 <= c.start_line <= c.end_line <= len(lines)
        assert c.text == "\n".join(lines[c.start_line - 1 : c.end_line])
        assert c.text.strip()
        assert c.path == rel
        assert c.kind in KINDS
        assert c.part == 0
        assert "\n" not in c.signature


@pytest.mark.parametrize("rel", FIXTURE_FILES)
def test_source_order_and_determinism(rel: str) -> None:
    first = chunks_of(rel)
    assert first == chunks_of(rel)
    starts = [c.start_line for c in first]
    assert starts == sorted(starts)


@pytest.mark.parametrize("rel", FIXTURE_FILES)
def test_only_structural_lines_left_out(rel: str) -> None:
    """Every line with content is in some chunk, except block headers and closing braces."""
    lines = (CRATE / rel).read_text("utf-8").split("\n")
    covered = {n for c in chunks_of(rel) for n in range(c.start_line, c.end_line + 1)}
    structural = re.compile(r"^\s*(\}|(pub )?(mod|impl)\b.*\{)\s*$")
    for number, line in enumerate(lines, start=1):
        if line.strip() and number not in covered:
            assert structural.match(line), (rel, number, line)


def test_retry_function() -> None:
    rel = "src/net/retry.rs"
    c = by_symbol(chunks_of(rel), "net::retry::fetch_with_retry")
    assert c.kind == "fn"
    assert c.signature == (
        "pub fn fetch_with_retry<T: Transport>(transport: &T, request: &Request, "
        "policy: &RetryPolicy) -> Result<Response>"
    )
    assert c.doc.startswith("Retries a failed HTTP request with exponential backoff.\n\n")
    assert "`policy.max_attempts` times" in c.doc
    assert c.start_line == line_of(rel, "/// Retries a failed HTTP request")
    assert c.end_line == line_of(rel, "    Err(last_error)") + 1
    assert c.text.startswith("/// Retries a failed HTTP request")
    assert c.text.endswith("}")
    assert c.context == ""


def test_free_function_doc_and_signature() -> None:
    c = by_symbol(chunks_of("src/lib.rs"), "config::parse_duration")
    assert c.kind == "fn"
    assert c.signature == "pub fn parse_duration(value: &str) -> Option<Duration>"
    assert c.doc == "Parses a duration such as `250ms` or `3s`."


def test_async_fn_with_where_clause() -> None:
    c = by_symbol(chunks_of("src/store.rs"), "store::load_or_empty")
    assert c.signature == (
        "pub async fn load_or_empty<S>(store: &S, key: &str) -> Vec<u8> where S: Storage + Sync"
    )


def test_impl_methods_carry_header_context() -> None:
    store = chunks_of("src/store.rs")
    fmt = by_symbol(store, "store::Wrapper::fmt")
    assert fmt.kind == "method"
    assert fmt.context == "impl<T: Clone> fmt::Display for Wrapper<T>"
    assert fmt.signature == "fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result"
    put = by_symbol(store, "store::MemoryStore::put")
    assert put.context == "impl Storage for MemoryStore"
    assert put.text.lstrip().startswith("fn put(")

    retry = chunks_of("src/net/retry.rs")
    delay = by_symbol(retry, "net::retry::RetryPolicy::next_delay")
    assert delay.context == "impl RetryPolicy"
    assert (
        delay.doc == "Delay before attempt number `attempt` (0-based): doubles every time, capped."
    )
    assert delay.start_line == line_of("src/net/retry.rs", "/// Delay before attempt")
    default = by_symbol(retry, "net::retry::RetryPolicy::default")
    assert default.context == "impl Default for RetryPolicy"

    lib = chunks_of("src/lib.rs")
    assert by_symbol(lib, "Error::fmt", "method").context == "impl fmt::Display for Error"


def test_method_embed_text_has_locating_header() -> None:
    c = by_symbol(chunks_of("src/store.rs"), "store::Wrapper::fmt")
    embed = c.embed_text()
    assert embed.startswith("// store::Wrapper::fmt (method)\n")
    assert "// in impl<T: Clone> fmt::Display for Wrapper<T>\n" in embed
    assert f"// {c.signature}\n" not in embed  # the text starts with it already
    assert embed.endswith(c.text)


def test_embed_text_drops_attributes_and_repeats_the_signature_for_later_parts() -> None:
    src = "#[inline]\n#[cfg(any(\n    unix,\n))]\npub fn f() {\n    let v = vec![1];\n}\n"
    (c,) = chunk_source("src/a.rs", src.encode())
    assert c.embed_text() == "// a::f (fn)\npub fn f() {\n    let v = vec![1];\n}"
    later = dataclasses.replace(c, part=1, text="    let v = vec![1];\n}")
    assert later.embed_text().startswith("// a::f (fn)\n// pub fn f()\n")
    assert strip_attributes("    #[a] #[b(c)] fn h() {}\n#![allow(x)]") == "    fn h() {}"


def test_impl_chunks_only_for_non_method_content() -> None:
    retry = chunks_of("src/net/retry.rs")
    impl = by_symbol(retry, "net::retry::RetryPolicy", "impl")
    assert impl.signature == "impl RetryPolicy"
    assert "pub const DEFAULT: RetryPolicy" in impl.text
    assert "fn new" not in impl.text
    # `impl Default for RetryPolicy` only holds a method: no separate impl chunk.
    assert [c for c in retry if c.kind == "impl"] == [impl]
    # Impls made of methods only have no impl chunk.
    assert not [c for c in chunks_of("src/store.rs") if c.kind == "impl"]
    # An impl without methods is one chunk.
    marker = by_symbol(chunks_of("src/lib.rs"), "Error", "impl")
    assert marker.text == "impl std::error::Error for Error {}"
    assert marker.signature == "impl std::error::Error for Error"


def test_trait_chunk_and_default_methods() -> None:
    store = chunks_of("src/store.rs")
    trait = by_symbol(store, "store::Storage", "trait")
    assert trait.signature == "pub trait Storage"
    assert trait.doc == "A storage backend."
    assert trait.start_line == line_of("src/store.rs", "/// A storage backend.")
    assert "fn get(&self, key: &str) -> Option<Vec<u8>>;" in trait.text
    assert "fn put(&mut self" in trait.text
    assert "fn require" not in trait.text
    require = by_symbol(store, "store::Storage::require")
    assert require.kind == "method"
    assert require.context == "pub trait Storage"
    assert require.doc == "Reads `key` or fails with [`Error::NotFound`]."

    net = chunks_of("src/net/mod.rs")
    transport = by_symbol(net, "net::Transport", "trait")
    assert "const NAME: &'static str;" in transport.text
    assert "type Conn;" in transport.text
    assert "fn send(" in transport.text
    methods = [c.symbol for c in net if c.context == "pub trait Transport"]
    assert methods == ["net::Transport::get", "net::Transport::describe"]


def test_struct_enum_union_type_const_static() -> None:
    lib = chunks_of("src/lib.rs")
    error = by_symbol(lib, "Error", "enum")
    assert error.signature == "pub enum Error"
    assert error.doc == "Errors returned by the transport and the store."
    assert error.text.split("\n")[1] == "#[derive(Debug, Clone, PartialEq, Eq)]"
    assert error.start_line == line_of("src/lib.rs", "/// Errors returned")
    assert by_symbol(lib, "Result").kind == "type"
    assert by_symbol(lib, "Result").signature == (
        "pub type Result<T> = std::result::Result<T, Error>"
    )
    assert by_symbol(lib, "VERSION").kind == "const"
    assert by_symbol(lib, "VERSION").signature == "pub const VERSION: &str"
    static = by_symbol(lib, "REQUEST_COUNT")
    assert static.kind == "static"
    assert static.signature == "pub static REQUEST_COUNT: std::sync::atomic::AtomicU64"

    store = chunks_of("src/store.rs")
    union = by_symbol(store, "store::RawKey")
    assert union.kind == "union"
    assert union.signature == "pub union RawKey"
    assert union.text.startswith("/// A key as raw bytes")
    assert "#[repr(C)]" in union.text
    assert by_symbol(store, "store::EMPTY").signature == "static EMPTY: &[u8]"
    assert by_symbol(store, "store::MemoryStore").kind == "struct"


def test_macro_rules() -> None:
    rel = "src/macros.rs"
    chunks = chunks_of(rel)
    request = by_symbol(chunks, "macros::request")
    assert request.kind == "macro"
    assert request.signature == "macro_rules! request"
    assert request.doc.startswith("Builds a [`crate::net::Request`] from a method and a URL.")
    assert "```ignore\nlet req = request!(" in request.doc
    assert "#[macro_export]" in request.text
    ensure = by_symbol(chunks, "macros::ensure")
    # A plain comment right above an item travels with it but is not documentation.
    assert ensure.start_line == line_of(rel, "// Internal helper")
    assert ensure.doc == ""


# Reduced from bitflags 1.3.2's `__impl_bitflags!`: tree-sitter reads the `$( … )*`
# repetition inside `impl $BitFlags { … }` as the impl's type.
MISREAD_MACRO = b"""macro_rules! flags {
        $BitFlags:ident: $T:ty {
        }
    ) => {
            fn fmt(&self, f: &mut $crate::_core::fmt::Formatter) -> $crate::_core::fmt::Result {
        }
        impl $BitFlags {
            $(
                $(#[$attr $($args)*])*
                pub const $Flag: Self = Self { bits: $value };
            )*
        }
        impl $crate::_core::iter::FromIterator<$BitFlags> for $BitFlags {
                let mut result = Self::empty();
                result.extend(iterator);
        }
    };
"""


def test_symbols_stay_one_short_line_when_a_type_is_misread_or_long() -> None:
    misread = chunk_source("src/flags.rs", MISREAD_MACRO)
    assert "flags::flags::impl" in {c.symbol for c in misread if c.kind == "impl"}
    assert all("{" not in c.symbol and "#[" not in c.symbol for c in misread)
    tuple_impl = (
        b"impl Parser for ("
        + b", ".join(b"P%d<Input>" % i for i in range(20))
        + (b") {\n    fn parse(&mut self) -> bool {\n        true\n    }\n}\n")
    )
    (parse,) = [c for c in chunk_source("src/t.rs", tuple_impl) if c.kind == "method"]
    owner = parse.symbol.removeprefix("t::").removesuffix("::parse")
    assert len(owner) == MAX_TYPE_CHARS and owner.startswith("(P0<Input>, ") and owner[-1] == "…"


def test_inline_modules_prefix_symbols() -> None:
    lib = chunks_of("src/lib.rs")
    assert by_symbol(lib, "config::DEFAULT_TIMEOUT").kind == "const"
    clamp = by_symbol(lib, "config::inner::clamp")
    assert clamp.kind == "fn"
    assert clamp.doc == "Clamps `value` into `lo..=hi`."
    # The loose code of `mod config` (its doc, header and `use`) is a mod chunk.
    config = by_symbol(lib, "config", "mod")
    assert config.signature == "pub mod config"
    assert config.doc == "Helpers that parse configuration values."
    assert "use std::time::Duration;" in config.text
    # `mod inner` has nothing but items: no chunk of its own.
    assert not [c for c in lib if c.symbol == "config::inner"]


def test_module_level_code_chunks() -> None:
    lib = chunks_of("src/lib.rs")
    code = [c for c in lib if c.kind == "code"]
    assert len(code) == 1
    (top,) = code
    assert top.symbol == "lib"
    assert top.start_line == 1
    assert top.doc.startswith("Demo crate used by the rcmd test-suite.\n\nIt mixes")
    for needle in ("#![allow(dead_code)]", "extern crate alloc;", "use std::fmt;", "pub mod net;"):
        assert needle in top.text
    assert top.signature == ""
    assert top.context == ""

    net = [c for c in chunks_of("src/net/mod.rs") if c.kind == "code"]
    assert [c.symbol for c in net] == ["net"]
    assert "pub mod retry;" in net[0].text
    retry = [c for c in chunks_of("src/net/retry.rs") if c.kind == "code"]
    assert [c.symbol for c in retry] == ["net::retry"]
    assert retry[0].text.endswith("use crate::{Error, Result};")


def test_items_nested_in_fn_bodies_stay_in_the_fn() -> None:
    store = chunks_of("src/store.rs")
    load = by_symbol(store, "store::load_or_empty")
    assert "impl Fallback {" in load.text
    assert not [c for c in store if "Fallback" in c.symbol]


def test_syntax_error_file_is_still_chunked() -> None:
    rel = "src/broken.rs"
    chunks = chunks_of(rel)
    before = by_symbol(chunks, "broken::Before", "struct")
    assert before.doc == "A well-formed struct before the error."
    after = by_symbol(chunks, "broken::after_error")
    assert after.kind == "fn"
    assert after.start_line == line_of(rel, "/// A well-formed function after")
    assert after.signature == "pub fn after_error(x: u32) -> u32"
    # The unparsable function is not lost: its lines are in some chunk.
    covered = {n for c in chunks for n in range(c.start_line, c.end_line + 1)}
    assert line_of(rel, "let trimmed = input.trim(;") in covered


def test_unicode_identifiers_and_strings() -> None:
    rel = "src/unicode.rs"
    chunks = chunks_of(rel)
    greet = by_symbol(chunks, "unicode::Café::begrüßung")
    assert greet.kind == "method"
    assert greet.context == "impl Café"
    assert greet.doc == "挨拶を返す (returns a greeting)."
    assert "☕ — 欢迎" in greet.text
    assert greet.start_line == line_of(rel, "挨拶を返す")
    count = by_symbol(chunks, "unicode::zähle_zeichen")
    assert count.signature == "pub fn zähle_zeichen(text: &str) -> usize"
    assert by_symbol(chunks, "unicode::MAXIMALE_GRÖSSE").kind == "const"
    assert by_symbol(chunks, "unicode::Symbol").doc == "Greek letters: λ, π, Σ."
    assert chunks[0].kind == "code"
    assert "😀" in chunks[0].doc


# --------------------------------------------------------------------------- inline snippets


def test_empty_and_blank_sources() -> None:
    assert chunk_source("src/empty.rs", b"") == []
    assert chunk_source("src/empty.rs", b"\n\n   \n\t\n") == []
    assert chunk_source("src/empty.rs", b"\xef\xbb\xbf") == []


def test_code_symbol_falls_back_to_file_stem() -> None:
    (main,) = snippet("use std::env;\n", rel="src/main.rs")
    assert (main.kind, main.symbol) == ("code", "main")
    (build,) = snippet("use std::env;\n", rel="build.rs")
    assert build.symbol == "build"


def test_crlf_and_bom_match_plain_lf() -> None:
    text = (CRATE / "src/net/retry.rs").read_bytes()
    plain = chunk_source("src/net/retry.rs", text)
    crlf = chunk_source("src/net/retry.rs", text.replace(b"\n", b"\r\n"))
    bom = chunk_source("src/net/retry.rs", b"\xef\xbb\xbf" + text.replace(b"\n", b"\r\n"))
    assert crlf == plain
    assert bom == plain
    assert all("\r" not in c.text and "\ufeff" not in c.text for c in bom)


def test_invalid_utf8_is_replaced_but_lines_stay_exact() -> None:
    source = b'const A: &[u8] = b"ok";\n\nfn bad() -> &\'static str {\n'
    source += b'    "\xff\xfe"\n}\nfn z() {}\n'
    chunks = chunk_source("src/bad.rs", source)
    assert [(c.symbol, c.start_line, c.end_line) for c in chunks] == [
        ("bad::A", 1, 1),
        ("bad::bad", 3, 5),
        ("bad::z", 6, 6),
    ]
    assert "\ufffd" in chunks[1].text


def test_multibyte_text_does_not_shift_lines() -> None:
    source = '/// ünïcödé 😀😀😀\nfn a() { let s = "日本語"; }\n\n\nfn b() {}\n'
    chunks = snippet(source)
    assert [(c.symbol, c.start_line, c.end_line) for c in chunks] == [
        ("snippet::a", 1, 2),
        ("snippet::b", 5, 5),
    ]


def test_doc_comment_variants() -> None:
    source = (
        "/**\n"
        " * Block doc.\n"
        " *   indented\n"
        " */\n"
        "fn block() {}\n"
        '#[doc = "Attr \\"doc\\""]\n'
        "/// and a line\n"
        "fn attr() {}\n"
        "//// four slashes are a plain comment\n"
        "fn plain() {}\n"
        "/// doc\n"
        "\n"
        "#[inline]\n"
        "fn gap() {}\n"
    )
    chunks = {c.symbol: c for c in snippet(source)}
    assert chunks["snippet::block"].doc == "Block doc.\n  indented"
    assert chunks["snippet::block"].start_line == 1
    assert chunks["snippet::attr"].doc == 'Attr "doc"\nand a line'
    assert chunks["snippet::attr"].start_line == 6
    assert chunks["snippet::plain"].doc == ""
    assert chunks["snippet::plain"].start_line == 9
    assert chunks["snippet::gap"].doc == "doc"
    assert chunks["snippet::gap"].start_line == 11


def test_comment_attachment_rules() -> None:
    source = (
        "fn a() {} // trailing note about a\n"
        "fn b() {}\n"
        "\n"
        "// Section heading, separated by a blank line.\n"
        "\n"
        "// Directly above c.\n"
        "fn c() {}\n"
    )
    chunks = snippet(source)
    assert [(c.symbol, c.kind, c.start_line, c.end_line) for c in chunks] == [
        ("snippet::a", "fn", 1, 1),
        ("snippet::b", "fn", 2, 2),
        ("snippet", "code", 4, 4),
        ("snippet::c", "fn", 6, 7),
    ]


def test_impl_self_type_names() -> None:
    source = (
        "impl<'a, T> Iterator for &'a mut Cursor<T> {\n"
        "    fn next(&mut self) -> Option<u8> { None }\n"
        "}\n"
        "impl io::Write for io::BufWriter<File> {\n"
        "    fn flush(&mut self) {}\n"
        "}\n"
        "impl Trait for dyn Shape {\n"
        "    fn area(&self) {}\n"
        "}\n"
        "impl Trait for [u8; 4] {\n"
        "    fn len(&self) {}\n"
        "}\n"
    )
    chunks = snippet(source, rel="src/lib.rs")
    assert [(c.symbol, c.context) for c in chunks] == [
        ("Cursor::next", "impl<'a, T> Iterator for &'a mut Cursor<T>"),
        ("BufWriter::flush", "impl io::Write for io::BufWriter<File>"),
        ("Shape::area", "impl Trait for dyn Shape"),
        ("[u8; 4]::len", "impl Trait for [u8; 4]"),
    ]


def test_impl_with_associated_items_between_methods() -> None:
    source = (
        "/// Docs on the impl.\n"
        "impl Parser {\n"
        "    const MAX: usize = 8;\n"
        "\n"
        "    fn parse(&self) {}\n"
        "\n"
        "    type Out = u8;\n"
        "}\n"
    )
    chunks = snippet(source)
    assert [(c.kind, c.symbol, c.start_line, c.end_line) for c in chunks] == [
        ("impl", "snippet::Parser", 1, 3),
        ("method", "snippet::Parser::parse", 5, 5),
        ("impl", "snippet::Parser", 7, 8),
    ]
    assert chunks[0].doc == "Docs on the impl."
    assert chunks[2].doc == ""
    assert chunks[0].signature == chunks[2].signature == "impl Parser"


def test_impl_header_with_attribute_only_is_dropped() -> None:
    source = "#[cfg(test)]\nimpl Parser\nwhere\n    Self: Sized,\n{\n    fn a() {}\n}\n"
    chunks = snippet(source)
    assert [(c.kind, c.symbol) for c in chunks] == [("method", "snippet::Parser::a")]
    assert chunks[0].context == "impl Parser where Self: Sized"


def test_one_line_trait_still_has_trait_chunk() -> None:
    chunks = snippet("pub trait Greet { fn name(&self) -> String; fn hi(&self) {} }\n")
    assert [(c.kind, c.symbol) for c in chunks] == [
        ("trait", "snippet::Greet"),
        ("method", "snippet::Greet::hi"),
    ]


def test_trait_without_default_methods_is_one_chunk() -> None:
    source = "/// Shapes.\npub trait Shape: Send {\n    fn area(&self) -> f64;\n}\n"
    (chunk,) = snippet(source)
    assert (chunk.kind, chunk.symbol, chunk.start_line, chunk.end_line) == (
        "trait",
        "snippet::Shape",
        1,
        4,
    )
    assert chunk.signature == "pub trait Shape: Send"
    assert chunk.doc == "Shapes."


def test_mod_without_items_is_one_chunk() -> None:
    source = "#[cfg(test)]\nmod tests {\n    use super::*;\n}\nmod declared;\n"
    chunks = snippet(source)
    assert [(c.kind, c.symbol, c.start_line, c.end_line) for c in chunks] == [
        ("mod", "snippet::tests", 1, 4),
        ("code", "snippet", 5, 5),
    ]


def test_tuple_and_unit_struct_signatures() -> None:
    chunks = snippet("pub struct Meters(pub f64);\nstruct Marker;\nenum E { A, B }\n")
    assert [c.signature for c in chunks] == [
        "pub struct Meters(pub f64)",
        "struct Marker",
        "enum E",
    ]


def test_parse_error_at_root_keeps_items() -> None:
    source = (
        "use std::io;\n"
        "pub struct Ok1 { a: u8 }\n"
        "impl Ok1 {\n"
        "    fn good(&self) -> u8 { self.a }\n"
        "}\n"
        "fn missing_brace() {\n"
        "    let x = 1;\n"
        "\n"
        "pub fn after_missing() -> u32 { 2 }\n"
    )
    chunks = snippet(source)
    symbols = {c.symbol for c in chunks}
    assert {"snippet::Ok1", "snippet::Ok1::good", "snippet::after_missing"} <= symbols
    covered = {n for c in chunks for n in range(c.start_line, c.end_line + 1)}
    assert {1, 6, 7} <= covered


def test_deep_nesting_does_not_recurse() -> None:
    depth = MAX_NESTING - 4  # the file's own module path counts too
    source = "".join(f"mod m{i} {{\n" for i in range(depth)) + "fn leaf() {}\n" + "}\n" * depth
    chunks = snippet(source)
    leaf = [c for c in chunks if c.kind == "fn"]
    assert len(leaf) == 1
    assert leaf[0].symbol.endswith(f"::m{depth - 1}::leaf")
    assert leaf[0].start_line == depth + 1
    # Past the bound the file is refused (and skipped by the pipeline), not recursed into.
    deeper = "".join(f"mod m{i} {{\n" for i in range(3000)) + "fn leaf() {}\n" + "}\n" * 3000
    with pytest.raises(TooComplex):
        snippet(deeper)

    expr = "fn deep() -> u32 {\n" + "(" * 3000 + "1" + ")" * 3000 + "\n}\n"
    (deep,) = snippet(expr, budget=100_000, measure=len)
    assert (deep.symbol, deep.start_line, deep.end_line) == ("snippet::deep", 1, 3)


# --------------------------------------------------------------------------- splitting


def long_fn(lines: int) -> str:
    body = "".join(f"    let value_{i} = compute({i}) + offset;\n" for i in range(lines))
    return f"/// Long function.\n#[inline]\npub fn long(offset: u32) -> u32 {{\n{body}    0\n}}\n"


@pytest.mark.parametrize(("max_chars", "overlap"), [(500, 3), (300, 0), (1000, 5), (80, 1)])
def test_oversized_items_split_with_overlap(max_chars: int, overlap: int) -> None:
    source = long_fn(120)
    lines = source.split("\n")
    parts = snippet(source, budget=max_chars, measure=len, overlap_lines=overlap)
    assert len(parts) > 1
    assert [p.part for p in parts] == list(range(len(parts)))
    assert {(p.symbol, p.kind, p.signature, p.doc) for p in parts} == {
        ("snippet::long", "fn", "pub fn long(offset: u32) -> u32", "Long function.")
    }
    assert parts[0].start_line == 1
    assert parts[-1].end_line == len(lines) - 1
    lines_fit = max_chars >= 300  # room for the overlap plus a new line in every part
    for prev, cur in itertools.pairwise(parts):
        assert prev.end_line + 1 - overlap <= cur.start_line <= prev.end_line + 1
        if lines_fit:
            assert cur.start_line == prev.end_line + 1 - overlap
        assert cur.end_line > prev.end_line
    for p in parts:
        assert len(p.text) <= max_chars
        assert p.text == "\n".join(lines[p.start_line - 1 : p.end_line])


def test_split_keeps_going_when_a_line_exceeds_the_limit() -> None:
    giant = "x" * 400
    source = f'const BIG: &str = "\n{giant}\n{giant}\nend";\n'
    parts = snippet(source, budget=100, measure=len, overlap_lines=3)
    assert [(p.start_line, p.end_line, p.part) for p in parts] == [
        (1, 1, 0),
        (2, 2, 1),
        (3, 3, 2),
        (4, 4, 3),
    ]
    assert all(p.symbol == "snippet::BIG" for p in parts)


def test_small_items_are_not_split() -> None:
    chunks = snippet(long_fn(10), budget=10_000, measure=len)
    assert [(c.part, c.start_line) for c in chunks] == [(0, 1)]


def test_loose_code_is_split_too() -> None:
    source = "".join(f"use crate::module_{i}::Thing{i};\n" for i in range(100))
    parts = snippet(source, budget=400, measure=len, overlap_lines=2)
    assert len(parts) > 1
    assert {p.kind for p in parts} == {"code"}
    assert parts[-1].end_line == 100


# --------------------------------------------------------------------------- API surface


def test_chunk_is_frozen_with_slots() -> None:
    c = Chunk("src/a.rs", 1, 1, "a::f", "fn", "fn f()", "", "fn f() {}", "")
    assert c.part == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.start_line = 2  # type: ignore[misc]
    assert not hasattr(c, "__dict__")
    assert c.embed_text() == "// a::f (fn)\nfn f() {}"


def test_large_file_is_fast() -> None:
    source = "\n".join(
        (CRATE / rel).read_text("utf-8") for rel in FIXTURE_FILES if "broken" not in rel
    )
    big = "\n".join(f"mod copy{i} {{\n{source}\n}}" for i in range(60)).encode()
    started = time.perf_counter()
    chunks = chunk_source("src/big.rs", big)
    elapsed = time.perf_counter() - started
    assert len(chunks) > 60 * 40
    assert elapsed < 5.0


def test_default_budget_fits_the_model_window() -> None:
    rel = "src/net/retry.rs"
    whole = by_symbol(chunks_of(rel), "net::retry::fetch_with_retry")
    parts = [
        c
        for c in chunk_source(rel, (CRATE / rel).read_bytes())
        if c.symbol == "net::retry::fetch_with_retry"
    ]
    assert len(parts) > 1
    assert [p.part for p in parts] == list(range(len(parts)))
    assert parts[0].start_line == whole.start_line and parts[-1].end_line == whole.end_line
    for p in parts:
        assert estimate_tokens(p.text) <= DEFAULT_BUDGET


def test_estimate_tokens() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("fn main() {}") == 6  # fn main ( ) { }
    assert estimate_tokens("with_capacity") == 4  # with _ capa city
    assert estimate_tokens("x: u64") == 5  # x : u 6 4
