"""A file's symbol graph from its bytes: definitions, references, `impl Trait for Type`
relations and `use` imports, each a pure function of ``(rel_path, source)``.

Definitions carry the chunker's symbol paths (`net::retry::fetch_with_retry`, methods as
`module::Type::method`, items written in `macro_rules!` bodies under the macro's name), so
a graph row and a search hit name an item alike. References are found with tree-sitter
queries (the matching runs in C; only the hits cross into Python), and each is resolved
as far as the file alone allows (`daemon.resolve`): the candidates it stores are checked
against every file's definitions when a query runs.
"""

from __future__ import annotations

import functools
import posixpath
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import tree_sitter

from daemon.bindings import Interval, binding_at, fn_bindings
from daemon.chunker import (
    MAX_MACRO_NESTING,
    MAX_NESTING,
    _language,
    _macro_items,
    impl_owner,
    invocation_items,
    module_path,
    normalize,
)
from daemon.fields import (
    PARAM,
    PARAMS,
    TRAIT,
    FieldTypes,
    impl_argument,
    struct_fields,
    type_param_names,
    type_path,
    value_type,
)
from daemon.parsing import node_text, parse_rust
from daemon.resolve import (
    MAX_ALIAS_TARGETS,
    Scope,
    candidates,
    crate_prefix,
    path_segments,
    qualified_path,
    use_entries,
)
from daemon.returns import ReturnTypes, impl_returns, returned
from daemon.type_params import (
    NO_PARAMS,
    Bounds,
    TypeParams,
    bound_candidates,
    item_bounds,
    supertrait_starts,
    trait_candidates,
)
from ipc.kinds import NODE_KINDS

#: Bumped whenever extraction or the graph's tables change (2: the `sym_*` tables, and
#: references to qualifiers and capitalised values; 3: impl types as the chunker now
#: names them, `chunker.MAX_TYPE_CHARS`; 4: items written in fn bodies; 5: a `use` in a
#: braced macro call, method calls on fields of `self` typed by the file's structs): a
#: root whose graph was built under another version (or none) is rebuilt through the
#: caches.
GRAPH_VERSION = 5
#: Bumped when extraction finds more without changing what the tables mean (1: raw
#: identifiers such as `r#match`; 2: items written in braced macro calls, `cfg_rt! {…}`,
#: and a fn's own `use` kept out of its module's resolution; 3: a receiver typed by the
#: binding in scope where it is read, `daemon.bindings`; 4: an alias imported under
#: exclusive `#[cfg]`s means each of its paths; 5: `#[path = "x.rs"] mod m;` imports
#: x.rs's module as `m`; 6: `<S as Trait>::m` is `Trait::m`, a fn's own name called in a
#: macro's tokens is by name, `#[cfg_attr(.., path = "x.rs")]`; 7: `#[path]` read past
#: comments between it and its mod, never a path out of the root; 8: a typed receiver's
#: method call inside a macro's tokens; 9: `impl crate::T` in another module is the crate
#: root's `T`, as the chunker names it; 10: a type alias is an import of the type it
#: names, for paths through it; 11: `self.m()` in a macro's tokens is `Self`'s `m`, not
#: `Self`'s path resolved again as if written in the module; 12: a path's head is never a
#: fn, const, static or macro of the module, and `m!()` is the module's own macro; 13:
#: `R::m()` and `x.m()` on an `x: R` for a type parameter `R: A + B` are `A::m`, `B::m`,
#: `daemon.type_params`; 14: `x.m()` on an `x: impl Trait`, `&dyn Trait`, `Box<dyn
#: Trait>` is `Trait::m`; 15: a bare prelude bound is std's only for its own items
#: (`it.sorted()` under `I: Iterator` is an extension trait's, by name, not std's); 16:
#: `self.x.m()` on a field typed by the struct's parameter is of the impl's type
#: argument at that parameter's position, not of its namesake; 17: `self.x.m()` and
#: `v.x.m()` in a macro's tokens follow the field's type; 18: a trait's supertraits are
#: references of kind `supertrait`, `daemon.supertraits`; 19: the type argument of `impl
#: Tr for &mut S<R>` as 16 reads `S<R>`'s; 20: an associated type's bounds in a trait
#: (`type Item: Foo;`) are references of kind `assoc_bound`; 21: a call on a value of a
#: trait reached by a std path (`R: std::io::Read`) is by name, an extension trait's maybe;
#: 22: `let x = y.build()?` is typed by what the file's `build` gives back, `let x =
#: Foo::m()` by `m`'s return type where the file writes one, `daemon.returns`):
#: graph rows cached under another revision are not reused, and a root whose rows an
#: older revision made reads its files again once at start (`RootIndex.graph_stale`: a
#: forced batch: Tantivy documents rewritten, state.db and the vectors checked).
GRAPH_REVISION = 22
#: Reference kinds that `callers`/`callees` count as calls.
CALL_KINDS = frozenset({"call", "method", "macro"})

#: Members of an impl or trait body, named `module::Owner::name` as the chunker names them.
_MEMBER_KINDS = {
    "function_item": "method",
    "function_signature_item": "method",
    "const_item": "const",
    "associated_type": "type",
    "type_item": "type",
}
#: Captures that may be a definition's own name or a type parameter, not a use.
_NAMED = frozenset({"type", "bound", "value"})
#: The prelude's variants, written everywhere and defined in no crate but core.
_PRELUDE_VALUES = frozenset({"Some", "None", "Ok", "Err"})
#: Paths that end in these name no item of their own.
_NOT_NAMES = frozenset({"Self", "self", "super", "crate"})
_NO_TARGETS: tuple[str, ...] = ()
#: Fields followed from a receiver (`self.a.b.c.m()`) before giving up on its type.
_MAX_CHAIN = 8

