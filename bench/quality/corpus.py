"""The evaluation corpus: a doc-blanked copy of a rust-src `library/` subset, and the
doc-comment query set drawn from the original.

Queries are the first sentence of a public item's doc comment; the indexed copy has every
`///` and `//!` line blanked (line numbers kept), so the query text cannot be found
lexically and the ranking has to come from the code itself.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from daemon.chunker import chunk_source

LIBRARY = Path("/usr/lib/rustlib/src/rust/library")
#: The subset indexed. All of `library/` is ~30k chunks, too slow to embed twice on 2
#: cores; this is ~5,900 rcmd chunks: all of `alloc/src` plus the parts of `std` that
#: the hand-written questions ask about (collections, io, sync, thread, fs, path, env,
#: process).
SUBSET = (
    "alloc/src",
    "std/src/collections",
    "std/src/io",
    "std/src/sync",
    "std/src/thread",
    "std/src/fs.rs",
    "std/src/path.rs",
    "std/src/env.rs",
    "std/src/process.rs",
)
_DOC_LINE = re.compile(rb"^[ \t]*//[/!].*$", re.M)
_PUBLIC = re.compile(r"pub\s")  # `pub(crate)` and friends are not public
_QUERY_KINDS = frozenset(
    {"fn", "method", "struct", "enum", "union", "trait", "type", "const", "static"}
)


@dataclass(frozen=True, slots=True)
class Item:
    """A public item: where it is, and the line of its declaration (after docs/attrs)."""

    path: str
    symbol: str
    kind: str
    decl_line: int
    end_line: int

    @property
    def name(self) -> str:
        return self.symbol.rsplit("::", 1)[-1]

    def owner_name(self) -> str:
        """`Type::method` for methods, the bare name for everything else."""
        parts = self.symbol.split("::")
        return "::".join(parts[-2:]) if self.kind == "method" and len(parts) > 1 else parts[-1]


@dataclass(frozen=True, slots=True)
class DocQuery:
    query: str
    item: Item
    split: str  # "dev" or "test"

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def subset_files(library: Path = LIBRARY) -> list[Path]:
    """Every `.rs` file of the subset, sorted."""
    out: list[Path] = []
    for entry in SUBSET:
        p = library / entry
        out.extend([p] if p.is_file() else sorted(p.rglob("*.rs")))
    return sorted(out)


def blank_docs(source: bytes) -> bytes:
    """Every `///` and `//!` line made empty; the line count is unchanged."""
    return _DOC_LINE.sub(b"", source)


def build_corpus(dest: Path, library: Path = LIBRARY, *, blank: bool = True) -> Path:
    """Write the subset under `dest/library`, doc comments blanked, or with `blank=False`
    as it is under `dest/real/library` (idempotent); return that root."""
    base = dest if blank else dest / "real"
    root = base / "library"
    stamp = base / "corpus.ok"
    if stamp.exists() and root.is_dir():
        return root
    shutil.rmtree(root, ignore_errors=True)
    for f in subset_files(library):
        out = root / f.relative_to(library)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(blank_docs(f.read_bytes()) if blank else f.read_bytes())
    stamp.write_text("\n".join(SUBSET) + "\n")
    return root


def decl_line(lines: list[str], start: int, end: int) -> int:
    """1-based line of an item's declaration: the first line from `start` that is not a
    doc/plain comment, blank, or part of an attribute (attributes may span lines)."""
    depth = 0
    for n in range(start, end + 1):
        s = lines[n - 1].strip()
        if depth > 0:
            depth += s.count("[") - s.count("]")
            continue
        if not s or s.startswith("//"):
            continue
        if s.startswith("#["):
            depth = s.count("[") - s.count("]")
            continue
        return n
    return start


_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")  # [text](url)
_REF = re.compile(r"\[([^\]]*)\]\[[^\]]*\]")  # [text][ref]
_BRACKET = re.compile(r"\[([^\]]*)\]")  # [`Foo`]
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def first_sentence(doc: str) -> str:
    """The doc's first sentence with markdown links, code marks and emphasis removed."""
    para: list[str] = []
    for line in doc.splitlines():
        s = line.strip()
        if not s:
            if para:
                break
            continue
        if s.startswith(("#", "```", "<")):
            break
        para.append(s)
    text = " ".join(para)
    text = _LINK.sub(r"\1", text)
    text = _REF.sub(r"\1", text)
    text = _BRACKET.sub(r"\1", text)
    text = text.replace("`", "").replace("**", "").replace("*", "")
    text = _SENTENCE_END.split(text, maxsplit=1)[0].strip()
    return " ".join(text.split())


def mentions_name(sentence: str, name: str) -> bool:
    """Whether the sentence names the item: the identifier, inflected too when it is at
    least three letters long (`push` in "Pushes", `len` in "length"), or its words in
    order (`with_capacity` in "with capacity")."""
    low = sentence.lower()
    tail = r"\w*" if len(name) >= 3 else r"\b"
    if re.search(rf"\b{re.escape(name.lower())}{tail}", low):
        return True
    words = [w for w in re.split(r"_|(?<=[a-z])(?=[A-Z])", name) if w]
    if len(words) > 1:
        phrase = r"\W+".join(re.escape(w.lower()) for w in words)
        return re.search(rf"\b{phrase}\b", low) is not None
    return False


def split_of(path: str) -> str:
    """dev or test, fixed per file so no file contributes to both halves."""
    return "dev" if hashlib.sha1(path.encode()).digest()[0] % 2 == 0 else "test"


def public_items(library: Path = LIBRARY) -> list[tuple[Item, str]]:
    """(item, its doc comment) for every public item of the subset, from the original."""
    out: list[tuple[Item, str]] = []
    for f in subset_files(library):
        rel = f.relative_to(library).as_posix()
        src = f.read_bytes()
        lines = src.decode("utf-8", "replace").split("\n")
        chunks = chunk_source(rel, src)
        for i, c in enumerate(chunks):
            if c.part != 0 or c.kind not in _QUERY_KINDS or not _PUBLIC.match(c.signature):
                continue
            # A long doc comment can fill part 0 alone: the item ends with its last part.
            end = c.end_line
            for nxt in chunks[i + 1 :]:
                if nxt.part == 0:
                    break
                end = nxt.end_line
            d = decl_line(lines, c.start_line, end)
            out.append((Item(rel, c.symbol, c.kind, d, end), c.doc))
    return out


def doc_queries(library: Path = LIBRARY) -> list[DocQuery]:
    """The doc-comment set: one query per public item whose first doc sentence is at least
    four words, does not name the item (see `mentions_name`), and is not shared with
    another item."""
    candidates: list[tuple[str, Item]] = []
    for item, doc in public_items(library):
        if not doc:
            continue
        sentence = first_sentence(doc)
        if len(sentence.split()) < 4 or mentions_name(sentence, item.name):
            continue
        candidates.append((sentence, item))
    counts = Counter(s.lower() for s, _ in candidates)
    return [
        DocQuery(s, item, split_of(item.path)) for s, item in candidates if counts[s.lower()] == 1
    ]
