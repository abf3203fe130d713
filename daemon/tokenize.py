"""Code-aware tokenizing for the lexical index, done in Python so indexing and querying agree.

An identifier is kept whole (lowercased) and also split on case changes, digits and
underscores, so `HashMap` matches both "hashmap" and "hash map", and `read_to_string`
matches "read to string". Tantivy then only splits on whitespace. The lexical index
stores the English stems of the word tokens (`stem`), so "retries" meets `retry`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from functools import lru_cache

import Stemmer

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")
# Boundaries inside an identifier: aB, ABc (acronym end), letter-digit.
_PARTS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
#: Tokens this long are noise (hashes, base64) and only bloat the index.
MAX_TOKEN_CHARS = 64
#: Distinct words whose tokens are remembered. Code repeats its identifiers (300 files of
#: the standard library: 1.4M words, 17k distinct), so splitting each once made
#: tokenizing 3.6x faster; full (32k words, fewer than medium's 40k) it holds ~11 MB.
WORD_CACHE = 1 << 15


def split_identifier(word: str) -> list[str]:
    """Parts of an identifier, lowercased: 'parseHTTPResponse2' -> parse http response 2."""
    parts: list[str] = []
    for piece in word.split("_"):
        parts.extend(p.lower() for p in _PARTS.findall(piece))
    return parts


@lru_cache(maxsize=WORD_CACHE)
def word_tokens(word: str) -> tuple[str, ...]:
    """Tokens of one word: the whole identifier (lowercased, outer underscores dropped),
    then its parts when it has more than one; none for a word of underscores."""
    whole = word.lower().strip("_")
    if not whole:
        return ()
    parts = split_identifier(word)
    return (whole, *parts) if len(parts) > 1 else (whole,)


def code_tokens(text: str) -> list[str]:
    """Every token of `text` for indexing: whole identifiers plus their parts."""
    out: list[str] = []
    for word in _WORD.findall(text):
        if len(word) <= MAX_TOKEN_CHARS:
            out.extend(word_tokens(word))
    return out


def whole_identifiers(text: str) -> list[str]:
    """The whole (lowercased) form of each identifier in `text` that has parts:
    `NonZeroU32` -> `nonzerou32`, not `non`, `zero`, `u`, `32`."""
    return [toks[0] for word in _WORD.findall(text) if len(toks := word_tokens(word)) > 1]


def query_tokens(text: str) -> list[str]:
    """Distinct tokens of a query, in first-seen order."""
    return list(dict.fromkeys(code_tokens(text)))


_STEMMERS = threading.local()  # a PyStemmer object must not be shared between threads


@lru_cache(maxsize=WORD_CACHE)
def stem(token: str) -> str:
    """The English (Snowball) stem of a word token: "retries" → `retri`, "failed" →
    `fail`, so a question's words meet the code's and comments' other forms. Tokens with
    digits or underscores (`u32`, the whole form of `saturating_mul`) stay as they are.
    On the dev doc-comment queries, BM25 MRR@10 0.198 → 0.256 (docs/SEARCH_QUALITY.md)."""
    if not token.isalpha():
        return token
    stemmer = getattr(_STEMMERS, "english", None)
    if stemmer is None:
        stemmer = _STEMMERS.english = Stemmer.Stemmer("english")
    return str(stemmer.stemWord(token))


def stems(tokens: Iterable[str]) -> list[str]:
    return [stem(t) for t in tokens]


@lru_cache(maxsize=WORD_CACHE)
def _word_terms(word: str) -> tuple[str, ...]:
    return tuple(stem(t) for t in word_tokens(word))


def index_terms(text: str) -> list[str]:
    """The terms the lexical index stores for `text`: `stems(code_tokens(text))`, with
    each distinct word's stems remembered (a token-by-token stem lookup cost half as
    much again as tokenizing)."""
    out: list[str] = []
    for word in _WORD.findall(text):
        if len(word) <= MAX_TOKEN_CHARS:
            out.extend(_word_terms(word))
    return out


def as_field_text(tokens: list[str]) -> str:
    """Tokens joined for a whitespace-tokenized Tantivy field."""
    return " ".join(tokens)
