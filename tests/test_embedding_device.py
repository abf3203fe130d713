"""`[embedding] device`: the CUDA provider when asked for or available, the CPU otherwise,
said in status; and the GPU's padded batches give the vectors texts get alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from daemon.config import EmbeddingConfig, load_config
from daemon.embedder import (
    CUDA_PROVIDER,
    GPU_FIX,
    DeviceChoice,
    Embedder,
    _OfflineModel,
    choose_device,
)
from daemon.layout import Layout
from ipc.errors import ConfigError
from tests.conftest import REPO, Daemon, run_daemon_once, wait_until

HAS_CUDA = CUDA_PROVIDER in ort.get_available_providers()


def test_device_choice() -> None:
    cpu_only = ["CPUExecutionProvider"]
    with_cuda = [CUDA_PROVIDER, "CPUExecutionProvider"]
    assert choose_device("auto", cpu_only) == DeviceChoice(
        "auto", "cpu", "no CUDA provider in onnxruntime"
    )
    assert choose_device("auto", with_cuda).used == "cuda"
    assert choose_device("cuda", with_cuda).providers == with_cuda
    assert choose_device("cpu", with_cuda).providers == cpu_only
    with pytest.raises(ConfigError) as err:
        choose_device("cuda", cpu_only)
    assert GPU_FIX in str(err.value) and "CPUExecutionProvider" in str(err.value)


def test_device_is_checked_in_the_config(tmp_path: Path) -> None:
    env = {"RCMD_HOME": str(tmp_path), "RCMD_EMBEDDING_DEVICE": "tpu"}
    with pytest.raises(ConfigError, match="must be one of auto, cpu, cuda"):
        load_config(env)
    assert load_config({**env, "RCMD_EMBEDDING_DEVICE": "cuda"}).embedding.device == "cuda"


def test_embedder_reports_its_device(embedder: Any, tmp_path: Path) -> None:
    want = "cuda" if HAS_CUDA else "cpu"
    assert embedder.device_status()["used"] == want
    assert embedder.device_status()["requested"] == "auto"
    cpu = Embedder(EmbeddingConfig(device="cpu"), tmp_path)
    assert cpu.device_status() == {"requested": "cpu", "used": "cpu", "reason": "configured"}
    text = "fn add(a: u32, b: u32) -> u32 { a + b }"
    assert float(np.dot(cpu.embed([text])[0], embedder.embed([text])[0])) > 0.999


@pytest.mark.skipif(HAS_CUDA, reason="onnxruntime here has the CUDA provider")
def test_cuda_without_the_provider_fails_the_start(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "home", RCMD_EMBEDDING_DEVICE="cuda")
    proc = run_daemon_once(daemon.env)
    assert proc.returncode == 1
    assert GPU_FIX in proc.stderr and "CUDAExecutionProvider" in proc.stderr


def test_padded_batches_equal_texts_alone(tmp_path: Path) -> None:
    """The GPU path (length-sorted batches padded to a multiple of 8, masked mean), run
    here on the CPU with the float graph: padding must not move any vector."""
    cfg = EmbeddingConfig(quantize=False)
    model = _OfflineModel(cfg, tmp_path, Layout(1, 1), DeviceChoice("cpu", "cpu", "test"))
    texts = [f"fn f{i}() {{ {'let x = 1; ' * (i % 13)} }}" for i in range(40)]
    texts.append("/// a doc\npub struct Point { x: f64, y: f64 }")
    batched = model.embed_batched(texts)
    model.batched = False
    alone = model.embed(texts, cfg)
    model.close()
    cosines = (batched * alone).sum(axis=1)
    assert cosines.min() > 0.9999


@pytest.mark.slow
def test_status_says_which_device(daemon: Daemon) -> None:
    status = wait_until(lambda: (s := daemon.call("status"))["embedding"]["loaded"] and s)
    device = status["embedding"]["device"]
    assert device["requested"] == "auto"
    if not HAS_CUDA:
        assert device == {
            "requested": "auto",
            "used": "cpu",
            "reason": "no CUDA provider in onnxruntime",
        }
    human = daemon.cli("status").stdout
    assert f"device: {device['used']} (auto: {device['reason']})" in human
    assert "cluster" not in human
    assert status["cluster"] == {
        "address": "",
        "state": "off",
        "workers": 0,
        "chunks_embedded": 0,
    }


def test_ray_is_imported_only_for_a_cluster() -> None:
    """Without an address the daemon's modules never import Ray (start-up and memory
    stay as they were)."""
    code = (
        "import sys, daemon.main, daemon.service, daemon.pipeline, daemon.cluster\n"
        "print('ray' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert out.stdout.strip() == "False"
