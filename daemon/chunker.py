"""Split one Rust source file into symbol-level chunks using tree-sitter-rust.

Search quality depends on chunks that line up with what people look for (a function, a
method, a type), so the unit is the item, not a fixed window of lines.  Everything here is a
pure function of ``(rel_path, source)``: no I/O, no global mutable state, deterministic output.

Chunk policy:

* ``fn``/``struct``/``enum``/``union``/``type``/``const``/``static``/``macro``: one chunk per
  item, including the doc comments, attributes and directly adjacent ``//`` comments above it.
* ``impl`` / ``trait`` blocks that contain methods with bodies are *containers*: every such
  method becomes a ``method`` chunk (symbol ``module::SelfType::method`` or
  ``module::Trait::method``, ``context`` = the block header).  The lines of the block that no
  method covers (header, associated consts/types, required-method signatures, closing brace)
  form ``impl``/``trait`` chunks, one per contiguous run of such lines.  For ``impl`` a run is
  dropped when it holds nothing but the header, attributes and the closing brace (the header
  already travels with every method as ``context``); for ``trait`` the header run is always
  kept so each trait has a ``trait`` chunk.  An ``impl``/``trait`` without methods that have
  bodies is a single chunk.
* An ``impl`` of a path (``impl crate::Socket``, ``impl super::T``) names the module that
  path points to, not the one it is written in.
* Inline ``mod x { ... }`` prefixes its items with ``x::``.  Its loose lines (``use``, ``//!``
  docs, macro calls) become ``mod`` chunks by the same rule as ``impl``; a ``mod`` without
  items is a single ``mod`` chunk.
* Items written in a braced macro call (``cfg_rt! { pub fn spawn … }``, ``thread_local! {
  static … }``, each branch of ``cfg_if! { if #[cfg(unix)] { … } else { … } }``) are items
  of the module or ``impl`` the call stands in; the call's own lines are loose code.
* File-level lines outside every item (``use``, ``//!``, ``extern crate``, ``mod foo;``,
  inner attributes, macro calls, unparsable text) become ``code`` chunks, one per contiguous
  run of such lines (blank lines at its edges trimmed).  Their symbol is the module path, or
  the file stem when the module path is empty (``lib`` for ``src/lib.rs``), so that no chunk
  has an empty symbol.
* Chunks whose text exceeds the ``budget`` (estimated model tokens by default) are split by
  lines into overlapping parts.

Syntax errors: tree-sitter recovers and wraps what it cannot parse in ``ERROR`` nodes; those
are walked like a module body, so items inside still become chunks and the rest becomes code.
"""

from __future__ import annotations

import functools
import re
import textwrap
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any

import tree_sitter
import tree_sitter_rust

from daemon.parsing import node_text, parse_rust
from daemon.resolve import crate_prefix, path_segments
from ipc.kinds import KINDS, NODE_KINDS

__all__ = [
    "KINDS",
    "MAX_MACRO_NESTING",
    "Chunk",
    "FileScope",
    "Member",
    "TooComplex",
    "chunk_source",
    "chunk_whole",
    "end_row",
    "file_scope",
    "item_chunks",
    "language",
    "loose_chunks",
    "member_rows",
    "module_path",
    "normalize",
    "source_lines",
    "strip_attributes",
    "top_members",
]

# tree-sitter node type -> chunk kind for items that become chunks (ipc/kinds.py).
_ITEM_KINDS = NODE_KINDS
_ITEMS_OR_USES = frozenset({*NODE_KINDS, "use_declaration"})
_COMMENTS = frozenset({"line_comment", "block_comment"})
_BOM = b"\xef\xbb\xbf"
_MAX_SIGNATURE = 300
_OPEN_PAD = re.compile(r"([(\[]) ")
_CLOSE_PAD = re.compile(r",? ([)\]])")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'"}

#: Bumped whenever `Chunk.embed_text` changes what the model sees: each root records it
#: with the model, and a root built with another version gets fresh vectors instead of
#: mixing two layouts (the embedding cache is keyed by the text, so it never mixes them).
EMBED_TEXT_VERSION = 2
#: Bumped whenever `chunk_source` would cut any file differently (kinds, boundaries,
#: symbols, splitting): each root records it, and a root chunked under another version
#: is rebuilt (cheaply: unchanged texts come from the embedding cache) instead of
#: applying the new policy only to files edited later.
CHUNK_POLICY_VERSION = 8
#: Bounds that no real Rust file comes near; a file past one is skipped and reported
#: (`too_complex`) instead of costing quadratic time and memory: 10,000 nested `mod`s
#: made 340 MB of symbol paths from a 268 KB file.
MAX_NESTING = 64
#: Braced macro calls nested deeper than this are loose code: each level parses its
#: body again, so 1,600 nested calls (a 38 KB file) cost 5 s here and 27 s in the graph.
MAX_MACRO_NESTING = 6
MAX_SYMBOL_CHARS = 1024
#: An impl's self type longer than this is cut (with "…"): a symbol is one line of a
#: search result, and such types come from macro bodies (`($($ty),+)` and the like).
MAX_TYPE_CHARS = 80
#: Text no type contains: where a macro body's repetition was read as an impl's type
#: (bitflags' `impl $BitFlags { $( … )* }`), the type is unknown and the impl is `impl`.
_NOT_A_TYPE = ("{", "#[", "//")
MAX_CHUNKS_PER_FILE = 20_000


