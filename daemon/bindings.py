"""The local names of a fn and the written type each has where it is read: a receiver
`x` in `x.m()` is typed by the binding of `x` in scope there, not by the last `let x` the
fn wrote.

Rust shadows freely (`let x = x.into_inner();`, `|x| x.go()`, `for x in xs`, `if let
Some(x) = o`, an inner block's `let x`), and reading a shadowed `x` as the outer one's
type gave `confidence: resolved` answers for another type's method. Every binding is an
interval of bytes (where the name is visible) with a type, or none where the code does
not write one: a receiver takes the innermost interval around it, and an untyped one
leaves the call to be judged by name. Where an interval's end is uncertain it is taken
too long, which only turns an answer from resolved into by-name.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import NamedTuple

import tree_sitter

from daemon.chunker import _language
from daemon.parsing import node_text
from daemon.resolve import path_segments


class Link(NamedTuple):
    """A `let` typed by a call it makes where it stands (at `pos`): `let x = y.clone();`
    (`method` ""), `let x = y.build()?;` (what `build` of y's type gives back), `let x =
    Foo::open(p)?;` (`path`: Foo, what `Foo::open` gives back)."""

    name: str  # the receiver (a local, or `self`); "" for a call of a path
    pos: int
    method: str = ""
    unwraps: int = 0  # `?`, `.unwrap()`, `.expect(..)` applied to the call's value
    awaited: bool = False
    path: tuple[str, ...] = ()


#: (start, end, type path or None, the call it is typed by) of one binding of a name:
#: `let x = y.clone();` is typed as `y` is where the `let` stands; where the call's
#: return type is unknown, the type path (if any) stands.
Interval = tuple[int, int, tuple[str, ...] | None, Link | None]
#: `let a = b.clone(); let c = a.clone();` links followed before giving up.
_MAX_COPIES = 8
#: Reads a written type node (`&Foo`) as a path; () for none.
TypeOf = Callable[[tree_sitter.Node], tuple[str, ...]]
#: What a call of `link.method` (or `link.path`) on a value of the given type gives back:
#: its type path, () where the fn says nothing usable, None where the file has no such fn.
Returns = Callable[[tuple[str, ...], Link], tuple[str, ...] | None]
#: Methods that give back what a `Result` or `Option` holds.
_UNWRAPS = frozenset({b"unwrap", b"expect", b"unwrap_or_default"})

_QUERY = """
(block (let_declaration pattern: (_) @pat) @let) @scope
(closure_expression parameters: (closure_parameters) @params) @scope
(for_expression pattern: (_) @pat body: (_) @body)
(match_arm pattern: (_) @pat) @scope
(if_expression condition: (let_condition pattern: (_) @pat) @let) @scope
(if_expression condition: (let_chain (let_condition pattern: (_) @pat) @let)) @scope
(while_expression condition: (let_condition pattern: (_) @pat) @let) @scope
(while_expression condition: (let_chain (let_condition pattern: (_) @pat) @let)) @scope
"""
#: Nodes of a pattern that bind a name (`x`, `Foo { x }`); a path such as `Some` is
#: read as one too, which shadows nothing a receiver is named.
_BINDERS = frozenset({"identifier", "shorthand_field_identifier"})


@functools.lru_cache(maxsize=1)
def _query() -> tree_sitter.Query:
    return tree_sitter.Query(_language(), _QUERY)


def fn_bindings(
    fn: tree_sitter.Node,
    src: bytes,
    params: Iterator[tuple[str, tuple[str, ...]]],
    let_type: Callable[[tree_sitter.Node], tuple[str, ...]],
    type_of: TypeOf,
) -> dict[str, list[Interval]]:
    """Each name bound in `fn` (its typed `params`, and every pattern of its body) with
    the intervals where it is visible; `let_type` reads a `let x …`'s type (or ())."""
    out: dict[str, list[Interval]] = {}
    for name, segs in params:
        out.setdefault(name, []).append((fn.start_byte, fn.end_byte, segs, None))
    for _i, match in tree_sitter.QueryCursor(_query()).matches(fn):
        for name, interval in _match_bindings(match, src, let_type, type_of):
            out.setdefault(name, []).append(interval)
    return out


def _match_bindings(
    match: dict[str, list[tree_sitter.Node]],
    src: bytes,
    let_type: Callable[[tree_sitter.Node], tuple[str, ...]],
    type_of: TypeOf,
) -> Iterator[tuple[str, Interval]]:
    pat, let, scope = _one(match, "pat"), _one(match, "let"), _one(match, "scope")
    if "params" in match:
        params = match["params"][0]
        yield from _closure_params(
            params, src, scope.end_byte if scope else params.end_byte, type_of
        )
    elif "body" in match and pat is not None:
        body = match["body"][0]
        for name in bound_names(pat, src):
            yield name, (body.start_byte, body.end_byte, None, None)
    elif pat is not None and scope is not None:
        start = let.end_byte if let is not None else pat.start_byte
        typed = let is not None and let.type == "let_declaration" and pat.type == "identifier"
        segs = (let_type(let) or None) if typed and let is not None else None
        link = call_link(let, src) if typed and let is not None else None
        for name in bound_names(pat, src):
            yield name, (start, scope.end_byte, segs, link)


def call_link(let: tree_sitter.Node, src: bytes) -> Link | None:
    """The call a `let`'s value is (through `?`, `.await`, `.unwrap()`, `.expect(..)`):
    `y.clone()` (the idiom before a `move` closure), `y.m(..)` and `self.m(..)` on a
    local or `self`, `Foo::m(..)` on a capitalised path; None for any other value."""
    if let.child_by_field_name("type") is not None:
        return None  # `let x: Foo = ..`: the written type stands
    value = let.child_by_field_name("value")
    unwraps, awaited = 0, False
    for _ in range(_MAX_COPIES):
        if value is None or value.type not in ("try_expression", "await_expression"):
            f = value.child_by_field_name("function") if value is not None else None
            field = f.child_by_field_name("field") if f is not None else None
            if f is None or field is None or src[field.start_byte : field.end_byte] not in _UNWRAPS:
                break
            value = f.child_by_field_name("value")
        elif value.type == "await_expression":
            awaited = True
            value = value.named_children[0] if value.named_children else None
            continue
        else:
            value = value.named_children[0] if value.named_children else None
        unwraps += 1
    f = value.child_by_field_name("function") if value is not None else None
    if value is None or f is None or value.type != "call_expression":
        return None
    if f.type == "scoped_identifier":
        path = path_segments(node_text(f, src))
        if len(path) < 2 or not path[-2][:1].isupper():
            return None
        return Link("", let.start_byte, path[-1], unwraps, awaited, path[:-1])
    recv, method = f.child_by_field_name("value"), f.child_by_field_name("field")
    if f.type != "field_expression" or recv is None or method is None:
        return None
    if recv.type not in ("identifier", "self"):
        return None
    name = node_text(method, src)
    if name == "clone" and (unwraps or awaited):
        return None
    called = "" if name == "clone" else name
    return Link(node_text(recv, src), let.start_byte, called, unwraps, awaited)


def _one(match: dict[str, list[tree_sitter.Node]], name: str) -> tree_sitter.Node | None:
    nodes = match.get(name)
    return nodes[0] if nodes else None


def _closure_params(
    params: tree_sitter.Node, src: bytes, end: int, type_of: TypeOf
) -> Iterator[tuple[str, Interval]]:
    """`|x, y: &Foo|`: x untyped, y a Foo, both visible to the closure's end."""
    for p in params.named_children:
        pattern, ty = p.child_by_field_name("pattern"), p.child_by_field_name("type")
        if p.type == "parameter" and pattern is not None:
            segs = type_of(ty) if ty is not None and pattern.type == "identifier" else ()
            for name in bound_names(pattern, src):
                yield name, (params.start_byte, end, segs or None, None)
        else:
            for name in bound_names(p, src):
                yield name, (params.start_byte, end, None, None)


def bound_names(pattern: tree_sitter.Node, src: bytes) -> Iterator[str]:
    """The names a pattern binds (`(a, Foo { b, c: d })`: a, b, d, and the path heads)."""
    stack = [pattern]
    while stack:
        node = stack.pop()
        if node.type in _BINDERS:
            yield src[node.start_byte : node.end_byte].decode("utf-8", "replace")
        else:
            stack.extend(node.named_children)


def binding_at(
    bindings: dict[str, list[Interval]],
    name: str,
    pos: int,
    returns: Returns | None = None,
    depth: int = 0,
) -> tuple[str, ...] | None:
    """The type of the innermost binding of `name` visible at `pos` (the latest to start
    among those around it: an inner block's, or a later `let` of the same block),
    through the bindings it clones and, with `returns`, the calls it is the value of."""
    for _ in range(_MAX_COPIES):
        best: Interval | None = None
        for iv in bindings.get(name, ()):
            if iv[0] <= pos < iv[1] and (best is None or iv[0] >= best[0]):
                best = iv
        if best is None or best[3] is None:
            return best[2] if best is not None else None
        link = best[3]
        if link.method:
            return _returned(bindings, link, best[2], returns, depth) if returns else best[2]
        name, pos = link.name, link.pos
    return None


def _returned(
    bindings: dict[str, list[Interval]],
    link: Link,
    fallback: tuple[str, ...] | None,
    returns: Returns,
    depth: int,
) -> tuple[str, ...] | None:
    """The type a binding's call gives back (`Link`): `fallback` (the `let`'s own
    reading, `Foo::new()` as a Foo) where the file defines no such fn."""
    owner = link.path
    if not owner and depth < _MAX_COPIES:
        owner = binding_at(bindings, link.name, link.pos, returns, depth + 1) or ()
    found = returns(owner, link) if owner else None
    if found is None:
        return fallback
    return found or None
