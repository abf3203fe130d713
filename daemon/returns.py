"""What a method gives back, where the file that defines it writes it down: `let x =
y.build()?;` with `fn build(&self) -> Result<Bar, E>` in an `impl` of y's type makes `x`
a Bar, so `x.m()` is `Bar::m` rather than every `m` by name.

The table is read from the file's items alone (inline modules, braced macro calls; not
fn or `macro_rules!` bodies), as plain data an edit can compare (`daemon.graph_edit`:
a changed signature changes what the file's other items' receivers mean). A method is
matched by its impl's type name within the file, as `daemon.fields` matches structs;
where one (type, method) is defined twice with different answers (an inherent `fn m`
beside a trait's, two modules' `Foo`s), none is given. A return type that is a type
parameter, an associated type (`Self::Item`) or unit gives none either.
"""

from __future__ import annotations

from dataclasses import dataclass

import tree_sitter

from daemon.bindings import Link
from daemon.chunker import MAX_MACRO_NESTING, invocation_items
from daemon.fields import PARAM, type_param_names, type_path
from daemon.parsing import node_text
from daemon.resolve import path_segments

#: `?`s (and `.unwrap()`s) read through a return type: `Result<Option<Bar>, E>` is two.
MAX_UNWRAPS = 2
#: Types whose first argument `?` or `.unwrap()` gives back (and any `…Result`).
_HOLDERS = frozenset({"Result", "Option"})


@dataclass(frozen=True, slots=True)
class Returned:
    """One definition's answer: its module, whether it is `async`, and the type path it
    gives back after 0, 1, .. unwraps (`()` where that is not known)."""

    module: tuple[str, ...]
    is_async: bool
    chain: tuple[tuple[str, ...], ...]


#: (impl type's name, method) -> what each definition of that name gives back.
ReturnTypes = dict[tuple[str, str], tuple[Returned, ...]]


def impl_returns(root: tree_sitter.Node, src: bytes, prefix: tuple[str, ...]) -> ReturnTypes:
    """The file's methods (in `impl` blocks of its modules, `prefix` the file's own)
    with what each gives back. A walk over items only: an edit runs it every time."""
    out: dict[tuple[str, str], list[Returned]] = {}
    stack = [(root, prefix, 0)]
    while stack:
        container, module, calls = stack.pop()
        for node in container.children:
            if node.type == "mod_item" and (body := node.child_by_field_name("body")):
                name = node.child_by_field_name("name")
                if name is not None:
                    stack.append((body, (*module, node_text(name, src)), calls))
            elif node.type == "macro_invocation" and calls < MAX_MACRO_NESTING:
                inner = invocation_items(node, src)
                if inner is not None:
                    stack.append((inner, module, calls + 1))
            elif node.type == "impl_item":
                for key, returned in _impl_methods(node, src, module):
                    out.setdefault(key, []).append(returned)
    return {key: tuple(found) for key, found in out.items()}


def _impl_methods(
    node: tree_sitter.Node, src: bytes, module: tuple[str, ...]
) -> list[tuple[tuple[str, str], Returned]]:
    owner = _type_name(node.child_by_field_name("type"), src)
    body = node.child_by_field_name("body")
    if not owner or body is None:
        return []
    generics = type_param_names(node, src)
    out = []
    for fn in body.named_children:
        name = fn.child_by_field_name("name")
        if fn.type != "function_item" or name is None:
            continue
        is_async = any(
            c.type == "function_modifiers" and b"async" in src[c.start_byte : c.end_byte]
            for c in fn.children
        )
        chain = _chain(fn, src, generics | type_param_names(fn, src))
        out.append(((owner, node_text(name, src)), Returned(module, is_async, chain)))
    return out


def _type_name(node: tree_sitter.Node | None, src: bytes) -> str:
    """The last name of an impl's type (`&'a mut a::Foo<T>`: Foo); "" for no path."""
    for _ in range(8):
        if node is None or node.type not in ("reference_type", "pointer_type", "generic_type"):
            break
        node = node.child_by_field_name("type")
    if node is None or node.type not in ("type_identifier", "scoped_type_identifier"):
        return ""
    segs = path_segments(node_text(node, src))
    return segs[-1] if segs else ""


def _chain(
    fn: tree_sitter.Node, src: bytes, generics: frozenset[str]
) -> tuple[tuple[str, ...], ...]:
    """The type paths `fn`'s return type gives after 0..`MAX_UNWRAPS` unwraps."""
    ret = fn.child_by_field_name("return_type")
    out: list[tuple[str, ...]] = []
    for _ in range(MAX_UNWRAPS + 1):
        if ret is None:
            break
        segs = type_path(ret, src, generics, params=True)
        if not segs or segs[0] == PARAM or (segs[0] == "Self" and len(segs) > 1):
            segs = ()
        out.append(segs)
        ret = _held(ret, src)
    return tuple(out)


def _held(node: tree_sitter.Node, src: bytes) -> tree_sitter.Node | None:
    """What `?` or `.unwrap()` gives back of a `Result<X, E>`/`Option<X>`: X."""
    if node.type != "generic_type":
        return None
    name, args = node.child_by_field_name("type"), node.child_by_field_name("type_arguments")
    held = node_text(name, src).rpartition("::")[2] if name is not None else ""
    if args is None or not (held in _HOLDERS or held.endswith("Result")):
        return None  # `ConvertResult<T>`, `io::Result<T>`: aliases of `Result`
    return next((a for a in args.named_children if a.type != "lifetime"), None)


def returned(
    table: ReturnTypes,
    owner: tuple[str, ...],
    link: Link,
    at: tuple[tuple[str, ...], tuple[str, ...] | None],
) -> tuple[str, ...] | None:
    """What `link`'s call on a value of type `owner` gives back, read from `table`, for
    a `let` in module `at[0]` (inside an impl or trait of `at[1]`): its type path (`Self`
    read as `owner`), () where the definitions say nothing usable or disagree, None
    where the file defines no such method."""
    module, self_path = at
    if len(owner) != 1:  # `io::Driver::new()` is no `impl Driver` of this file
        return None
    name = owner[-1]
    if owner == ("Self",):
        if not self_path:
            return None
        name = self_path[-1]
    found = table.get((name, link.method))
    if found is None:
        return None
    answers = {_answer(r, (owner, name), link, module) for r in found}
    answer = answers.pop() if len(answers) == 1 else ()
    return None if answer is _ELSEWHERE else answer


#: An answer written in another module of the file than the `let`'s (a `mod tests`),
#: whose path may mean another item there, or a `?` on a type not known to be a
#: `Result`: the `let` is read as before.
_ELSEWHERE = ("<elsewhere>",)


def _answer(
    r: Returned, owner: tuple[tuple[str, ...], str], link: Link, module: tuple[str, ...]
) -> tuple[str, ...]:
    """One definition's answer; `owner`: the receiver's type as written, and its name."""
    if r.is_async != link.awaited:
        return ()
    if link.unwraps >= len(r.chain):  # unit, or `?` on a type not known to hold one
        return () if not r.chain else _ELSEWHERE
    segs = r.chain[link.unwraps]
    if segs in (("Self",), (owner[1],)):  # `-> Self`, `-> Encoder` in `impl Encoder`
        return owner[0]
    return segs if r.module == module or not segs else _ELSEWHERE
