"""The written types of a file's struct fields, the item a written type names, and the
item a `let`'s value builds.

`self.inner.lock()` calls a method of the `inner` field's type: with that type known,
`callers tokio::sync::Mutex::lock` can leave out the `.lock()` of a `std::sync::Mutex`
field instead of listing every `.lock()` of the crate by name. Pure functions of a
file's syntax tree; the struct and the `impl` are matched by the struct's name within
the file (where Rust code keeps them together), and a name two structs of one file
share is left out rather than guessed.
"""

from __future__ import annotations

from collections.abc import Collection

import tree_sitter

from daemon.chunker import MAX_MACRO_NESTING, invocation_items
from daemon.parsing import node_text
from daemon.resolve import path_segments

#: The head of a type path that is a type parameter's (`(PARAM, "T")`): no item's path.
PARAM = "<param>"
#: The head of a type path that is `impl Trait` or `dyn Trait` (`(TRAIT, "io", "Read")`):
#: a method call on it is the trait's.
TRAIT = "<trait>"
#: Struct name -> field name -> the path of the field's type as written; under `PARAMS`,
#: the struct's type and const parameters in order (a field typed `A` of `struct S<A>`
#: is, in `impl<X: Tr> S<X>`, an `X`: the parameter at its position, not its name).
FieldTypes = dict[str, dict[str, tuple[str, ...]]]
#: The key of a struct's parameters among its fields (no field can be named so).
PARAMS = "<params>"

#: Pointers a method call sees through (`Arc<Mutex<T>>`: `.lock()` is Mutex's), as
#: written bare or from std.
_DEREF = frozenset(
    {
        *("Box", "Arc", "Rc", "ManuallyDrop", "Pin"),
        *("std::sync::Arc", "std::rc::Rc", "std::boxed::Box", "std::pin::Pin"),
    }
)
#: Methods that give back what a `Result` or `Option` holds.
_UNWRAPS = frozenset({"unwrap", "expect", "unwrap_or_default"})
#: Wrappers read through before giving up on a type (`&&mut Arc<Box<T>>`).
_MAX_WRAPPERS = 8


def struct_fields(root: tree_sitter.Node, src: bytes) -> FieldTypes:
    """Each struct of the file's modules (inline ones, and braced macro calls such as
    tokio's `cfg_rt! { pub struct … }`; not those written in fn or `macro_rules!`
    bodies) with the fields whose type names an item; structs of the same name are left
    out. A walk over items only: an edit of a 1 MB file runs it every time."""
    out: FieldTypes = {}
    shared: set[str] = set()
    stack = [(root, 0)]
    while stack:
        container, calls = stack.pop()
        for node in container.children:
            if node.type == "mod_item" and (body := node.child_by_field_name("body")):
                stack.append((body, calls))
            elif (
                node.type == "macro_invocation"
                and calls < MAX_MACRO_NESTING
                and (inner := invocation_items(node, src)) is not None
            ):
                stack.append((inner, calls + 1))
            name_node = node.child_by_field_name("name") if node.type == "struct_item" else None
            if name_node is None:
                continue
            name = node_text(name_node, src)
            if name in out:
                shared.add(name)
            out[name] = _fields(node, src)
    for name in shared:
        del out[name]
    return out


def type_param_names(node: tree_sitter.Node, src: bytes) -> frozenset[str]:
    """The names of an item's own type parameters (`<T: Read, U>`: T and U)."""
    params = node.child_by_field_name("type_parameters")
    return frozenset(
        node_text(n, src)
        for p in (params.named_children if params is not None else ())
        if (n := p.child_by_field_name("name") or p).type == "type_identifier"
    )


def _fields(node: tree_sitter.Node, src: bytes) -> dict[str, tuple[str, ...]]:
    params = node.child_by_field_name("type_parameters")
    generics = type_param_names(node, src)
    body = node.child_by_field_name("body")
    fields: dict[str, tuple[str, ...]] = {PARAMS: _param_names(params, src)}
    for decl in body.named_children if body is not None else ():
        name, ty = decl.child_by_field_name("name"), decl.child_by_field_name("type")
        if decl.type == "field_declaration" and name is not None and ty is not None:
            segs = type_path(ty, src, generics, params=True)
            if segs:
                fields[node_text(name, src)] = segs
    return fields


def _param_names(params: tree_sitter.Node | None, src: bytes) -> tuple[str, ...]:
    """`<'a, A: Tr, const N: usize>`: (A, N), as the impl's type arguments stand."""
    out: list[str] = []
    for p in params.named_children if params is not None else ():
        if p.type in ("lifetime_parameter", "lifetime"):
            continue
        name = p.child_by_field_name("name") or p
        out.append(node_text(name, src))
    return tuple(out)