#: Among captures of one node, the most specific wins (a called path is also a path).
_PRIORITY = {
    "name": -1,
    "use": 0,
    "call": 1,
    "self_method": 2,
    "recv_method": 2,
    "method": 3,
    "macro": 4,
    "bound": 5,
    "path": 6,
    "type": 7,
    "value": 8,
    "tt": 9,
}
#: A call, method call or macro invocation written inside a macro's arguments, which
#: tree-sitter leaves as unparsed tokens (`assert_eq!(parse(x), 1)`, `digit1::<_, (_,
#: ErrorKind)>(b)`). A path starts nowhere but at its head and turbofish arguments are
#: bounded: else the scan is quadratic (24 KB of `a::a::…` in a macro's arguments took
#: 2.1 s, and a 1 MB file would stall the pipeline for an hour).
_TT_CALL = re.compile(
    rb"(\.\s*)?(?<![\w$])(?<!::)((?:[A-Za-z_][A-Za-z0-9_]*::){0,32}[A-Za-z_][A-Za-z0-9_]*)"
    rb"(?:::<(?:[^()]|\([^()]{0,80}\)){0,120}?>)?\s*(!\s*[(\[{]|\()"
)
_STRING = re.compile(rb'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\\n])\'')
#: A capitalised path written inside a macro's arguments and not called (a type, a
#: constant, a unit struct or variant: `debug_assert_eq!(kind, KIND_ARC)`).
_TT_VALUE = re.compile(
    rb"(?<![\w$.:])((?:[A-Za-z_][A-Za-z0-9_]*::)*[A-Z][A-Za-z0-9_]*)\b(?!\s*(?:[(!]|::))"
)
#: What stands before a name a macro's tokens declare rather than call (`fn name(`).
_DECLARED = re.compile(rb"\bfn\s*$")
_KEYWORDS = frozenset(
    b"if while match return for in loop as let mut ref move fn impl where unsafe async await"
    b" dyn Some None Ok Err".split()
)
_QUERY = """
(call_expression function: [(identifier) (scoped_identifier)] @call)
(call_expression function: (generic_function function: [(identifier) (scoped_identifier)] @call))
(call_expression function: (field_expression value: (self) field: (field_identifier) @self_method))
(call_expression function: (field_expression value: (identifier) field: (field_identifier))
    @recv_method)
(call_expression function: (field_expression
    value: (field_expression field: (field_identifier))
    field: (field_identifier)) @recv_method)
(call_expression function: (field_expression field: (field_identifier) @method))
(call_expression function: (generic_function
    function: (field_expression field: (field_identifier) @method)))
(macro_invocation macro: [(identifier) (scoped_identifier)] @macro)
(trait_bounds [(type_identifier) (scoped_type_identifier)] @bound)
(trait_bounds (generic_type type: [(type_identifier) (scoped_type_identifier)] @bound))
(scoped_identifier) @path
(type_identifier) @type
(scoped_type_identifier) @type
(use_declaration argument: (_) @use)
(macro_invocation (token_tree) @tt)
((identifier) @value (#match? @value "^[A-Z]"))
(struct_item name: (_) @name)
(enum_item name: (_) @name)
(union_item name: (_) @name)
(trait_item name: (_) @name)
(type_item name: (_) @name)
(const_item name: (_) @name)
(static_item name: (_) @name)
(enum_variant name: (_) @name)
(function_item name: (_) @name)
"""


# The records below are named tuples, not dataclasses: medium's 1,077 files make ~300k
# of them per pass, and a frozen dataclass takes 3x as long to build (its fields are set
# through object.__setattr__), in extraction, in decoding a cached graph and in
# unpickling a worker's (daemon.graph_pool).


class Definition(NamedTuple):
    symbol: str
    name: str
    kind: str
    line: int
    end_line: int


class Reference(NamedTuple):
    """A use of a name: `targets` are the full symbols it may mean, best first (empty when
    nothing in the file says; the query then falls back to the name)."""

    name: str
    written: str
    #: call | method | macro | path | type | bound | use | value | module, and the bounds
    #: that items are inherited through: supertrait | assoc_bound
    kind: str
    line: int
    enclosing: str
    targets: tuple[str, ...]


class ImplRelation(NamedTuple):
    trait: str
    trait_targets: tuple[str, ...]
    self_type: str
    type_targets: tuple[str, ...]
    line: int
    symbol: str  # the impl's own symbol (`module::Type`), as the chunker names it


class Import(NamedTuple):
    """`use target as alias` in `module` (a glob has alias `*`)."""

    module: str
    alias: str
    target: str
    line: int


@dataclass(frozen=True, slots=True)
class FileGraph:
    module: str
    defs: tuple[Definition, ...] = ()
    refs: tuple[Reference, ...] = ()
    impls: tuple[ImplRelation, ...] = ()
    imports: tuple[Import, ...] = ()
    #: `type Mutex<T> = crate::mutex::Mutex<T>;` as an import of `mutex::Mutex` under the
    #: alias's name (`alias_imports`): stored with the imports, so a path through the
    #: alias (`spin::Mutex::lock`) reaches the type's items, but no name of the file
    #: resolves through it (the alias is an item of its own there).
    aliases: tuple[Import, ...] = ()


@dataclass(slots=True)
class _Def:
    """A definition with what resolution needs of the region it spans."""

    out: Definition
    start: int
    end: int
    module: tuple[str, ...]  # the module its body's names resolve in
    self_path: tuple[str, ...] | None  # what `Self` means inside it
    generics: frozenset[str] = frozenset()  # its own type parameters
    bounds: Bounds = field(default_factory=dict)  # the traits its `<..>`/`where` bound
    #: A fn's node and source: its bindings are read when a receiver inside it first
    #: needs them (an edit reads the references of the items it changed only).
    fn: tuple[tree_sitter.Node, bytes] | None = None
    _bindings: dict[str, list[Interval]] | None = None

    def binding(
        self, name: str, pos: int, generics: frozenset[str], walk: Walk
    ) -> tuple[str, ...] | None:
        """The written type of the local `name` in scope at byte `pos` (`x: &Foo`, `let
        v = Vec::new()`, `let v = y.build()?` by what the file's `build` gives back),
        None where it has none (`daemon.bindings`); `generics`: the type parameters in
        scope in the fn (its impl's or trait's too), which name no item."""
        if self._bindings is None:
            self._bindings = {}
            if self.fn is not None:
                node, src = self.fn
                self._bindings = fn_bindings(
                    node,
                    src,
                    _param_bindings(node, src, generics),
                    functools.partial(_let_type, src=src, generics=generics),
                    lambda ty: type_path(ty, src, generics, params=True),
                )
        if name not in self._bindings:
            return None
        table, at = walk.return_types(), (self.module, self.self_path)
        return binding_at(self._bindings, name, pos, lambda o, link: returned(table, o, link, at))


