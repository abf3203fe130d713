"""What kind of query this is, and which symbols an identifier query names exactly.

Identifier-like queries (`HashMap::with_capacity`, `read_to_string`, `Vec`) are best
answered by the lexical side and by symbols whose name is the query; questions in words
("where does Vec grow its buffer") by the embedding side. Pure functions only.
"""

from __future__ import annotations

import re
from typing import Literal

QueryClass = Literal["identifier", "natural"]

#: Function words of English questions; in code they are noise (`a`, `it`, `is` are
#: common variable and method names), so natural queries do not search for them.
STOPWORDS = frozenset(
    (  # noqa: SIM905 (a word list reads best as words)
        "a an the of to in on at by for from and or but this that these those it its is are "
        "be been was were which what where when who how does do did if then than any some "
        "there their they them we you your i my me so such can could would should will"
    ).split()
)

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: A symbol path: `::`-separated parts, the last an identifier; earlier parts may be types
#: such as `[T]` or `Vec<T>` (impl owners are named that way).
_PATH = re.compile(r"^(?:[^\s:]+::)*[A-Za-z_][A-Za-z0-9_]*$")
_CAMEL = re.compile(r"[a-z0-9][A-Z]|[A-Z]{2}[a-z]")


def _codeish(token: str) -> bool:
    """A token no one types in prose: a path, snake_case, camelCase or a call."""
    return (
        "::" in token
        or "_" in token.strip("_")
        or "(" in token
        or "." in token.strip(".")
        or _CAMEL.search(token) is not None
    )


def classify(query: str) -> QueryClass:
    """`identifier` for one word or a few code-like tokens, else `natural`."""
    tokens = query.split()
    if len(tokens) == 1:
        return "identifier"
    if not tokens:
        return "natural"
    codeish = sum(_codeish(t) for t in tokens)
    return "identifier" if len(tokens) <= 3 and codeish * 2 >= len(tokens) else "natural"


def strict_identifier(query: str) -> bool:
    """One token nobody types as an English word: a path, snake_case, CamelCase, a call,
    or a capitalised name (`Vec`). Chunks defining such a name rank first; a plain word
    (`retry`) may mean the concept as much as the symbol."""
    tokens = query.split()
    return len(tokens) == 1 and (_codeish(tokens[0]) or tokens[0][:1].isupper())


def symbol_name(query: str) -> str | None:
    """The symbol path a query names, `Vec::with_capacity()` -> `Vec::with_capacity`; None
    when the query is not a single (possibly `::`-qualified) identifier."""
    text = query.strip().removesuffix("()").replace(".", "::").strip(":")
    return text if _PATH.match(text) else None


#: The most words a question may have to be tried as one identifier (`lock slow`).
JOINED_WORDS = 4


def joined_names(query: str) -> list[str]:
    """The identifiers a short question's words spell when joined as code joins them:
    `lock slow` -> `lock_slow`, `LockSlow`; none for a longer question or other tokens."""
    words = query.split()
    # ASCII only: `capitalize` spells `ß` as `Ss`, and code's identifiers are ASCII.
    if not 2 <= len(words) <= JOINED_WORDS or not all(w.isascii() and w.isalnum() for w in words):
        return []
    lower = [w.lower() for w in words]
    return ["_".join(lower), "".join(w.capitalize() for w in lower)]


def symbol_matches(symbol: str, name: str, *, ignore_case: bool = False) -> bool:
    """Whether `name` is `symbol` or a `::`-aligned suffix of it: `alloc::vec::Vec::push`
    matches `push`, `Vec::push` and itself, never `ec::push`."""
    if ignore_case:
        symbol, name = symbol.lower(), name.lower()
    return symbol == name or symbol.endswith("::" + name)


def symbol_words(name: str) -> list[str]:
    """Lowercased identifiers of a symbol path, as the lexical index stores them whole."""
    return [w.lower() for w in _IDENT.findall(name)]
