"""A long text's head is tokenized instead of the whole text, with the same ids."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from tokenizers import Tokenizer

import daemon
from daemon.embedder import MAX_TOKENS, _OfflineModel
from daemon.token_window import FIRST_CUT_CHARS, encode_bounded


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    tok = Tokenizer.from_file(str(Path(daemon.__file__).parent / "model" / "tokenizer.json"))
    tok.enable_truncation(MAX_TOKENS)
    tok.no_padding()
    return tok


class _Recording:
    """The tokenizer, remembering the longest text it was asked to encode."""

    def __init__(self, tok: Tokenizer) -> None:
        self.tok = tok
        self.pre_tokenizer = tok.pre_tokenizer
        self.longest = 0

    def get_added_tokens_decoder(self) -> Any:
        return self.tok.get_added_tokens_decoder()

    def encode_batch(self, texts: list[str]) -> Any:
        self.longest = max([self.longest, *map(len, texts)])
        return self.tok.encode_batch(texts)


def _whole(tok: Tokenizer, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in tok.encode_batch(texts)]


def test_a_huge_one_line_chunk_is_tokenized_by_its_head(tokenizer: Tokenizer) -> None:
    """The attack's `0 + 1 + … + 119999` (970 KB on one line, one chunk) cost 186 MiB
    in the tokenizer for 256 ids; the embedder now encodes a 4 KB head."""
    text = "pub fn f() -> u64 { " + " + ".join(map(str, range(120_000))) + " }"
    rec = _Recording(tokenizer)
    ids = _OfflineModel._tokenize(SimpleNamespace(tokenizer=rec), [text, "fn a() {}"])  # type: ignore[arg-type]
    assert rec.longest <= FIRST_CUT_CHARS
    assert ids == _whole(tokenizer, [text, "fn a() {}"])


def test_heads_without_a_cut_or_enough_tokens_grow(tokenizer: Tokenizer) -> None:
    texts = [
        " " * 9000 + "fn a() { b }" * 3000,  # blank head: grown until it overflows
        "(" * 200_000,  # punctuation only: every cut is a split
        "]" * 20_000,  # no allowed cut (a `]` may end `[MASK]`): encoded whole
        "x" * 300 + " " + "y" * 20_000,
    ]
    rec = _Recording(tokenizer)
    out, encodings = encode_bounded(rec, texts)
    assert [e.ids for e in encodings] == _whole(tokenizer, texts)
    assert len(out[0]) < len(texts[0]) and len(out[1]) == FIRST_CUT_CHARS
    assert out[2] is texts[2]


def test_cut_heads_give_the_whole_texts_ids(tokenizer: Tokenizer) -> None:
    """Random texts of pieces that trip a careless cut: added tokens matched whole in
    the raw text, words over 100 characters ([UNK] whole), control characters the
    normalizer drops (joining two words), accents, CJK, other whitespace."""
    pieces = ["ab", "Fn", " ", "\n", "\t", "(", ")", "]", "[MASK]", "[CLS]", "é", "e\u0301"]
    pieces += ["\x0b", "\x85", "\u2028", "\u00a0", "中", "9", "::", "x" * 120, "_", "'"]
    rng = random.Random(7)
    texts = []
    for _ in range(60):
        n = rng.randrange(FIRST_CUT_CHARS // 2, FIRST_CUT_CHARS * 2)
        texts.append("".join(rng.choice(pieces) for _ in range(n)))
    out, encodings = encode_bounded(tokenizer, texts)
    assert [e.ids for e in encodings] == _whole(tokenizer, texts)
    assert any(len(o) < len(t) for o, t in zip(out, texts, strict=True))