def type_path(
    node: tree_sitter.Node, src: bytes, generics: Collection[str], *, params: bool = False
) -> tuple[str, ...]:
    """The path of the item a written type names, as a method call sees it: `&mut
    Foo<T>` and `Arc<Box<Foo>>` name Foo; () for a trait object, a tuple or anything
    else that names no item, and for a type parameter unless `params`: then `(PARAM,
    T)` (a method call on it is of the traits `T` is bound by)."""
    for _ in range(_MAX_WRAPPERS):
        if node.type in ("reference_type", "pointer_type"):
            inner = node.child_by_field_name("type")
        elif node.type == "generic_type":
            inner = node.child_by_field_name("type")
            args = node.child_by_field_name("type_arguments")
            if inner is not None and args is not None and node_text(inner, src) in _DEREF:
                inner = next((a for a in args.named_children if a.type != "lifetime"), inner)
        else:
            break
        if inner is None:
            return ()
        node = inner
    if params and node.type in ("abstract_type", "dynamic_type", "bounded_type"):
        return _trait_of(node, src)
    if node.type not in ("type_identifier", "scoped_type_identifier"):
        return ()
    segs = path_segments(node_text(node, src))
    if params and len(segs) == 1 and segs[0] in generics:
        return (PARAM, segs[0])
    return segs if segs and segs[0] not in generics else ()


def impl_argument(
    fn: tree_sitter.Node, params: tuple[str, ...], param: str, src: bytes, generics: Collection[str]
) -> tuple[str, ...]:
    """What the struct parameter `param` (of `params`, in order) is inside the impl that
    holds the method `fn`: the impl's type argument at its position, read as
    `type_path` reads a type (`impl<X: Tr> S<X>`: `(PARAM, X)`; `impl S<File>`: `File`);
    () where no impl writes one there. `Node.parent` is slow: asked only for a field
    typed by a parameter."""
    holder = fn.parent
    impl = holder.parent if holder is not None and holder.type == "declaration_list" else None
    ty = impl.child_by_field_name("type") if impl is not None else None
    if impl is None or impl.type != "impl_item" or ty is None or param not in params:
        return ()
    while ty.type in ("reference_type", "pointer_type"):  # `impl Tr for &'a mut S<R>`
        ty = ty.child_by_field_name("type")
        if ty is None:
            return ()
    if ty.type == "generic_type" and (args := ty.child_by_field_name("type_arguments")):
        written = [a for a in args.named_children if a.type != "lifetime"]
        at = params.index(param)
        if at < len(written) and written[at].type != "type_binding":
            return type_path(written[at], src, generics, params=True)
    return ()


def _trait_of(node: tree_sitter.Node, src: bytes) -> tuple[str, ...]:
    """`impl io::Read`, `dyn Tr<'a> + Send` as `(TRAIT, *the first trait's path)`; () for
    `impl Fn(u8)` and anything else."""
    if node.type == "bounded_type":
        node = next((c for c in node.named_children if c.type == "dynamic_type"), node)
    trait = node.child_by_field_name("trait")
    if trait is not None and trait.type == "generic_type":
        trait = trait.child_by_field_name("type")
    if trait is None or trait.type not in ("type_identifier", "scoped_type_identifier"):
        return ()
    segs = path_segments(node_text(trait, src))
    return (TRAIT, *segs) if segs else ()


def value_type(node: tree_sitter.Node, src: bytes) -> tuple[str, ...]:
    """The path of the item a value expression builds, where its shape says so: `Foo {
    .. }`, `Foo::new()` (any call of a capitalised path's fn, as constructors are
    written), through `?`, `.await`, `.unwrap()` and `.expect(…)` (`File::open(p)?`),
    and through `Arc::new(…)`, `Rc::new(…)`, `Box::new(…)` what they wrap."""
    for _ in range(_MAX_WRAPPERS):
        if node.type in ("try_expression", "await_expression"):
            node = node.named_children[0] if node.named_children else node
            continue
        if node.type == "struct_expression":
            name = node.child_by_field_name("name")
            return path_segments(node_text(name, src)) if name is not None else ()
        f = node.child_by_field_name("function") if node.type == "call_expression" else None
        if f is not None and f.type == "field_expression":
            method, value = f.child_by_field_name("field"), f.child_by_field_name("value")
            if method is None or value is None or node_text(method, src) not in _UNWRAPS:
                return ()
            node = value
            continue
        path = path_segments(node_text(f, src)) if f is not None else ()
        if len(path) < 2 or not path[-2][:1].isupper():
            return ()
        args = node.child_by_field_name("arguments")
        first = args.named_children[0] if args is not None and args.named_children else None
        if path[-1] != "new" or "::".join(path[:-1]) not in _DEREF or first is None:
            return path[:-1]
        node = first
    return ()