class TooComplex(ValueError):
    """A file past one of the chunker's bounds."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """One searchable unit: an item (or a piece of one) or a run of loose module code."""

    path: str
    start_line: int
    end_line: int
    symbol: str
    kind: str
    signature: str
    doc: str
    text: str
    context: str
    part: int = 0

    def embed_text(self) -> str:
        """Text for the embedding model (layout `EMBED_TEXT_VERSION`): a short locating
        header, then the source without attributes. The model sees only 256 tokens: the
        symbol path already names the module (so no file path), the signature is the
        text's own first line (so it is repeated only for later parts), and attributes
        (`#[stable(...)]`, `#[inline]`) say nothing about what the code does."""
        header = f"// {self.symbol} ({self.kind})\n"
        if self.context:
            header += f"// in {self.context}\n"
        if self.signature and self.part > 0:
            header += f"// {self.signature}\n"
        return header + strip_attributes(self.text)


def strip_attributes(text: str) -> str:
    """`text` without its outer/inner attributes (`#[...]`, `#![...]`) at line starts,
    also when they span lines; code after an attribute on its line is kept."""
    out: list[str] = []
    depth = 0  # open brackets of an attribute that continues on the next line
    for line in text.split("\n"):
        rest = line.lstrip()
        while depth > 0 or rest.startswith(("#[", "#![")):
            for i, ch in enumerate(rest):
                depth += (ch == "[") - (ch == "]")
                if depth == 0 and ch == "]":
                    rest = rest[i + 1 :].lstrip()
                    break
            else:
                rest = ""  # the attribute goes on past this line
            if depth > 0 or not rest:
                break
        if rest:
            out.append(line[: len(line) - len(line.lstrip())] + rest)
        elif not line.strip():
            out.append(line)
    return "\n".join(out)


def module_path(rel_path: str) -> str:
    """Rust module path of a file, used as the symbol prefix of its items.

    ``src/`` is the crate root: ``src/lib.rs``/``src/main.rs`` -> ``''``,
    ``src/net/mod.rs`` -> ``net``, ``src/net/retry.rs`` -> ``net::retry``.  In a workspace the
    directory holding ``src`` names the crate (``crates/my-db/src/wal.rs`` -> ``my_db::wal``)
    so symbols stay distinguishable across crates.  Files outside any ``src`` keep their
    directories (``benches/x.rs`` -> ``benches::x``, ``build.rs`` -> ``build``).
    """
    parts = [p for p in PurePosixPath(rel_path.replace("\\", "/")).parts if p not in ("", ".")]
    if parts and parts[0] == "/":
        parts = parts[1:]
    if not parts:
        return ""
    last = parts[-1]
    parts[-1] = last[:-3] if last.endswith(".rs") else last
    if "src" in parts[:-1]:
        i = parts.index("src")
        crate = [parts[i - 1].replace("-", "_")] if i > 0 else []
        rest = parts[i + 1 :]
        if len(rest) == 1 and rest[0] in ("lib", "main"):
            rest = []
        parts = crate + rest
    if len(parts) > 1 and parts[-1] == "mod":
        parts = parts[:-1]
    return "::".join(parts)


@functools.lru_cache(maxsize=1)
def _language() -> tree_sitter.Language:
    """The Rust grammar; loading it is the only non-trivial setup cost, so it is cached."""
    return tree_sitter.Language(tree_sitter_rust.language())


def language() -> tree_sitter.Language:
    """The Rust grammar (loaded once)."""
    return _language()


@dataclass(slots=True)
class _Meta:
    """Everything a chunk carries except its position and text."""

    symbol: str
    kind: str
    signature: str = ""
    doc: str = ""
    context: str = ""


@dataclass(slots=True)
class _Scope:
    """A region whose uncovered lines become chunks: the file, an inline mod, an impl/trait."""

    meta: _Meta
    first_row: int
    last_row: int
    header_row: int  # row of the opening `{` of the body
    order: int  # number of items recorded before this scope: sorts it ahead of its members
    # Rows that alone do not justify a chunk (header, attributes, closing brace).
    trivial_rows: set[int] = field(default_factory=set)
    # Doc comment lines by row, so a run of loose lines can carry the docs it contains.
    docs: dict[int, list[str]] = field(default_factory=dict)
    # First and last rows of braced macro calls whose items are chunks: cut off the
    # edges of a run of loose lines.
    call_rows: set[int] = field(default_factory=set)


#: The scope of a file's loose lines, as `file_scope` makes it (opaque outside).
FileScope = _Scope


@dataclass(slots=True)
class _Frame:
    """A node whose children are walked for items, and how to name what is found there."""

    node: tree_sitter.Node
    prefix: tuple[str, ...]
    scope: int
    owner: str = ""  # self type / trait name when walking an impl or trait body
    context: str = ""  # impl/trait header when walking its body
    calls: int = 0  # braced macro calls it stands in (`MAX_MACRO_NESTING`)
    crate: tuple[str, ...] = ()  # what `crate::` means (`resolve.crate_prefix`)


#: Parts are cut to fit the embedding model's 256-token window with room for the header.
DEFAULT_BUDGET = 224


def chunk_source(
    rel_path: str,
    source: bytes,
    *,
    budget: int = DEFAULT_BUDGET,
    measure: Callable[[str], int] | None = None,
    overlap_lines: int = 3,
) -> list[Chunk]:
    """Parse ``source`` (raw bytes; may contain invalid UTF-8, a BOM, CRLF) into chunks.

    Line numbers are 1-based and inclusive and are computed on the bytes, so they stay exact
    whatever the encoding; ``text`` always uses ``\\n`` line endings.  Chunks are returned in
    source order (by start line).
    """
    source = normalize(source)
    lines = source_lines(source)
    if not lines:
        return []
    tree = parse_rust(source)
    return chunk_whole(rel_path, source, lines, tree, budget, measure, overlap_lines)


def normalize(source: bytes) -> bytes:
    """The bytes the chunker parses: no BOM, LF line ends. CRLF -> LF keeps the number of
    lines, so rows from the parser match the file's lines."""
    if source.startswith(_BOM):
        source = source[len(_BOM) :]
    return source.replace(b"\r\n", b"\n")


