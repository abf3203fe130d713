from __future__ import annotations

import pytest

from daemon.fusion import rrf


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
