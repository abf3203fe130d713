from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from daemon.config import LogConfig, load_config
from ipc.errors import ConfigError
from tests.conftest import run_daemon_once, run_rcmd


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


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("[search]\nrrf_k = 0\n", "rrf_k", "above 0"),
        ("[search]\ncandidates = 0\n", "candidates", "above 0"),
        ("[search]\nnatural_lexical_weight = nan\n", "natural_lexical_weight", "finite"),
        ("[search]\nsymbol_weight = inf\n", "symbol_weight", "finite"),
        ("[search]\ndedupe = 1\n", "dedupe", "true or false"),
        ("[search]\nfusion = 3\n", "fusion", "a string"),
        ("[index]\nmax_file_bytes = 1.5\n", "max_file_bytes", "whole number"),
        ("[index]\nmax_file_bytes = true\n", "max_file_bytes", "whole number"),
        ("[index]\ncommit_interval_s = false\n", "commit_interval_s", "a number"),
        ("[index]\npoll_interval_s = 0.0\n", "poll_interval_s", "above 0"),
        ('[log]\nlevel = "verbose"\n', "level", "one of debug, info"),
        ("[log]\nmax_bytes = 0\n", "max_bytes", "above 0"),
    ],
)
def test_a_bad_value_in_the_file_names_its_key(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(ConfigError, match=rf"\] {key} in .*config\.toml: .*{problem}"):
        load_config({"RCMD_HOME": str(tmp_path)})


@pytest.mark.parametrize(
    ("var", "value", "problem"),
    [
        ("RCMD_SEARCH_NATURAL_LEXICAL_WEIGHT", "nan", "finite"),
        ("RCMD_SEARCH_NATURAL_LEXICAL_WEIGHT", "-inf", "finite"),
        ("RCMD_SEARCH_IDENTIFIER_LEXICAL_WEIGHT", "inf", "finite"),
        ("RCMD_SEARCH_DEDUPE", "flase", "true or false"),
        ("RCMD_SEARCH_DEDUPE", "", "true or false"),
        ("RCMD_INDEX_MAX_FILE_BYTES", "1.5", "whole number"),
        ("RCMD_SEARCH_RRF_K", "0", "above 0"),
        ("RCMD_LOG_LEVEL", "verbose", "one of"),
    ],
)
def test_a_bad_variable_names_it(tmp_path: Path, var: str, value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{var} \(.*\): .*{problem}"):
        load_config({"RCMD_HOME": str(tmp_path), var: value})


def test_good_values_are_read_as_their_type(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        '[index]\nmax_file_bytes = 2000.0\ncommit_interval_s = 2\n[log]\nlevel = "DEBUG"\n'
    )
    env = {"RCMD_HOME": str(tmp_path), "RCMD_SEARCH_RRF_K": "7"}
    bools = {"TRUE": True, "1": True, "Yes": True, "false": False, "0": False, "NO": False}
    for text, value in bools.items():
        cfg = load_config({**env, "RCMD_SEARCH_DEDUPE": text})
        assert cfg.search.dedupe is value
    assert cfg.index.max_file_bytes == 2000 and type(cfg.index.max_file_bytes) is int
    assert cfg.index.commit_interval_s == 2.0 and type(cfg.index.commit_interval_s) is float
    assert cfg.search.rrf_k == 7
    assert cfg.log.level == "debug"


def test_log_levels_are_the_loggers() -> None:
    known = {name.lower() for name in logging.getLevelNamesMapping()}
    assert set(LogConfig.CHOICES["level"]) <= known


def test_the_daemon_refuses_a_bad_value_at_start(tmp_path: Path) -> None:
    """The reported case: a NaN weight started a daemon that answered nothing."""
    env = {**os.environ, "RCMD_HOME": str(tmp_path), "RCMD_SEARCH_NATURAL_LEXICAL_WEIGHT": "nan"}
    proc = run_daemon_once(env)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "RCMD_SEARCH_NATURAL_LEXICAL_WEIGHT" in lines[0], proc.stderr
    assert "finite" in lines[0]


def test_status_with_the_daemon_down_says_the_config_is_broken(tmp_path: Path) -> None:
    env = {**os.environ, "RCMD_HOME": str(tmp_path)}
    (tmp_path / "config.toml").write_text("[search]\ncandidates = 0\n")
    proc = run_rcmd("status", env=env)
    assert proc.returncode == 1
    assert proc.stderr.startswith("rcmd: daemon not running, and it cannot start: [search] ")
    assert "candidates" in proc.stderr and "search starts it" not in proc.stderr
    (tmp_path / "config.toml").unlink()
    proc = run_rcmd("status", env=env)
    assert proc.returncode == 1 and "cannot start" not in proc.stderr
