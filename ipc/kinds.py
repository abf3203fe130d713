"""The one table of chunk kinds: what the chunker emits, what `search --kind` accepts
(protocol, CLI choices, MCP docs) and which kinds are containers whose members are
chunks of their own (the search widens a member's hit to its item, never to those).

Kept in the light `ipc` package: the CLI offers the names without loading the daemon.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ChunkKind:
    name: str
    #: The tree-sitter-rust node that makes an item of this kind; None when the kind
    #: comes from context (a fn inside an impl or trait) or from loose code.
    node: str | None
    #: Its chunk holds the loose lines of a block whose members are chunks of their own.
    container: bool
    help: str


CHUNK_KINDS: tuple[ChunkKind, ...] = (
    ChunkKind("fn", "function_item", False, "a free function"),
    ChunkKind("method", None, False, "a function in an impl or trait"),
    ChunkKind("struct", "struct_item", False, "a struct"),
    ChunkKind("enum", "enum_item", False, "an enum"),
    ChunkKind("union", "union_item", False, "a union"),
    ChunkKind("trait", "trait_item", True, "a trait (its methods are chunks of their own)"),
    ChunkKind("impl", "impl_item", True, "an impl block (its methods are chunks of their own)"),
    ChunkKind("type", "type_item", False, "a type alias"),
    ChunkKind("const", "const_item", False, "a const"),
    ChunkKind("static", "static_item", False, "a static"),
    ChunkKind("macro", "macro_definition", False, "a macro_rules! definition"),
    ChunkKind("mod", "mod_item", True, "an inline module (its items are chunks of their own)"),
    ChunkKind("code", None, True, "module-level code between items"),
)

KINDS: tuple[str, ...] = tuple(k.name for k in CHUNK_KINDS)
#: tree-sitter node type -> kind, for items that become chunks.
NODE_KINDS: dict[str, str] = {k.node: k.name for k in CHUNK_KINDS if k.node is not None}
CONTAINER_KINDS: frozenset[str] = frozenset(k.name for k in CHUNK_KINDS if k.container)
#: Kinds whose chunk of a few lines is a fragment, not an answer: an `impl … {` header
#: with its associated types, a `const`, a type alias, a stray line of loose code. A
#: short fn or method is a whole answer (a delegation, an accessor). Search weighs such
#: hits down; the embedder shares one vector among neighbouring ones.
FRAGMENT_KINDS: frozenset[str] = frozenset(
    {"impl", "trait", "const", "static", "type", "code", "mod"}
)
