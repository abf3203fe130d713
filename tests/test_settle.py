"""What the indexer gives back when it goes idle."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

import daemon.indexer as indexer
from daemon import parsing


class _Embedder:
    """A model that embedded too few texts to be worth a reload."""

    def release_memory(self, min_texts: int) -> bool:
        return False


def test_settle_trims_the_heap_and_drops_the_last_tree_without_a_reload(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch of a few huge files embeds a handful of texts (no model reload) but frees
    ~100 MB of trees and buffers: the heap was trimmed only after a reload, so that
    memory stayed with the idle daemon, as did the last file's tree."""
    trims: list[int] = []
    monkeypatch.setattr(indexer, "trim_heap", lambda: trims.append(1))
    parsing.parse_rust(b"fn held() {}\n")
    collab: Any = SimpleNamespace(embedder=_Embedder())
    indexer.settle(collab, [], prune=False)
    assert trims == [1]
    assert parsing._last is None
