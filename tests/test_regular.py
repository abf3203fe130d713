"""`daemon.regular`: every read of a file in a root refuses what is not a regular file."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from daemon.ignore import IgnoreRules
from daemon.regular import NotRegularFile, open_regular, read_regular


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "lib.rs")
    with pytest.raises(NotRegularFile):
        open_regular(tmp_path / "lib.rs")


def test_a_final_symlink_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "real.rs").write_text("fn a() {}\n")
    (tmp_path / "link.rs").symlink_to(tmp_path / "real.rs")
    with pytest.raises(OSError) as caught:
        read_regular(tmp_path / "link.rs", 1 << 20)
    assert caught.value.errno == errno.ELOOP


def test_reads_stop_at_the_cap(tmp_path: Path) -> None:
    (tmp_path / "big.rs").write_bytes(b"// x\n" * 100)
    assert read_regular(tmp_path / "big.rs", 499)[0] is None
    data, st = read_regular(tmp_path / "big.rs", 500)
    assert data == b"// x\n" * 100 and st.st_size == 500


def test_an_ignore_file_that_is_a_fifo_or_a_link_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    for name in ("a.rs", "b.rs"):
        (tmp_path / "src" / name).write_text("")
    os.mkfifo(tmp_path / ".gitignore")
    (tmp_path / "patterns").write_text("a.rs\n")
    (tmp_path / "src" / ".ignore").symlink_to(tmp_path / "patterns")
    assert sorted(rel for rel, _ in IgnoreRules(tmp_path).walk()) == ["src/a.rs", "src/b.rs"]