@dataclass(slots=True)
class Walk:
    """What one pass over a file's items found (`prepare`): its definitions, impls, the
    trees to query (the file's and its macros' bodies) and where defined names stand."""

    src: bytes
    #: The file's root-relative path: a `#[path = "x.rs"] mod m;` is read from its folder.
    path: str = ""
    defs: list[_Def] = field(default_factory=list)
    impls: list[tuple[tree_sitter.Node, tuple[str, ...], tuple[str, ...]]] = field(
        default_factory=list
    )
    trees: list[tree_sitter.Node] = field(default_factory=list)
    names: set[int] = field(default_factory=set)  # start bytes of defined names
    #: The module-level type aliases (`type_item` nodes) and the module each stands in.
    aliases: list[tuple[tree_sitter.Node, tuple[str, ...]]] = field(default_factory=list)
    #: Start bytes of macro calls' token trees parsed as items (`invocation_items`):
    #: their references come from the parse, not from the tokens' shapes.
    expanded: set[int] = field(default_factory=set)
    #: The names of the items written in each fn's body, by the fn's symbol: inside
    #: the fn (and the items nested in it) they shadow the module's names.
    blocks: dict[str, set[str]] = field(default_factory=dict)
    #: The kinds of the bounds that a trait's items inherit, by start byte: `trait Sub:
    #: Super` (`supertrait`), `type Item: Foo;` in a trait (`assoc_bound`): the graph
    #: follows them for an item no candidate names (`daemon.supertraits`).
    supers: dict[int, str] = field(default_factory=dict)
    _fields: FieldTypes | None = None
    _returns: ReturnTypes | None = None

    def in_block(self, symbol: str, segs: tuple[str, ...]) -> str | None:
        """The symbol `segs` names when its head is an item written in the body of a fn
        around `symbol` (the innermost such fn; `fn outer() { struct Guard; … }`:
        `Guard::new` is `outer::Guard::new` there), else None."""
        if not self.blocks or not segs:
            return None
        parts = symbol.split("::")
        for i in range(len(parts), 0, -1):
            names = self.blocks.get("::".join(parts[:i]))
            if names is not None and segs[0] in names:
                return "::".join((*parts[:i], *segs))
        return None

    def field_types(self) -> FieldTypes:
        """The file's struct fields (`daemon.fields`), read from its own tree (with its
        braced macro calls) when a `self.field.method()` first asks."""
        if self._fields is None:
            self._fields = struct_fields(self.trees[0], self.src) if self.trees else {}
        return self._fields

    def return_types(self) -> ReturnTypes:
        """What the file's methods give back (`daemon.returns`), read from its own tree
        when a `let x = y.m()` is first asked about."""
        if self._returns is None:
            prefix = module_prefix(self.path)
            self._returns = impl_returns(self.trees[0], self.src, prefix) if self.trees else {}
        return self._returns


@functools.lru_cache(maxsize=1)
def _query() -> tree_sitter.Query:
    return tree_sitter.Query(_language(), _QUERY)


def extract(
    rel_path: str, source: bytes, parsed: tuple[bytes, tree_sitter.Tree] | None = None
) -> FileGraph:
    """The symbol graph of one file (same input normalisation as the chunker); `parsed`:
    the normalized bytes and their tree when the caller has them (the parse cache)."""
    if parsed is not None:
        source, tree = parsed
    else:
        source = normalize(source)
        tree = parse_rust(source)
    return extract_prepared(*prepare(rel_path, source, tree))


def prepare(rel_path: str, source: bytes, tree: tree_sitter.Tree) -> tuple[Walk, Scope]:
    """A file's definitions, and its scope before its imports are read."""
    root = tree.root_node
    walk = Walk(source, path=rel_path, trees=[root])
    walk_units(walk, root.children, module_prefix(rel_path))
    return walk, new_scope(rel_path, [d.out for d in walk.defs])


def module_prefix(rel_path: str) -> tuple[str, ...]:
    mod_path = module_path(rel_path)
    return tuple(mod_path.split("::")) if mod_path else ()


def new_scope(rel_path: str, defs: list[Definition]) -> Scope:
    """The file's scope before its imports are read: its module and its own items."""
    scope = Scope(module_prefix(rel_path), crate_prefix(rel_path))
    for d in defs:
        if d.kind not in ("method", "variant", "impl"):
            scope.add_local(d.symbol, d.kind)
    return scope


def extract_prepared(walk: Walk, scope: Scope) -> FileGraph:
    """The whole file's graph once `prepare` has walked its definitions (`scope` gains
    the file's imports)."""
    hits = _captures(walk)
    imports = _imports(walk, scope, hits)
    refs = [*_references(walk, scope, hits), *_use_refs(imports)]
    defs = [d.out for d in walk.defs]
    impls = impl_relations(walk, walk.impls, scope)
    aliases = alias_imports(walk, walk.aliases, scope)
    return finish(scope, walk.src, defs, refs, impls, imports, aliases)


def finish(
    scope: Scope,
    src: bytes,
    defs: list[Definition],
    refs: list[Reference],
    impls: list[ImplRelation],
    imports: list[Import],
    aliases: list[Import],
) -> FileGraph:
    """The file's graph, each list in the file's order whatever order it was found in
    (an edit reads only its changed items); the file is its module's body: a `mod` row
    of its own, under its `mod x;` line."""
    refs.sort(key=lambda r: r.line)
    defs.sort(key=lambda d: (d.line, -d.end_line, d))
    impls.sort(key=lambda i: (i.line, i))
    aliases.sort(key=lambda i: i.line)
    mod_path = "::".join(scope.module)
    rows = src.count(b"\n") + 1
    own = (Definition(mod_path, scope.module[-1], "mod", 1, rows),) if scope.module else ()
    return FileGraph(
        mod_path, own + tuple(defs), tuple(refs), tuple(impls), tuple(imports), tuple(aliases)
    )


