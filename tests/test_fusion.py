from __future__ import annotations

import pytest

from daemon.fusion import (
    confidence_weighted,
    keep_leaders,
    rrf,
    standout,
    tied_ranks,
    zscore_sum,
)


def test_rrf_rewards_agreement() -> None:
    fused = rrf([["a", "b", "c"], ["c", "a", "d"]], k=60)
    order = [k for k, _ in fused]
    assert order[0] == "a"  # ranks 1 and 2
    assert order[1] == "c"  # ranks 3 and 1
    assert set(order) == {"a", "b", "c", "d"}


def test_rrf_scores_formula() -> None:
    fused = dict(rrf([["a"], ["a"]], k=10))
    assert fused["a"] == pytest.approx(2 / 11)


def test_rrf_single_list_keeps_order_and_ties_are_stable() -> None:
    assert [k for k, _ in rrf([["x", "y", "z"]])] == ["x", "y", "z"]
    # b and c tie (rank 2 in one list each): the first list wins the tie.
    assert [k for k, _ in rrf([["a", "b"], ["a", "c"]])] == ["a", "b", "c"]


def test_rrf_weights() -> None:
    fused = rrf([["a", "b"], ["b", "a"]], weights=[1.0, 3.0])
    assert fused[0][0] == "b"
    with pytest.raises(ValueError):
        rrf([["a"]], weights=[1.0, 2.0])


def test_rrf_empty() -> None:
    assert rrf([[], []]) == []


def test_rrf_weighted_lists_and_small_k() -> None:
    # The tuned hybrid: BM25 at weight 0.5 beside vectors at 1, k=20.
    lexical = ["lex1", "both"]
    vector = ["vec1", "both", "vec3"]
    fused = rrf([lexical, vector], k=20, weights=[0.5, 1.0])
    scores = dict(fused)
    assert scores["both"] == pytest.approx(0.5 / 22 + 1 / 22)
    assert scores["lex1"] == pytest.approx(0.5 / 21)
    # Found by both sides first; a vector top hit outweighs a half-weight BM25 top hit.
    assert [key for key, _ in fused] == ["both", "vec1", "vec3", "lex1"]


def test_combsum_weighs_margins_not_only_ranks() -> None:
    """`[search] fusion = "combsum"`: a chunk far ahead on BM25 and close behind on the
    vectors comes first, where RRF (by rank alone) ties the three."""
    from daemon.config import SearchConfig
    from daemon.search import RootLists, _combsum

    lists = {
        "r": RootLists(
            bm25=[("strong", 10.0), ("both", 2.0), ("weak", 1.9)],
            vec=[("weak", 0.60), ("both", 0.59), ("strong", 0.55), ("x", 0.21), ("y", 0.20)],
            exact=[],
        )
    }
    ranked = _combsum(lists, SearchConfig(fusion="combsum", natural_lexical_weight=1.0))
    assert ranked[0][0][1] == "strong"
    assert all(0.0 <= score <= 1.0 for _, score in ranked)


def test_standout_is_scale_free_and_zero_on_a_plateau() -> None:
    peaked = [10.0, 4.0, 3.0, 3.5, 2.5]
    assert standout(peaked) == pytest.approx(standout([s / 20 for s in peaked]))
    assert standout([0.5] * 10) == 0.0
    assert standout([1.0, 0.9]) == 0.0  # too short to tell
    assert standout(peaked) > standout([4.0, 3.9, 3.8, 3.5, 2.5])


def test_confidence_weighted_leans_towards_the_list_that_stands_out() -> None:
    assert confidence_weighted((0.5, 1.0), (2.0, 2.0)) == pytest.approx((0.5, 1.0))
    lex, vec = confidence_weighted((0.5, 1.0), (3.0, 1.0))
    assert lex == pytest.approx(0.5 * 1.5) and vec == pytest.approx(1.0 * 0.5)
    assert confidence_weighted((0.5, 1.0), (0.0, 4.0)) == pytest.approx((0.0, 2.0))
    assert confidence_weighted((0.5, 1.0), (0.0, 0.0)) == (0.5, 1.0)


