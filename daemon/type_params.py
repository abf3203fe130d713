"""The type parameters in scope at a reference, with the traits each is bound by.

`R::relax()` in a fn generic over `R: RelaxStrategy`, and `x.read(..)` on an `x: T`
where `T: Read`, can only call an item of a bound trait: those items are the call's
candidates, resolved like any written path (`RelaxStrategy::relax`), where the call was
otherwise a path no item has (`R::relax`) and counted by no name. Bounds are read from
`<R: A + B>` and `where R: A` on the item and on every item around it (an impl's or a
trait's parameters are its methods'). A prelude trait named bare (`Iterator`, `Clone`)
is std's, never the root's namesake; a name that is none of its own items is an
extension trait's (`it.sorted()`, itertools'), left by name.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Self

import tree_sitter

from daemon.parsing import node_text
from daemon.resolve import (
    MAX_ALIAS_TARGETS,
    STD_CRATES,
    Path_,
    Scope,
    candidates,
    path_segments,
)

#: Trait bounds by type parameter name: each bound as the path written.
Bounds = dict[str, tuple[Path_, ...]]
#: The standard prelude's traits, as a bound names them without a `use`, and their own
#: items: a call of another name on such a value (`it.sorted()` under `I: Iterator`) is
#: an extension trait's (itertools' `Itertools`, blanket over every iterator), not std's.
_ITER = (
    *("next", "next_chunk", "size_hint", "count", "last", "advance_by", "nth", "step_by"),
    *("chain", "zip", "intersperse", "intersperse_with", "map", "for_each", "filter"),
    *("filter_map", "enumerate", "peekable", "skip_while", "take_while", "map_while"),
    *("skip", "take", "scan", "flat_map", "flatten", "map_windows", "fuse", "inspect"),
    *("by_ref", "collect", "try_collect", "collect_into", "partition", "is_partitioned"),
    *("partition_in_place", "try_fold", "try_for_each", "fold", "reduce", "try_reduce"),
    *("all", "any", "find", "find_map", "try_find", "position", "rposition", "max", "min"),
    *("max_by_key", "max_by", "min_by_key", "min_by", "rev", "unzip", "copied", "cloned"),
    *("cycle", "array_chunks", "sum", "product", "cmp", "cmp_by", "partial_cmp", "eq"),
    *("partial_cmp_by", "eq_by", "ne", "lt", "le", "gt", "ge", "is_sorted", "Item"),
    *("is_sorted_by", "is_sorted_by_key"),
)
_BACK = ("next_back", "advance_back_by", "nth_back", "rfind", "try_rfold", "rfold")
_PRELUDE_TRAITS: dict[str, frozenset[str]] = {
    name: frozenset(items)
    for name, items in {
        "Clone": ("clone", "clone_from"),
        "Copy": (),
        "Default": ("default",),
        "Drop": ("drop",),
        "Eq": (),
        "PartialEq": ("eq", "ne"),
        "Ord": ("cmp", "max", "min", "clamp"),
        "PartialOrd": ("partial_cmp", "lt", "le", "gt", "ge"),
        "Fn": ("call", "Output"),
        "FnMut": ("call_mut", "Output"),
        "FnOnce": ("call_once", "Output"),
        **{marker: () for marker in ("Send", "Sync", "Sized", "Unpin")},
        "ToString": ("to_string",),
        "ToOwned": ("to_owned", "clone_into", "Owned"),
        "AsRef": ("as_ref",),
        "AsMut": ("as_mut",),
        "From": ("from",),
        "Into": ("into",),
        "TryFrom": ("try_from", "Error"),
        "TryInto": ("try_into", "Error"),
        "FromIterator": ("from_iter",),
        "Iterator": _ITER,
        "IntoIterator": ("into_iter", "Item", "IntoIter"),
        "DoubleEndedIterator": (*_ITER, *_BACK),
        "ExactSizeIterator": (*_ITER, "len", "is_empty"),
        "Extend": ("extend", "extend_one", "extend_reserve"),
    }.items()
}
#: Bounds kept per parameter: `T: A + B + ...` beyond this names no more candidates.
_MAX_BOUNDS = 4


class TypeParams(frozenset[str]):
    """The names of the type parameters in scope (a set, as before), and the traits
    each is bound by there."""

    bounds: Bounds

    def __new__(cls, names: frozenset[str] = frozenset(), bounds: Bounds | None = None) -> Self:
        self = super().__new__(cls, names)
        self.bounds = bounds or {}
        return self

    def inner(self, names: frozenset[str], bounds: Bounds) -> TypeParams:
        """The parameters inside an item that declares `names` and `bounds`: its own
        parameters hide the outer ones of the same name; its `where` clause may bound
        an outer one further (`fn f(&self) where R: Read` in an `impl<R>`)."""
        if not names and not bounds:
            return self
        merged = {k: v for k, v in self.bounds.items() if k not in names}
        for name, more in bounds.items():
            merged[name] = tuple(dict.fromkeys((*merged.get(name, ()), *more)))[:_MAX_BOUNDS]
        return TypeParams(self | names, merged)


NO_PARAMS = TypeParams()


def item_bounds(node: tree_sitter.Node, src: bytes) -> Bounds:
    """The trait bounds an item writes on type parameters: `<R: A + B>` and `where R:
    A` (a parameter named bare on the left; `Vec<T>: X` and `T::Item: Y` bound no
    parameter)."""
    out: dict[str, list[Path_]] = {}
    params = node.child_by_field_name("type_parameters")
    for p in params.named_children if params is not None else ():
        name, bounds = p.child_by_field_name("name"), p.child_by_field_name("bounds")
        if p.type == "type_parameter" and name is not None and bounds is not None:
            out.setdefault(node_text(name, src), []).extend(_bound_paths(bounds, src))
    for clause in node.children:
        if clause.type != "where_clause":
            continue
        for pred in clause.named_children:
            left, bounds = pred.child_by_field_name("left"), pred.child_by_field_name("bounds")
            if left is not None and bounds is not None and left.type == "type_identifier":
                out.setdefault(node_text(left, src), []).extend(_bound_paths(bounds, src))
    return {k: tuple(dict.fromkeys(v))[:_MAX_BOUNDS] for k, v in out.items() if v}


def supertrait_starts(node: tree_sitter.Node) -> Iterator[int]:
    """Where each supertrait of a trait item is written (`trait Sub: Super + io::Other`,
    `where Self: Third`; not the bounds of its type parameters): the start bytes of the
    bounds, as the graph's `bound` captures stand."""
    bounds = node.child_by_field_name("bounds")
    clauses = [c for c in node.children if c.type == "where_clause"]
    lists = [bounds] if bounds is not None else []
    for pred in (p for clause in clauses for p in clause.named_children):
        left, more = pred.child_by_field_name("left"), pred.child_by_field_name("bounds")
        if left is not None and more is not None and left.text == b"Self":
            lists.append(more)
    for b in (b for listed in lists for b in listed.named_children):
        yield b.start_byte