def source_lines(source: bytes) -> list[str]:
    """The lines of normalized `source`; [] when all are blank (no chunk)."""
    lines = source.decode("utf-8", "replace").split("\n")
    return lines if any(line.strip() for line in lines) else []


def file_scope(rel_path: str, lines: list[str]) -> tuple[tuple[str, ...], _Scope]:
    """The module prefix of the file's items, and the scope of its loose lines."""
    mod_path = module_path(rel_path)
    prefix = tuple(mod_path.split("::")) if mod_path else ()
    file_symbol = mod_path or PurePosixPath(rel_path.replace("\\", "/")).stem
    return prefix, _Scope(_Meta(file_symbol, "code"), 0, len(lines) - 1, 0, 0)


def chunk_whole(
    rel_path: str,
    source: bytes,
    lines: list[str],
    tree: tree_sitter.Tree,
    budget: int = DEFAULT_BUDGET,
    measure: Callable[[str], int] | None = None,
    overlap_lines: int = 3,
) -> list[Chunk]:
    """Chunks of a parsed file (`lines` from `source_lines` of the parsed bytes), walking
    every item: the reference that the per-item path of `daemon.units` must equal."""
    prefix, top = file_scope(rel_path, lines)
    scopes = [top]
    items: list[tuple[int, int, _Meta]] = []
    frames = [_Frame(tree.root_node, prefix, 0, crate=crate_prefix(rel_path))]
    while frames:
        frame = frames.pop()
        _walk_container(frame, source, scopes, items, frames)

    out = _cut(rel_path, lines, items, scopes, 0, len(lines) - 1, budget, measure, overlap_lines)
    if len(out) > MAX_CHUNKS_PER_FILE:
        raise TooComplex(f"more than {MAX_CHUNKS_PER_FILE} chunks")
    return out


def _cut(
    rel_path: str,
    lines: list[str],
    items: list[tuple[int, int, _Meta]],
    scopes: list[_Scope],
    lo: int,
    hi: int,
    budget: int = DEFAULT_BUDGET,
    measure: Callable[[str], int] | None = None,
    overlap_lines: int = 3,
) -> list[Chunk]:
    """The chunks of rows ``lo..hi``: the items found there and the loose runs between."""
    # (start row, end row, tie-breaker, meta); ties keep a block's own chunk before its members.
    chunks: list[tuple[int, int, tuple[int, int], _Meta]] = []
    covered = bytearray(hi + 1 - lo)
    for seq, (start, end, meta) in enumerate(items):
        chunks.append((start, end, (seq, 1), meta))
        covered[start - lo : end + 1 - lo] = b"\x01" * (end + 1 - start)
    for start, end, order, meta in _loose_runs(lines, covered, scopes, lo):
        chunks.append((start, end, (order, 0), meta))
    chunks.sort(key=lambda c: (c[0], c[1], c[2]))
    out: list[Chunk] = []
    for start, end, _, meta in chunks:
        out.extend(
            _split(
                rel_path, lines, start, end, meta, budget, measure or estimate_tokens, overlap_lines
            )
        )
        if len(out) > MAX_CHUNKS_PER_FILE:
            raise TooComplex(f"more than {MAX_CHUNKS_PER_FILE} chunks")
    return out


