"""Labels for `bench.navigation`, found by text alone (no tree-sitter), so the graph is
judged against something that cannot share its mistakes.

Every rule runs on a *code view* of each file: comments (line, block, nested, doc),
string/char literals (raw and byte ones too) and attributes are blanked to spaces, line
and column kept, so a doc test or a `"push"` never counts. A name's word is matched with
`$` and `'` not before it (macro metavariables, lifetimes). Per query kind, a line is:

- `def`: an item keyword then the name (`fn|struct|enum|union|trait|type|const|static|
  mod NAME`, `macro_rules! NAME`; a const or static with its `:`, not a const generic),
  an enum body's variant, or line 1 of a file that is module NAME (`NAME.rs`,
  `NAME/mod.rs`; not a crate's `src/lib.rs` or `src/main.rs`), as the protocol defines a
  module. Items inside fn bodies and macro bodies count.
- `callers`: a call `NAME(`, `.NAME(`, `NAME::<..>(`, a macro call `NAME!(`, or a fn
  named by a path as a value (`map(Self::NAME)`); not `fn NAME(` itself, not a `use`.
- `refs`: every use of the name as code: each word occurrence except the definition's
  own name and a field access (`.NAME` without a call); a path's qualifier counts
  (`Foo::new()` and `use foo::Bar` use `Foo` and `foo`). A lower-case name that names no
  type (`c_char` does) also needs a code shape (call, macro, a path segment `NAME::` or
  `::NAME`, a `use` declaration): a bare lower-case word is as often a local, field or
  parameter of that name, which text cannot tell from the item (so a fn passed bare,
  `map(f)`, is not labelled).
- `callees` of a fn (one definition): inside its body (brace matched, nested fn items cut
  out, closures kept), `(line, callee)` for each `NAME(`, `.NAME(`, `path::NAME(`, `NAME!`
  and lower-case path value (`map(mem::drop)`, not in a type: `x: libc::c_int`); control
  keywords are not calls, and an upper-case callee (`Some(x)`, `Ok(..)`, `Wrapper(x)`)
  is a constructor, not a call.
- `impls`: the line holding `impl` of each `impl<..> [path::]TRAIT[<..>] for TYPE` whose
  trait's or type's last segment (type: `&`, `mut`, pointers stripped, the outer path) is
  the name, the header read across lines up to `where`/`{`; a trait's impls for a type
  that is no path (`[u8]`, `()`, `(A, B)`) count; inherent impls have no trait.

`rg -w NAME` is a line of the raw file holding the word (comments included), as rg sees it.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

Loc = tuple[str, int]  # (path relative to the corpus, 1-based line)
Call = tuple[str, int, str]  # (path, line, callee's last segment)

_ITEM_KW = "fn|struct|enum|union|trait|type|const|static|mod"
_ANY_DEF = re.compile(
    rf"(?<![\w$'*])(?:({_ITEM_KW})\s+(?:mut\s+)?|(macro_rules)!\s*)"
    r"(?!(?:fn|unsafe|extern|async|const)\b)([A-Za-z_]\w*)"
)
_LEX = re.compile(
    r"""//[^\n]*|/\*|(?<!\w)b?r(\#*)"|b?"(?:\\.|[^"\\])*"|"""
    r"""(?<!\w)b?'(?:\\(?:u\{[0-9a-fA-F]{1,6}\}|x[0-9a-fA-F]{2}|.)|[^\\'\n])'""",
    re.S,
)
_USE = re.compile(r"^[ \t]*(?:pub(?:\s*\([^)]*\))?\s+)?use\b", re.M)
_KEYWORDS = frozenset(
    re.findall(
        r"\w+",
        "if while match return for in loop as let mut ref move fn impl where unsafe async "
        "await dyn else break continue yield box static const type use pub crate super self "
        "Self extern mod struct enum trait union",
    )
)
_CALLEE = re.compile(r"(?<![\w$])([A-Za-z_]\w*)\s*(?:::\s*<[^;{}]*?>\s*)?(\(|!\s*[(\[{])")
_PATH_VALUE = re.compile(r"(?<![\w$])(?:[A-Za-z_]\w*\s*::\s*)+([a-z_]\w*)\b(?!\s*(?:::|[(!{<]))")
_BRACKETS = re.compile(r"[{}()\[\];]")
_IMPL = re.compile(r"(?<![\w$])impl\b")
_GENERICS = re.compile(r"(?<![\w$])(?:impl|(?:fn|struct|enum|union|trait|type)\s+[A-Za-z_]\w*)\s*<")


