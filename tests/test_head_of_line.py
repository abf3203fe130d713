"""No head-of-line blocking across roots (issue 17.9): while one root embeds a lot of new
code (many files, and one big file), an edit in another root is searchable with BM25,
its status never says idle with work queued, and removing the busy root takes effect
within a step."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Daemon, wait_until, write_new_code

pytestmark = pytest.mark.slow


def _cold_crate(base: Path, files: int = 30, fns: int = 20, big_fns: int = 300) -> Path:
    """Code the embedding cache has never seen: every chunk must go through the model."""
    src = base / "busy" / "src"
    write_new_code(src, "busy", files, fns)
    big = "".join(
        f"/// Step {i} of the big table.\npub fn big_{i}(v: &[u8]) -> usize {{\n"
        f"    v.iter().filter(|b| **b == {i % 256}).count() + {i}\n}}\n"
        for i in range(big_fns)
    )
    (src / "big.rs").write_text(big)
    return src.parent


def test_an_edit_is_not_stuck_behind_another_roots_embedding(
    daemon: Daemon, crate: Path, tmp_path: Path
) -> None:
    daemon.cli("index", str(crate), "--wait")
    busy = _cold_crate(tmp_path)
    daemon.cli("index", str(busy))
    # Its BM25 pass lands first; the embedding of ~900 new chunks follows.
    wait_until(lambda: daemon.root_status(busy)["files"] == 31, timeout=120)
    (crate / "src" / "fresh.rs").write_text("pub fn saved_while_busy() {}\n")
    wait_until(
        lambda: any(
            h["symbol"].endswith("saved_while_busy")
            for h in daemon.search("saved_while_busy", "--mode", "bm25", "--root", str(crate))
        ),
        timeout=60,
    )
    other = daemon.root_status(busy)
    assert not other["idle"] and other["vectors_pending"] > 0, other  # still embedding
    shown = daemon.cli("status").stdout
    assert f"{busy.resolve()}  [idle]" not in shown  # queued or embedding, never idle
    daemon.cli("remove", str(busy))  # takes effect within a step, not after the file
    assert [r["path"] for r in daemon.call("status")["roots"]] == [str(crate.resolve())]
