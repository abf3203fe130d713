"""The embedder's CPU layout (issue 24.1): topology read from this machine's files, the
candidates, the choice by measurement, and the choice kept for the next start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.config import EmbeddingConfig
from daemon.cpus import CpuInfo, cpu_info, parse_cpu_max, physical_cores, usable_cpus
from daemon.embedder import Embedder
from daemon.layout import Layout, LayoutStore, calibrated, calibration_texts, candidates


def test_cgroup_quota_and_affinity_bound_the_cpus() -> None:
    assert parse_cpu_max("max 100000\n") is None
    assert parse_cpu_max("150000 100000") == 1.5
    assert parse_cpu_max("garbage") is None
    assert usable_cpus(64, 1.5) == 2  # a container on a big host: 2 CPUs, not 64
    assert usable_cpus(2, None) == 2
    assert usable_cpus(4, 0.1) == 1


def test_smt_siblings_count_as_one_core(tmp_path: Path) -> None:
    for cpu, core in ((0, 0), (1, 0), (2, 1), (3, 1)):
        topo = tmp_path / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "physical_package_id").write_text("0\n")
        (topo / "core_id").write_text(f"{core}\n")
    assert physical_cores([0, 1, 2, 3], tmp_path) == 2
    assert physical_cores([0, 1], tmp_path) == 1
    assert physical_cores([7], tmp_path) == 1  # unreadable topology: the CPU alone


def test_this_machine_is_read() -> None:
    cpu = cpu_info()
    assert 1 <= cpu.cores <= cpu.usable and cpu.model


def test_candidates_cover_runs_threads_and_cores() -> None:
    plain = CpuInfo(usable=2, cores=2, model="m", vnni=False)
    assert candidates(plain) == [Layout(2, 1), Layout(1, 2)]
    smt = CpuInfo(usable=4, cores=2, model="m", vnni=False)
    assert candidates(smt) == [Layout(4, 1), Layout(1, 4), Layout(2, 1), Layout(2, 2)]
    assert candidates(CpuInfo(1, 1, "m", False)) == [Layout(1, 1)]
    # Worker processes (graphs, Tantivy documents) only with a CPU to spare.
    assert plain.spare and smt.spare and not CpuInfo(1, 1, "m", False).spare


def test_calibration_keeps_the_fastest_and_closes_the_rest(tmp_path: Path) -> None:
    cpu = CpuInfo(usable=4, cores=2, model="m", vnni=False)
    speed = {Layout(4, 1): 5.0, Layout(1, 4): 9.0, Layout(2, 1): 7.0, Layout(2, 2): 9.0}
    alive: set[Layout] = set()

    def build(lay: Layout) -> Layout:
        alive.add(lay)
        assert len(alive) <= 3
        return lay

    def close(lay: Layout) -> None:
        alive.remove(lay)
        closed.append(lay)

    closed: list[Layout] = []
    store = LayoutStore(tmp_path / "layout.json")
    got, layout, how = calibrated(cpu, store, "model", build, speed.__getitem__, close)
    assert got == layout == Layout(1, 4)  # the tie with 2x2 goes to the one measured first
    assert sorted(closed, key=str) == sorted(set(speed) - {layout}, key=str)
    assert alive == {layout}
    assert how["chosen_by"] == "measured" and how["tokens_per_s"]["1x4"] == 9
    again = calibrated(cpu, store, "model", lambda lay: lay, lambda _m: pytest.fail(), print)
    assert again[1] == Layout(1, 4) and again[2]["chosen_by"] == "measured earlier"
    # Another machine (or model) is measured on its own.
    other = CpuInfo(usable=4, cores=4, model="m", vnni=False)
    assert (
        calibrated(other, store, "model", lambda lay: lay, lambda _m: 1.0, print)[2]["chosen_by"]
        == "measured"
    )


def test_calibration_texts_span_chunk_lengths() -> None:
    lengths = [len(t) for t in calibration_texts()]
    assert len(lengths) == 24 and min(lengths) < 100 and max(lengths) > 600


@pytest.mark.parametrize("damage", ["", "{", '{"version": 1, "entries": {"x": 3}}', "[]"])
def test_a_damaged_layout_file_is_measured_again(tmp_path: Path, damage: str) -> None:
    (tmp_path / "embed-layout.json").write_text(damage)
    e = Embedder(EmbeddingConfig(), tmp_path)
    try:
        assert e.layout_status()["chosen_by"] == "measured"
        saved = json.loads((tmp_path / "embed-layout.json").read_text())
        assert saved["version"] == 1
        assert [e["runs"] for k, e in saved["entries"].items() if k != "x"] == [
            e.layout_status()["runs"]
        ]
    finally:
        e.close()


def test_the_real_model_measures_once_then_remembers(tmp_path: Path) -> None:
    first = Embedder(EmbeddingConfig(), tmp_path)
    status = first.layout_status()
    assert status["chosen_by"] == "measured"
    rates = status["tokens_per_s"]
    assert isinstance(rates, dict) and all(v > 0 for v in rates.values())
    vector = first.embed(["fn main() {}"])[0]
    first.close()
    second = Embedder(EmbeddingConfig(), tmp_path)
    assert second.layout_status()["chosen_by"] == "measured earlier"
    assert (second.layout_status()["runs"], second.layout_status()["threads"]) == (
        status["runs"],
        status["threads"],
    )
    # Layouts change the speed, never the vectors: each text still runs alone.
    assert float((second.embed(["fn main() {}"])[0] * vector).sum()) > 0.9999
    second.close()
    configured = Embedder(EmbeddingConfig(threads=1), tmp_path)
    assert configured.layout_status() | {"cpu": None} == {
        "runs": 1,
        "threads": 1,
        "chosen_by": "config",
        "cpu": None,
    }
    configured.close()
