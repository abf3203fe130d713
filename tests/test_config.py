from __future__ import annotations

from pathlib import Path

import pytest

from daemon.config import load_config
from ipc.errors import ConfigError


def test_defaults_under_rcmd_home(tmp_path: Path) -> None:
    cfg = load_config({"RCMD_HOME": str(tmp_path)})
    assert cfg.paths.socket == tmp_path / "run" / "rcmd.sock"
    assert cfg.paths.embed_cache.parent == tmp_path / "cache"
    assert cfg.index.max_file_bytes == 1 << 20
    assert cfg.embedding.model == "default"
    assert cfg.vector_store.url == ""


def test_toml_then_env_override(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        '[index]\nmax_file_bytes = 2000\ndebounce_ms = 50\n[vector_store]\nurl = "http://q:6333"\n'
    )
    env = {"RCMD_HOME": str(tmp_path), "RCMD_INDEX_DEBOUNCE_MS": "20"}
    cfg = load_config(env)
    assert cfg.index.max_file_bytes == 2000
    assert cfg.index.debounce_ms == 20
    assert cfg.vector_store.url == "http://q:6333"


@pytest.mark.parametrize(
    "text",
    [
        "[index]\nmax_file_bytes = 'big'\n",
        "[index]\nno_such_key = 1\n",
        "[nope]\n",
        "[index\n",
        "index = 3\n",
        "[index]\ndebounce_ms = -5\n",
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, text: str) -> None:
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(ConfigError):
        load_config({"RCMD_HOME": str(tmp_path)})


def test_bad_env_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"max_file_bytes"):
        load_config({"RCMD_HOME": str(tmp_path), "RCMD_INDEX_MAX_FILE_BYTES": "lots"})


def test_memory_vector_store_is_refused_outside_tests(tmp_path: Path) -> None:
    env = {"RCMD_HOME": str(tmp_path), "RCMD_VECTOR_STORE_URL": ":memory:"}
    with pytest.raises(ConfigError, match="loses them at every restart"):
        load_config(env)
    assert load_config({**env, "RCMD_TEST_MEMORY_VECTORS": "1"}).vector_store.url == ":memory:"


def test_a_value_outside_its_choices_names_them(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[search]\nfusion = "combsun"\n')
    with pytest.raises(ConfigError, match=r"\[search\] fusion in .*one of rrf, adaptive, combsum"):
        load_config({"RCMD_HOME": str(tmp_path)})
    cfg = load_config({"RCMD_HOME": str(tmp_path), "RCMD_SEARCH_FUSION": "adaptive"})
    assert cfg.search.fusion == "adaptive"