# ---- the per-item path (daemon.units): one top-level item at a time ----


def top_members(
    children: Iterable[tree_sitter.Node], source: bytes, top: _Scope, last_end: int = -1
) -> Iterator[Member]:
    """The members among top-level `children` (see `_members`): from the file's first
    child, or from any child that no comment before it may attach to (with the last row
    of the node before it as `last_end`); inner docs go to `top.docs`."""
    return _members(children, False, source, top, last_end)


def item_chunks(
    rel_path: str,
    source: bytes,
    lines: list[str],
    member: Member,
    prefix: tuple[str, ...],
    top: _Scope,
) -> tuple[list[Chunk], int]:
    """The chunks of one top-level item (with its attached comments) whose rows hold
    nothing else, cut as `chunk_whole` cuts them; and how many items it holds."""
    node, kind, first, attached = member
    if kind is None:
        raise ValueError("an ERROR node is not an item")
    scopes = [top]
    items: list[tuple[int, int, _Meta]] = []
    frames: list[_Frame] = []
    frame = _Frame(node, prefix, 0, crate=crate_prefix(rel_path))
    _record_item(node, kind, first, attached, frame, source, scopes, items, frames)
    while frames:
        _walk_container(frames.pop(), source, scopes, items, frames)
    return _cut(rel_path, lines, items, scopes, first, _end_row(node)), len(items)


def member_rows(member: Member) -> tuple[int, int]:
    """First and last row of a member with its attached comments."""
    return member[2], _end_row(member[0])


def end_row(node: tree_sitter.Node) -> int:
    """Last row that holds text of ``node`` (see `_end_row`)."""
    return _end_row(node)


def loose_chunks(rel_path: str, lines: list[str], lo: int, hi: int, top: _Scope) -> list[Chunk]:
    """The `code` chunks of rows ``lo..hi``, which hold no item (between two items)."""
    if not any(lines[r].strip() for r in range(lo, hi + 1)):
        return []  # blank lines between two items (and lo > hi: none)
    return _cut(rel_path, lines, [], [top], lo, hi)


def _walk_container(
    frame: _Frame,
    src: bytes,
    scopes: list[_Scope],
    items: list[tuple[int, int, _Meta]],
    frames: list[_Frame],
) -> None:
    """Record the items among ``frame.node``'s children and queue nested containers.

    Only containers are descended into (file, mod/impl/trait bodies, ERROR nodes), each via
    the explicit ``frames`` stack, so deeply nested code cannot exhaust the Python stack.
    """
    members = _members(frame.node.children, bool(frame.owner), src, scopes[frame.scope])
    for child, kind, start, attached in members:
        if kind is None:
            # Recovery leftovers and braced macro calls: items inside are items, the rest
            # stays loose code.
            calls = frame.calls + (child.type != "ERROR")
            if calls <= MAX_MACRO_NESTING:
                frames.append(replace(frame, node=child, calls=calls))
        else:
            _record_item(child, kind, start, attached, frame, src, scopes, items, frames)


Member = tuple[tree_sitter.Node, str | None, int, list[tree_sitter.Node]]


def _members(
    children: Iterable[tree_sitter.Node],
    in_body: bool,
    src: bytes,
    scope: _Scope,
    last_end: int = -1,
) -> Iterator[Member]:
    """A container's children that matter, in order: (item, kind, first row, the comments
    and attributes attached to it) for each item; (node, None, row, []) for each ERROR
    node and each braced macro call's parsed items, whose children are walked as the
    container's. Inner docs go to `scope.docs`.
    `last_end`: last row of the sibling before `children` that is not a comment."""
    pending: list[tree_sitter.Node] = []  # comments/attributes that may belong to next item
    for child in children:
        ctype = child.type
        if ctype in _COMMENTS or ctype == "attribute_item":
            if child.child_by_field_name("inner") is not None:
                # `//!` and `/*! */` document the enclosing module: loose code, not an item.
                scope.docs[child.start_point.row] = _comment_doc_lines(child, src)
                pending.clear()
                last_end = _end_row(child)
            else:
                pending.append(child)
            continue
        kind = None if ctype == "ERROR" else _item_kind(child, in_body)
        if kind is None:
            if ctype == "ERROR":
                yield child, None, child.start_point.row, []
            elif (
                ctype == "macro_invocation" and (inner := invocation_items(child, src)) is not None
            ):
                # The call's own lines (`cfg_rt! {`, `}`) are no part of the code around.
                scope.call_rows.update((child.start_point.row, _end_row(child)))
                yield inner, None, child.start_point.row, []
            pending.clear()
            last_end = _end_row(child)
            continue
        attached = _attached(pending, child.start_point.row, last_end)
        pending.clear()
        last_end = _end_row(child)
        yield (
            child,
            kind,
            attached[0].start_point.row if attached else child.start_point.row,
            attached,
        )


