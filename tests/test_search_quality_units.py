"""Pure search logic: the query classifier, symbol matching, near-duplicate suppression,
snippets, and the evaluation metrics (bench/quality)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.quality.corpora import blank_docs
from bench.quality.corpus import decl_line, first_sentence, mentions_name
from bench.quality.evaluate import Result, Searcher, run_hand
from bench.quality.hand import Question, Target, file_items
from bench.quality.metrics import gains, ndcg, paired_interval, score
from bench.quality.report import batch_table
from bench.quality.threshold import flagged, highest_floor
from daemon.lexical_writes import doc_prose
from daemon.query import classify, symbol_matches, symbol_name, symbol_words
from daemon.search import is_near_duplicate, item_extent, snippet
from daemon.state import ChunkRow


@pytest.mark.parametrize(
    "query",
    [
        "HashMap::with_capacity",
        "read_to_string",
        "Vec",
        "push",
        "Vec::push()",
        "BufReader::new fill_buf",
        "self.buf.len",
        "RawVec grow_amortized",
    ],
)
def test_identifier_queries(query: str) -> None:
    assert classify(query) == "identifier"


@pytest.mark.parametrize(
    "query",
    [
        "where does Vec grow its buffer",
        "how does a HashMap pick its hasher",
        "read a whole file into a string",
        "retry failed requests",
        "Creates an empty HashMap with at least the specified capacity.",
        "",
    ],
)
def test_natural_queries(query: str) -> None:
    assert classify(query) == "natural"


def test_symbol_name_of_a_query() -> None:
    assert symbol_name("HashMap::with_capacity") == "HashMap::with_capacity"
    assert symbol_name(" Vec::push() ") == "Vec::push"
    assert symbol_name("::std::io::Read") == "std::io::Read"
    assert symbol_name("read_to_string") == "read_to_string"
    assert symbol_name("read to string") is None
    assert symbol_name("Vec<T>") is None
    assert symbol_name("[T]::to_vec") == "[T]::to_vec"


def test_symbol_matches_on_path_boundaries() -> None:
    sym = "alloc::vec::Vec::push"
    assert symbol_matches(sym, "push")
    assert symbol_matches(sym, "Vec::push")
    assert symbol_matches(sym, sym)
    assert not symbol_matches(sym, "ec::push")
    assert not symbol_matches(sym, "Vec::pus")
    assert not symbol_matches("alloc::vec::Vec::push_within_capacity", "Vec::push")
    assert not symbol_matches(sym, "vec::push")
    assert symbol_matches(sym, "VEC::PUSH", ignore_case=True)
    assert symbol_words("HashMap::with_capacity") == ["hashmap", "with_capacity"]


def _row(path: str, start: int, end: int, symbol: str, kind: str) -> ChunkRow:
    return ChunkRow("id", path, start, end, symbol, kind, "", "")


def test_near_duplicates() -> None:
    method = _row("src/a.rs", 10, 20, "a::Foo::bar", "method")
    part2 = _row("src/a.rs", 18, 40, "a::Foo::bar", "method")
    impl = _row("src/a.rs", 5, 9, "a::Foo", "impl")  # the impl's own lines: consts, types
    header = _row("src/a.rs", 5, 6, "a::Foo", "impl")  # only its header: a fragment
    other = _row("src/a.rs", 30, 35, "a::Foo::baz", "method")
    elsewhere = _row("src/b.rs", 10, 20, "a::Foo::bar", "method")
    struct = _row("src/a.rs", 1, 3, "a::Foo", "struct")
    assert is_near_duplicate(method, part2)  # two parts of one item
    assert is_near_duplicate(method, impl) and is_near_duplicate(impl, method)
    assert not is_near_duplicate(header, method) and not is_near_duplicate(method, header)
    assert not is_near_duplicate(method, other)  # a sibling method
    assert not is_near_duplicate(method, elsewhere)  # another file
    assert not is_near_duplicate(struct, method)  # a struct is no container of methods


def test_snippet_shows_the_matching_lines() -> None:
    text = "\n".join(
        ["", "fn grow(&mut self) {", "    let a = 1;", "    let b = 2;", "    let c = 3;"]
        + [f"    let x{i} = {i};" for i in range(10)]
        + ["    self.reserve_for_push(len);", "    self.buf.grow_amortized(len, 1);", "}"]
    )
    snip = snippet(text, ["grow_amortized", "reserve_for_push"], lines=4)
    assert "grow_amortized" in snip and "reserve_for_push" in snip
    # No match: the first lines, blank ones skipped.
    assert snippet(text, ["nothing"], lines=2).splitlines()[0] == "fn grow(&mut self) {"


def test_metrics_count_each_target_once() -> None:
    g = gains(["x", "a", "a", "b"], ["a", "b"], lambda r, t: r == t)
    assert g == [0, 1, 0, 1]
    assert ndcg([1], 1) == pytest.approx(1.0)
    assert ndcg([0, 1], 1) == pytest.approx(1 / 1.5849625, rel=1e-6)
    s = score([([0, 1], 1), ([0] * 10 + [1], 1)])
    assert (s.hit1, s.hit10, s.mrr10) == (0.0, 0.5, 0.25)


def test_a_hand_hit_counts_on_screen_only_when_the_answer_shows_at_the_opened_line() -> None:
    answer = Question("c", "q", (Target("a.rs", 400, 420), Target("b.rs")))
    whole_impl = Result("a.rs", 100, 900)
    method = Result("a.rs", 395, 421)
    other_file = Result("b.rs", 7, 9)

    def searcher(results: list[Result]) -> Searcher:
        return lambda query, mode, limit: (results, 0.0)

    run = run_hand(searcher([whole_impl, method]), [answer], "hybrid")
    assert (run.ranks, run.screen_ranks) == ([1], [2])
    run = run_hand(searcher([Result("c.rs", 1, 5), other_file]), [answer], "hybrid")
    assert (run.ranks, run.screen_ranks) == ([2], [2])
    run = run_hand(searcher([whole_impl]), [answer], "hybrid")
    assert (run.ranks, run.screen_ranks) == ([1], [None])
    assert run.to_json()["screen"]["mrr@10"] == 0.0


def test_hand_figures_are_split_by_the_batch_each_question_came_in() -> None:
    """Ranks are stored per corpus in question order; the batch table picks each batch's
    own, and leaves out absent questions (which are not ranked)."""
    asked = [
        Question("c", "a", (Target("a.rs"),), batch=1),
        Question("c", "gone", (), absent=True, batch=3),
        Question("c", "b", (Target("a.rs"),), batch=3),
        Question("c", "d", (Target("a.rs"),), batch=3),
    ]
    ranks = {"bm25": [1, None, 2], "vector": [2, 1, 1], "hybrid": [1, 1, 4]}
    res = {"rcmd": {"corpora": {"c": {"hand": {m: {"ranks": r} for m, r in ranks.items()}}}}}
    res["corpora"] = {"c": {"split": "test"}}
    table = batch_table(res, asked)
    assert table[0] == "| corpus | batch 1 (n) | batch 3 (n) |"
    assert table[2] == "| c | 1.000 / 0.500 / 1.000 (1) | 0.250 / 1.000 / 0.625 (2) |"
    assert batch_table(res, asked[:1]) == []


def test_the_confidence_floor_flags_at_most_its_share_of_answerable_questions() -> None:
    scores = [0.30, 0.355, 0.42, 0.47, 0.51, 0.52, 0.60, 0.61, 0.70, 0.72]
    # 10% of 10: one may be flagged; the second lowest (0.355) bounds the floor.
    assert highest_floor(scores, share=0.1) == pytest.approx(0.35)
    assert flagged(scores, 0.35) == 1 and flagged(scores, 0.36) == 2
    assert highest_floor(scores, share=0.0) == pytest.approx(0.30)
    assert flagged(scores, highest_floor(scores, share=0.0)) == 0
    assert highest_floor([0.42], share=0.05) == pytest.approx(0.42)
    with pytest.raises(ValueError):
        highest_floor([])


def test_doc_prose_is_the_doc_comments_of_a_chunk() -> None:
    text = (
        "/// Retries a request\n"
        "///with backoff.\n"
        '    #[doc = "Generated by a macro."]\n'
        "// a plain comment is not documentation\n"
        'fn retry() { let s = "/// not a comment"; }\n'
        "//! The module.\n"
    )
    assert doc_prose(text).split("\n") == [
        " Retries a request",
        "with backoff.",
        "Generated by a macro.",
        " The module.",
    ]
    assert doc_prose("fn f() {}") == ""


def test_corpus_helpers() -> None:
    src = b"//! crate docs\nuse x;\n    /// item docs\n    #[inline]\n    pub fn f() {}\n"
    blanked = blank_docs(src)
    assert blanked.count(b"\n") == src.count(b"\n") and b"docs" not in blanked
    lines = src.decode().split("\n")
    assert decl_line(lines, 3, 5) == 5
    doc = "Creates a [`Vec`](crate::vec::Vec) with **room** for `n`. More text.\n\n# Examples"
    assert first_sentence(doc) == "Creates a Vec with room for n."
    assert mentions_name("Returns the capacity, with capacity.", "with_capacity")
    assert mentions_name("Reserves room for more elements.", "reserve")
    assert mentions_name("Returns the length.", "len")
    assert not mentions_name("Returns the length.", "le")
    assert not mentions_name("Makes room for more elements.", "reserve")


def test_hand_answers_name_methods_of_impls_on_references(tmp_path: Path) -> None:
    src = tmp_path / "vec.rs"
    src.write_text(
        "impl<'a, T> Drain for &'a mut Vec<T> {\n    fn par_drain(self) {}\n}\n"
        "impl Foo<u8> {\n    fn get(&self) {}\n}\n"
    )
    assert [name for name, _, _ in file_items(src)] == ["Vec::par_drain", "Foo::get"]


def test_item_extent_joins_the_parts_of_one_item() -> None:
    parts = [(10, 40), (38, 70), (68, 90), (95, 99)]  # a split item, then another item
    assert item_extent(38, 70, parts) == (10, 90)
    assert item_extent(10, 40, parts) == (10, 90)
    assert item_extent(95, 99, parts) == (95, 99)
    assert item_extent(5, 6, []) == (5, 6)
    assert item_extent(1, 3, [(1, 3), (4, 6)]) == (1, 6)  # parts that only touch
    assert item_extent(68, 90, parts[::-1]) == (10, 90)  # any order
    assert item_extent(40, 96, [(1, 5), (10, 40), (96, 99), (120, 130)]) == (10, 99)  # a bridge


def test_lexical_symbol_candidates_and_question_boosts(tmp_path: Path) -> None:
    from daemon.lexical import LexicalIndex
    from daemon.lexical_writes import LexicalDoc

    index = LexicalIndex(tmp_path / "tantivy")
    docs = [
        ("a", "vec::Vec::with_capacity", "pub fn with_capacity(n: usize) -> Self", "alloc"),
        ("b", "map::HashMap::with_capacity", "pub fn with_capacity(n: usize) -> Self", "x"),
        ("c", "vec::Vec::push", "pub fn push(&mut self, v: T)", "grow the buffer"),
        ("d", "raw::RawVec::grow", "fn grow(&mut self)", "the buffer"),
    ]
    index.add(
        LexicalDoc(cid, "src/a.rs", "fn", sym, sig, text, 1, 2) for cid, sym, sig, text in docs
    )
    index.commit()
    # Every word must be in the symbol: `Vec::with_capacity` is one chunk, not two.
    assert index.symbol_candidates(["vec", "with_capacity"], 10) == ["a"]
    assert set(index.symbol_candidates(["with_capacity"], 10)) == {"a", "b"}
    assert index.symbol_candidates(["nothing"], 10) == []
    # Dropped words are not searched; a zero boost turns a field off.
    assert index.search("the", 10, drop=frozenset({"the"})) == []
    text_only = {"symbol_t": 0.0, "signature_t": 0.0, "path_t": 0.0}
    assert [cid for cid, _ in index.search("buffer", 10, boosts=text_only)] != []
    assert index.search("grow", 10, boosts={**text_only, "content_t": 0.0}) == []
    index.close()


def test_a_question_also_searches_the_short_forms_code_uses(tmp_path: Path) -> None:
    """A question for "length of the buffer" meets `fn len(&self)` and `buf`; a word
    the question names itself keeps its own weight; 0 turns it off."""
    from daemon.lexical import LexicalIndex, query_terms
    from daemon.lexical_writes import LexicalDoc
    from daemon.tokenize import stem

    terms = query_terms("the length of the buffer", frozenset({"the", "of"}), {}, 1.0)
    assert terms == {stem("length"): 1.0, stem("buffer"): 1.0, "len": 1.0, "buf": 1.0}
    assert "len" not in query_terms("length", frozenset(), {}, 0.0)
    assert query_terms("len length", frozenset(), {"len": 4.0}, 0.5)["len"] == 4.0

    index = LexicalIndex(tmp_path / "tantivy")
    index.add([LexicalDoc("a", "src/a.rs", "fn", "Buf::len", "pub fn len(&self)", "n", 1, 2)])
    index.commit()
    assert [cid for cid, _ in index.search("its length", 10, abbreviation_weight=1.0)] == ["a"]
    assert index.search("its length", 10) == []
    index.close()


def test_an_idle_writer_is_released_and_reopened(tmp_path: Path) -> None:
    """An idle root gives its Tantivy writer back (threads, memory budget); the next
    write opens one again, and nothing written is lost either way."""
    import os
    import time

    from daemon.lexical import LexicalIndex
    from daemon.lexical_writes import LexicalDoc

    def doc(cid: str, word: str) -> LexicalDoc:
        return LexicalDoc(cid, "src/a.rs", "fn", f"m::{word}", f"fn {word}()", word, 1, 2)

    def threads() -> int:
        return len(os.listdir("/proc/self/task"))

    index = LexicalIndex(tmp_path / "tantivy")
    index.add([doc("a", "alpha")])
    assert index.release_writer() is False  # pending writes keep it
    index.commit()
    with_writer = threads()
    assert index.release_writer() is True
    # The writer's threads (indexing, merging: ~6) end as it is dropped.
    deadline = time.monotonic() + 10
    while threads() > with_writer - 4:
        assert time.monotonic() < deadline, f"{threads()} threads, {with_writer} with the writer"
        time.sleep(0.01)
    assert index.release_writer() is False  # none to release
    index.add([doc("b", "beta")])
    index.commit()
    assert [cid for cid, _ in index.search("alpha", 5)] == ["a"]
    assert [cid for cid, _ in index.search("beta", 5)] == ["b"]
    index.close()


def test_paired_interval_is_zero_for_equal_lists_and_covers_the_observed_gap() -> None:
    ranks: list[int | None] = [1, 2, None, 3, 1, None, 5, 1]
    assert paired_interval(ranks, ranks, lambda a, b: a - b) == (0.0, 0.0)
    better: list[int | None] = [1] * 8
    lo, hi = paired_interval(better, ranks, lambda a, b: a - b)
    observed = 1.0 - sum(1 / r for r in ranks if r) / len(ranks)
    assert 0 < lo <= observed <= hi
    with pytest.raises(ValueError):
        paired_interval(ranks, ranks[:-1], lambda a, b: a - b)


def test_joined_names_spell_short_ascii_questions_only() -> None:
    from daemon.query import joined_names

    assert joined_names("lock slow") == ["lock_slow", "LockSlow"]
    assert joined_names("Try Lock") == ["try_lock", "TryLock"]
    assert joined_names("ß x") == [] and joined_names("a b c d e") == []
    assert joined_names("lock") == [] and joined_names("lock.slow now") == []
