"""Navigation through what the code's impls say: a trait method's references include the
calls resolved to its impls' methods, and a `let` is typed by what the method it calls
gives back (extraction functions and the queries over a real state.db)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daemon.symbols import extract
from ipc.cli import _nav_marks
from tests.test_navigation_units import ask, graph_state

SHAPES = b"""pub trait Draw { fn draw(&self); }
pub trait Paint { fn draw(&self); }
pub struct Circle;
impl Draw for Circle { fn draw(&self) {} }
pub struct Square;
impl Square { pub fn draw(&self) {} }
pub struct Both;
impl Both { pub fn draw(&self) {} }
impl Draw for Both { fn draw(&self) {} }
pub struct Brush;
impl Paint for Brush { fn draw(&self) {} }
pub struct Wrap<T>(T);
impl<T: Clone> Draw for Wrap<T> { fn draw(&self) { self.0.clone(); } }
impl Draw for u64 { fn draw(&self) { self.draw(); } }
"""
USER = b"""use crate::shapes::{Both, Brush, Circle, Draw, Square, Wrap};
pub fn generic<D: Draw>(d: &D) { d.draw(); }
pub fn concrete(c: &Circle) { c.draw(); }
pub fn path_call(c: Circle) { Circle::draw(&c); }
pub fn wrapped(w: Wrap<u8>) { w.draw(); }
pub fn inherent(s: &Square) { s.draw(); }
pub fn ambiguous(b: &Both) { b.draw(); }
pub fn other_trait(b: &Brush) { b.draw(); }
"""


def _hits(results: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(h["symbol"], h["confidence"], h.get("impl", "")) for h in results}


def test_a_trait_methods_callers_include_calls_resolved_to_its_impls(tmp_path: Path) -> None:
    """`c.draw()` on a `c: &Circle` resolves to `Circle::draw` (an `impl Draw for
    Circle`): rust-analyzer lists it under `Draw::draw`, rcmd did not. It is listed now,
    marked with the impl, as is a generic impl's; an inherent `draw`, another trait's,
    and a type with both an inherent and a trait `draw` (one symbol: which is meant
    cannot be told) are not, nor `self.draw()` inside the impl's own `draw` (gimli's
    `impl ReaderOffset for u64` delegates so to u64's inherent method, which no file
    defines); `callers Circle::draw` answers as before."""
    files = {"src/lib.rs": b"pub mod shapes;\npub mod user;\n", "src/shapes.rs": SHAPES}
    files["src/user.rs"] = USER
    with graph_state(tmp_path, files) as state:
        callers = ask(state, "callers", "shapes::Draw::draw")
        assert _hits(callers) == {
            ("user::generic", "resolved", ""),
            ("user::concrete", "resolved", "shapes::Circle"),
            ("user::path_call", "resolved", "shapes::Circle"),
            ("user::wrapped", "resolved", "shapes::Wrap"),
        }
        assert callers[0]["symbol"] == "user::generic"  # in file order
        via = {h["symbol"]: h["via"] for h in callers}
        assert via["user::concrete"] == "shapes::Circle::draw"
        refs = ask(state, "refs", "Draw::draw")
        assert ("shapes::Circle::draw", "resolved", "shapes::Circle") in _hits(refs)
        assert ("shapes::Square::draw", "resolved", "shapes::Square") not in _hits(refs)
        concrete = _hits(ask(state, "callers", "Circle::draw"))
        assert concrete == {
            ("user::concrete", "resolved", ""),
            ("user::path_call", "resolved", ""),
        }
        assert _hits(ask(state, "callers", "Paint::draw")) == {
            ("user::other_trait", "resolved", "shapes::Brush")
        }


def test_a_hit_through_an_impl_says_which_in_text() -> None:
    assert _nav_marks({"confidence": "resolved", "impl": "shapes::Circle"}) == (
        "  [impl shapes::Circle]"
    )
    assert _nav_marks({"confidence": "resolved"}) == ""


BUILDER = b"""pub struct Bar;
impl Bar { pub fn go(&self) {} }
pub struct Err;
pub struct Foo;
impl Foo {
    pub fn new() -> Self { Foo }
    pub fn build(&self) -> Bar { Bar }
    pub fn try_build(&self) -> Result<Bar, Err> { Ok(Bar) }
    pub fn maybe(&self) -> Option<Bar> { None }
    pub fn me(&self) -> Self { Foo }
    pub async fn later(&self) -> Bar { Bar }
    pub fn any<T>(&self) -> T { todo!() }
    pub fn builder() -> Bar { Bar }
    pub fn assoc(&self) -> Self::Out { todo!() }
    fn inner(&self) { let b = self.build(); b.go(); }
}
fn f() -> Result<(), Err> {
    let foo = Foo::new();
    let a = foo.build(); a.go();
    let b = foo.try_build()?; b.go();
    let c = foo.maybe().unwrap(); c.go();
    let e = foo.me(); let e2 = e.build(); e2.go();
    let g = foo.any(); g.go();
    let h = Foo::builder(); h.go();
    let i: Bar = foo.me(); i.go();
    let j = foo.assoc(); j.go();
    let k = foo.unknown(); k.go();
    Ok(())
}
async fn k(foo: Foo) { let x = foo.later().await; x.go();
    let y = foo.later(); y.go(); }
"""


def test_a_let_is_typed_by_what_the_method_it_calls_gives_back() -> None:
    """`let a = foo.build();` where the file's `build` writes `-> Bar` (or `Result<Bar,
    E>` and `?`, `Option<Bar>` and `.unwrap()`, `Self`, `async` and `.await`): `a.go()` is
    `Bar::go`; `Foo::builder()` is what `builder` gives back, not a Foo; a type
    parameter, an associated type or a method the file does not define leaves it by
    name, and a written type wins."""
    got = {r.line: r.targets for r in extract("src/lib.rs", BUILDER).refs if r.name == "go"}
    assert got == {
        15: ("Bar::go",),
        19: ("Bar::go",),
        20: ("Bar::go",),
        21: ("Bar::go",),
        22: ("Bar::go",),
        23: (),
        24: ("Bar::go",),
        25: ("Bar::go",),
        26: (),
        27: (),
        30: ("Bar::go",),
        31: (),
    }


def test_a_let_typed_by_a_method_makes_its_calls_resolved_answers(tmp_path: Path) -> None:
    """Through the queries: `callers Bar::go` lists the call on the built value as
    resolved, and `callers Foo::go` (a namesake) no longer gets it by name."""
    src = (
        b"pub mod build;\npub struct Foo;\n"
        b"impl Foo { pub fn go(&self) {} pub fn make(&self) -> build::Bar { build::Bar } }\n"
        b"pub fn run(foo: Foo) { let bar = foo.make(); bar.go(); }\n"
    )
    files = {
        "src/lib.rs": src,
        "src/build.rs": b"pub struct Bar;\nimpl Bar { pub fn go(&self) {} }\n",
    }
    with graph_state(tmp_path, files) as state:
        assert _hits(ask(state, "callers", "Bar::go")) == {("run", "resolved", "")}
        assert _hits(ask(state, "callers", "Foo::go")) == set()