def _item_kind(node: tree_sitter.Node, in_body: bool) -> str | None:
    """Chunk kind of a container child, or None when it is loose code."""
    if in_body:
        # Inside impl/trait bodies only methods with bodies are split out; associated
        # consts/types and required-method signatures stay with the block's own chunk.
        return "method" if node.type == "function_item" else None
    kind = _ITEM_KINDS.get(node.type)
    if kind == "mod" and node.child_by_field_name("body") is None:
        return None  # `mod foo;` is a declaration: loose code of the parent module
    if kind == "fn" and _takes_self(node):
        return "method"  # written in a macro body that is expanded inside an impl
    return kind


def _takes_self(node: tree_sitter.Node) -> bool:
    params = node.child_by_field_name("parameters")
    return params is not None and any(c.type == "self_parameter" for c in params.children)


def _record_item(
    node: tree_sitter.Node,
    kind: str,
    start: int,
    attached: list[tree_sitter.Node],
    frame: _Frame,
    src: bytes,
    scopes: list[_Scope],
    items: list[tuple[int, int, _Meta]],
    frames: list[_Frame],
) -> None:
    """Add the chunk for one item, or turn it into a scope when its members become chunks."""
    end = _end_row(node)
    doc_lines = [line for n in attached for line in _doc_lines(n, src)]
    body = node.child_by_field_name("body")
    if kind == "method":
        name = _field_text(node, "name", src)
        meta = _Meta(
            "::".join((*frame.prefix, frame.owner, name) if frame.owner else (*frame.prefix, name)),
            kind,
            _signature(node, src),
            _finish_doc(doc_lines),
            frame.context,
        )
        items.append((start, end, meta))
        return

    owner = frame.prefix
    if kind == "impl":
        type_node = node.child_by_field_name("type")
        owner, name = impl_owner(type_node, src, frame.prefix, frame.crate)
    else:
        name = _field_text(node, "name", src)
    symbol = _bounded_symbol(owner, name, len(items))
    signature = f"macro_rules! {name}" if kind == "macro" else _signature(node, src)
    meta = _Meta(symbol, kind, signature, _finish_doc(doc_lines))
    if kind == "macro":
        body = _macro_items(node, src)  # the items its rules expand to, parsed in place

    if body is None or not _has_members(body, kind, src):
        items.append((start, end, meta))
        return

    # Container: members become their own chunks; the rest of the block is a scope. A
    # macro's members were parsed on their own: its header is its first line.
    body_row = node.start_point.row if kind == "macro" else body.start_point.row
    scopes.append(_container_scope(node, meta, start, end, body_row, attached, src, len(items)))
    index = len(scopes) - 1
    # The braced macro calls around are counted through the block: a `mod` between two
    # calls must not start the count again (`m! { mod a { m! { mod b { … } } } }` parsed
    # the innermost items once a level, 64 levels deep).
    if kind in ("mod", "macro"):
        frames.append(
            _Frame(body, (*frame.prefix, name), index, calls=frame.calls, crate=frame.crate)
        )
    else:
        frames.append(_Frame(body, owner, index, name, signature, frame.calls, frame.crate))


def _bounded_symbol(prefix: tuple[str, ...], name: str, items_so_far: int) -> str:
    """The item's symbol path, or TooComplex past the chunker's bounds."""
    if len(prefix) >= MAX_NESTING:
        raise TooComplex(f"items nested more than {MAX_NESTING} modules deep")
    if items_so_far >= MAX_CHUNKS_PER_FILE:
        raise TooComplex(f"more than {MAX_CHUNKS_PER_FILE} items")
    symbol = "::".join((*prefix, name))
    if len(symbol) > MAX_SYMBOL_CHARS:
        raise TooComplex(f"a symbol path longer than {MAX_SYMBOL_CHARS} characters")
    return symbol


def _container_scope(
    node: tree_sitter.Node,
    meta: _Meta,
    start: int,
    end: int,
    body_row: int,
    attached: list[tree_sitter.Node],
    src: bytes,
    order: int,
) -> _Scope:
    """The scope of a block whose members are chunks: its header, closing line and
    attributes alone do not make a chunk; its doc comments go with its loose lines."""
    header_rows = set(range(node.start_point.row, body_row + 1))
    header_rows.add(end)
    attr_rows = {
        r
        for n in attached
        if n.type == "attribute_item"
        for r in range(n.start_point.row, _end_row(n) + 1)
    }
    trivial = {end} if meta.kind == "trait" else header_rows | attr_rows
    scope = _Scope(meta, start, end, body_row, order, trivial)
    for n in attached:
        lines = _doc_lines(n, src)
        if lines:
            scope.docs[n.start_point.row] = lines
    return scope