def _bound_paths(bounds: tree_sitter.Node, src: bytes) -> Iterator[Path_]:
    """The traits of one `: A + io::Read<'a> + for<'b> Tr<'b>` (not `?Sized`, not a
    lifetime, not `Fn(..)`)."""
    for b in bounds.named_children:
        if b.type == "higher_ranked_trait_bound":
            b = b.child_by_field_name("type") or b
        if b.type == "generic_type":
            b = b.child_by_field_name("type") or b
        if b.type in ("type_identifier", "scoped_type_identifier"):
            segs = path_segments(node_text(b, src))
            if segs:
                yield segs


def bound_candidates(
    param: str,
    rest: Path_,
    params: frozenset[str],
    scope: Scope,
    where: tuple[Path_, Path_ | None],
) -> tuple[str, ...]:
    """The candidates of `P::rest` (or of `x.rest(..)` on an `x: P`) for a type
    parameter `P`: `rest` in each trait `P` is bound by; () when no bound is known.
    `where`: the module the path is written in and what `Self` means there."""
    bounds = params.bounds.get(param, ()) if isinstance(params, TypeParams) else ()
    return trait_candidates(bounds, rest, scope, where)


def trait_candidates(
    traits: Iterable[Path_], rest: Path_, scope: Scope, where: tuple[Path_, Path_ | None]
) -> tuple[str, ...]:
    """`rest` in each of `traits` (paths as written in `where`'s module): a bound's, or
    the trait of an `impl Trait` or `dyn Trait`; a bare prelude trait's own item is std's,
    and another name on it none (an extension trait's, by name), as is any name on a
    trait reached by a std path (`std::io::Read`, `use core::future::Future`), whose
    items are not known here (`r.read_u32()`: byteorder's `ReadBytesExt`)."""
    module, self_path = where
    out: list[str] = []
    std: list[str] = []  # last: the first candidate of a path left by name is the crate's
    for bound in traits:
        head = bound[0]
        if len(bound) == 1 and head in _PRELUDE_TRAITS and not _named_here(scope, module, head):
            if rest[0] in _PRELUDE_TRAITS[head]:  # std's, whatever the root defines
                std.append("::".join(("std", head, *rest)))
            continue  # else an extension trait's: left by name
        found = candidates((*bound, *rest), scope, module, self_path)
        if found and all(c.partition("::")[0] in STD_CRATES for c in found):
            continue  # a std trait's items are not known here: an extension's, by name
        out.extend(found)
    return tuple(dict.fromkeys((*out, *std)))[:MAX_ALIAS_TARGETS]


def _named_here(scope: Scope, module: Path_, name: str) -> bool:
    """Whether `name` means something of the crate in `module`: an import, an item, or
    possibly a glob's."""
    return (
        name in scope.imports.get(module, {})
        or "::".join((*module, name)) in scope.locals
        or bool(scope.globs.get(module))
    )
