"""The text labels `bench.navigation` scores the graph against (`bench.navigation_truth`):
each rule on a small Rust file, so a wrong label shows here, not as a graph mistake."""

from __future__ import annotations

from bench import navigation_truth as truth

SRC = """use crate::foo::{Bar,
    Baz};
/// fn doc_fn() { bar(1) }
enum Foo { A, B(u8), C { x: Vec<u8> } = 3 }
fn f<const N: usize>(x: Foo, p: *const Foo) -> Foo {
    struct Inner;
    fn nested() { inner_call() }
    let v = Foo::new();
    let s = "bar(2)"; let c = '"'; let r = r#"baz("x")"#;
    match x { Foo::B(y) => g(y), Foo::A => h(Foo::A), }
    assert_eq!(Foo::new(), k::<(u8, u8)>(2));
    Some(3);
    v.len(); v.len; /* nested /* block */ bar() */
    x.map(Self::m);
    let z: libc::c_int = 0; it.for_each(mem::drop);
}
#[derive(Debug)]
impl<'a, T: Fn(u8) -> u8> fmt::Debug for &'a mut Foo<T> where T: Clone {}
unsafe impl Send for Foo {}
impl Foo { pub const fn new() -> Self { Foo::A } }
impl<T> const Unpin for [T] {}
fn g(x: impl Iterator<Item = u8>) {}
"""


def corpus() -> truth.Corpus:
    return truth.load({"src/x.rs": SRC})


def test_code_view_blanks_comments_literals_and_attributes() -> None:
    code = truth.code_view(SRC)
    assert len(code) == len(SRC) and code.count("\n") == SRC.count("\n")
    assert "doc_fn" not in code and "bar" not in code and "baz" not in code
    assert "derive" not in code and "Foo::new()" in code


def test_definitions() -> None:
    c = corpus()
    assert truth.definitions(c, "Foo") == {("src/x.rs", 4)}
    assert truth.definitions(c, "B") == {("src/x.rs", 4)}  # a variant
    assert truth.definitions(c, "new") == {("src/x.rs", 20)}  # `const fn`
    assert truth.definitions(c, "Inner") == {("src/x.rs", 6)}  # inside a fn body
    assert truth.definitions(c, "x") == {("src/x.rs", 1)}  # the module's file
    for none in ("N", "Unpin", "doc_fn"):  # const generic, `impl const`, doc comment
        assert truth.definitions(c, none) == set()


def test_refs_count_qualifiers_and_skip_fields_and_locals() -> None:
    c = corpus()
    foo = {n for _p, n in truth.refs(c, "Foo")}
    assert foo == {5, 8, 10, 11, 18, 19, 20}  # Foo::new(), *const Foo, impl headers
    assert {n for _p, n in truth.refs(c, "len")} == {13}  # a call; `v.len` is a field
    assert {n for _p, n in truth.refs(c, "Baz")} == {2}  # where a `use` list names it


def test_callers() -> None:
    c = corpus()
    assert {n for _p, n in truth.callers(c, "new")} == {8, 11}  # not `fn new(`
    assert {n for _p, n in truth.callers(c, "k")} == {11}  # turbofish with a tuple
    assert {n for _p, n in truth.callers(c, "m")} == {14}  # a path as a value
    assert {n for _p, n in truth.callers(c, "drop")} == {15}


def test_callees_cut_nested_fns_constructors_and_types() -> None:
    c = corpus()
    (site,) = c.defs["f"]
    got = truth.callees(c, site)
    assert got is not None
    names = {name for _p, _n, name in got}
    assert names == {"new", "g", "h", "assert_eq", "k", "len", "map", "m", "for_each", "drop"}


def test_impls() -> None:
    c = corpus()
    assert truth.impls(c, "Foo") == {("src/x.rs", 18), ("src/x.rs", 19)}
    assert truth.impls(c, "Unpin") == {("src/x.rs", 21)}  # a slice's impl counts
    assert truth.impls(c, "Iterator") == set()  # `impl Trait` in a type
    assert truth.impl_sides("<T> Trait<(A,)> for Box<dyn X>") == ("Trait", "Box")
    assert truth.impl_sides("Foo<T>") == ()


def test_uniqueness() -> None:
    src = (
        "#[cfg(a)]\nfn one() {}\n#[cfg(not(a))]\nfn one() {}\nfn two() {}\nmod m { fn two() {} }\n"
    )
    c = truth.load({"src/lib.rs": src})
    assert truth.is_unique(c, "one", frozenset())  # cfg alternatives are one item
    assert not truth.is_unique(c, "two", frozenset())
    assert not truth.is_unique(c, "one", frozenset({"one"}))  # a dependency's name too
    assert c.generics == set()
    assert truth.load({"a.rs": "impl<T: From<U>, const N: usize> X for Y {}"}).generics == {
        "T",
        "N",
    }