def unit_refs(walk: Walk, scope: Scope, node: tree_sitter.Node) -> list[Reference] | None:
    """The references of one top-level node, read as `extract` reads the whole file;
    None when it holds a `use` (it would change the scope)."""
    cursor = tree_sitter.QueryCursor(_query())
    cursor.set_byte_range(node.start_byte, node.end_byte)
    captured = cursor.captures(node)
    if "use" in captured:
        return None
    hits: list[Hit] = []
    _add_hits(hits, captured)
    hits.sort()
    return _references(walk, scope, hits)


def alias_imports(
    walk: Walk, aliases: Iterable[tuple[tree_sitter.Node, tuple[str, ...]]], scope: Scope
) -> list[Import]:
    """Each type alias that names an item (`type Mutex<T> = crate::mutex::Mutex<T>;`,
    `type Inner = Arc<spin::SpinMutex>`, as a method call sees through the pointer) as
    an import of what it may name under the alias's name; `scope` complete."""
    out: list[Import] = []
    for node, module in aliases:
        ty = node.child_by_field_name("type")
        segs = type_path(ty, walk.src, type_param_names(node, walk.src)) if ty is not None else ()
        name, where = _name(node, walk.src), "::".join(module)
        own = "::".join((*module, name))
        for target in candidates(segs, scope, module, None)[:MAX_ALIAS_TARGETS]:
            if target != own:
                out.append(Import(where, name, target, node.start_point.row + 1))
    return out


def _use_refs(imports: list[Import]) -> Iterator[Reference]:
    """Each imported name is a reference (of kind `use`) to what it imports, and its
    path a reference to the module or type holding it (`use io::Write` uses `io`)."""
    for imp in imports:
        segs = imp.target.split("::")
        where = imp.module or "crate"
        yield Reference(segs[-1], imp.target, "use", imp.line, where, (imp.target,))
        if len(segs) >= 2 and segs[-2] not in _NOT_NAMES:
            head = "::".join(segs[:-1])
            kind = _qualifier_kind(segs[-2])
            yield Reference(segs[-2], head, kind, imp.line, where, (head,))


#: Where a container's members stand: the path their symbols extend, their owner type
#: or trait (its name), what `Self` means there, and the module their names resolve in
#: (a fn's own for the items written in its body, whose symbols extend the fn's).
_Where = tuple[tuple[str, ...], str, tuple[str, ...] | None, tuple[str, ...]]


def walk_units(walk: Walk, nodes: Iterable[tree_sitter.Node], prefix: tuple[str, ...]) -> None:
    """Record the definitions of `nodes` (top-level items) and of the containers the
    chunker walks inside them (mod, impl, trait, macro_rules bodies, ERROR nodes), and
    of the items written in fn bodies (`fn outer() { struct Guard; fn helper() {} }`:
    `outer::Guard`, `outer::helper`; not searchable chunks, but definitions)."""
    stack: list[tuple[tree_sitter.Node, _Where, int]] = []
    _walk_level(walk, nodes, (prefix, "", None, prefix), 0, stack)
    while stack:
        node, where, calls = stack.pop()
        if node.type == "block":  # a fn body: its macro calls are expressions, not expanded
            calls = MAX_MACRO_NESTING
        _walk_level(walk, node.children, where, calls, stack)


def _walk_level(
    walk: Walk,
    nodes: Iterable[tree_sitter.Node],
    where: _Where,
    calls: int,
    stack: list[tuple[tree_sitter.Node, _Where, int]],
) -> None:
    """`calls`: the braced macro calls `nodes` stand in (`MAX_MACRO_NESTING`)."""
    pre, owner, self_path, module = where
    for child in nodes:
        if child.type == "ERROR":
            stack.append((child, where, calls))
        elif child.type == "macro_invocation" and calls < MAX_MACRO_NESTING:
            inner = invocation_items(child, walk.src, uses=True)
            if inner is not None:  # items written in a macro call: its module's (or type's)
                walk.trees.append(inner)
                walk.expanded.update(c.start_byte for c in child.children if c.type == "token_tree")
                stack.append((inner, where, calls + 1))
        elif owner and child.type in _MEMBER_KINDS:
            symbol = (*pre, owner, _name(child, walk.src))
            _add(walk, child, symbol, _MEMBER_KINDS[child.type], module, self_path)
            stack.extend((body, inside, calls) for body, inside in _fn_body(child, symbol, module))
        elif child.type in NODE_KINDS:
            if pre != module and not owner and NODE_KINDS[child.type] != "impl":
                walk.blocks.setdefault("::".join(pre), set()).add(_name(child, walk.src))
            items = _item(walk, child, pre, module)
            stack.extend((body, inside, calls) for body, inside in items)


def _fn_body(
    node: tree_sitter.Node, symbol: tuple[str, ...], module: tuple[str, ...]
) -> Iterator[tuple[tree_sitter.Node, _Where]]:
    """A fn's body, where the items it declares stand (its statements are skipped; its
    macro calls are expressions, a `quote! { fn … }` template, and never expanded)."""
    body = node.child_by_field_name("body")
    if body is not None and body.type == "block":
        yield body, (symbol, "", None, module)


