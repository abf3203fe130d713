"""One parse of a file's bytes for both of its readers: the chunker and the symbol graph
read the same normalised bytes one after the other, so the second gets the tree the
first made instead of parsing again (the parse is the largest part of either)."""

from __future__ import annotations

import functools
import threading

import tree_sitter
import tree_sitter_rust

_lock = threading.Lock()
_last: tuple[bytes, tree_sitter.Tree] | None = None


@functools.lru_cache(maxsize=1)
def rust_language() -> tree_sitter.Language:
    return tree_sitter.Language(tree_sitter_rust.language())


def parse_rust(source: bytes) -> tree_sitter.Tree:
    """The tree of `source`, reusing the last one made when the bytes are the same
    (trees are immutable, so sharing one is safe)."""
    global _last
    with _lock:
        last = _last
    if last is not None and last[0] == source:
        return last[1]
    tree = tree_sitter.Parser(rust_language()).parse(source)
    with _lock:
        _last = (source, tree)
    return tree


def forget_last_tree() -> None:
    """Drop the tree kept for the next reader: an idle daemon has none, and the tree of
    a 1 MB file costs ~70 MB."""
    global _last
    with _lock:
        _last = None


def node_text(node: tree_sitter.Node, src: bytes) -> str:
    """The source text of `node` in `src` (bytes that are not UTF-8 replaced)."""
    return src[node.start_byte : node.end_byte].decode("utf-8", "replace")