def code_view(text: str) -> str:
    """The text with comments, literals and attributes blanked (newlines kept)."""
    parts: list[str] = []
    pos = 0
    for start, end in _literal_spans(text):
        parts.append(text[pos:start])
        parts.append(_blank(text[start:end]))
        pos = end
    parts.append(text[pos:])
    code = "".join(parts)
    return _blank_attributes(code)


def _blank(s: str) -> str:
    return re.sub(r"[^\n]", " ", s)


def _literal_spans(text: str) -> Iterator[tuple[int, int]]:
    pos = 0
    while (m := _LEX.search(text, pos)) is not None:
        start, tok = m.start(), m.group(0)
        if tok == "/*":
            end = _block_comment_end(text, start)
        elif m.group(1) is not None:  # raw string: ends at `"` and as many `#`
            close = text.find('"' + m.group(1), m.end())
            end = len(text) if close < 0 else close + 1 + len(m.group(1))
        else:
            end = m.end()
        yield start, end
        pos = end


def _block_comment_end(text: str, start: int) -> int:
    """Block comments nest in Rust."""
    depth = 0
    for m in re.compile(r"/\*|\*/").finditer(text, start):
        depth += 1 if m.group(0) == "/*" else -1
        if depth == 0:
            return m.end()
    return len(text)


def _blank_attributes(code: str) -> str:
    parts: list[str] = []
    pos = 0
    for m in re.finditer(r"#!?\[", code):
        if m.start() < pos:
            continue  # inside an attribute already blanked
        end = matching(code, m.end() - 1, "[", "]")
        parts += [code[pos : m.start()], _blank(code[m.start() : end])]
        pos = end
    parts.append(code[pos:])
    return "".join(parts)


def matching(code: str, open_at: int, opener: str, closer: str) -> int:
    """The offset just past the bracket that closes the one at `open_at`."""
    depth = 0
    for i in range(open_at, len(code)):
        c = code[i]
        if c == opener:
            depth += 1
        elif c == closer:
            depth -= 1
            if depth == 0:
                return i + 1
    return len(code)


@dataclass(frozen=True, slots=True)
class Definition:
    path: str
    line: int
    keyword: str  # fn, struct, ..., macro_rules, variant, file (a module's file)
    offset: int  # of the name in the file's code view


@dataclass
class Corpus:
    """A corpus's files as rg and as the labels see them, with word indexes."""

    raw: dict[str, list[str]]
    code: dict[str, str]
    lines: dict[str, list[str]] = field(default_factory=dict)
    starts: dict[str, list[int]] = field(default_factory=dict)
    raw_words: dict[str, set[Loc]] = field(default_factory=lambda: defaultdict(set))
    words: dict[str, set[Loc]] = field(default_factory=lambda: defaultdict(set))
    uses: set[Loc] = field(default_factory=set)
    defs: dict[str, list[Definition]] = field(default_factory=lambda: defaultdict(list))
    #: (path, line of `impl`, last segments of its trait and type) of each trait impl.
    impls: list[tuple[str, int, tuple[str, ...]]] = field(default_factory=list)
    #: Names some item declares as a type parameter (`impl<T>`, `fn f<I>`).
    generics: set[str] = field(default_factory=set)


def load(texts: dict[str, str]) -> Corpus:
    """Index a corpus given as {relative path: text}."""
    corpus = Corpus({p: t.split("\n") for p, t in texts.items()}, {})
    for path, text in texts.items():
        code = corpus.code[path] = code_view(text)
        corpus.lines[path] = lines = code.split("\n")
        starts, pos = [], 0
        for line in lines:
            starts.append(pos)
            pos += len(line) + 1
        corpus.starts[path] = starts
        for i, line in enumerate(corpus.raw[path], 1):
            for w in set(re.findall(r"\w+", line)):
                corpus.raw_words[w].add((path, i))
        for i, line in enumerate(lines, 1):
            for w in set(re.findall(r"\w+", line)):
                corpus.words[w].add((path, i))
        _index_items(corpus, path, code, starts)
    return corpus


def _index_items(corpus: Corpus, path: str, code: str, starts: list[int]) -> None:
    """A file's `use` lines, definitions, trait impls and type parameters."""
    for m in _USE.finditer(code):
        end = code.find(";", m.end())
        first, last = _line_of(starts, m.start()), _line_of(starts, end)
        corpus.uses.update((path, n) for n in range(first, last + 1))
    for name, d in _definitions(path, code, starts):
        corpus.defs[name].append(d)
    for m in _IMPL.finditer(code):
        sides = impl_sides(_header(code, m.end())) if _is_item(code, m.start()) else ()
        if sides:
            corpus.impls.append((path, _line_of(starts, m.start()), sides))
    for m in _GENERICS.finditer(code):
        params = code[m.end() - 1 : m.end() - 1 + _closing_angle(code[m.end() - 1 :][:2000])]
        corpus.generics.update(_type_params(params))


