"""Name resolution as far as one file allows: `use` declarations (aliases, lists,
globs), `crate`/`self`/`super`, `Self` in an impl or trait, and the file's own items.

Symbols live in the chunker's path space (`net::retry::fetch_with_retry`; in a workspace
the crate's folder leads: `my_db::wal::Log`). What a name may mean is a short list of
candidate symbols; whether one of them is defined somewhere in the root is decided when a
query runs (`daemon.graph`), so the extraction of a file never depends on another file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import tree_sitter

from daemon.parsing import node_text

Path_ = tuple[str, ...]

_GENERICS = re.compile(r"<[^<>]*>")
_CRATE_HEADS = frozenset({"crate", "$crate", "_crate"})
#: The standard library's crates: a path into them names nothing a root defines.
STD_CRATES = frozenset({"std", "core", "alloc"})


def path_segments(written: str) -> Path_:
    """`Vec::<u8>::new` -> (Vec, new); `<T as Tr>::m` -> (m,); `$crate::x` -> (crate, x)."""
    if written.isidentifier():  # the common case: one plain name
        return (written,)
    segs = tuple(s for s in strip_generics("".join(written.split())).split("::") if s)
    if segs and segs[0] in _CRATE_HEADS:
        segs = ("crate", *segs[1:])
    if any(not _is_ident(s) for s in segs):
        return ()
    return segs


def strip_generics(text: str) -> str:
    """`text` without its `<…>` parts (`Vec::<u8>::new` -> `Vec::::new`); generics nest,
    so they are peeled from the inside out."""
    for _ in range(8):
        stripped = _GENERICS.sub("", text)
        if stripped == text:
            break
        text = stripped
    return text


def qualified_path(written: str) -> str:
    """A path written from a qualified type as the item it names: `<S as Trait>::m` is
    `Trait::m`, `<dyn Trait>::m` and `<S>::m` are `Trait::m` and `S::m`; "" when the
    type names no item (`<[u8]>::len`). Read as written, `<dyn Deserializer>::erase`
    was the module's own `fn erase`."""
    depth = 0
    for i, ch in enumerate(written):
        depth += (ch == "<") - (ch == ">")
        if depth == 0:
            inner, rest = written[1:i], written[i + 1 :]
            break
    else:
        return ""
    head, sep, trait = inner.rpartition(" as ")
    named = (trait if sep and head else inner).strip()
    for prefix in ("&", "mut ", "dyn ", "impl "):
        named = named.removeprefix(prefix).strip()
    path = strip_generics(named).rstrip(":")
    return f"{path}{rest}" if path and _is_ident(path.split("::")[-1]) else ""


def _is_ident(seg: str) -> bool:
    """A name as written: plain, a macro variable (`$x`), or raw (`r#type`, `r#match`:
    a keyword used as a name, which the chunker records with its `r#`)."""
    seg = seg.removeprefix("r#")
    return seg.replace("_", "a").replace("$", "a").isalnum() or seg.isidentifier()


def crate_prefix(rel_path: str) -> Path_:
    """What `crate::` means in a file: the crate folder's name in a workspace (as the
    chunker's module paths put it first), nothing for a crate at the root."""
    parts = [p for p in PurePosixPath(rel_path).parts if p not in ("", ".", "/")]
    if "src" in parts[:-1]:
        i = parts.index("src")
        return (parts[i - 1].replace("-", "_"),) if i > 0 else ()
    return ()


#: Kinds of item a path may go through (`m::x`, `T::new`); a fn, const, static or macro
#: of the same name lives in another namespace.
PATH_HEADS = frozenset({"mod", "struct", "enum", "union", "trait", "type"})
#: Paths one alias of a module imports, at most: exclusive `#[cfg]`s give two or three,
#: and each is a candidate of every reference through the alias (4,000 of one alias in
#: a 190 KB file: 4,000 references of 4,000 targets each, 1.6 GB).
MAX_ALIAS_TARGETS = 8


