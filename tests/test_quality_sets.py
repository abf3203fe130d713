"""The multi-corpus evaluation's inputs hold together: every corpus is in a split, every
hand-written answer names a file (and item) that exists in the installed sources, and the
frozen doc-comment queries point into them. Needs Debian's crate sources (.ci/run installs
them); skipped where they are not installed."""

from __future__ import annotations

import json

import pytest

from bench.quality.corpora import BY_NAME, CORPORA, SPLITS
from bench.quality.hand import HAND_MULTI, load_questions, resolve
from bench.quality.queries import DOC_QUERIES

INSTALLED = [c for c in CORPORA if c.available]
pytestmark = pytest.mark.skipif(
    len(INSTALLED) < len(CORPORA),
    reason="crate sources not installed: apt-get install "
    + " ".join(c.package for c in CORPORA if not c.available),
)


def test_every_corpus_in_a_split_and_both_splits_have_crates() -> None:
    assert all(c.split in SPLITS for c in CORPORA)
    for split in SPLITS:
        assert sum(c.split == split and c.package.startswith("librust-") for c in CORPORA) >= 4


def test_hand_written_answers_exist() -> None:
    raw = json.loads(HAND_MULTI.read_text())["questions"]
    for q in raw:
        corpus = BY_NAME[q["corpus"]]
        assert bool(q.get("absent")) != bool(q.get("expect")), q
        for e in q.get("expect", []):
            assert (corpus.source / e["path"]).is_file(), e
            if "symbol" in e:
                assert resolve(corpus, e["path"], e["symbol"]), e
    questions = load_questions()
    crates = [q for q in questions if q.corpus != "library"]
    assert len([q for q in crates if not q.absent]) >= 60
    assert len([q for q in questions if q.absent]) >= 10


def test_frozen_doc_queries_point_into_the_sources() -> None:
    frozen = json.loads(DOC_QUERIES.read_text())
    assert set(frozen) == set(BY_NAME)
    for name, sets in frozen.items():
        corpus = BY_NAME[name]
        assert sets["doc"] and sets["identifiers"], name
        for d in sets["doc"] + sets["identifiers"]:
            lines = (corpus.source / d["path"]).read_text().count("\n") + 1
            assert 1 <= d["decl_line"] <= d["end_line"] <= lines, d