def _item(
    walk: Walk, node: tree_sitter.Node, pre: tuple[str, ...], module: tuple[str, ...]
) -> Iterator[tuple[tree_sitter.Node, _Where]]:
    """Record one item (its symbol extends `pre`, its names resolve in `module`); yield
    the bodies whose members are definitions of their own."""
    kind = NODE_KINDS[node.type]
    src = walk.src
    if kind == "impl":
        # `impl crate::Socket` in sys/unix.rs is the crate root's `Socket` (as the chunker
        # names it); its members' symbols extend that path.
        owner, name = impl_owner(
            node.child_by_field_name("type"), src, pre, crate_prefix(walk.path)
        )
        symbol = (*owner, name)
    else:
        name = _name(node, src)
        owner, symbol = pre, (*pre, name)
    if kind == "fn" and _takes_self(node):
        kind = "method"
    body = node.child_by_field_name("body")
    if kind == "mod":
        _add(walk, node, symbol, kind, symbol, None)
        if body is not None and len(symbol) <= MAX_NESTING:
            yield body, (symbol, "", None, symbol)
        return
    if kind == "impl":
        _add(walk, node, symbol, kind, module, symbol)
        walk.impls.append((node, module, symbol))
        if body is not None:
            yield body, (owner, name, symbol, module)
        return
    if kind == "trait":
        _add(walk, node, symbol, kind, module, symbol)
        if body is not None:
            yield body, (pre, name, symbol, module)
        return
    _add(walk, node, symbol, kind, module, None)
    if kind == "type" and pre == module:
        walk.aliases.append((node, module))
    if kind in ("fn", "method"):
        yield from _fn_body(node, symbol, module)
    if kind == "enum" and body is not None:
        for v in body.named_children:
            if v.type == "enum_variant":
                _add(walk, v, (*symbol, _name(v, src)), "variant", pre, None)
    if kind == "macro" and len(symbol) <= MAX_NESTING:
        # Each level parses its body again: past the chunker's bound (a file it skips as
        # too complex, which only a snapshot's adoption still reads) 1,500 levels took 11 s.
        inner = _macro_items(node, src)
        if inner is not None:
            walk.trees.append(inner)
            yield inner, (symbol, "", None, symbol)


def _name(node: tree_sitter.Node, src: bytes) -> str:
    child = node.child_by_field_name("name")
    return node_text(child, src) if child is not None else "?"


def _takes_self(node: tree_sitter.Node) -> bool:
    params = node.child_by_field_name("parameters")
    return params is not None and any(c.type == "self_parameter" for c in params.children)


def _add(
    walk: Walk,
    node: tree_sitter.Node,
    symbol: tuple[str, ...],
    kind: str,
    module: tuple[str, ...],
    self_path: tuple[str, ...] | None,
) -> None:
    out = Definition(
        "::".join(symbol), symbol[-1], kind, node.start_point.row + 1, node.end_point.row + 1
    )
    name = node.child_by_field_name("name")
    if name is not None:
        walk.names.add(name.start_byte)
    generics = type_param_names(node, walk.src)
    fn = (node, walk.src) if kind in ("fn", "method") else None
    d = _Def(out, node.start_byte, node.end_byte, module, self_path, generics, fn=fn)
    if kind in ("fn", "method", "impl", "trait"):
        d.bounds = item_bounds(node, walk.src)
    if kind == "trait":
        walk.supers.update(dict.fromkeys(supertrait_starts(node), "supertrait"))
    elif node.type == "associated_type" and (bounds := node.child_by_field_name("bounds")):
        walk.supers.update(
            dict.fromkeys((b.start_byte for b in bounds.named_children), "assoc_bound")
        )
    walk.defs.append(d)


def _param_bindings(
    node: tree_sitter.Node, src: bytes, generics: frozenset[str]
) -> Iterator[tuple[str, tuple[str, ...]]]:
    params = node.child_by_field_name("parameters")
    for p in params.named_children if params is not None else ():
        if p.type == "self_parameter":  # `let x = self.build()` asks what `Self`'s gives
            yield "self", ("Self",)
            continue
        pattern, ty = p.child_by_field_name("pattern"), p.child_by_field_name("type")
        if p.type == "parameter" and pattern is not None and pattern.type == "identifier":
            segs = type_path(ty, src, generics, params=True) if ty is not None else ()
            if segs:
                yield node_text(pattern, src), segs


def _let_type(node: tree_sitter.Node, src: bytes, generics: frozenset[str]) -> tuple[str, ...]:
    """`let x: Foo`, `let x = Foo::new()`, `let x = Foo { .. }`, `let x =
    Arc::new(Foo::new())`: x is a Foo (`daemon.fields.value_type`)."""
    ty, value = node.child_by_field_name("type"), node.child_by_field_name("value")
    if ty is not None:
        return type_path(ty, src, generics, params=True)
    return value_type(value, src) if value is not None else ()


class _Enclosing:
    """The innermost definition around a byte offset, and the type parameters in scope
    there: a sweep over spans that nest, fed offsets in increasing order."""

    def __init__(self, defs: list[_Def]) -> None:
        self._spans = sorted(defs, key=lambda d: (d.start, -d.end))
        self._stack: list[tuple[_Def, TypeParams]] = []
        self._i = 0

    def at(self, pos: int) -> tuple[_Def | None, TypeParams]:
        spans, stack = self._spans, self._stack
        while self._i < len(spans) and spans[self._i].start <= pos:
            nxt = spans[self._i]
            while stack and stack[-1][0].end <= nxt.start:
                stack.pop()
            outer = stack[-1][1] if stack else NO_PARAMS
            stack.append((nxt, outer.inner(nxt.generics, nxt.bounds)))
            self._i += 1
        while stack and stack[-1][0].end <= pos:
            stack.pop()
        return stack[-1] if stack else (None, NO_PARAMS)


Hit = tuple[int, int, int, int, str, tree_sitter.Node]


def _captures(walk: Walk) -> list[Hit]:
    """Every query hit of every tree (the file and its macro bodies) as (start, -end,
    priority, n, capture, node): in offset order, outer paths before their parts, and a
    node captured twice first as its most specific capture (sorted as plain tuples, with
    each node's offsets read once)."""
    hits: list[Hit] = []
    for tree in walk.trees:
        _add_hits(hits, tree_sitter.QueryCursor(_query()).captures(tree))
    hits.sort()
    return hits


def _add_hits(hits: list[Hit], captured: dict[str, list[tree_sitter.Node]]) -> None:
    for name, nodes in captured.items():
        prio, base = _PRIORITY[name], len(hits)
        hits.extend(
            (n.start_byte, -n.end_byte, prio, base + i, name, n) for i, n in enumerate(nodes)
        )