def _type_params(params: str) -> Iterator[str]:
    """The names a `<..>` list declares: the first word after `<` or `,` at its depth
    (`<'a, T: Into<U>, const N: usize>` -> T, N)."""
    depth, expect = 0, False
    for tok in re.finditer(r"->|[<>()\[\],]|'?\w+", params):
        t = tok.group(0)
        if t in ("<", "(", "["):
            depth += 1
            expect = depth == 1
        elif t in (">", ")", "]"):
            depth -= 1
        elif t == ",":
            expect = depth == 1
        elif expect and t != "const":
            expect = False
            if not t.startswith("'"):
                yield t


def _line_of(starts: list[int], offset: int) -> int:
    lo, hi = 0, len(starts)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if starts[mid] <= offset:
            lo = mid
        else:
            hi = mid
    return lo + 1


def _definitions(path: str, code: str, starts: list[int]) -> Iterator[tuple[str, Definition]]:
    for m in _ANY_DEF.finditer(code):
        keyword, name = m.group(1) or m.group(2), m.group(3)
        if name == "_" or (keyword == "const" and _in_generics(code, m.start())):
            continue
        if keyword in ("const", "static") and not re.match(r"\s*:", code[m.end() : m.end() + 50]):
            continue  # a const or static item has a type: `impl const Trait for X` is none
        yield name, Definition(path, _line_of(starts, m.start(3)), keyword, m.start(3))
        if keyword == "enum":
            yield from _variants(path, code, starts, m.end())
    module = _module_of(path)
    if module:
        yield module, Definition(path, 1, "file", -1)


def _in_generics(code: str, at: int) -> bool:
    """`<const N: usize>` declares a parameter, not an item."""
    before = code[max(0, at - 200) : at].rstrip()
    return before.endswith(("<", ","))


def _variants(
    path: str, code: str, starts: list[int], after: int
) -> Iterator[tuple[str, Definition]]:
    """The variants of the enum whose name ends at `after`: the first name at depth 1
    after `{` or `,` (tuple and struct variants' insides are deeper)."""
    m = re.compile(r"[{;]").search(code, after)
    if m is None or m.group(0) != "{":
        return
    end = matching(code, m.start(), "{", "}")
    depth, expect = 0, True
    for tok in re.finditer(r"[{}()\[\],=]|[A-Za-z_]\w*", code[m.start() : end]):
        t = tok.group(0)
        if t in "{([":
            depth += 1
        elif t in "})]":
            depth -= 1
        elif depth == 1 and t == ",":
            expect = True
        elif depth == 1 and t == "=":
            expect = False
        elif depth == 1 and expect:
            at = m.start() + tok.start()
            yield t, Definition(path, _line_of(starts, at), "variant", at)
            expect = False


def _module_of(path: str) -> str:
    """The module a file is the body of (`a/b.rs`, `a/b/mod.rs` -> b); "" for a crate
    root (`src/lib.rs`, `src/main.rs`)."""
    parts = path.split("/")
    stem = parts[-1].removesuffix(".rs")
    if stem == "mod":
        return parts[-2] if len(parts) > 1 else ""
    if stem in ("lib", "main") and len(parts) > 1 and parts[-2] == "src":
        return ""
    return stem


