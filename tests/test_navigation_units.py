"""The symbol graph without a daemon: extraction and file-local resolution on small Rust
snippets (pure functions), and the queries over a real state.db holding their rows."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import apsw
import pytest

from daemon.crate_names import read_names
from daemon.graph import agrees, graph_of, name_segments, navigate
from daemon.graph_names import MAX_LOOKUPS, Names
from daemon.graph_rows import rows_of
from daemon.resolve import path_segments
from daemon.state import GRAPH_TABLES, ChunkRow, FileRecord, StateDB
from daemon.symbols import FileGraph, Reference, extract
from ipc.errors import BadRequest, StateError


def refs_named(g: FileGraph, name: str) -> list[Reference]:
    return [r for r in g.refs if r.name == name]


def test_definitions_carry_the_chunkers_symbol_paths() -> None:
    src = b"""
pub mod codec {
    pub fn crc(data: &[u8]) -> u32 { 0 }
    pub struct Frame;
    impl Frame {
        pub fn new() -> Self { Frame }
        fn len(&self) -> usize { 0 }
    }
}
pub trait Checksum {
    const BITS: u32;
    type Output;
    fn sum(&self) -> u32;
}
pub enum Kind { A, B(u8) }
"""
    g = extract("src/lib.rs", src)
    defs = {(d.symbol, d.kind) for d in g.defs}
    assert {
        ("codec", "mod"),
        ("codec::crc", "fn"),
        ("codec::Frame", "struct"),
        ("codec::Frame", "impl"),
        ("codec::Frame::new", "method"),
        ("codec::Frame::len", "method"),
        ("Checksum", "trait"),
        ("Checksum::BITS", "const"),
        ("Checksum::Output", "type"),
        ("Checksum::sum", "method"),
        ("Kind", "enum"),
        ("Kind::B", "variant"),
    } <= defs
    crc = next(d for d in g.defs if d.symbol == "codec::crc")
    assert (crc.line, crc.end_line) == (3, 3)


def test_items_in_macro_rules_bodies_are_definitions() -> None:
    src = b"""macro_rules! int_impl {
    ($SelfT:ty) => {
        pub const fn checked_add(self, rhs: $SelfT) -> Option<$SelfT> { helper(rhs) }
    };
}
"""
    g = extract("core/src/num/mod.rs", src)
    assert ("core::num::int_impl::checked_add", "method") in {(d.symbol, d.kind) for d in g.defs}
    (call,) = refs_named(g, "helper")
    assert call.enclosing == "core::num::int_impl::checked_add"


def test_items_written_in_braced_macro_calls_are_definitions() -> None:
    """tokio's `cfg_rt! { pub struct JoinHandle … }` and syn's `ast_struct! {…}` hid
    ~8% of tokio's items from `def`, and the words of their doc comments were read as
    references (an outside tester's count: 372 of 4,524 refs hits for 17 names)."""
    src = b"""use crate::runtime::Handle;

cfg_rt! {
    /// An owned permission to join; see AsyncRead.
    pub struct JoinHandle<T> { raw: Handle, t: T }

    impl<T> JoinHandle<T> {
        pub fn abort(&self) { helper(self.raw.clone()); }
    }
}

fn helper(h: Handle) {}

impl X {
    cfg_io! { pub fn read(&self) -> u8 { 1 } }
}
log!(JoinHandle, Helper);
"""
    g = extract("src/runtime/join.rs", src)
    defs = {(d.symbol, d.kind, d.line) for d in g.defs}
    assert ("runtime::join::JoinHandle", "struct", 5) in defs
    assert ("runtime::join::JoinHandle::abort", "method", 8) in defs
    assert ("runtime::join::X::read", "method", 15) in defs
    assert not refs_named(g, "AsyncRead")  # a word of a doc comment
    (call,) = refs_named(g, "helper")
    assert (call.line, call.enclosing) == (8, "runtime::join::JoinHandle::abort")
    assert [r.line for r in refs_named(g, "Handle")] == [1, 5, 12]
    # A call's arguments are no items: their names stay references found by shape.
    assert {r.line for r in refs_named(g, "JoinHandle")} >= {17}


def test_items_written_in_fn_bodies_are_definitions(tmp_path: Path) -> None:
    """`fn outer() { struct Guard; fn helper() {} }` (alloc's `SetLenOnDrop`, nom's test
    parsers): most of `def`'s misses on the navigation bench. Their symbols extend the
    fn's, their calls count for them, not for the fn around them, and a macro call in a
    body is an expression (a `quote!` template defines nothing)."""
    src = b"""pub fn outer(x: u32) -> u32 {
    struct Guard;
    impl Drop for Guard {
        fn drop(&mut self) { cleanup(); }
    }
    fn helper(y: u32) -> u32 { y + 1 }
    let t = quote! { fn templated() {} };
    helper(x)
}

impl S {
    fn m(&self) {
        fn inner_m() { cleanup(); }
        inner_m();
    }
}
"""
    g = extract("src/lib.rs", src)
    defs = {(d.symbol, d.kind, d.line) for d in g.defs}
    assert {
        ("outer::Guard", "struct", 2),
        ("outer::Guard", "impl", 3),
        ("outer::Guard::drop", "method", 4),
        ("outer::helper", "fn", 6),
        ("S::m::inner_m", "fn", 13),
    } <= defs
    assert not [d for d in g.defs if d.name == "templated"]
    with graph_state(tmp_path, {"src/lib.rs": src}) as state:
        assert [(h["path"], h["line"]) for h in ask(state, "def", "helper")] == [("src/lib.rs", 6)]
        callers = {(h["symbol"], h["line"]) for h in ask(state, "callers", "cleanup")}
        assert callers == {("outer::Guard::drop", 4), ("S::m::inner_m", 13)}
        assert {h["symbol"] for h in ask(state, "callers", "inner_m")} == {"S::m"}


def test_items_written_in_a_fn_body_shadow_the_modules_namesakes() -> None:
    """Inside `outer`, `helper` and `Guard` are the items its body declares, not the
    module's (those calls were resolved to the module's items), in the items nested
    there too, and in the impls written there."""
    src = b"""pub fn helper() {}
pub struct Guard;
pub trait Tr {}
pub fn outer() {
    fn helper() {}
    struct Guard;
    trait Tr {}
    impl Guard { fn new() -> Guard { helper(); Guard } fn go(&self) {} }
    impl Tr for Guard {}
    helper();
    let g = Guard::new();
    g.go();
}
pub fn other() { helper(); Guard::new(); }
"""
    g = extract("src/lib.rs", src)
    got = {(r.line, r.written): r.targets for r in g.refs if r.kind in ("call", "method")}
    assert got[(8, "helper")] == ("outer::helper",)
    assert got[(10, "helper")] == ("outer::helper",)
    assert got[(11, "Guard::new")] == ("outer::Guard::new",)
    assert got[(12, "go")] == ("outer::Guard::go",)
    assert got[(14, "helper")] == ("helper",)
    assert got[(14, "Guard::new")] == ("Guard::new",)
    (rel,) = g.impls
    assert (rel.trait_targets, rel.type_targets) == (("outer::Tr",), ("outer::Guard",))


def test_a_use_inside_a_fn_does_not_rename_the_rest_of_its_module() -> None:
    """tokio's bounded.rs: `use chan::Semaphore;` inside one `drop` resolved every other
    `Semaphore` of the module (its own struct) to the trait, marked resolved."""
    src = b"""mod chan { pub trait Semaphore { fn close(&self); } }

pub struct Semaphore { n: u32 }

fn make() -> Semaphore { Semaphore { n: 1 } }

impl Drop for Rx {
    fn drop(&mut self) {
        use chan::Semaphore;
        self.sem.close();
    }
}
"""
    g = extract("src/sync/bounded.rs", src)
    uses = [r for r in refs_named(g, "Semaphore") if r.line == 5]
    assert uses and all(r.targets == ("sync::bounded::Semaphore",) for r in uses)
    (imported,) = [r for r in refs_named(g, "Semaphore") if r.kind == "use"]
    assert imported.targets == ("sync::bounded::chan::Semaphore",)


def test_references_have_kind_line_and_enclosing_item() -> None:
    src = b"""use std::fmt;
fn run<T: Clone>(x: T) -> Vec<T> {
    let v = Vec::new();
    v.push(x);
    helper();
    println!("{}", 1);
    v
}
fn helper() {}
impl fmt::Display for Thing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { Ok(()) }
}
"""
    g = extract("src/lib.rs", src)
    got = {(r.written, r.kind, r.line, r.enclosing) for r in g.refs}
    assert ("Vec::new", "call", 3, "run") in got
    assert ("push", "method", 4, "run") in got
    assert ("helper", "call", 5, "run") in got
    assert ("println", "macro", 6, "run") in got
    assert ("Clone", "bound", 2, "run") in got
    assert ("fmt::Formatter", "type", 11, "Thing::fmt") in got
    assert ("std::fmt", "use", 1, "crate") in got
    assert not [r for r in g.refs if r.written == "T"]  # a type parameter names no item
    (helper,) = refs_named(g, "helper")
    assert helper.targets == ("helper",)  # an item of the same module
    (rel,) = g.impls
    assert (rel.trait, rel.trait_targets, rel.self_type) == (
        "fmt::Display",
        ("std::fmt::Display",),
        "Thing",
    )


def test_use_aliases_globs_self_super_crate_and_self_type_resolve() -> None:
    src = b"""use crate::codec::{crc as checksum, Frame};
use super::wire::*;
mod inner {
    pub fn f() { super::top(); self::g(); crate::codec::crc(); }
    pub fn g() {}
}
fn top() {
    checksum();
    Frame::new();
    decode();
}
struct S;
impl S {
    fn a(&self) { Self::b(); self.c(); }
    fn b() {}
    fn c(&self) {}
}
"""
    g = extract("src/net/mod.rs", src)

    def targets(written: str) -> tuple[str, ...]:
        return next(r.targets for r in g.refs if r.written == written and r.kind != "use")

    assert targets("checksum") == ("codec::crc",)
    assert targets("Frame::new") == ("codec::Frame::new",)
    assert targets("decode") == ("wire::decode",)  # from the glob
    assert targets("super::top") == ("net::top",)
    assert targets("self::g") == ("net::inner::g",)
    assert targets("crate::codec::crc") == ("codec::crc",)
    assert targets("Self::b") == ("net::S::b",)
    assert targets("c") == ("net::S::c",)  # self.c()
    aliases = {(i.module, i.alias, i.target) for i in g.imports}
    assert ("net", "checksum", "codec::crc") in aliases
    assert ("net", "*", "wire") in aliases


def test_workspace_crates_lead_their_paths() -> None:
    g = extract("crates/my-db/src/wal.rs", b"use crate::io::Log;\nfn f() { Log::open(); }\n")
    assert [(d.symbol, d.kind) for d in g.defs] == [("my_db::wal", "mod"), ("my_db::wal::f", "fn")]
    assert next(r.targets for r in g.refs if r.kind == "call") == ("my_db::io::Log::open",)


def test_path_helpers() -> None:
    assert path_segments("Vec::<u8>::new") == ("Vec", "new")
    assert path_segments("<T as Tr>::m") == ("m",)
    assert path_segments("$crate::net::Request") == ("crate", "net", "Request")
    assert name_segments("crate::codec::crc") == ("codec", "crc")
    assert agrees("crc", ("codec", "crc"))
    assert agrees("self::codec::crc", ("codec", "crc"))
    assert not agrees("other::crc", ("codec", "crc"))


def test_raw_identifiers_are_names() -> None:
    """`r#match` is a name (a keyword used as one): defined, called and asked for."""
    g = extract("src/lib.rs", b"pub fn r#match(x: u8) -> u8 { x }\nfn f() { r#match(3); }\n")
    assert "r#match" in {d.symbol for d in g.defs}
    assert next(r.targets for r in g.refs if r.kind == "call") == ("r#match",)
    assert name_segments("r#match") == ("r#match",)
    assert path_segments("crate::r#type::Token") == ("crate", "r#type", "Token")


def test_broken_source_still_gives_a_graph() -> None:
    g = graph_of("src/x.rs", b"fn a( { b(); }\nfn c() { d(); }\n\xff\xfe")
    assert "x::c" in {d.symbol for d in g.defs}


# ---- queries over a real state.db ----

CODEC = b"""pub fn crc(data: &[u8]) -> u32 { table(data) }
fn table(d: &[u8]) -> u32 { 0 }
pub trait Check { fn check(&self) -> bool; }
pub struct Frame;
impl Check for Frame { fn check(&self) -> bool { crc(&[]) == 0 } }
"""
OTHER = b"""pub fn crc() -> u8 { 1 }
pub fn uses_other() { crc(); }
"""
APP = b"""use crate::codec::{crc, Check};
use crate::other;
pub use crate::codec::Frame as Reexported;
fn main_loop() {
    crc(&[1]);
    other::crc();
    unknown::crc();
}
fn via_frame(f: &crate::codec::Frame) -> bool { f.check() }
fn generic<C: Check>(c: C) {}
"""


@contextmanager
def graph_state(tmp_path: Path, files: dict[str, bytes]) -> Iterator[StateDB]:
    """A state.db holding the symbol graphs of `files` (path -> source)."""
    state = StateDB(tmp_path / "state.db")
    try:
        recs = [FileRecord(p, len(b), 1, 1, b"h", 0) for p, b in files.items()]
        state.record(
            recs, [], [], {}, graphs={p: rows_of(graph_of(p, b)) for p, b in files.items()}
        )
        yield state
    finally:
        state.close()


@pytest.fixture
def graph_db(tmp_path: Path) -> Any:
    files = {"src/codec.rs": CODEC, "src/other.rs": OTHER, "src/app.rs": APP}
    with graph_state(tmp_path, files) as state:
        yield state


def ask(state: StateDB, method: str, name: str) -> list[dict[str, Any]]:
    with state.reading() as conn:
        source = (conn, "/r/proj", None, read_names(Path("/r/proj")))
        results: list[dict[str, Any]] = navigate([source], method, name, 100)["results"]
    return results


def judged_callers(state: StateDB, name: str) -> set[tuple[str, str]]:
    """(caller, confidence) of each caller of `name`."""
    return {(h["symbol"], h["confidence"]) for h in ask(state, "callers", name)}


def test_callers_of_a_module_path_leave_out_another_modules_namesake(graph_db: StateDB) -> None:
    callers = ask(graph_db, "callers", "codec::crc")
    got = {(h["symbol"], h["line"], h["confidence"]) for h in callers}
    assert ("app::main_loop", 5, "resolved") in got
    assert ("codec::Frame::check", 5, "resolved") in got
    assert not [h for h in callers if h["symbol"] == "other::uses_other"]
    assert not [h for h in callers if h["line"] in (6, 7) and h["path"] == "src/app.rs"]
    assert {h["crate"] for h in callers} == {"proj"}
    other = {(h["symbol"], h["line"]) for h in ask(graph_db, "callers", "other::crc")}
    assert other == {("other::uses_other", 2), ("app::main_loop", 6)}


def test_def_refs_callees_impls(graph_db: StateDB) -> None:
    modules = [(h["path"], h["line"], h["kind"]) for h in ask(graph_db, "def", "crate::other")]
    assert modules == [("src/other.rs", 1, "mod")]  # the file is its module
    assert [(h["path"], h["line"], h["kind"]) for h in ask(graph_db, "def", "crc")] == [
        ("src/codec.rs", 1, "fn"),
        ("src/other.rs", 1, "fn"),
    ]
    refs = ask(graph_db, "refs", "codec::crc")
    assert [h["kind"] for h in refs if h["path"] == "src/app.rs"] == ["use", "call"]
    callees = ask(graph_db, "callees", "codec::crc")
    assert [(h["symbol"], h["confidence"]) for h in callees] == [("codec::table", "resolved")]
    impls = ask(graph_db, "impls", "Check")
    assert [(h["symbol"], h["confidence"]) for h in impls] == [("codec::Frame", "resolved")]
    traits = ask(graph_db, "impls", "Frame")
    assert [(h["symbol"], h["via"]) for h in traits] == [("codec::Check", "Frame")]
    # A re-export is followed: the bound and the method call by name come after.
    check_refs = ask(graph_db, "refs", "Check")
    assert [h["confidence"] for h in check_refs][:3] == ["resolved"] * 3
    # A name a `pub use … as` gives is followed to the definition it re-exports.
    (frame,) = ask(graph_db, "def", "Reexported")
    assert (frame["symbol"], frame["path"]) == ("codec::Frame", "src/codec.rs")
    # `f: &crate::codec::Frame` is written down, so `f.check()` resolves.
    typed = [(h["symbol"], h["confidence"]) for h in ask(graph_db, "callers", "Frame::check")]
    assert typed == [("app::via_frame", "resolved")]


def test_paths_as_the_crates_users_write_them(tmp_path: Path) -> None:
    """tokio's `mpsc::Sender` is `sync::mpsc::bounded::Sender`, re-exported by
    `pub use`; a user copies `tokio::sync::mpsc::Sender::send` from the docs. Both found
    nothing; a glob re-export, a `use` written in a macro call and the crate's own name
    in front are followed too."""
    files = {
        "src/sync/mpsc/mod.rs": b"mod bounded;\npub use self::bounded::{channel, Sender};\n",
        "src/sync/mpsc/bounded.rs": b"pub struct Sender;\nimpl Sender { pub fn send(&self) {} }\n"
        b"pub fn channel() -> Sender { Sender }\n",
        "src/sync/watch.rs": b"mod inner { pub fn subscribe() {} }\npub use self::inner::*;\n",
        "src/app.rs": b"use crate::sync::mpsc;\nfn run(tx: &mpsc::Sender) { tx.send(); }\n",
        "src/lib.rs": b"pub mod task;\ncfg_rt! {\n    pub use task::spawn;\n}\n",
        "src/task/mod.rs": b"mod spawn;\npub use spawn::spawn;\n",
        "src/task/spawn.rs": b"pub fn spawn() {}\n",
    }
    with graph_state(tmp_path, files) as state:

        def ask_tokio(method: str, name: str) -> list[dict[str, Any]]:
            root = "/deps/tokio-1.24.2"
            with state.reading() as conn:
                reader = (conn, root, None, read_names(Path(root)))
                found: list[dict[str, Any]] = navigate([reader], method, name, 100)["results"]
            return found

        for name in ("mpsc::Sender", "tokio::sync::mpsc::Sender", "sync::mpsc::Sender"):
            hits = [(h["symbol"], h["kind"]) for h in ask_tokio("def", name)]
            assert hits == [("sync::mpsc::bounded::Sender", "struct")], name
        send = ask_tokio("def", "tokio::sync::mpsc::Sender::send")
        assert [h["symbol"] for h in send] == ["sync::mpsc::bounded::Sender::send"]
        callers = ask_tokio("callers", "mpsc::Sender::send")
        assert [(h["symbol"], h["confidence"]) for h in callers] == [("app::run", "resolved")]
        assert [h["line"] for h in ask_tokio("def", "watch::subscribe")] == [1]
        # `tokio::spawn`: a `use` in a macro call, and a module named after its fn.
        spawn = [(h["symbol"], h["kind"]) for h in ask_tokio("def", "tokio::spawn")]
        assert spawn[0] == ("task::spawn::spawn", "fn") and len(spawn) == 3  # then the module
        assert ask_tokio("def", "mpsc::Receiver") == []
        assert ask_tokio("def", "other::Sender") == []
        # A path copied from the code as written in a module (`super::`), asked from no
        # module, is matched as the suffix after it, as `self::` already was.
        for name in ("super::bounded::Sender", "super::super::mpsc::bounded::Sender"):
            hits = [(h["symbol"], h["kind"]) for h in ask_tokio("def", name)]
            assert hits == [("sync::mpsc::bounded::Sender", "struct")], name


def test_uses_under_another_name_are_references(tmp_path: Path) -> None:
    """`use crate::codec::crc as crc3; crc3(…)`: callees saw the call, refs and callers of
    `crc` did not (outside tester; tokio's `Handle as SignalHandle`: 5 uses missed)."""
    files = {
        "src/codec.rs": b"pub fn crc(d: &[u8]) -> u32 { 0 }\n",
        "src/app.rs": b"use crate::codec::crc as crc3;\nfn run() -> u32 {\n    crc3(&[])\n}\n",
    }
    with graph_state(tmp_path, files) as state:
        refs = {
            (h["path"], h["line"], h["kind"], h["confidence"]) for h in ask(state, "refs", "crc")
        }
        assert ("src/app.rs", 3, "call", "resolved") in refs
        callers = [(h["symbol"], h["line"]) for h in ask(state, "callers", "codec::crc")]
        assert callers == [("app::run", 3)]


def test_a_rewritten_or_deleted_file_takes_its_rows_along(graph_db: StateDB) -> None:
    rec = FileRecord("src/other.rs", 1, 1, 1, b"h2", 0)
    graph_db.record(
        [rec], [], [], {}, graphs={rec.path: rows_of(graph_of(rec.path, b"fn renamed() {}"))}
    )
    assert [h["path"] for h in ask(graph_db, "def", "crc")] == ["src/codec.rs"]
    assert [h["symbol"] for h in ask(graph_db, "def", "renamed")] == ["other::renamed"]
    graph_db.record([], [], ["src/other.rs"], {})
    assert ask(graph_db, "def", "renamed") == []
    assert graph_db.graph_paths() == {"src/codec.rs", "src/app.rs"}


def test_a_name_that_is_no_path_is_refused(graph_db: StateDB) -> None:
    for name in ("a b!", "a b", "crc::", "::crc", "_", "codec::_", "codec::::crc", "::::"):
        with pytest.raises(BadRequest):
            ask(graph_db, "def", name)
    assert ask(graph_db, "refs", "<Frame as Check>::check") == ask(graph_db, "refs", "check")
    assert ask(graph_db, "def", " crc ")  # spaces around a name are no part of it


def test_method_calls_on_locals_of_a_written_type_resolve() -> None:
    src = b"""use crate::net::Client;
fn f(c: &mut Client, n: impl Fn()) {
    c.send();
    let v = Vec::new();
    v.push(1);
    let r = Request { id: 1 };
    r.go();
    let t: Option<u8> = None;
    t.take();
    other.send();
}
"""
    got = {(r.written, r.line): r.targets for r in extract("src/lib.rs", src).refs}
    assert got[("send", 3)] == ("net::Client::send",)
    assert got[("push", 5)] == ("Vec::push",)  # as written: a prelude type stays by name
    assert got[("go", 7)] == ("Request::go",)
    assert got[("take", 9)] == ("Option::take",)
    assert got[("send", 10)] == ()


def test_a_shadowed_local_is_not_typed_by_the_binding_it_hides() -> None:
    """Rust shadows freely: the `x` of `x.go()` is the binding in scope there, and a
    `let`'s value still reads the one it shadows. The calls typed () below were resolved
    to A's `go` (the last binding of `x` with a written type), and the last one to A's."""
    src = b"""pub struct A;
pub struct B;
fn rebind_unknown() {
    let x = A::new();
    let x = x.into_b();
    x.go();
}
fn param_rebind(x: A) {
    let x = x.into_b();
    x.go();
}
fn closure(x: A, bs: Vec<B>) {
    bs.iter().for_each(|x| x.go());
}
fn for_loop(x: A, bs: Vec<B>) {
    for x in bs { x.go(); }
}
fn tuple(x: A) {
    let (x, _y) = (B::new(), 1);
    x.go();
}
fn if_let(x: A, o: Option<B>) {
    if let Some(x) = o { x.go(); }
}
fn arm(x: A, o: Option<B>) {
    match o { Some(x) => x.go(), None => {} }
}
fn typed_closure(x: A) {
    let f = |x: &B| x.go();
}
fn block() {
    let x = A::new();
    {
        let x = B::new();
        x.go();
    }
    x.go();
}
fn copies(x: A) {
    let y = x.clone();
    y.go();
}
fn value_reads_the_old_binding(x: B) {
    let x: A = x.go();
}
"""
    got = [(r.line, r.targets) for r in extract("src/lib.rs", src).refs if r.name == "go"]
    assert got == [
        (6, ()),
        (10, ()),
        (13, ()),
        (16, ()),
        (20, ()),
        (23, ()),
        (26, ()),
        (29, ("B::go",)),
        (35, ("B::go",)),
        (37, ("A::go",)),
        (41, ("A::go",)),  # a clone has its original's type
        (44, ("B::go",)),
    ]


def test_a_local_typed_by_an_impls_or_traits_type_parameter_names_no_item() -> None:
    """`impl<Handle> Conn<Handle> { fn a(x: Handle) { x.close() } }`: `x` is of the
    parameter, not of the struct `Handle` (its `close` was the resolved answer)."""
    src = b"""pub struct Handle;
pub struct Conn<H>(H);
impl<Handle: Clone> Conn<Handle> {
    pub fn a(&self, x: Handle) { x.close(); let y: Handle = x.clone(); y.close(); }
}
pub trait Tr<Handle> { fn b(&self, x: Handle) { x.close(); } }
pub fn c(x: Handle) { x.close(); }
"""
    got = [(r.line, r.targets) for r in extract("src/lib.rs", src).refs if r.name == "close"]
    # no item of Clone, the trait it is bound by: an extension trait's, by name
    assert got == [(4, ()), (4, ()), (6, ()), (7, ("Handle::close",))]


def test_method_calls_on_fields_of_self_follow_the_fields_type(tmp_path: Path) -> None:
    """tokio's `callers Mutex::lock` listed 125 calls by name, most of them `.lock()` of
    a loom or std mutex in a field: `self.s.acquire(1)` is the field's type's method
    (through `Arc<…>`, `Arc::new(…)` and `?` too, and a typed parameter's field's); asked
    for a path, a call on a std type is left out; asked for a bare name, it still counts
    by name."""
    mutex = b"""use crate::sync::batch_semaphore as semaphore;
use std::sync::Mutex as StdMutex;
use std::sync::Arc;
pub struct Mutex<T> { s: semaphore::Semaphore, c: T }
impl<T> Mutex<T> {
    pub fn lock(&self) {
        self.s.acquire(1);
    }
}
pub struct Pipe { inner: Arc<StdMutex<u8>>, ours: Arc<Mutex<u8>> }
impl Pipe {
    fn read(&self) {
        self.inner.lock();
        self.ours.lock();
    }
}
fn make() {
    let m = Arc::new(Mutex::new());
    m.lock();
}
cfg_rt! {
    pub struct Guarded { inner: Arc<StdMutex<u8>> }
}
impl Guarded {
    fn g(&self) { self.inner.lock(); }
}
fn open_it() -> Result<(), ()> {
    let m = Mutex::open()?;
    m.lock();
    Ok(())
}
fn through(p: &Pipe) {
    p.ours.lock();
}
pub struct Outer { pipe: Pipe }
fn deep(o: &Outer) {
    o.pipe.ours.lock();
}
"""
    files = {
        "src/sync/mutex.rs": mutex,
        "src/sync/batch_semaphore.rs": b"pub struct Semaphore;\n"
        b"impl Semaphore { pub fn acquire(&self, n: u32) {} }\n",
        "src/sync/other.rs": b"pub struct Other;\nimpl Other { pub fn acquire(&self) {} }\n",
    }
    with graph_state(tmp_path, files) as state:

        def callers(name: str) -> list[tuple[str, int, str]]:
            return [(h["symbol"], h["line"], h["confidence"]) for h in ask(state, "callers", name)]

        assert callers("batch_semaphore::Semaphore::acquire") == [
            ("sync::mutex::Mutex::lock", 7, "resolved")
        ]
        assert callers("Other::acquire") == []
        assert callers("sync::mutex::Mutex::lock") == [
            ("sync::mutex::Pipe::read", 14, "resolved"),
            ("sync::mutex::make", 19, "resolved"),
            ("sync::mutex::open_it", 29, "resolved"),  # `Mutex::open()?`
            ("sync::mutex::through", 33, "resolved"),  # a field of a typed parameter
            ("sync::mutex::deep", 37, "resolved"),  # a field of a field
        ]
        assert ("sync::mutex::Pipe::read", 13, "name") in callers("lock")
        assert ("sync::mutex::Guarded::g", 25, "name") in callers("lock")  # in a macro call


class _CountingConnection:
    """A read connection that counts the queries made through it."""

    def __init__(self, conn: Any) -> None:
        self._conn, self.queries = conn, 0

    def execute(self, *args: Any) -> Any:
        self.queries += 1
        return self._conn.execute(*args)


def test_resolution_through_many_globs_is_bounded(tmp_path: Path) -> None:
    """A crate root of 40 `pub use mN::*` whose modules each `pub use super::*`: each
    hop multiplied the spellings by 40 (40^4 lookups for a name defined nowhere); the
    name defined in the last module is still found, one defined nowhere only by name."""
    n = 40
    files = {"src/lib.rs": "".join(f"mod m{i};\npub use m{i}::*;\n" for i in range(n)).encode()}
    for i in range(n):
        body = "pub use super::*;\n" + ("pub struct Deep;\n" if i == n - 1 else "")
        files[f"src/m{i}.rs"] = body.encode()
    files["src/user.rs"] = b"use crate::Deep;\nuse crate::Nowhere;\nfn f(d: Deep, x: Nowhere) {}\n"
    with graph_state(tmp_path, files) as state:
        refs = {(h["line"], h["confidence"]) for h in ask(state, "refs", "m39::Deep")}
        assert (3, "resolved") in refs
        nowhere = ask(state, "refs", "crate::Nowhere")  # by name only
        assert nowhere and {h["confidence"] for h in nowhere} == {"name"}
        with state.reading() as conn:
            counting = _CountingConnection(conn)
            assert Names(counting, read_names(Path("proj"))).resolve("Nowhere") is None
        # Each spelling: a definition and an import query, two for its globs' next name.
        assert counting.queries <= 4 * MAX_LOOKUPS


def test_overlong_paths_are_answered_not_followed(tmp_path: Path) -> None:
    """A call through a 1,200-segment path made `callers f` fail with SQLite's
    "Expression tree is too large" (one query term a segment), and a 600-segment name
    took 0.4 s to ask: paths longer than `MAX_SEGMENTS` are not followed through imports."""
    path = "::".join(["a"] * 1200) + "::f"
    src = f"use crate::x::*;\nfn g() {{ {path}(); }}\nfn f() {{}}\n".encode()
    with graph_state(tmp_path, {"src/lib.rs": src}) as state:
        assert [h["symbol"] for h in ask(state, "callers", "f")] == ["g"]
        assert ask(state, "def", "::".join(["sync"] * 300) + "::f") == []


def test_calls_inside_macro_arguments_are_references() -> None:
    src = b'fn t() {\n    assert_eq!(parse("f(x)"),\n        crate::a::b(1).len());\n}\n'
    got = {(r.written, r.kind, r.line) for r in extract("src/lib.rs", src).refs}
    assert {
        ("assert_eq", "macro", 2),
        ("parse", "call", 2),
        ("crate::a::b", "call", 3),
        ("len", "method", 3),
    } <= got
    assert "f" not in {r.written for r in extract("src/lib.rs", src).refs}  # in a string


def test_turbofish_calls_inside_macro_arguments_are_references() -> None:
    """nom's tests: `assert_eq!(digit1::<_, (_, ErrorKind)>(b), …)`; a path is read
    from its head only (`a::b::c(1)` is one call, never also `b::c` or `c`)."""
    src = b"fn t() {\n    assert_eq!(digit1::<_, (_, ErrorKind)>(b), x.collect::<Vec<u8>>());\n"
    src += b"    check!(a::b::c(1));\n}\n"
    got = {(r.written, r.kind) for r in extract("src/lib.rs", src).refs if r.line in (2, 3)}
    assert {("digit1", "call"), ("collect", "method"), ("a::b::c", "call")} <= got
    assert not {w for w, k in got if k == "call"} & {"b::c", "c"}


def test_a_root_from_before_the_graph_is_rebuilt_with_one(setup: Any) -> None:
    """A state.db that records no `symbol_graph` version (made before the graph) is
    rebuilt through the caches when opened, as a chunk-policy change is."""
    from daemon.pipeline import run_batch

    _crate, collab, open_root = setup
    root = open_root()
    run_batch(root, None, collab)
    with root.state._lock, root.state._db:  # what a root from before the graph holds
        root.state._db.execute("DELETE FROM meta WHERE key='symbol_graph'")
        for table in ("sym_files", *GRAPH_TABLES):
            root.state._db.execute(f"DELETE FROM {table}")
    root.close()
    again = open_root()
    assert len(again.ledger) == 0  # reset: the next batch rebuilds everything
    run_batch(again, None, collab)
    assert again.state.get_meta("symbol_graph") is not None
    with again.state.reading() as conn:
        results = navigate([(conn, "/x", None, again.crate_names())], "def", "MemoryStore", 10)
    assert [h["kind"] for h in results["results"]] == ["struct"]


def test_a_root_of_the_first_graph_tables_is_rebuilt_in_the_new_ones(setup: Any) -> None:
    """Version 1 kept a path on every row (`graph_*` tables); opening such a root drops
    them and rebuilds the graph (through the caches) in the `sym_*` tables."""
    from daemon.pipeline import run_batch

    _crate, collab, open_root = setup
    root = open_root()
    run_batch(root, None, collab)
    with root.state._lock, root.state._db:
        root.state.set_meta("symbol_graph", "1")
        root.state._db.execute("CREATE TABLE graph_refs(path TEXT, name TEXT)")
        root.state._db.execute("INSERT INTO graph_refs VALUES('src/lib.rs', 'x')")
    root.close()
    again = open_root()
    assert len(again.ledger) == 0
    tables = {r[0] for r in again.state._db.execute("SELECT name FROM sqlite_master")}
    assert "graph_refs" not in tables
    run_batch(again, None, collab)
    with again.state.reading() as conn:
        results = navigate([(conn, "/x", None, again.crate_names())], "refs", "MemoryStore", 10)
    assert results["results"] and all(h["confidence"] for h in results["results"])


_USES = b"""use crate::wire::{Frame,
    codec::Crc};
const KIND_ARC: usize = 1;
fn f(kind: usize) -> usize {
    struct Local { v: u8 }
    let s = Suffix::forward(1);
    if kind == KIND_ARC { return 0 }
    match s { TwoWay(ref tw) => 1, None => 2 }
    debug_assert_eq!(kind, KIND_ARC);
    quickcheck! { fn prop(x: u8) -> bool { helper(x) } }
    let c = 'A';
    SenderFlavor::List(s)
}
"""


def test_uses_are_found_where_no_call_shows_them() -> None:
    """A path's qualifier, a capitalised value (a const, a unit struct or variant, also
    in a macro's arguments), and each name of a `use` list on its own line."""
    got = {(r.name, r.kind, r.line) for r in extract("src/lib.rs", _USES).refs}
    assert {("Suffix", "type", 6), ("SenderFlavor", "type", 12)} <= got
    assert {("KIND_ARC", "value", 7), ("KIND_ARC", "value", 9), ("TwoWay", "value", 8)} <= got
    assert {("Frame", "use", 1), ("Crc", "use", 2), ("codec", "module", 2)} <= got
    names = {r.name for r in extract("src/lib.rs", _USES).refs}
    # Not uses: a local item's own name, a fn a macro's tokens declare, a char literal,
    # the prelude's variants.
    assert not names & {"Local", "prop", "A", "None"}


def test_impls_for_types_that_are_no_path_and_callees_that_construct(tmp_path: Path) -> None:
    src = b"""pub trait Buf { fn get(&self) -> u8; }
impl Buf for &[u8] { fn get(&self) -> u8 { 0 } }
impl<A: Buf, B: Buf> Buf for (A, B) { fn get(&self) -> u8 { 1 } }
fn run(x: u8) -> Result<Elem, u8> { helper(x); Ok(Elem(x)) }
"""
    graph = graph_of("src/lib.rs", src)
    assert {i.self_type for i in graph.impls} == {"&[u8]", "(A, B)"}
    state = StateDB(tmp_path / "state.db")
    try:
        rec = FileRecord("src/lib.rs", len(src), 1, 1, b"h", 0)
        state.record([rec], [], [], {}, graphs={rec.path: rows_of(graph)})
        assert {h["symbol"] for h in ask(state, "impls", "Buf")} == {"&[u8]", "(A, B)"}
        assert [h["symbol"] for h in ask(state, "callees", "run")] == ["helper"]
    finally:
        state.close()


def _graph_tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every graph row of a state.db, with the file's path for its id, sorted."""
    db = apsw.Connection(str(path))
    files = dict(db.execute("SELECT id, path FROM sym_files"))
    out = {
        t: sorted((files[r[0]], *r[1:]) for r in db.execute(f"SELECT * FROM {t}"))
        for t in GRAPH_TABLES
    }
    out["sym_files"] = sorted((p,) for p in files.values())
    db.close()
    return out


def test_a_graph_written_over_an_older_one_equals_one_written_afresh(tmp_path: Path) -> None:
    """A save rewrites only the rows that differ (`daemon.graph_rows`): after a series of
    edits (a call changed, lines inserted, a duplicate reference, a file's graph
    dropped, a commit that failed) the tables hold exactly what one fresh write of the
    last versions holds."""
    versions = [
        {"src/codec.rs": CODEC, "src/app.rs": APP, "src/other.rs": OTHER},
        {"src/codec.rs": CODEC.replace(b"crc(", b"crc32("), "src/app.rs": b"\n\n" + APP},
        {"src/app.rs": APP + b"fn again() { crc(); crc(); }\n", "src/other.rs": OTHER},
    ]
    kept = StateDB(tmp_path / "kept.db")
    for files in versions:
        recs = [FileRecord(p, len(b), 1, 1, b"h", 0) for p, b in files.items()]
        graphs = {p: rows_of(graph_of(p, b)) for p, b in files.items()}
        gone = ["src/codec.rs"] if files is versions[-1] else []
        if files is versions[-1]:  # first a commit that fails: its rows must not count
            broken = ChunkRow("x", "src/app.rs", 1, 1, "f", "fn", "", None)  # type: ignore[arg-type]
            edited = {"src/app.rs": b"\n" + files["src/app.rs"]}
            with pytest.raises(StateError):
                kept.record(
                    recs[:1],
                    [broken],
                    [],
                    {},
                    graphs={p: rows_of(graph_of(p, b)) for p, b in edited.items()},
                )
        kept.record(recs, [], gone, {}, graphs=graphs)
    kept.close()
    fresh = StateDB(tmp_path / "fresh.db")
    last = versions[-1]
    recs = [FileRecord(p, len(b), 1, 1, b"h", 0) for p, b in last.items()]
    fresh.record(recs, [], [], {}, graphs={p: rows_of(graph_of(p, b)) for p, b in last.items()})
    fresh.close()
    assert _graph_tables(tmp_path / "kept.db") == _graph_tables(tmp_path / "fresh.db")


def test_an_alias_imported_under_exclusive_cfgs_means_each_of_its_paths(tmp_path: Path) -> None:
    """tokio's fs/file.rs imports `spawn_blocking` from `blocking` and, under
    `#[cfg(test)]`, from its mocks: a call may mean either (the last `use` won, so the
    real fn's callers left out the file, and the mock's listed it as resolved)."""
    files = {
        "src/blocking.rs": b"pub fn spawn_blocking() {}\n",
        "src/fs/mocks.rs": b"pub fn spawn_blocking() {}\n",
        "src/fs/file.rs": (
            b"#[cfg(not(test))]\nuse crate::blocking::spawn_blocking;\n"
            b"#[cfg(test)]\nuse super::mocks::spawn_blocking;\n"
            b"pub fn open() { spawn_blocking(); }\n"
        ),
    }
    with graph_state(tmp_path, files) as state:
        for name in ("blocking::spawn_blocking", "mocks::spawn_blocking"):
            callers = {(h["symbol"], h["confidence"]) for h in ask(state, "callers", name)}
            assert callers == {("fs::file::open", "resolved")}, (name, callers)


def test_a_name_asked_from_crate_is_anchored_at_the_crates_root(tmp_path: Path) -> None:
    """`crate::helper` is the crate root's `helper`, not every `helper` whose path ends
    so (a fn of that name written in another fn's body, a module's)."""
    files = {
        "src/lib.rs": (
            b"pub mod util;\npub fn helper() {}\n"
            b"pub fn outer() { fn helper() {} helper(); }\npub fn main() { helper(); }\n"
        ),
        "src/util.rs": b"pub fn helper() {}\npub fn run() { helper(); }\n",
    }
    with graph_state(tmp_path, files) as state:
        assert [h["symbol"] for h in ask(state, "def", "crate::helper")] == ["helper"]
        assert {h["symbol"] for h in ask(state, "def", "helper")} == {
            "helper",
            "outer::helper",
            "util::helper",
        }
        callers = {(h["symbol"], h["confidence"]) for h in ask(state, "callers", "crate::helper")}
        assert callers == {("main", "resolved")}, callers
        util = {h["symbol"] for h in ask(state, "callers", "crate::util::helper")}
        assert util == {"util::run"}


def test_a_path_attribute_names_the_file_a_mod_declaration_reads(tmp_path: Path) -> None:
    """proc-macro2's `#[path = "wrapper.rs"] mod imp;` beside a cfg'd `use crate::fallback
    as imp;`: `imp::TokenStream` is either file's (only `fallback`'s was named, and
    `resolved`); once_cell's three `#[path]`s of one `mod imp;` likewise."""
    stream = b"pub struct TokenStream;\nimpl TokenStream { pub fn new() -> Self { TokenStream } }\n"
    files = {
        "src/lib.rs": (
            b"#[cfg(not(wrap))]\nuse crate::fallback as imp;\n"
            b'#[cfg(wrap)]\n#[path = "wrapper.rs"]\nmod imp;\nmod fallback;\n'
            b"pub fn make() -> imp::TokenStream { imp::TokenStream::new() }\n"
        ),
        "src/wrapper.rs": stream,
        "src/fallback.rs": stream,
    }
    with graph_state(tmp_path, files) as state:
        defs = {(h["symbol"], h["confidence"]) for h in ask(state, "def", "imp::TokenStream")}
        assert defs == {("wrapper::TokenStream", "resolved"), ("fallback::TokenStream", "resolved")}
        for owner in ("wrapper", "fallback"):
            callers = {
                (h["symbol"], h["confidence"])
                for h in ask(state, "callers", f"{owner}::TokenStream::new")
            }
            assert callers == {("make", "resolved")}, (owner, callers)


def test_a_keyword_asked_bare_finds_the_raw_identifier(tmp_path: Path) -> None:
    """`rcmd def type` for `fn r#type()`, `callers S::match` for `fn r#match`."""
    files = {
        "src/lib.rs": (
            b"pub fn r#type() {}\npub fn user() { r#type(); }\npub struct S;\n"
            b"impl S { pub fn r#match(&self) {} }\npub fn u2(s: S) { s.r#match(); }\n"
        )
    }
    with graph_state(tmp_path, files) as state:
        assert [h["symbol"] for h in ask(state, "def", "type")] == ["r#type"]
        assert [h["symbol"] for h in ask(state, "callers", "type")] == ["user"]
        assert [h["symbol"] for h in ask(state, "callers", "S::match")] == ["u2"]
        assert ask(state, "def", "while") == []


def test_qualified_types_macro_self_calls_cfg_attr_paths_and_root_macros(tmp_path: Path) -> None:
    """Four wrong or missing answers from crates in neither split: erased-serde's
    `<dyn Deserializer>::erase(..)` was the module's `fn erase`, resolved; socket2's
    `fn bind(..) { syscall!(bind(..)) }` called itself, resolved; its
    `#[cfg_attr(unix, path = "sys/unix.rs")] mod sys;` named no file; `log::info` (a
    `#[macro_export]` macro of `macros.rs`) and `info!` found nothing."""
    files = {
        "src/lib.rs": (
            b"#[macro_use]\nmod macros;\n"
            b'#[cfg_attr(unix, path = "sys/unix.rs")]\nmod sys;\n'
            b"pub trait Deserializer { fn erase(&self); }\n"
            b"impl dyn Deserializer { pub fn wrap(&self) {} }\n"
            b"fn erase() {}\n"
            b"pub fn use_it(d: &dyn Deserializer) { <dyn Deserializer>::wrap(d);"
            b" <u8 as Deserializer>::erase(&1); sys::bind(1); }\n"
        ),
        "src/sys/unix.rs": b"pub fn bind(fd: i32) -> i32 { syscall!(bind(fd)) }\n",
        "src/macros.rs": b"#[macro_export]\nmacro_rules! info { ($($t:tt)*) => {} }\n",
    }
    with graph_state(tmp_path, files) as state:
        assert ask(state, "callers", "crate::erase") == []
        erase = {
            (h["symbol"], h["confidence"]) for h in ask(state, "callers", "Deserializer::erase")
        }
        assert erase == {("use_it", "resolved")}, erase
        wrap = {(h["symbol"], h["confidence"]) for h in ask(state, "callers", "Deserializer::wrap")}
        assert wrap == {("use_it", "resolved")}, wrap
        bind = {(h["symbol"], h["confidence"]) for h in ask(state, "callers", "sys::unix::bind")}
        assert bind == {("use_it", "resolved"), ("sys::unix::bind", "name")}, bind
        for name in ("proj::info", "info!", "crate::info"):
            assert [h["symbol"] for h in ask(state, "def", name)] == ["macros::info"], name


def test_a_path_attribute_reads_past_comments_and_never_out_of_the_root() -> None:
    """A comment between `#[path]` and its `mod` hid the import; a path of bytes that
    are not UTF-8 raised out of the extractor (the file lost its whole graph); an
    absolute path or one up past the root named a module of the root (`/etc/x.rs`:
    `etc::x`)."""

    def targets(attr: bytes) -> list[str]:
        src = b"#[path = " + attr + b"]\n// the platform's\nmod imp;\nfn d() { imp::f(); }\n"
        return [i.target for i in extract("src/lib.rs", src).imports]

    assert targets(b'"sys/unix.rs"') == ["sys::unix"]
    assert targets(b'"\xff.rs"') == ["\ufffd"]
    assert targets(b'"/etc/x.rs"') == [] and targets(b'"../../x.rs"') == []
    assert targets(b'"../x.rs"') == ["x"]  # src/../x.rs is in the root


def test_an_alias_imported_many_times_keeps_a_bounded_number_of_targets() -> None:
    """Each path of an alias imported under exclusive `#[cfg]`s is a candidate of every
    reference through it: 4,000 imports of `g` and 4,000 references `g::xN()` in a
    190 KB file made 4,000 × 4,000 targets (2.8 s, 1.6 GB); the first few are kept."""
    n = 1000
    src = "".join(f"#[cfg(f{i})]\nuse crate::m{i} as g;\n" for i in range(n))
    src += "fn d() {\n" + "".join(f"g::x{i}();\n" for i in range(n)) + "}\n"
    refs = [r for r in extract("src/lib.rs", src.encode()).refs if r.written.startswith("g::")]
    assert len(refs) == n
    assert all(2 <= len(r.targets) <= 16 for r in refs)
    assert refs[5].targets[:2] == ("m0::x5", "m1::x5")


def test_a_name_from_crate_is_found_in_a_workspace_of_many_members(tmp_path: Path) -> None:
    """`crate::helper` is looked up at each member's root; with 16 members or more the
    bound on spellings was spent before the first was tried, and nothing was found."""
    from daemon.crate_names import CrateNames

    files = {f"m{i}/src/lib.rs": b"pub fn helper() {}\n" for i in range(20)}
    names = CrateNames({f"m{i}": (f"m{i}",) for i in range(20)})
    with graph_state(tmp_path, files) as state, state.reading() as conn:
        graphs = [(conn, "/r/ws", None, names)]
        found = navigate(graphs, "def", "crate::helper", 100)["results"]
        assert sorted(h["symbol"] for h in found) == sorted(f"m{i}::helper" for i in range(20))


def test_a_typed_receivers_call_inside_a_macro_is_resolved(tmp_path: Path) -> None:
    """`println!("{}", s.total())` with `s: &Store` counted by name for every `total`
    (outside the macro it resolved); a field chain inside the tokens stays by name."""
    files = {
        "src/lib.rs": (
            b"pub struct Store;\nimpl Store { pub fn total(&self) -> u32 { 0 }\n"
            b'pub fn show(&self) { println!("{}", self.total()); } }\n'
            b"pub struct Other;\nimpl Other { pub fn total(&self) -> u32 { 1 } }\n"
            b'pub fn f(s: &Store, o: Other) { println!("{} {}", s.total(), o.total()); }\n'
        )
    }
    with graph_state(tmp_path, files) as state:
        store = {(h["symbol"], h["confidence"]) for h in ask(state, "callers", "Store::total")}
        assert store == {("Store::show", "resolved"), ("f", "resolved")}, store
        other = {(h["symbol"], h["confidence"]) for h in ask(state, "callers", "Other::total")}
        assert other == {("f", "resolved")}, other


def test_an_impl_of_a_path_names_the_module_the_path_points_to(tmp_path: Path) -> None:
    """socket2 writes `impl crate::Socket { pub fn set_cloexec … }` in sys/unix.rs, beside
    that module's own `type Socket = c_int`: its methods were `sys::unix::Socket::*`, so
    `def socket2::Socket::set_cloexec` found nothing and a `&Socket` receiver matched by
    name. Chunks and definitions now agree on the crate root's `Socket`."""
    unix = (
        b"pub type Socket = i32;\nimpl crate::Socket {\n    pub fn set_cloexec(&self) {}\n}\n"
        b"impl super::Other { pub fn go(&self) {} }\n"
    )
    files = {
        "src/lib.rs": b"mod sys;\npub struct Socket;\npub fn f(s: &Socket) { s.set_cloexec(); }\n",
        "src/sys/unix.rs": unix,
        "src/sys/mod.rs": b"pub mod unix;\npub struct Other;\n",
    }
    from daemon.chunker import chunk_source

    symbols = {c.symbol for c in chunk_source("src/sys/unix.rs", unix)}
    assert {"Socket::set_cloexec", "sys::Other::go", "sys::unix::Socket"} <= symbols, symbols
    with graph_state(tmp_path, files) as state:
        found = [(h["symbol"], h["path"]) for h in ask(state, "def", "proj::Socket::set_cloexec")]
        assert found == [("Socket::set_cloexec", "src/sys/unix.rs")], found
        callers = {
            (h["symbol"], h["confidence"]) for h in ask(state, "callers", "Socket::set_cloexec")
        }
        assert callers == {("f", "resolved")}, callers
        assert [h["symbol"] for h in ask(state, "def", "sys::Other::go")] == ["sys::Other::go"]


def test_a_path_through_a_type_alias_reaches_the_types_items(tmp_path: Path) -> None:
    """spin writes `pub type Mutex<T> = crate::mutex::Mutex<T>;` at its root and its
    users `spin::Mutex::lock`: `def` found nothing, and a field typed by a private alias
    (`inner: InnerMutex<T>`, two under exclusive `#[cfg]`s) called `lock` by name only.
    The alias itself stays an item of its own: its uses are not the type's."""
    files = {
        "src/lib.rs": b"pub mod mutex;\npub type Mutex<T> = crate::mutex::Mutex<T>;\n"
        b"pub fn f(m: &Mutex<u8>) { m.lock(); }\n",
        "src/mutex.rs": b"pub mod spin;\npub mod ticket;\nuse self::spin::SpinMutex;\n"
        b"#[cfg(a)]\ntype InnerMutex<T> = SpinMutex<T>;\n"
        b"#[cfg(not(a))]\ntype InnerMutex<T> = self::ticket::TicketMutex<T>;\n"
        b"pub struct Mutex<T> { inner: InnerMutex<T> }\n"
        b"impl<T> Mutex<T> { pub fn lock(&self) { self.inner.lock(); } }\n",
        "src/mutex/spin.rs": b"pub struct SpinMutex<T>(T);\n"
        b"impl<T> SpinMutex<T> { pub fn lock(&self) {} }\n",
        "src/mutex/ticket.rs": b"pub struct TicketMutex<T>(T);\n"
        b"impl<T> TicketMutex<T> { pub fn lock(&self) {} }\n",
        "src/other.rs": b"pub struct Other;\nimpl Other { pub fn lock(&self) {} }\n",
    }
    with graph_state(tmp_path, files) as state, state.reading() as conn:
        root = "/deps/spin-0.9.5"
        reader = (conn, root, None, read_names(Path(root)))

        def spin(method: str, name: str) -> set[tuple[str, str]]:
            found = navigate([reader], method, name, 100)["results"]
            return {(h["symbol"], h["confidence"]) for h in found}

        assert spin("def", "spin::Mutex::lock") == {("mutex::Mutex::lock", "resolved")}
        assert spin("def", "spin::Mutex") == {("Mutex", "resolved")}
        assert spin("callers", "mutex::Mutex::lock") == {("f", "resolved")}
        assert spin("callers", "SpinMutex::lock") == {("mutex::Mutex::lock", "resolved")}
        assert spin("callers", "Other::lock") == set()
        users = {h["via"] for h in navigate([reader], "refs", "spin::Mutex", 100)["results"]}
        assert "f" in users and "mutex::Mutex::lock" not in users, users


def test_self_in_a_macros_tokens_is_the_impls_type_not_a_path_to_resolve(tmp_path: Path) -> None:
    """serde_json's `tri!(self.peek())` in de.rs, whose `use serde::de;` made the impl's
    `de::Deserializer` serde's: `Self`'s path was resolved again as if written there, so a
    crate importing a module under its own module's name got another item's method."""
    files = {
        "src/imp/mod.rs": b"pub mod de;\n",
        "src/imp/de.rs": b"pub struct Deserializer;\nimpl Deserializer { pub fn peek(&self) {} }\n",
        "src/de.rs": b"use crate::imp::de;\npub struct Deserializer;\nimpl Deserializer {\n"
        b"    pub fn peek(&self) {}\n    pub fn go(&self) { tri!(self.peek()); }\n}\n",
    }
    with graph_state(tmp_path, files) as state:
        own = {
            (h["symbol"], h["confidence"]) for h in ask(state, "callers", "de::Deserializer::peek")
        }
        assert own == {("de::Deserializer::go", "resolved")}, own
        assert ask(state, "callers", "imp::de::Deserializer::peek") == []


def test_a_path_head_is_never_a_fn_const_or_macro_of_the_module(tmp_path: Path) -> None:
    """regex's tests/test_default.rs has `use regex;` beside `macro_rules! regex`: the
    import, and every `regex::Regex::new` of the file, went to the macro's path and
    counted by name. A macro, fn, const or static lives in another namespace than the
    modules and types a path goes through; alone, as a call, it is still the item."""
    files = {
        "src/lib.rs": b"pub struct Regex;\nimpl Regex { pub fn new() {} }\n",
        "src/other.rs": b"pub struct Regex;\nimpl Regex { pub fn new() {} }\n",
        "tests/t.rs": b"use regex;\nmacro_rules! regex { () => {} }\nfn helper() {}\n"
        b"fn go() { regex::Regex::new(); helper(); }\nfn more() { regex!(); }\n",
    }
    with graph_state(tmp_path, files) as state, state.reading() as conn:
        root = "/deps/regex-1.7.1"
        reader = (conn, root, None, read_names(Path(root)))

        def regex(method: str, name: str) -> set[tuple[str, str]]:
            found = navigate([reader], method, name, 100)["results"]
            return {(h["symbol"], h["confidence"]) for h in found}

        assert regex("callers", "crate::Regex::new") == {("tests::t::go", "resolved")}
        assert regex("callers", "other::Regex::new") == set()
        assert regex("callers", "tests::t::helper") == {("tests::t::go", "resolved")}
        assert regex("callers", "tests::t::regex") == {("tests::t::more", "resolved")}


def test_a_path_into_a_dependency_crate_resolves_in_its_graph(tmp_path: Path) -> None:
    """With `--deps`, a project's `serde_json::from_str(..)` and `v.as_str()` on a
    `v: &Value` imported from serde_json came by name only, after every resolved call
    inside the crate: each root was judged alone. A path from a dependency's name is
    judged by that crate's graph; a method of the project's own type stays out."""
    dep = {
        "src/lib.rs": b"pub mod de;\npub mod value;\npub use crate::de::from_str;\n"
        b"pub use crate::value::Value;\n",
        "src/de.rs": b"pub fn from_str() {}\npub fn helper() { from_str(); }\n",
        "src/value.rs": b"pub struct Value;\nimpl Value { pub fn as_str(&self) {} }\n",
        "src/macros.rs": b"#[macro_export]\nmacro_rules! json { () => {} }\n",
    }
    main = (
        b"use serde_json::{json, Value};\n"
        b"fn parse(v: &Value) { serde_json::from_str(); v.as_str(); json!(); }\n"
        b"struct Other;\nimpl Other { fn as_str(&self) {} }\nfn other(o: &Other) { o.as_str(); }\n"
    )
    (tmp_path / "dep").mkdir()
    (tmp_path / "proj").mkdir()
    with (
        graph_state(tmp_path / "dep", dep) as deps,
        graph_state(tmp_path / "proj", {"src/main.rs": main}) as proj,
        proj.reading() as proj_conn,
        deps.reading() as deps_conn,
    ):
        crate = "/deps/serde_json-1.0.87"
        sources = [
            (proj_conn, "/r/proj", None, read_names(Path("/r/proj"))),
            (deps_conn, crate, "serde_json 1.0.87", read_names(Path(crate))),
        ]

        def both(method: str, name: str) -> set[tuple[str, str, str]]:
            found = navigate(sources, method, name, 100)["results"]
            return {(h["root"], h["symbol"], h["confidence"]) for h in found}

        assert both("callers", "serde_json::from_str") == {
            ("/r/proj", "parse", "resolved"),
            (crate, "de::helper", "resolved"),
        }
        assert both("callers", "Value::as_str") == {("/r/proj", "parse", "resolved")}
        assert both("callers", "serde_json::json") == {("/r/proj", "parse", "resolved")}
        callees = {(s, c) for _r, s, c in both("callees", "parse")}
        assert {("de::from_str", "resolved"), ("value::Value::as_str", "resolved")} <= callees
        alone = navigate(sources[:1], "callers", "serde_json::from_str", 100)["results"]
        assert [(h["symbol"], h["confidence"]) for h in alone] == [("parse", "name")]


def test_an_impl_of_a_crate_path_does_not_hide_the_item_re_exported_there(
    tmp_path: Path,
) -> None:
    """hyper's ffi writes `impl<T> IntoDynTaskType for crate::Result<T>` and its root
    `pub use crate::error::{Error, Result};`: `def hyper::Result` answered the impl
    (named at the crate's root, as the chunker names it) instead of the alias."""
    files = {
        "src/lib.rs": b"mod error;\nmod ffi;\npub use crate::error::{Error, Result};\n",
        "src/error.rs": b"pub struct Error;\npub type Result<T> = std::result::Result<T, Error>;\n",
        "src/ffi.rs": b"pub trait Task {}\nimpl<T> Task for crate::Result<T> {}\n",
    }
    with graph_state(tmp_path, files) as state, state.reading() as conn:
        root = "/deps/hyper-0.14.19"
        reader = (conn, root, None, read_names(Path(root)))
        found = navigate([reader], "def", "hyper::Result", 100)["results"]
        assert [(h["symbol"], h["kind"]) for h in found] == [("error::Result", "type")], found


def test_a_type_alias_under_exclusive_cfgs_means_each_type_it_names(tmp_path: Path) -> None:
    """spin's mutex.rs picks `InnerMutex` by cfg feature, a `type` alias for each: a
    call through it may mean either (`callers TicketMutex::lock` left out mutex.rs:186,
    the first alias's `SpinMutex::lock` alone listed it). A `pub use` written twice the
    same way, and a path (`Inner::new()`) through the alias, mean each too; `callees
    Mutex::lock` lists both (it listed the first alone)."""
    files = {
        "src/lib.rs": b"pub mod spin;\npub mod ticket;\npub mod other;\n",
        "src/mutex.rs": b"#[cfg(a)]\ntype InnerMutex<T> = crate::spin::SpinMutex<T>;\n"
        b"#[cfg(not(a))]\ntype InnerMutex<T> = crate::ticket::TicketMutex<T>;\n"
        b"#[cfg(a)]\npub use crate::spin::SpinMutex as Pick;\n"
        b"#[cfg(not(a))]\npub use crate::ticket::TicketMutex as Pick;\n"
        b"pub struct Mutex<T> { inner: InnerMutex<T> }\n"
        b"impl<T> Mutex<T> {\n    pub fn lock(&self) { self.inner.lock(); }\n"
        b"    pub fn new() { InnerMutex::new(); }\n    pub fn pick() { Pick::new(); }\n}\n",
        "src/spin.rs": b"pub struct SpinMutex<T>(T);\n"
        b"impl<T> SpinMutex<T> { pub fn lock(&self) {} pub fn new() {} }\n",
        "src/ticket.rs": b"pub struct TicketMutex<T>(T);\n"
        b"impl<T> TicketMutex<T> { pub fn lock(&self) {} pub fn new() {} }\n",
        "src/other.rs": b"pub struct Other;\n"
        b"impl Other { pub fn lock(&self) {} pub fn new() {} }\n",
    }
    with graph_state(tmp_path, files) as state:
        for ty in ("SpinMutex", "TicketMutex"):
            lock = {(h["symbol"], h["confidence"]) for h in ask(state, "callers", f"{ty}::lock")}
            assert lock == {("mutex::Mutex::lock", "resolved")}, (ty, lock)
            new = {(h["symbol"], h["confidence"]) for h in ask(state, "callers", f"{ty}::new")}
            assert new == {("mutex::Mutex::new", "resolved"), ("mutex::Mutex::pick", "resolved")}
        assert ask(state, "callers", "Other::lock") == []
        assert ask(state, "callers", "Other::new") == []
        # `callees` lists each type the alias names, not the first written alone.
        lock = {(h["symbol"], h["confidence"]) for h in ask(state, "callees", "Mutex::lock")}
        assert lock == {
            ("spin::SpinMutex::lock", "resolved"),
            ("ticket::TicketMutex::lock", "resolved"),
        }


def test_calls_through_a_type_parameter_are_its_bound_traits_items(tmp_path: Path) -> None:
    """spin's rwlock.rs is generic over `R: RelaxStrategy` and calls `R::relax()`, and
    serde_json's `impl<'de, R: Read<'de>> Deserializer<R>` calls `self.read.peek()` on a
    field `read: R`: neither was a caller of the trait's method, not even by name. The
    bounds of `<R: A + B>` and of `where` clauses, on the fn and on its impl or trait,
    make the calls the bound traits' items; a prelude trait (`Iterator`) is std's, never
    the root's namesake; `Self::m()` in a trait's default method is the trait's `m`."""
    files = {
        "src/lib.rs": b"pub mod relax;\npub mod read;\npub mod other;\n"
        b"pub trait Iterator { fn next(&mut self); }\n",
        "src/relax.rs": b"pub trait RelaxStrategy { fn relax(); }\n"
        b"pub trait Twice { fn twice(&self) { Self::once(); } fn once(); }\n",
        "src/read.rs": b"pub trait Read<'de> { fn peek(&mut self); }\n",
        "src/other.rs": b"pub struct Other;\nimpl Other { pub fn relax() {}\n"
        b"    pub fn peek(&mut self) {} pub fn next(&mut self) {} }\n",
        "src/rwlock.rs": b"use crate::relax::{RelaxStrategy, Twice};\nuse crate::read::Read;\n"
        b"pub struct Lock<R> { read: R }\n"
        b"impl<R: RelaxStrategy> Lock<R> {\n    pub fn write(&self) { R::relax(); }\n}\n"
        b"impl<'de, R> Lock<R> where R: Read<'de> {\n"
        b"    fn peek(&mut self) { self.read.peek(); }\n"
        b"    fn other<S: Twice>(&mut self, s: &S, r: &mut R) { r.peek(); s.twice(); }\n}\n"
        b"pub fn spin<S: Clone + RelaxStrategy>() { S::relax(); }\n"
        b"pub fn walk<I: Iterator>(mut it: I) { it.next(); }\n",
    }
    with graph_state(tmp_path, files) as state:
        callers = functools.partial(judged_callers, state)
        assert callers("RelaxStrategy::relax") == {
            ("rwlock::Lock::write", "resolved"),
            ("rwlock::spin", "resolved"),
        }
        assert callers("read::Read::peek") == {
            ("rwlock::Lock::peek", "resolved"),
            ("rwlock::Lock::other", "resolved"),
        }
        assert callers("Twice::twice") == {("rwlock::Lock::other", "resolved")}
        assert callers("Twice::once") == {("relax::Twice::twice", "resolved")}
        assert callers("Other::relax") == set()
        assert callers("Other::peek") == set()
        assert callers("crate::Iterator::next") == set()
        assert ("rwlock::walk", "name") in callers("next")


def test_calls_on_an_impl_or_dyn_trait_value_are_the_traits_items(tmp_path: Path) -> None:
    """`fn f(r: impl Read)`, `&mut dyn Read` and a field `Box<dyn Read + Send>` call the
    trait's method as a type parameter bound by it does (they counted by name only); a
    bare prelude trait (`dyn Iterator`) is std's, never the root's namesake."""
    files = {
        "src/lib.rs": b"pub mod read;\npub mod other;\n"
        b"pub trait Iterator { fn next(&mut self); }\n",
        "src/read.rs": b"pub trait Read { fn fill(&mut self); }\n",
        "src/other.rs": b"pub struct Other;\n"
        b"impl Other { pub fn fill(&mut self) {} pub fn next(&mut self) {} }\n",
        "src/user.rs": b"use crate::read::Read;\npub struct Holder { src: Box<dyn Read + Send> }\n"
        b"impl Holder { fn pull(&mut self) { self.src.fill(); } }\n"
        b"pub fn one(mut r: impl Read) { r.fill(); }\n"
        b"pub fn two(r: &mut dyn Read) { r.fill(); }\n"
        b"pub fn walk(it: &mut dyn Iterator<Item = u8>) { it.next(); }\n",
    }
    with graph_state(tmp_path, files) as state:
        callers = functools.partial(judged_callers, state)
        assert callers("read::Read::fill") == {
            ("user::Holder::pull", "resolved"),
            ("user::one", "resolved"),
            ("user::two", "resolved"),
        }
        assert callers("Other::fill") == set()
        assert callers("crate::Iterator::next") == set()
        assert ("user::walk", "name") in callers("next")


def test_a_call_is_never_a_root_macro_of_its_name(tmp_path: Path) -> None:
    """A closure `check` called in a `mod tests { use super::*; }` of the root has the
    candidate `check` (through the glob), which no item holds: it was resolved to a
    `macro_rules! check` of another module (the crate-root `#[macro_export]` fallback),
    so `callers m::check` answered a closure call as resolved. Only a macro call (or a
    `use`) may name such a macro."""
    files = {
        "src/lib.rs": b"pub mod m;\n#[cfg(test)]\nmod tests {\n    use super::*;\n"
        b"    fn t() { let check = |x: u8| x; check(1); }\n    fn u() { check!(); }\n}\n",
        "src/m.rs": b"#[macro_export]\nmacro_rules! check { () => {} }\npub fn g() { check!(); }\n",
    }
    with graph_state(tmp_path, files) as state:
        assert judged_callers(state, "m::check") == {
            ("m::g", "resolved"),
            ("tests::u", "resolved"),
            ("tests::t", "name"),
        }
        callees = {(h["symbol"], h["confidence"]) for h in ask(state, "callees", "tests::t")}
        assert callees == {("check", "name")}


def test_an_extension_traits_method_on_a_prelude_bound_counts_by_name(tmp_path: Path) -> None:
    """itertools' tests/test_std.rs: `j.sorted()` on a `j: I` under `I: Iterator` calls
    `Itertools::sorted` (a blanket impl over every iterator), not an item of Iterator:
    its candidate was `std::Iterator::sorted`, a std path, so `callers Itertools::sorted`
    left it out (it counted by name before bounds were read). A prelude trait's own
    items stay std's (`it.next()` is no caller of the root's `Iterator::next`)."""
    files = {
        "src/lib.rs": b"pub trait Iterator { fn next(&mut self); }\n"
        b"pub trait Itertools: std::iter::Iterator { fn sorted(self) {} }\n"
        b"impl<T: std::iter::Iterator> Itertools for T {}\n",
        "tests/t.rs": b"fn sort<I: Iterator + Clone>(i: I) { i.clone().count(); i.sorted(); }\n"
        b"fn walk(mut it: impl Iterator<Item = u8>) { it.next(); it.sorted(); }\n",
    }
    with graph_state(tmp_path, files) as state:
        callers = functools.partial(judged_callers, state)
        assert callers("Itertools::sorted") == {
            ("tests::t::sort", "name"),
            ("tests::t::walk", "name"),
        }
        assert callers("crate::Iterator::next") == set()


def test_an_extension_traits_method_on_a_std_path_bound_counts_by_name(tmp_path: Path) -> None:
    """`r.read_u32()` on an `r: R` under `R: std::io::Read` (byteorder's `ReadBytesExt`),
    `f.boxed()` under `F: Future` imported from core (futures' `FutureExt`): extension
    traits' methods on a std trait's values. Their candidates were std paths, so
    `callers ReadBytesExt::read_u32` left them out; std's own items are not known here,
    so such a call counts by name, as it did before bounds were read."""
    files = {
        "src/lib.rs": b"pub mod ext;\npub mod user;\n",
        "src/ext.rs": b"pub trait ReadBytesExt: std::io::Read { fn read_u32(&mut self) {} }\n"
        b"pub trait FutureExt { fn boxed(self) {} }\n",
        "src/user.rs": b"use core::future::Future;\n"
        b"pub fn g<R: std::io::Read>(mut r: R) { r.read_u32(); }\n"
        b"pub fn h<F: Future>(f: F) { f.boxed(); }\n",
    }
    with graph_state(tmp_path, files) as state:
        callers = functools.partial(judged_callers, state)
        assert callers("ReadBytesExt::read_u32") == {("user::g", "name")}
        assert callers("FutureExt::boxed") == {("user::h", "name")}


def test_a_field_typed_by_a_struct_parameter_is_the_impls_argument_at_its_position(
    tmp_path: Path,
) -> None:
    """`struct S<A> { x: A }` under `impl<A: Foo, B> S<B>`: the field's `A` is the impl's
    `B` (unbound: by name), not the impl's `A` (it resolved to `Foo::m`); `impl<X: Bar>
    S<X>` makes it an `X` (`impl<Y: Bar> Tr for &mut S<Y>` a `Y`), `impl S<Other>` an
    `Other`."""
    files = {
        "src/lib.rs": b"pub mod tr;\npub mod other;\npub mod s;\n",
        "src/tr.rs": b"pub trait Foo { fn m(&self); }\npub trait Bar { fn m(&self); }\n",
        "src/other.rs": b"pub struct Other;\nimpl Other { pub fn m(&self) {} }\n",
        "src/s.rs": b"use crate::tr::{Bar, Foo};\nuse crate::other::Other;\n"
        b"pub struct S<'a, A> { x: A, r: &'a u8 }\n"
        b"impl<'a, A: Foo, B> S<'a, B> {\n    fn f(&self) { self.x.m(); }\n}\n"
        b"impl<'a, X: Bar> S<'a, X> {\n    fn g(&self) { self.x.m(); }\n}\n"
        b"impl<'a> S<'a, Other> {\n    fn h(&self) { self.x.m(); }\n}\n"
        b"impl<'a, Y: Bar> Tr for &'a mut S<'a, Y> {\n    fn k(&self) { self.x.m(); }\n}\n",
    }
    with graph_state(tmp_path, files) as state:
        callers = functools.partial(judged_callers, state)
        assert callers("tr::Foo::m") == {("s::S::f", "name")}
        assert callers("tr::Bar::m") == {
            ("s::S::g", "resolved"),
            ("s::S::k", "resolved"),
            ("s::S::f", "name"),
        }
        assert callers("Other::m") == {("s::S::h", "resolved"), ("s::S::f", "name")}


def test_a_method_call_on_a_field_in_a_macros_tokens_follows_the_fields_type(
    tmp_path: Path,
) -> None:
    """serde_json's de.rs writes `tri!(self.read.ignore_str())` on a field `read: R` with
    `R: Read<'de>`: by name only, where the same call outside `tri!` resolved. A field
    of `self` or of a typed local is read in a macro's tokens as outside them."""
    files = {
        "src/lib.rs": b"pub mod read;\npub mod other;\npub mod de;\n",
        "src/read.rs": b"pub trait Read<'de> { fn peek(&mut self); }\n",
        "src/other.rs": b"pub struct Other;\nimpl Other { pub fn peek(&mut self) {} }\n",
        "src/de.rs": b"use crate::read::Read;\nuse crate::other::Other;\n"
        b"macro_rules! tri { ($e:expr) => { $e }; }\n"
        b"pub struct De<R> { read: R, other: Other }\n"
        b"pub struct Outer { de: Other }\n"
        b"impl<'de, R: Read<'de>> De<R> {\n"
        b"    fn first(&mut self) { tri!(self.read.peek()); }\n"
        b"    fn second(&mut self, o: &mut Outer) {\n"
        b"        tri!(self . other.peek()); tri!(o.de.peek());\n    }\n}\n",
    }
    with graph_state(tmp_path, files) as state:
        callers = functools.partial(judged_callers, state)
        assert callers("read::Read::peek") == {("de::De::first", "resolved")}
        assert callers("Other::peek") == {("de::De::second", "resolved")}


def test_a_call_through_a_bound_trait_may_be_a_supertraits_item(tmp_path: Path) -> None:
    """`trait Sub: Super` and `fn f<R: Sub>() { R::sup() }`: the candidate `Sub::sup` named
    no item and `R::sup` is no spelling of `Super::sup`, so the call was missing from its
    callers. A supertrait (`trait T: A + B`, `where Self: C`, through theirs) is looked
    up for the item; a bound on the trait's own parameter (`trait Gen<T: Free>`) is not."""
    files = {
        "src/lib.rs": b"pub mod tr;\npub mod user;\npub mod other;\n",
        "src/tr.rs": b"pub trait Super { fn sup(&self); fn up(); }\n"
        b"pub trait Extra { fn oth(&self); }\npub trait Mid: Super {}\n"
        b"pub trait Sub: Mid where Self: Extra { fn go(&self) { self.sup(); } }\n"
        b"pub trait Free { fn free(&self); }\npub trait Gen<T: Free>: Extra {}\n",
        "src/user.rs": b"use crate::tr::{Gen, Sub};\n"
        b"pub fn one<R: Sub>() { R::up(); }\n"
        b"pub fn two<R: Sub>(x: R) { x.sup(); x.oth(); }\n"
        b"pub fn three(x: &dyn Sub) { x.sup(); }\n"
        b"pub fn four<G: Gen<u8>>(g: G) { g.free(); }\n",
        "src/other.rs": b"pub struct Namesake;\n"
        b"impl Namesake { pub fn sup(&self) {} pub fn up() {} pub fn free(&self) {} }\n",
    }
    with graph_state(tmp_path, files) as state:
        callers = functools.partial(judged_callers, state)
        assert callers("tr::Super::sup") == {
            ("user::two", "resolved"),
            ("user::three", "resolved"),
            ("tr::Sub::go", "resolved"),
        }
        assert callers("tr::Super::up") == {("user::one", "resolved")}
        assert callers("tr::Extra::oth") == {("user::two", "resolved")}
        assert callers("tr::Free::free") == {("user::four", "name")}
        assert callers("Namesake::sup") == set()
        assert callers("Namesake::up") == set()
        callees = {(h["symbol"], h["confidence"]) for h in ask(state, "callees", "user::one")}
        assert callees == {("tr::Super::up", "resolved")}


def test_a_call_through_an_associated_type_is_its_bounds_item(tmp_path: Path) -> None:
    """`T::Item::m()` and `<T as Tr>::Item::m()` under `trait Tr { type Item: Foo; }` call
    `Foo::m` (the candidate `Tr::Item::m` named no item: not even by name); an unbound
    associated type, or a bound of a GAT's own parameter, names nothing."""
    files = {
        "src/lib.rs": b"pub mod tr;\npub mod user;\npub mod other;\n",
        "src/tr.rs": b"pub trait Foo { fn m(); }\npub trait X { fn m(); }\n"
        b"pub trait Tr { type Item: Foo; type Plain; type G<T: X>; }\n",
        "src/user.rs": b"use crate::tr::Tr;\n"
        b"pub fn one<T: Tr>() { T::Item::m(); }\n"
        b"pub fn two<T: Tr>() { <T as Tr>::Item::m(); }\n"
        b"pub fn three<T: Tr>() { T::Plain::m(); <T as Tr>::G::<u8>::m(); }\n",
        "src/other.rs": b"pub struct Namesake;\nimpl Namesake { pub fn m() {} }\n",
    }
    with graph_state(tmp_path, files) as state:
        callers = functools.partial(judged_callers, state)
        assert callers("tr::Foo::m") == {("user::one", "resolved"), ("user::two", "resolved")}
        assert callers("tr::X::m") == set()
        assert callers("Namesake::m") == set()


def test_a_name_two_globs_deep_is_found_past_many_globs(tmp_path: Path) -> None:
    """gimli's root has `pub use crate::read::*;` after three other globs and `read`
    has twenty `pub use self::mN::*;`: `def gimli::Reader` found nothing (the bound on
    spellings was spent on globs whose modules hold no `Reader`), though
    `gimli::read::Reader` was found."""
    files = {
        "src/lib.rs": b"".join(
            f"pub mod {m};\npub use crate::{m}::*;\n".encode() for m in ("common", "arch", "consts")
        )
        + b"pub mod read;\npub use crate::read::*;\n"
    }
    for m in ("common", "arch", "consts"):
        files[f"src/{m}.rs"] = f"pub struct In{m};\n".encode()
    files["src/read/mod.rs"] = b"".join(
        f"mod m{i};\npub use self::m{i}::*;\n".encode() for i in range(20)
    )
    for i in range(20):
        body = "pub trait Reader {}\n" if i == 7 else f"pub struct S{i};\n"
        files[f"src/read/m{i}.rs"] = body.encode()
    files["src/user.rs"] = b"use crate::Reader;\nfn f<R: Reader>(r: R) {}\n"
    with graph_state(tmp_path, files) as state, state.reading() as conn:
        root = "/deps/gimli-0.27.0"
        reader = (conn, root, None, read_names(Path(root)))
        for name in ("gimli::Reader", "gimli::read::Reader", "crate::Reader"):
            hits = navigate([reader], "def", name, 100)["results"]
            assert [h["symbol"] for h in hits] == ["read::m7::Reader"], name
        refs = {(h["path"], h["confidence"]) for h in ask(state, "refs", "read::m7::Reader")}
        assert ("src/user.rs", "resolved") in refs