class _Memo:
    """What recurs all over a file (`Vec`, `Self::new`), worked out once: each written
    path's segments, and its candidates per module and `Self` (the scope is complete by
    the time references are read)."""

    def __init__(self, scope: Scope, walk: Walk) -> None:
        self.scope = scope
        self.walk = walk
        self._segs: dict[str, tuple[str, ...]] = {}
        self._found: dict[tuple[str, tuple[str, ...], tuple[str, ...] | None], tuple[str, ...]]
        self._found = {}

    def segments(self, written: str) -> tuple[str, ...]:
        segs = self._segs.get(written)
        if segs is None:
            segs = self._segs[written] = path_segments(written)
        return segs

    def candidates(
        self, written: str, segs: tuple[str, ...], inside: _Def | None
    ) -> tuple[str, ...]:
        module = inside.module if inside is not None else self.scope.module
        self_path = inside.self_path if inside is not None else None
        if inside is not None and (local := self.walk.in_block(inside.out.symbol, segs)):
            return (local,)
        key = (written, module, self_path)
        found = self._found.get(key)
        if found is None:
            found = self._found[key] = candidates(segs, self.scope, module, self_path)
        return found


def _references(walk: Walk, scope: Scope, hits: list[Hit]) -> list[Reference]:
    """One reference per capture that is no part of a longer one, no `use` path and no
    definition's own name; classified by the query alone (`Node.parent` walks down from
    the root each time, so it is never asked here)."""
    src = walk.src
    enclosing = _Enclosing(walk.defs)
    memo = _Memo(scope, walk)
    out: list[Reference] = []
    use_end = -1  # end of the last `use` argument: paths inside it are its imports
    taken_end = -1  # end of the last path taken: captures inside it are its parts
    for pos, neg_end, _prio, _n, capture, node in hits:
        end = -neg_end
        if capture == "name":  # an item's own name, wherever the item is (fn bodies too)
            walk.names.add(pos)
            continue
        if capture == "use":
            use_end = max(use_end, end)
            continue
        if pos < use_end or end <= taken_end or (capture in _NAMED and pos in walk.names):
            continue
        if capture == "tt" and pos in walk.expanded:
            continue
        taken_end = end
        inside, generics = enclosing.at(pos)
        if capture == "tt":
            out.extend(_token_tree_refs(node, src, memo, inside, generics))
        elif capture == "recv_method":
            out.extend(_receiver_call(node, walk, scope, inside, generics))
        else:
            written = src[pos:end].decode("utf-8", "replace")
            line = node.start_point.row + 1
            if capture == "bound":
                capture = walk.supers.get(pos, capture)
            out.extend(_path_refs(capture, written, line, memo, inside, generics))
    return out


def _path_refs(
    capture: str,
    written: str,
    line: int,
    memo: _Memo,
    inside: _Def | None,
    generics: frozenset[str],
) -> Iterator[Reference]:
    """The reference a captured path makes, and one to its qualifier (`Foo::new` uses
    `Foo`, `io::Result` uses `io`) unless that is `Self`, `crate`, ... or a type
    parameter. A qualified type (`<S as Trait>::m`) is read as the item it names."""
    if written.startswith("<"):
        qualified = qualified_path(written)
        if not qualified:  # `<[u8]>::len`: a name only
            name = written.rsplit("::", 1)[-1]
            if name.isidentifier():
                where = inside.out.symbol if inside is not None else memo.scope.module_symbol
                yield Reference(name, written, capture, line, where, _NO_TARGETS)
            return
        written = qualified
    segs = memo.segments(written)
    if not segs or segs[-1] in _NOT_NAMES or (capture in _NAMED and segs[0] in generics):
        return  # `Self` alone, or a type parameter, names no item
    if capture == "value" and segs[-1] in _PRELUDE_VALUES:
        return
    where = inside.out.symbol if inside is not None else memo.scope.module_symbol
    kind, targets = capture, _NO_TARGETS
    if capture in ("method", "self_method"):
        kind = "method"
        self_path = inside.self_path if inside is not None else None
        if capture == "self_method" and self_path:
            targets = ("::".join((*self_path, segs[-1])),)
    elif capture in ("call", "path") and len(segs) > 1 and segs[0] in generics:
        module = inside.module if inside is not None else memo.scope.module
        self_path = inside.self_path if inside is not None else None
        targets = bound_candidates(segs[0], segs[1:], generics, memo.scope, (module, self_path))
        targets = targets or memo.candidates(written, segs, inside)
    else:
        targets = _own_macro(memo, segs, inside) if capture == "macro" else ()
        targets = targets or memo.candidates(written, segs, inside)
    yield Reference(segs[-1], written, kind, line, where, targets)
    if len(segs) >= 2 and segs[-2] not in _NOT_NAMES and segs[-2] not in generics:
        head = segs[:-1]
        qualifier = "::".join(head)
        found = memo.candidates(qualifier, head, inside)
        yield Reference(head[-1], qualifier, _qualifier_kind(head[-1]), line, where, found)


def _own_macro(memo: _Memo, segs: tuple[str, ...], inside: _Def | None) -> tuple[str, ...]:
    """`regex!()` where the module defines `macro_rules! regex`: that macro, even where a
    `use regex;` brings in the crate of that name (macros have a namespace of their own)."""
    module = inside.module if inside is not None else memo.scope.module
    own = "::".join((*module, segs[0]))
    return (own,) if len(segs) == 1 and "macro" in memo.scope.locals.get(own, ()) else ()


def _qualifier_kind(name: str) -> str:
    """A capitalised qualifier is a type (or trait, or enum); any other a module."""
    return "type" if name[:1].isupper() else "module"


def _receiver_call(
    node: tree_sitter.Node,
    walk: Walk,
    scope: Scope,
    inside: _Def | None,
    generics: frozenset[str],
) -> Iterator[Reference]:
    """`x.name(..)`, `self.x.name(..)`: a method of the receiver's type when the code
    wrote that type down, else by name."""
    recv, fld = node.child_by_field_name("value"), node.child_by_field_name("field")
    if recv is None or fld is None:
        return
    name = node_text(fld, walk.src)
    bound = _receiver_type(recv, walk, inside, generics) if inside is not None else None
    targets: tuple[str, ...] = ()
    if bound and bound[0] in (PARAM, TRAIT) and inside is not None:
        targets = _marked(bound, name, generics, scope, inside)
    elif bound and inside is not None:
        segs = (*bound, name)
        local = walk.in_block(inside.out.symbol, segs)
        targets = (local,) if local else candidates(segs, scope, inside.module, inside.self_path)
    where = inside.out.symbol if inside is not None else scope.module_symbol
    yield Reference(name, name, "method", fld.start_point.row + 1, where, targets)