def _has_members(body: tree_sitter.Node, kind: str, src: bytes) -> bool:
    """Whether a block body holds items that become chunks of their own (some may be
    written in a braced macro call there)."""
    if kind in ("impl", "trait"):
        wanted: Iterable[str] = ("function_item",)
    elif kind in ("mod", "macro"):
        wanted = _ITEM_KINDS
    else:
        return False
    return any(
        c.type in wanted or (c.type == "macro_invocation" and invocation_items(c, src) is not None)
        for c in body.children
    )


def _macro_items(node: tree_sitter.Node, src: bytes) -> tree_sitter.Node | None:
    """The items written in a `macro_rules!` body (as `core::num`'s `int_impl!` writes its
    methods), parsed where they stand: only the rules' expansions are parsed (tree-sitter's
    included ranges), with each `$` read as `_` so `$SelfT` parses as an identifier, and
    every node keeps the row and byte offsets it has in the real file. None when the
    expansions hold no item."""
    ranges = tuple(
        (right.start_point, right.end_point, right.start_byte + 1, right.end_byte - 1)
        for rule in node.children
        if rule.type == "macro_rule" and (right := rule.child_by_field_name("right")) is not None
    )
    if not ranges:
        return None
    lo, hi = node.start_byte, node.end_byte
    return _holding(_parse_expansions(lo, src[lo:hi], ranges), _ITEM_KINDS)


def invocation_items(
    node: tree_sitter.Node, src: bytes, uses: bool = False
) -> tree_sitter.Node | None:
    """The items written in a braced macro call at item level (`cfg_rt! { pub struct
    JoinHandle … }` in tokio, `ast_struct! { pub struct ItemFn … }` in syn), parsed where
    they stand as `_macro_items` parses a macro's rules; None when the tokens hold no item
    (a call's arguments, a DSL) nor, with `uses`, a `use` (`cfg_rt! { pub use
    task::spawn; }`: the symbol graph's imports)."""
    tt = next((c for c in node.children if c.type == "token_tree"), None)
    if tt is None or src[tt.start_byte : tt.start_byte + 1] != b"{":
        return None
    ranges: tuple[tuple[Any, ...], ...] = (
        (tt.start_point, tt.end_point, tt.start_byte + 1, tt.end_byte - 1),
    )
    name = node.child_by_field_name("macro")
    if name is not None and src[name.start_byte : name.end_byte].endswith(b"cfg_if"):
        # `cfg_if! { if #[cfg(unix)] { items } else { items } }`: the braced branches.
        ranges = tuple(
            (c.start_point, c.end_point, c.start_byte + 1, c.end_byte - 1)
            for c in tt.children
            if c.type == "token_tree" and src[c.start_byte : c.start_byte + 1] == b"{"
        )
    lo, hi = node.start_byte, node.end_byte
    kinds = _ITEMS_OR_USES if uses else _ITEM_KINDS
    return _holding(_parse_expansions(lo, src[lo:hi], ranges), kinds)


def _holding(root: tree_sitter.Node | None, kinds: Container[str]) -> tree_sitter.Node | None:
    return root if root is not None and any(c.type in kinds for c in root.children) else None


@functools.lru_cache(maxsize=64)
def _parse_expansions(
    lo: int, body: bytes, ranges: tuple[tuple[Any, ...], ...]
) -> tree_sitter.Node | None:
    """The parse of a macro's expansions: a pure function of its bytes and where they
    stand (the parser reads only the included ranges, so the bytes before the macro are
    left zero), kept for the latest macros because the chunker, the symbol graph and its
    struct fields read the same file one after the other."""
    parser = tree_sitter.Parser(_language())
    parser.included_ranges = [tree_sitter.Range(*r) for r in ranges]
    root = parser.parse(bytes(lo) + body.replace(b"$", b"_")).root_node
    return _holding(root, _ITEMS_OR_USES)


def _attached(
    pending: list[tree_sitter.Node], item_row: int, last_end: int
) -> list[tree_sitter.Node]:
    """The trailing comments/attributes in ``pending`` that belong to the item below them.

    Doc comments and attributes always attach; a plain ``//`` comment attaches only when no
    blank line separates it from what follows.  Anything sharing a line with the previous
    sibling is a trailing comment of that sibling and stops the search.
    """
    attached: list[tree_sitter.Node] = []
    next_row = item_row
    for node in reversed(pending):
        if node.start_point.row <= last_end:
            break
        is_doc = node.type == "attribute_item" or node.child_by_field_name("outer") is not None
        if not is_doc and _end_row(node) < next_row - 1:
            break
        attached.append(node)
        next_row = node.start_point.row
    attached.reverse()
    return attached


