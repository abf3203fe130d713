from __future__ import annotations

from daemon.tokenize import (
    code_tokens,
    index_terms,
    query_tokens,
    split_identifier,
    stem,
    stems,
)


def test_split_identifier_cases() -> None:
    assert split_identifier("HashMap") == ["hash", "map"]
    assert split_identifier("read_to_string") == ["read", "to", "string"]
    assert split_identifier("parseHTTPResponse2") == ["parse", "http", "response", "2"]
    assert split_identifier("IO") == ["io"]
    assert split_identifier("__private") == ["private"]


def test_code_tokens_keep_whole_and_parts() -> None:
    toks = code_tokens("let m = HashMap::with_capacity(16);")
    assert "hashmap" in toks and "hash" in toks and "map" in toks
    assert "with_capacity" in toks and "with" in toks and "capacity" in toks
    assert "16" in toks


def test_both_forms_match() -> None:
    indexed = set(code_tokens("fn read_to_string(&mut self) -> HashMap<K, V>"))
    assert set(query_tokens("read to string")) <= indexed
    assert set(query_tokens("hash map")) <= indexed
    assert set(query_tokens("HashMap")) <= indexed


def test_query_tokens_are_distinct_and_ordered() -> None:
    assert query_tokens("map Map MAP hash") == ["map", "hash"]


def test_noise_tokens_dropped() -> None:
    assert code_tokens("x" * 100) == []
    assert code_tokens("::<>{}();") == []


def test_word_tokens_are_stemmed_and_identifiers_kept() -> None:
    assert stems(["retries", "retrying", "retry"]) == ["retri"] * 3
    assert stem("failed") == stem("fail") == "fail"
    # whole identifiers with digits or underscores, and numbers, stay as they are
    assert stems(["u32", "saturating_mul", "404"]) == ["u32", "saturating_mul", "404"]


def test_index_terms_are_the_stems_of_the_code_tokens() -> None:
    text = "fn retries_left(&self) -> u32 { self.failedRequests.len() } // Retrying"
    assert index_terms(text) == stems(code_tokens(text))