def _receiver_type(
    recv: tree_sitter.Node, walk: Walk, inside: _Def, generics: frozenset[str]
) -> tuple[str, ...] | None:
    """The written type of a local or parameter (`x`), or of a field of `self` or of
    such a local, through fields of fields (`self.x`, `p.x`, `self.a.b`, as the file's
    structs declare them; a chain longer than `_MAX_CHAIN` is not followed)."""
    names: list[str] = []
    for _ in range(_MAX_CHAIN):
        if recv.type != "field_expression":
            break
        field_node, value = recv.child_by_field_name("field"), recv.child_by_field_name("value")
        if field_node is None or value is None:
            return None
        names.append(node_text(field_node, walk.src))
        recv = value
    if recv.type == "self":
        owner = inside.self_path
    elif recv.type == "identifier":
        owner = inside.binding(node_text(recv, walk.src), recv.start_byte, generics, walk)
    else:
        return None  # a call's result, an index, a chain too long
    return _through_fields(owner, names[::-1], recv.type == "self", walk, (inside, generics))


def _through_fields(
    owner: tuple[str, ...] | None,
    names: list[str],
    on_self: bool,
    walk: Walk,
    at: tuple[_Def, frozenset[str]],
) -> tuple[str, ...] | None:
    """The type of the field reached from a value of type `owner` through `names` (in
    the order written: `self.a.b` is a, b) as the file's structs declare them. `at`:
    the fn the receiver is read in and the type parameters in scope there."""
    inside, generics = at
    struct = owner
    for name in names:
        if owner and owner[0] in (PARAM, TRAIT):
            return None  # a field of a type parameter's or a trait's value: no struct
        struct = owner
        owner = walk.field_types().get(owner[-1], {}).get(name) if owner else None
    if not (owner and owner[0] == PARAM and names):
        return owner
    # A struct's parameter (`read: R`) is known only on `self`'s own field: the impl's
    # type argument at its position (`impl<X: Read> S<X>`), else left by name.
    if not on_self or len(names) != 1 or struct is None or inside.fn is None:
        return None
    params = walk.field_types().get(struct[-1], {}).get(PARAMS, ())
    fn, src = inside.fn
    return impl_argument(fn, params, owner[1], src, generics) or None


def _marked(
    bound: tuple[str, ...], name: str, generics: frozenset[str], scope: Scope, inside: _Def
) -> tuple[str, ...]:
    """The candidates of `x.name(..)` on an `x` of a type parameter (`(PARAM, "T")`: the
    traits it is bound by) or of `impl Trait`/`dyn Trait` (`(TRAIT, *path)`)."""
    where = (inside.module, inside.self_path)
    if bound[0] == PARAM:
        return bound_candidates(bound[1], (name,), generics, scope, where)
    return trait_candidates((bound[1:],), (name,), scope, where)


def _token_tree_refs(
    node: tree_sitter.Node, src: bytes, memo: _Memo, inside: _Def | None, generics: frozenset[str]
) -> Iterator[Reference]:
    """The calls written in a macro invocation's tokens, found by their shape (a path
    followed by `(`, or by `!` and a bracket; not a `fn` being declared), and the
    capitalised paths that are not called (types, constants); strings blanked first."""
    text = _STRING.sub(lambda m: b" " * len(m.group(0)), src[node.start_byte : node.end_byte])
    where = inside.out.symbol if inside is not None else memo.scope.module_symbol
    row = node.start_point.row
    for m in _TT_CALL.finditer(text):
        path = m.group(2)
        start = m.start(2)
        if path in _KEYWORDS or _DECLARED.search(text, max(start - 16, 0), start):
            continue
        line = row + text.count(b"\n", 0, start) + 1
        if m.group(1):
            name = path.decode()
            targets = _tt_receiver(
                text, (m.start(1), node.start_byte), name, memo, inside, generics
            )
            yield Reference(name, name, "method", line, where, targets)
            continue
        kind = "macro" if m.group(3).startswith(b"!") else "call"
        if inside is not None and kind == "call" and path.decode() == inside.out.name:
            # `fn bind(..) { syscall!(bind(..)) }`: the macro makes the name another
            # item (`libc::bind`); read as written it was the fn calling itself.
            yield Reference(inside.out.name, path.decode(), kind, line, where, ())
            continue
        yield from _path_refs(kind, path.decode(), line, memo, inside, generics)
    for m in _TT_VALUE.finditer(text):
        line = row + text.count(b"\n", 0, m.start(1)) + 1
        yield from _path_refs("value", m.group(1).decode(), line, memo, inside, generics)


#: The receiver just before a method call's dot in a macro's tokens: `self` or a local,
#: and the fields read from it (`self.read` in `tri!(self.read.peek())`).
_TT_RECEIVER = re.compile(
    rb"(?<![\w$.])(self|[a-z_][A-Za-z0-9_]*)((?:\s*\.\s*[A-Za-z_][A-Za-z0-9_]*){0,8})\s*$"
)


def _tt_receiver(
    text: bytes,
    at: tuple[int, int],
    name: str,
    memo: _Memo,
    inside: _Def | None,
    generics: frozenset[str],
) -> tuple[str, ...]:
    """The candidates of `x.name(..)` written in a macro's tokens (`println!("{}",
    s.total())`, `tri!(self.read.peek())`) when `x` is `self` or a local whose type the
    fn writes down, or a field of one, as `_receiver_call` reads them outside macros; ()
    otherwise. `at`: the dot's offset in `text`, and where `text` starts in the file."""
    dot, base = at
    found = _TT_RECEIVER.search(text, max(dot - 160, 0), dot) if inside is not None else None
    if found is None or inside is None:
        return ()
    recv = found.group(1).decode()
    fields = [f.strip().decode() for f in found.group(2).split(b".")[1:]]
    if recv == "self" and not fields:  # `Self`'s path is a symbol already, not a path
        return ("::".join((*inside.self_path, name)),) if inside.self_path else ()
    owner = (
        inside.self_path
        if recv == "self"
        else inside.binding(recv, base + found.start(1), generics, memo.walk)
    )
    bound = _through_fields(owner, fields, recv == "self", memo.walk, (inside, generics))
    if not bound:
        return ()
    if bound[0] in (PARAM, TRAIT):
        return _marked(bound, name, generics, memo.scope, inside)
    return candidates((*bound, name), memo.scope, inside.module, inside.self_path)