def _loose_runs(
    lines: list[str], covered: bytearray, scopes: list[_Scope], lo: int = 0
) -> Iterable[tuple[int, int, int, _Meta]]:
    """Contiguous runs of lines outside every item, each attributed to its innermost scope.

    Only rows ``lo .. lo + len(covered) - 1`` are looked at (`covered` is indexed from
    `lo`): a top-level item's rows hold nothing else, so they are cut on their own."""
    n = len(covered)
    owner = [0] * n
    for index, scope in enumerate(scopes[1:], start=1):  # parents precede their children
        first, last = max(scope.first_row - lo, 0), min(scope.last_row - lo, n - 1)
        owner[first : last + 1] = [index] * (last + 1 - first)
    emitted = [False] * len(scopes)
    row = 0
    while row < n:
        if covered[row] or not lines[lo + row].strip():
            row += 1
            continue
        start, current = row, owner[row]
        last_nonblank = row
        while row < n and not covered[row] and owner[row] == current:
            if lines[lo + row].strip():
                last_nonblank = row
            row += 1
        scope = scopes[current]
        first, last = lo + start, lo + last_nonblank
        while first <= last and (first in scope.call_rows or not lines[first].strip()):
            first += 1
        while last >= first and (last in scope.call_rows or not lines[last].strip()):
            last -= 1
        rows = range(first, last + 1)
        if all(r in scope.trivial_rows or not lines[r].strip() for r in rows):
            continue
        emitted[current] = True
        doc = _finish_doc([d for r in rows for d in scope.docs.get(r, ())])
        meta = scope.meta
        yield rows[0], rows[-1], scope.order, _Meta(meta.symbol, meta.kind, meta.signature, doc)
    for index, scope in enumerate(scopes):
        if scope.meta.kind == "trait" and not emitted[index]:
            # Every line is shared with a method (one-line trait): still give it a chunk.
            yield scope.first_row, scope.header_row, scope.order, scope.meta


def _split(
    path: str,
    lines: list[str],
    start: int,
    end: int,
    meta: _Meta,
    budget: int,
    measure: Callable[[str], int],
    overlap: int,
) -> list[Chunk]:
    """Cut rows ``start..end`` into parts of at most ``budget`` (by ``measure``) that overlap
    by lines.

    Keeping parts under the budget keeps them inside the embedding model's window; the
    overlap keeps a statement that straddles a cut findable from both sides.
    """
    body = lines[start : end + 1]
    cost = [measure(line) for line in body]
    sep = measure("\n")

    def make(first: int, last: int, part: int) -> Chunk:
        return Chunk(
            path,
            start + first + 1,
            start + last + 1,
            meta.symbol,
            meta.kind,
            meta.signature,
            meta.doc,
            "\n".join(body[first : last + 1]),
            meta.context,
            part,
        )

    if sum(cost) + sep * (len(body) - 1) <= budget:
        return [make(0, len(body) - 1, 0)]
    parts: list[Chunk] = []
    first, last = 0, -1
    while last < len(body) - 1:
        # Each part must reach a new line; the overlap shrinks when it would not fit with it.
        first = max(first + 1 if parts else 0, last + 1 - overlap)
        size = sum(cost[first : last + 2]) + sep * (last + 1 - first)
        while first <= last and size > budget:
            size -= cost[first] + sep
            first += 1
        last += 1
        while last + 1 < len(body) and size + sep + cost[last + 1] <= budget:
            last += 1
            size += sep + cost[last]
        parts.append(make(first, last, len(parts)))
    return parts


_TOKENISH = re.compile(r"[A-Za-z]+|[0-9]|[^\sA-Za-z0-9]")


def estimate_tokens(text: str) -> int:
    """Word pieces the embedding tokenizer makes of ``text``, within ~5% on Rust code.

    Each punctuation mark and digit is a piece, and a word one piece per six letters;
    measured against all-MiniLM-L6-v2's tokenizer on rust-src ``library/alloc``.
    """
    n = 0
    for m in _TOKENISH.findall(text):
        n += 1 + (len(m) - 1) // 6 if m[0].isalpha() else 1
    return n


def _end_row(node: tree_sitter.Node) -> int:
    """Last row that holds text of ``node`` (line comments end at column 0 of the next row)."""
    end = node.end_point
    if end.column == 0 and end.row > node.start_point.row:
        return end.row - 1
    return end.row


