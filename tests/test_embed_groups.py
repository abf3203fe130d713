"""Chunks that share one vector (issue 24.2): later parts share their item's first,
small chunks share their neighbours'; a hit on a shared vector is one result, its
best-matching member. The pure rules, then a real index (Tantivy, Qdrant Edge, the
offline model) searched in vector mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daemon.chunker import chunk_source
from daemon.embed_groups import (
    EmbedPolicy,
    embedded_texts,
    fold_shared,
    shared_runs,
    shared_texts,
)
from daemon.pipeline import fill_vectors, run_batch
from daemon.search import search_roots
from daemon.state import ChunkRow
from ipc.requests import SearchRequest

CONSTS = "\n".join(f"pub const LIMIT_{i}: usize = {i};" for i in range(6))
BIG = "pub fn parse(input: &str) -> Vec<u32> {\n" + "    let x = 1;\n" * 80 + "    vec![x]\n}\n"


DEFAULT = EmbedPolicy()


def groups_of(source: str, policy: EmbedPolicy = DEFAULT) -> list[list[str]]:
    """`symbol#part` of the chunks embedding one text, for each text two or more share."""
    chunks = chunk_source("src/lib.rs", source.encode())
    by_text: dict[str, list[str]] = {}
    for c, text in zip(chunks, embedded_texts(chunks, policy), strict=True):
        name = c.symbol.rsplit("::", 1)[-1]
        by_text.setdefault(text, []).append(f"{name}#{c.part}")
    return [names for names in by_text.values() if len(names) > 1]


def test_later_parts_share_the_first_part_unless_asked() -> None:
    assert groups_of(BIG) == [["parse#0", "parse#1"]]
    chunks = chunk_source("src/lib.rs", BIG.encode())
    texts = shared_texts(chunks, EmbedPolicy())
    assert texts[0] is None and texts[1] == chunks[0].embed_text()
    assert groups_of(BIG, EmbedPolicy(later_parts=True)) == []


def test_a_run_of_small_items_is_packed_into_groups_that_fit() -> None:
    (group,) = groups_of(CONSTS)
    assert group == [f"LIMIT_{i}#0" for i in range(6)]
    tight = EmbedPolicy(group_chars=180)
    packed = groups_of(CONSTS, tight)
    assert [len(g) for g in packed] == [3, 3] and packed[0] + packed[1] == group
    assert groups_of(CONSTS, EmbedPolicy(small_chars=0)) == []


def test_a_small_item_alone_joins_a_whole_neighbour_not_a_split_one() -> None:
    helper = "pub fn helper(a: u8) -> u8 {\n    a.wrapping_add(1) ^ 0x5a\n}\n"
    source = helper + "\npub const ONE: u8 = 1;\n\n" + BIG
    assert groups_of(source) == [["helper#0", "ONE#0"], ["parse#0", "parse#1"]]
    # Next to a split item only: it keeps a vector of its own.
    assert groups_of(BIG + "\npub const ONE: u8 = 1;\n") == [["parse#0", "parse#1"]]


def test_a_short_fn_is_an_answer_and_keeps_its_own_vector() -> None:
    fns = "".join(f"pub fn get_{i}(&self) -> u8 {{ self.{i} }}\n" for i in range(4))
    assert groups_of(fns) == []


def test_a_changed_member_changes_every_member_text() -> None:
    chunks = chunk_source("src/lib.rs", CONSTS.encode())
    edited = chunk_source("src/lib.rs", CONSTS.replace("= 3;", "= 33;").encode())
    before, after = shared_texts(chunks, EmbedPolicy()), shared_texts(edited, EmbedPolicy())
    assert all(a != b for a, b in zip(before, after, strict=True))


def row(cid: str, first: int, last: int, text: str) -> ChunkRow:
    return ChunkRow(cid, "src/lib.rs", first, last, cid, "fn", "", text)


def test_a_shared_vector_folds_into_its_best_matching_member() -> None:
    ranked = [("a", 0.9), ("b", 0.9), ("c", 0.9), ("d", 0.5), ("e", 0.4), ("f", 0.4)]
    runs = shared_runs(ranked)
    assert [[cid for cid, _ in r] for r in runs] == [["a", "b", "c"], ["d"], ["e", "f"]]
    rows = {
        "a": row("a", 1, 9, "fn open() { read_all() }"),
        "b": row("b", 10, 10, "const RETRIES: u32 = 3;"),
        "c": row("c", 11, 12, "fn retry_later() {}"),
        "e": row("e", 20, 20, "x"),
        "f": row("f", 21, 30, "y"),
    }
    folded = fold_shared(runs, rows, frozenset({"retri"}))
    # The members holding the words, the longer of them; else the longest.
    assert folded == [("c", 0.9), ("d", 0.5), ("f", 0.4)]
    # The parts of one item are its first part, whatever words the others hold.
    parts = {
        "p0": ChunkRow("p0", "src/lib.rs", 1, 40, "lib::retry", "fn", "", "fn retry() {"),
        "p1": ChunkRow("p1", "src/lib.rs", 38, 90, "lib::retry", "fn", "", "retry retry }"),
    }
    runs = shared_runs([("p1", 0.7), ("p0", 0.7)])
    assert fold_shared(runs, parts, frozenset({"retri"})) == [("p0", 0.7)]


def test_a_tied_fold_picks_the_same_member_whatever_the_store_order() -> None:
    twins = {
        "x": ChunkRow("x", "src/b.rs", 5, 6, "b::probe", "fn", "", "fn probe() {}"),
        "y": ChunkRow("y", "src/a.rs", 9, 10, "a::probe", "fn", "", "fn probe() {}"),
    }
    for order in (["x", "y"], ["y", "x"]):
        runs = shared_runs([(cid, 0.8) for cid in order])
        assert fold_shared(runs, twins, frozenset({"probe"})) == [("y", 0.8)]


def test_vector_search_reports_one_member_per_shared_vector(
    tmp_path: Path, embedder: Any, setup: Any
) -> None:
    crate, collab, open_root = setup
    (crate / "src" / "limits.rs").write_text(CONSTS + "\n")
    root = open_root()
    run_batch(root, None, collab)
    fill_vectors(root, collab, lambda: False)
    req = SearchRequest(query="upper bound constants for sizes", mode="vector", limit=50)
    hits = search_roots([root], req, embed_query=embedder.embed_query)
    limits = [h for h in hits if h.path == "src/limits.rs"]
    assert len(limits) == 1, limits  # six consts, one vector, one hit
    scores = [h.score for h in hits]
    assert len(set(scores)) == len(scores)  # no other shared vector was listed twice
    # An edit to one member re-embeds the group's one text, for every member's point.
    (crate / "src" / "limits.rs").write_text(CONSTS.replace("= 3;", "= 33;") + "\n")
    report = run_batch(root, ["src/limits.rs"], collab)
    filled = fill_vectors(root, collab, lambda: False)
    assert report.chunks == 6 and filled.vectors_filled == 6 and filled.texts_embedded == 1