def impl_relations(
    walk: Walk, impls: list[tuple[tree_sitter.Node, tuple[str, ...], tuple[str, ...]]], scope: Scope
) -> list[ImplRelation]:
    """The `impl Trait for Type` relations of `impls` (some of `walk.impls`)."""
    return list(_relations(walk, impls, scope))


def _relations(
    walk: Walk, impls: list[tuple[tree_sitter.Node, tuple[str, ...], tuple[str, ...]]], scope: Scope
) -> Iterator[ImplRelation]:
    src = walk.src
    for node, module, symbol in impls:
        trait = node.child_by_field_name("trait")
        type_node = node.child_by_field_name("type")
        if trait is None or type_node is None:
            continue
        trait_segs = path_segments(node_text(trait, src))
        if not trait_segs:
            continue
        # A type that is no path (`&[u8]`, `(A, B)`, `[T; N]`) is named as written.
        type_segs = path_segments(node_text(_strip_type(type_node), src))
        self_type = "::".join(type_segs) or " ".join(node_text(type_node, src).split())
        where = "::".join(symbol)
        trait_local, type_local = walk.in_block(where, trait_segs), walk.in_block(where, type_segs)
        yield ImplRelation(
            "::".join(trait_segs),
            (trait_local,) if trait_local else candidates(trait_segs, scope, module, None),
            self_type,
            (type_local,) if type_local else candidates(type_segs, scope, module, None),
            node.start_point.row + 1,
            "::".join(symbol),
        )


def _strip_type(node: tree_sitter.Node) -> tree_sitter.Node:
    """`&'a mut Foo<T>` -> the node of `Foo`."""
    for _ in range(16):
        inner = None
        if node.type in ("generic_type", "reference_type", "pointer_type"):
            inner = node.child_by_field_name("type")
        if inner is None:
            return node
        node = inner
    return node


def _imports(walk: Walk, scope: Scope, hits: list[Hit]) -> list[Import]:
    """Every `use` of the file (in any module or block), with its target made absolute;
    in order, so a `use` may build on an earlier one. A `use` inside a fn's body names
    nothing for the rest of its module: resolving the module's other lines through it
    gave confident wrong answers (tokio's `use chan::Semaphore;` in one `drop` made the
    module's struct `Semaphore` the trait everywhere); the fn's own lines go by name."""
    enclosing = _Enclosing(walk.defs)
    out: list[Import] = []
    uses: list[tuple[int, tree_sitter.Node | Import]] = [
        (pos, node) for pos, _end, _prio, _n, capture, node in hits if capture == "use"
    ]
    uses.extend(path_mods(walk, scope.module))
    for pos, entry in sorted(uses, key=lambda e: e[0]):
        if isinstance(entry, Import):
            scope.add_import(scope.module, entry.alias, entry.target)
            out.append(entry)
            continue
        inside, _generics = enclosing.at(pos)
        module = inside.module if inside is not None else scope.module
        local = inside is not None and inside.out.kind in ("fn", "method")
        for alias, segs, line in use_entries(entry, walk.src):
            target = scope.absolute(segs, module)
            if not local:
                scope.add_import(module, alias, "::".join(target))
            out.append(Import("::".join(module), alias, "::".join(target), line))
    return out


#: `#[path = "x.rs"]`, or `#[cfg_attr(unix, path = "sys/unix.rs")]` (socket2's `sys`).
_PATH_ATTR = re.compile(
    rb'^#\[\s*(?:cfg_attr\s*\(.*,\s*)?path\s*=\s*"([^"\\]+)"\s*\)?\s*\]$', re.DOTALL
)


def path_mods(walk: Walk, module: tuple[str, ...]) -> Iterator[tuple[int, Import]]:
    """`#[path = "wrapper.rs"] mod imp;` at the file's top level, as an import of the
    module that file holds under the name `imp` (`imp::TokenStream` is
    `wrapper::TokenStream`; several, under exclusive `#[cfg]`s, are each meant). Placed
    at the attribute, so an edit of it is an edit of the file's imports
    (`daemon.graph_edit`). Comments may stand between the attributes and the `mod`; a
    path out of the root (absolute, or up past it) names no module of it."""
    if not walk.trees or not walk.path:
        return
    folder = posixpath.dirname(walk.path)
    levels = [walk.trees[0].children]
    for node in walk.trees[0].children:  # and in a braced call there: `cfg_if! { … }`
        inner = (
            invocation_items(node, walk.src, uses=True) if node.type == "macro_invocation" else None
        )
        if inner is not None:
            levels.append(inner.children)
    for nodes in levels:
        yield from _declared_paths(nodes, walk.src, folder, module)


def _declared_paths(
    nodes: list[tree_sitter.Node], src: bytes, folder: str, module: tuple[str, ...]
) -> Iterator[tuple[int, Import]]:
    """`path_mods` of one list of items (comments may stand between an attribute and
    its `mod`; a path out of the root names no module)."""
    attrs: list[tree_sitter.Node] = []
    for node in nodes:
        if node.type == "attribute_item":
            attrs.append(node)
            continue
        if node.type in ("line_comment", "block_comment"):
            continue
        name = node.child_by_field_name("name") if node.type == "mod_item" else None
        if name is not None and node.child_by_field_name("body") is None:
            for attr in attrs:
                m = _PATH_ATTR.match(src[attr.start_byte : attr.end_byte])
                written = m.group(1).decode("utf-8", "replace") if m is not None else ""
                file = posixpath.normpath(posixpath.join(folder, written))
                if not written or file.startswith(("/", "../")) or file == "..":
                    continue
                imp = Import("::".join(module), node_text(name, src), module_path(file), 0)
                yield attr.start_byte, imp._replace(line=attr.start_point.row + 1)
        attrs = []