def test_adaptive_fusion_follows_the_list_that_is_sure() -> None:
    """BM25 has one clear answer, the vectors a plateau: fixed-weight RRF lets the
    vectors' first pick win, adaptive fusion the BM25 answer."""
    from daemon.config import SearchConfig
    from daemon.search import RootLists, _fuse

    lists = {
        "r": RootLists(
            bm25=[("a", 20.0), ("b", 5.0), ("c", 4.8), ("d", 4.7), ("e", 4.6)],
            vec=[("b", 0.51), ("c", 0.50), ("d", 0.50), ("e", 0.49), ("a", 0.49)],
            exact=[],
        )
    }
    query = "retry a request that failed"
    fixed = _fuse(lists, query, "hybrid", SearchConfig(fusion="rrf"))
    adaptive = _fuse(lists, query, "hybrid", SearchConfig(fusion="adaptive"))
    assert fixed[0][0] == ("r", "b")
    assert adaptive[0][0] == ("r", "a")
    assert all(0.0 <= s <= 1.0 for _, s in adaptive)


def test_fragments_are_headers_consts_and_aliases_not_short_fns() -> None:
    from daemon.search import is_fragment
    from daemon.state import ChunkRow

    def row(kind: str, lines: int) -> ChunkRow:
        return ChunkRow("id", "src/lib.rs", 10, 9 + lines, "m::X", kind, "", "x")

    assert is_fragment(row("impl", 2)) and is_fragment(row("const", 1))
    assert is_fragment(row("type", 3)) and not is_fragment(row("type", 4))
    assert not is_fragment(row("method", 3)) and not is_fragment(row("fn", 1))


def test_test_code_is_found_by_folder_module_and_attribute() -> None:
    from daemon.search import is_test_code
    from daemon.state import ChunkRow

    def row(path: str, symbol: str = "m::f", text: str = "fn f() {}") -> ChunkRow:
        return ChunkRow("id", path, 1, 3, symbol, "fn", "", text)

    assert is_test_code(row("tests/api.rs")) and is_test_code(row("benches/a/b.rs"))
    assert is_test_code(row("src/sync/tests.rs")) and is_test_code(row("src/x.rs", "x::tests::f"))
    assert is_test_code(row("src/x.rs", text="#[tokio::test]\nasync fn f() {}"))
    assert is_test_code(row("src/x.rs", text="/// Doc.\n#[test]\nfn f() {}"))
    assert not is_test_code(row("src/tests_support.rs", "tests_support::f"))
    # `#[cfg(test)] mod proptests { .. }`, hashbrown's `mod test_map`, a `quality_test.rs`.
    assert is_test_code(row("src/x.rs", "x::proptests::f")) and is_test_code(
        row("src/x.rs", "x::test_map::f")
    )
    assert is_test_code(row("src/hash_quality_test.rs", "hash_quality_test::f"))
    assert not is_test_code(row("src/x.rs", "x::test_parse"))  # a fn's own name is no module
    assert not is_test_code(row("src/x.rs", "x::contests::f"))  # a word that ends so
    assert not is_test_code(row("src/testing/mod.rs", "testing::f"))
    assert not is_test_code(row("tests.rs/src/lib.rs"))  # a folder so named is no file


def test_zscore_sum_is_scale_free_and_counts_a_missing_candidate_as_the_lowest() -> None:
    bm25 = [("a", 40.0), ("b", 10.0), ("c", 9.0), ("d", 8.0)]  # a stands out
    cos = [("b", 0.61), ("a", 0.60), ("c", 0.59), ("e", 0.58)]  # a plateau
    fused = dict(zscore_sum([bm25, cos]))
    assert max(fused, key=fused.__getitem__) == "a" and fused["a"] == 1.0
    assert min(fused.values()) == 0.0
    # The same lists on another scale fuse the same way.
    scaled = dict(zscore_sum([[(k, s * 100) for k, s in bm25], [(k, s / 10) for k, s in cos]]))
    assert {k: round(v, 9) for k, v in scaled.items()} == {k: round(v, 9) for k, v in fused.items()}
    # d and e are each missing from one list, so each counts as that list's lowest there.
    assert fused["d"] < fused["c"] and fused["e"] < fused["c"]
    assert zscore_sum([[], []]) == []
    # A weight scales a list's say.
    assert zscore_sum([bm25, cos], [0.0, 1.0])[0][0] == "b"


def test_equal_scores_share_a_rank() -> None:
    assert tied_ranks([0.9, 0.5, 0.5, 0.2, 0.2, 0.2, 0.1]) == [1, 2, 2, 4, 4, 4, 7]
    assert tied_ranks([]) == []