def word(name: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w$']){re.escape(name)}(?!\w)")


def rg(corpus: Corpus, name: str) -> set[Loc]:
    """`rg -w NAME`: every raw line holding the word, comments and strings included."""
    return set(corpus.raw_words.get(name, ()))


def definitions(corpus: Corpus, name: str) -> set[Loc]:
    return {(d.path, d.line) for d in corpus.defs.get(name, ())}


def is_unique(corpus: Corpus, name: str, foreign: frozenset[str]) -> bool:
    """Defined once in the corpus (a module's file and its `mod` line are one item; so are
    `#[cfg]` alternatives in one file) and by none of its dependencies: text cannot tell
    whose item a use of a name defined twice is, so those are the `common` names."""
    if name in foreign:
        return False
    defs = corpus.defs.get(name, [])
    items = [d for d in defs if d.keyword != "file"] or defs
    if len(items) <= 1:
        return True
    if len({(d.path, d.keyword) for d in items}) > 1:
        return False
    raw = corpus.raw[items[0].path]
    return all(_under_cfg(raw, d.line) for d in items)


def _under_cfg(raw: list[str], line: int) -> bool:
    """Whether the attributes just above a definition (up to the previous item's end)
    hold a `#[cfg`."""
    if "#[cfg" in raw[line - 1]:
        return True
    for above in reversed(raw[max(0, line - 7) : line - 1]):
        text = above.strip()
        if not text or text.endswith((";", "{", "}")):
            return False
        if "#[cfg" in text:
            return True
    return False


def _occurrences(corpus: Corpus, name: str) -> Iterator[tuple[str, int, str, re.Match[str]]]:
    """(path, line, code line, match) of each word occurrence that is not a definition's
    own name."""
    pattern = word(name)
    own = {(d.path, d.offset) for d in corpus.defs.get(name, ())}
    for path, n in sorted(corpus.words.get(name, ())):
        line = corpus.lines[path][n - 1]
        base = corpus.starts[path][n - 1]
        for m in pattern.finditer(line):
            if (path, base + m.start()) not in own:
                yield path, n, line, m


def _is_call(after: str) -> bool:
    return re.match(r"\s*(?:::\s*<[^;{}]*?>\s*)?(?:\(|!\s*[(\[{])", after) is not None


def _is_path_value(before: str, after: str) -> bool:
    """`::NAME` ending a path used as a value (not a call, not a prefix of a longer path)."""
    return before.rstrip().endswith("::") and re.match(r"\s*(?:::|[(!{<])", after) is None


def callers(corpus: Corpus, name: str) -> set[Loc]:
    out: set[Loc] = set()
    lower = not name[:1].isupper()
    for path, n, line, m in _occurrences(corpus, name):
        before, after = line[: m.start()], line[m.end() :]
        called = _is_call(after) and not re.search(r"\bfn\s*$", before)
        named = lower and (path, n) not in corpus.uses and _is_path_value(before, after)
        if called or named:
            out.add((path, n))
    return out


def refs(corpus: Corpus, name: str) -> set[Loc]:
    out: set[Loc] = set()
    types = {"struct", "enum", "union", "trait", "type"}
    lower = not name[:1].isupper() and not types & {d.keyword for d in corpus.defs[name]}
    for path, n, line, m in _occurrences(corpus, name):
        before, after = line[: m.start()], line[m.end() :]
        b = before.rstrip()
        if b.endswith(".") and not b.endswith("..") and not _is_call(after):
            continue  # a field of that name
        shaped = (
            _is_call(after)
            or b.endswith("::")
            or re.match(r"\s*::", after) is not None
            or (path, n) in corpus.uses
        )
        if lower and not shaped:
            continue  # a local, parameter or field of that name, as likely as the item
        out.add((path, n))
    return out


def fn_body(code: str, name_at: int) -> tuple[int, int] | None:
    """The `{..}` span of the fn whose name starts at `name_at`; None for a declaration
    (`fn f();`). Parentheses and brackets are skipped (`[u8; 4]` in a signature)."""
    depth = 0
    for m in _BRACKETS.finditer(code, name_at):
        c = m.group(0)
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif depth == 0 and c == ";":
            return None
        elif depth == 0 and c == "{":
            return m.start(), matching(code, m.start(), "{", "}")
    return None


def _nested_fns(code: str, start: int, end: int) -> list[tuple[int, int]]:
    """Spans of the fn items written inside a body: their calls are their own."""
    spans: list[tuple[int, int]] = []
    for m in re.compile(r"(?<![\w$])fn\s+([A-Za-z_]\w*)").finditer(code, start, end):
        if spans and m.start() < spans[-1][1]:
            continue
        body = fn_body(code, m.start(1))
        if body is not None:
            spans.append((m.start(), body[1]))
    return spans


def _type_position(before: str) -> bool:
    """A path after `:`, `->`, `as`, `&`, `<`, `*const`/`*mut` or `dyn`/`impl` is a type
    (`libc::c_int`), not a fn named as a value."""
    b = before.rstrip()
    if b.endswith(("->", "&", "<")) or (b.endswith(":") and not b.endswith("::")):
        return True
    return re.search(r"\b(?:as|const|mut|dyn|impl)$", b) is not None


def callees(corpus: Corpus, d: Definition) -> set[Call] | None:
    """What the fn defined at `d` calls, by (path, line, callee); None without a body."""
    code, starts = corpus.code[d.path], corpus.starts[d.path]
    body = fn_body(code, d.offset)
    if body is None:
        return None
    start, end = body
    cut = _nested_fns(code, start + 1, end - 1)
    out: set[Call] = set()

    def keep(at: int) -> bool:
        return not any(a <= at < b for a, b in cut)

    for m in _CALLEE.finditer(code, start, end):
        callee, macro = m.group(1), m.group(2).startswith("!")
        if callee in _KEYWORDS or callee == "macro_rules" or not keep(m.start()):
            continue
        if callee[:1].isupper() and not macro:
            continue  # a tuple struct or variant built, not a fn called
        out.add((d.path, _line_of(starts, m.start(1)), callee))
    for m in _PATH_VALUE.finditer(code, start, end):
        line = _line_of(starts, m.start(1))
        if (d.path, line) in corpus.uses or not keep(m.start()) or m.group(1) in _KEYWORDS:
            continue
        if not _type_position(code[max(0, m.start() - 40) : m.start()]):
            out.add((d.path, line, m.group(1)))
    return out


def impls(corpus: Corpus, name: str) -> set[Loc]:
    """Lines of the `impl Trait for Type` items whose trait or type is `name`."""
    return {(path, line) for path, line, sides in corpus.impls if name in sides}


def _is_item(code: str, at: int) -> bool:
    """`impl` starting an item (after `;`, `{`, `}`, a macro's `$(` or `=> (`, or
    nothing), not `impl Trait` in a type (`-> impl Iterator`, `f: impl Fn()`)."""
    before = re.sub(r"(?:\b(?:unsafe|default)\s*)+$", "", code[max(0, at - 2000) : at].rstrip())
    before = before.rstrip()
    if before.endswith("(") and before[:-1].rstrip().endswith(("=>", "$")):
        return True
    return before == "" or before.endswith(("{", "}", ";"))


def _header(code: str, at: int) -> str:
    """An impl's header from after `impl` to its body, without its `where` clause."""
    m = re.compile(r"[{;]").search(code, at)
    end = m.start() if m is not None else len(code)
    return re.split(r"\bwhere\b", " ".join(code[at:end].split()))[0]


def impl_sides(header: str) -> tuple[str, ...]:
    """The last segments of an impl header's trait and type (`<T> fmt::Debug for &Foo<T>`
    -> Debug, Foo); () for an inherent impl (no trait)."""
    s = header.strip()
    if s.startswith("<"):
        s = s[_closing_angle(s) :]
    depth = 0
    for tok in re.finditer(r"->|[<(\[]|[>)\]]|\bfor\b(?!\s*<)", s):
        t = tok.group(0)
        if t == "->":
            continue
        if t in "<([":
            depth += 1
        elif t in ">)]":
            depth -= 1
        elif depth == 0:
            trait = _last_segment(re.sub(r"^(?:[\s!?]|const\b)*", "", s[: tok.start()]))
            ty = re.sub(r"^(?:\s|&|'\w+|\bmut\b|\*\s*(?:const|mut)\b)*", "", s[tok.end() :])
            own = "" if re.match(r"(?:dyn\b|fn\b|[(\[<])", ty) else _last_segment(ty)
            return tuple(x for x in (trait, own) if x)
    return ()


def _closing_angle(s: str) -> int:
    depth = 0
    for tok in re.finditer(r"->|<|>", s):
        if tok.group(0) == "<":
            depth += 1
        elif tok.group(0) == ">":
            depth -= 1
            if depth == 0:
                return tok.end()
    return len(s)


def _last_segment(path: str) -> str:
    m = re.match(r"\s*(?:::)?\s*(?:[A-Za-z_]\w*\s*::\s*)*([A-Za-z_]\w*)", path)
    return m.group(1) if m is not None and m.group(1) != "dyn" else ""


@functools.cache
def names_defined_in(root: Path) -> frozenset[str]:
    """Every item name a source tree defines (doc examples too: a superset is the safe
    side of `is_unique`)."""
    names: set[str] = set()
    for path in root.rglob("*.rs"):
        text = path.read_text("utf-8", "replace")
        names.update(m.group(3) for m in _ANY_DEF.finditer(text))
    return frozenset(names)


def dependencies(corpus: Path, registry: Path) -> list[Path]:
    """The source trees of the crates a Debian crate's Cargo.toml names (normal, dev and
    target-specific dependencies) that the registry holds."""
    try:
        manifest = tomllib.loads((corpus / "Cargo.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return []
    tables = [manifest.get(k, {}) for k in ("dependencies", "dev-dependencies")]
    for target in manifest.get("target", {}).values():
        tables += [target.get(k, {}) for k in ("dependencies", "dev-dependencies")]
    out: list[Path] = []
    for table in tables:
        for key, spec in table.items():
            crate = spec.get("package", key) if isinstance(spec, dict) else key
            found = sorted(registry.glob(f"{crate}-[0-9]*"))
            if found and found[-1] not in out and found[-1] != corpus:
                out.append(found[-1])
    return out