def _field_text(node: tree_sitter.Node, name: str, src: bytes) -> str:
    child = node.child_by_field_name(name)
    return node_text(child, src) if child is not None else "?"


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _signature(node: tree_sitter.Node, src: bytes) -> str:
    """The item's header on one line: its text up to the body ``{`` (or ``=``/``;``)."""
    end = node.end_byte
    stop = node.child_by_field_name("body")
    if stop is not None and stop.type == "ordered_field_declaration_list":
        stop = None  # tuple struct: the fields are the signature
    if stop is None and node.type in ("const_item", "static_item"):
        stop = node.child_by_field_name("value")
    if stop is not None:
        end = stop.start_byte
    text = _collapse(src[node.start_byte : end].decode("utf-8", "replace"))
    # Undo the padding left by multi-line parameter lists: `f( a: u8, )` -> `f(a: u8)`.
    text = _OPEN_PAD.sub(r"\1", text)
    text = _CLOSE_PAD.sub(r"\1", text).rstrip(" ;={,")
    return text if len(text) <= _MAX_SIGNATURE else text[: _MAX_SIGNATURE - 1] + "…"


def impl_owner(
    node: tree_sitter.Node | None, src: bytes, prefix: tuple[str, ...], crate: tuple[str, ...]
) -> tuple[tuple[str, ...], str]:
    """The module an impl's self type lives in and the type's name: the module written
    in (`prefix`) for a bare name; the crate's root for `impl crate::Socket` (socket2
    writes its platform impls in `sys/unix.rs`: they were `sys::unix::Socket::*`, beside
    that module's own `type Socket = c_int`), and `self::`/`super::` from `prefix`."""
    if node is None:
        return prefix, "impl"
    name = _type_name(node, src)
    while node.type in ("generic_type", "reference_type", "pointer_type"):
        inner = node.child_by_field_name("type")
        if inner is None:
            break
        node = inner
    if node.type != "scoped_type_identifier" or name == "impl":
        return prefix, name
    segs = path_segments(node_text(node, src))
    ups = 0
    while ups < len(segs) and segs[ups] == "super":
        ups += 1
    if segs[:1] == ("crate",):
        return (*crate, *segs[1:-1]), name
    if segs[:1] == ("self",):
        return (*prefix, *segs[1:-1]), name
    if ups:
        return (*prefix[: max(len(prefix) - ups, 0)], *segs[ups:-1]), name
    return prefix, name


def _type_name(node: tree_sitter.Node, src: bytes) -> str:
    """Self type of an impl without generics, references or paths: ``&'a mut Foo<T>`` -> Foo."""
    fields = {
        "generic_type": "type",
        "reference_type": "type",
        "pointer_type": "type",
        "dynamic_type": "trait",
        "scoped_type_identifier": "name",
    }
    for _ in range(64):  # bounded: types nest, but never this deep in practice
        name = fields.get(node.type)
        nxt = node.child_by_field_name(name) if name else None
        if nxt is None:
            break
        node = nxt
    text = _collapse(node_text(node, src))
    if any(mark in text for mark in _NOT_A_TYPE):
        return "impl"
    return text if len(text) <= MAX_TYPE_CHARS else text[: MAX_TYPE_CHARS - 1] + "…"


def _doc_lines(node: tree_sitter.Node, src: bytes) -> list[str]:
    """Raw doc lines of an outer doc comment or ``#[doc = "..."]``; [] for anything else."""
    if node.type == "attribute_item":
        return _doc_attr_lines(node, src)
    if node.child_by_field_name("outer") is None:
        return []
    return _comment_doc_lines(node, src)


def _comment_doc_lines(node: tree_sitter.Node, src: bytes) -> list[str]:
    """Doc text lines of a doc comment, with ``///``/``/** */`` markers and ``*`` gutters."""
    doc = node.child_by_field_name("doc")
    if doc is None:
        return [""]
    text = node_text(doc, src)
    if node.type == "line_comment":
        return [_drop_space(text.rstrip("\n"))]
    out = []
    for line in text.split("\n"):
        stripped = line.lstrip()
        out.append(_drop_space(stripped[1:]) if stripped.startswith("*") else line)
    return out


def _drop_space(line: str) -> str:
    """Remove the one space conventionally written after ``///`` or a ``*`` gutter."""
    return line[1:] if line.startswith(" ") else line


def _doc_attr_lines(node: tree_sitter.Node, src: bytes) -> list[str]:
    attr = next((c for c in node.named_children if c.type == "attribute"), None)
    if attr is None or not attr.named_children or node_text(attr.named_children[0], src) != "doc":
        return []
    value = attr.child_by_field_name("value")
    if value is None or value.type not in ("string_literal", "raw_string_literal"):
        return []
    pieces = []
    for part in value.named_children:
        if part.type == "string_content":
            pieces.append(node_text(part, src))
        elif part.type == "escape_sequence":
            esc = node_text(part, src)
            pieces.append(_ESCAPES.get(esc[1:], esc))
    return "".join(pieces).split("\n")


def _finish_doc(lines: list[str]) -> str:
    """Join doc lines, removing their common indentation and surrounding blank lines."""
    if not lines:
        return ""
    return textwrap.dedent("\n".join(line.rstrip() for line in lines)).strip("\n")