def test_a_tie_in_one_list_is_decided_by_the_other() -> None:
    # BM25 cannot tell "b" from "c"; the vectors (at half weight) prefer "c". With
    # positional ranks the order the store listed the tie in ("b" first) would win.
    lexical, vector, weights = ["a", "b", "c"], ["c", "b"], [1.0, 0.5]
    tied = rrf([lexical, vector], weights=weights, ranks=[tied_ranks([3.0, 2.0, 2.0]), [1, 2]])
    assert [key for key, _ in tied][:2] == ["c", "b"]
    positional = rrf([lexical, vector], weights=weights)
    assert [key for key, _ in positional][:2] == ["b", "c"]
    with pytest.raises(ValueError):
        rrf([lexical], ranks=[[1, 2, 3], [1]])


def test_keep_leaders_lifts_a_sure_lists_best_to_its_place_only() -> None:
    fused = [("a", 0.9), ("b", 0.8), ("c", 0.5), ("d", 0.4), ("e", 0.1)]
    # `e` (a list's best, buried at 5) moves up to 2 at the score it passes; the order
    # of the rest is kept, and the scores stay sorted.
    lifted = keep_leaders(fused, ["e"], 2)
    assert lifted == [("a", 0.9), ("e", 0.8), ("b", 0.8), ("c", 0.5), ("d", 0.4)]
    assert keep_leaders(fused, ["b", "a"], 2) == fused  # already there
    assert keep_leaders(fused, ["zz"], 2) == fused  # not a candidate
    both = keep_leaders(fused, ["e", "d"], 2)
    assert [k for k, _ in both] == ["a", "d", "e", "b", "c"]
    assert [s for _, s in both] == sorted((s for _, s in both), reverse=True)


def test_keep_leaders_lifts_both_sides_firsts_without_pushing_either_out() -> None:
    # Both sides' firsts buried (regex: BM25's `captures_iter` lifted to third, then the
    # vector side's first lifted to third pushed it to fourth): both end in the top 3.
    fused = [("a", 0.9), ("b", 0.8), ("c", 0.7), ("d", 0.6), ("bm", 0.5), ("vec", 0.4)]
    both = keep_leaders(fused, ["bm", "vec"], 3)
    assert [k for k, _ in both] == ["a", "bm", "vec", "b", "c", "d"]
    assert [s for _, s in both] == sorted((s for _, s in both), reverse=True)
    # One already at the place, the other buried: the one there is not pushed out.
    there = [("a", 0.9), ("b", 0.8), ("bm", 0.7), ("d", 0.6), ("vec", 0.4)]
    assert [k for k, _ in keep_leaders(there, ["bm", "vec"], 3)][:3] == ["a", "bm", "vec"]
    # Fusion's own first stays first.
    assert keep_leaders(fused, ["vec", "bm"], 3)[0] == ("a", 0.9)


def test_a_containers_header_fragment_hides_none_of_its_items() -> None:
    from daemon.search import is_near_duplicate
    from daemon.state import ChunkRow

    def row(symbol: str, kind: str, first: int, last: int) -> ChunkRow:
        return ChunkRow("c", "src/lib.rs", first, last, symbol, kind, "", "text")

    header = row("config", "mod", 50, 52)  # `/// Config helpers.` `pub mod config {` `use …;`
    parse = row("config::parse_duration", "fn", 57, 63)
    assert not is_near_duplicate(header, parse) and not is_near_duplicate(parse, header)
    whole = row("config", "mod", 50, 71)  # a container chunk that holds its items
    assert is_near_duplicate(whole, parse)
    impl = row("Foo", "impl", 10, 30)
    assert is_near_duplicate(impl, row("Foo::bar", "method", 40, 44))


def test_a_macro_rules_tail_is_a_fragment_and_a_small_macro_is_not() -> None:
    from daemon.search import is_fragment
    from daemon.state import ChunkRow

    tail = ChunkRow("t", "src/de.rs", 964, 965, "de::m", "macro", "", "    };\n}")
    small = ChunkRow("s", "src/de.rs", 1, 1, "de::n", "macro", "", "macro_rules! n { () => {} }")
    assert is_fragment(tail) and not is_fragment(small)