@dataclass(slots=True)
class Scope:
    """What names mean in one file: its module, its crate, its imports and items."""

    module: Path_
    crate: Path_
    #: Module -> alias -> what it imports, in the order written: one alias may import
    #: several paths under exclusive `#[cfg]`s (`#[cfg(test)] use super::mocks::spawn;`
    #: beside `#[cfg(not(test))] use crate::blocking::spawn;`), and each may be meant.
    imports: dict[Path_, dict[str, list[Path_]]] = field(default_factory=dict)
    globs: dict[Path_, list[Path_]] = field(default_factory=dict)
    #: The file's items and their kinds: only a module, type or trait may head a path
    #: (`regex::Regex` is never the `macro_rules! regex` beside it, nor a `fn regex`).
    locals: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def module_symbol(self) -> str:
        return "::".join(self.module) or "crate"

    def add_import(self, module: Path_, alias: str, target: str) -> None:
        segs = tuple(target.split("::")) if target else ()
        if alias == "*":
            self.globs.setdefault(module, []).append(segs)
        elif alias != "_":
            targets = self.imports.setdefault(module, {}).setdefault(alias, [])
            if segs not in targets and len(targets) < MAX_ALIAS_TARGETS:
                targets.append(segs)

    def add_local(self, symbol: str, kind: str) -> None:
        self.locals[symbol] = self.locals.get(symbol, frozenset()) | {kind}

    def holds(self, symbol: str) -> bool:
        """Whether `symbol` is an item of the file that a path may go through."""
        return not PATH_HEADS.isdisjoint(self.locals.get(symbol, ()))

    def absolute(self, segs: Path_, module: Path_) -> Path_:
        """A `use` path made absolute: its head read as `crate`/`self`/`super`, an earlier
        import or an item of the module; else it names another crate (`std::io`)."""
        head = segs[0] if segs else ""
        if head == "crate":
            return (*self.crate, *segs[1:])
        if head == "self":
            return (*module, *segs[1:])
        if head == "super":
            return _super(segs, module)
        imported = self.imports.get(module, {}).get(head)
        if imported:  # a `use` building on an alias of several: the first written
            return (*imported[0], *segs[1:])
        if self.holds("::".join((*module, head))):
            return (*module, *segs)
        return segs


def _super(segs: Path_, module: Path_) -> Path_:
    k = 0
    while k < len(segs) and segs[k] == "super":
        k += 1
    return (*module[: max(len(module) - k, 0)], *segs[k:])


def candidates(
    segs: Path_, scope: Scope, module: Path_, self_path: Path_ | None
) -> tuple[str, ...]:
    """The symbols a path written in `module` (inside an impl or trait of `self_path`)
    may mean, best first; empty when the file says nothing (a prelude or local name)."""
    if not segs:
        return ()
    head, rest = segs[0], segs[1:]
    if head in ("crate", "self", "super"):
        return ("::".join(scope.absolute(segs, module)),)
    if head == "Self":
        return ("::".join((*self_path, *rest)),) if self_path else ()
    imported = scope.imports.get(module, {}).get(head)
    if imported:
        return tuple("::".join((*target, *rest)) for target in imported)
    local = (*module, head)
    symbol = "::".join(local)
    if scope.holds(symbol) or (not rest and symbol in scope.locals):  # `f::x` is no fn's
        return ("::".join((*local, *rest)),)
    out = ["::".join((*g, *segs)) for g in scope.globs.get(module, [])]
    if rest:
        out.append("::".join(segs))  # a full path as written
        out.append("::".join((*scope.crate, *segs)))  # 2015-style crate-relative
    return tuple(dict.fromkeys(s for s in out if s))


def use_entries(node: tree_sitter.Node, src: bytes) -> Iterator[tuple[str, Path_, int]]:
    """(alias, path as written, line) of each name a `use` argument brings in; a glob's
    alias is `*` and its path the module it opens; the line is the name's own (a `use`
    list may span many)."""
    stack: list[tuple[tree_sitter.Node, Path_]] = [(node, ())]
    while stack:
        n, prefix = stack.pop()
        t = n.type
        line = n.start_point.row + 1
        if t == "use_list":
            stack.extend((c, prefix) for c in n.named_children)
        elif t == "scoped_use_list":
            path = n.child_by_field_name("path")
            lst = n.child_by_field_name("list")
            inner = (*prefix, *_segs(path, src)) if path is not None else prefix
            if lst is not None:
                stack.append((lst, inner))
        elif t == "use_as_clause":
            path = n.child_by_field_name("path")
            alias = n.child_by_field_name("alias")
            if path is not None and alias is not None:
                yield node_text(alias, src), (*prefix, *_segs(path, src)), line
        elif t == "use_wildcard":
            opened = n.named_children[0] if n.named_children else None
            yield "*", (*prefix, *(_segs(opened, src) if opened is not None else ())), line
        elif t == "self" and prefix:
            yield prefix[-1], prefix, line
        else:
            segs = (*prefix, *_segs(n, src))
            if segs:
                yield segs[-1], segs, line


def _segs(node: tree_sitter.Node, src: bytes) -> Path_:
    return path_segments(node_text(node, src))
