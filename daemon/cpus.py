"""Which CPUs this process may use, and of what kind: the embedder sizes its runs by it.

`os.cpu_count()` counts the machine's CPUs, not this process's: under a cpuset or a CPU
quota (containers, systemd's CPUQuota=) it overstates them, and onnxruntime then starts
more threads than there are CPUs to run them. SMT siblings (lscpu's "Thread(s) per core"
above 1) share one core's vector units, so two single-threaded runs on them compete
instead of adding up. And int8 matrix products only beat float ones where the CPU has
VNNI instructions (AVX-512 VNNI or AVX-VNNI): measured, the int8 graph ran 1.5x the float
one on such a CPU and no faster on an AVX2-only EPYC.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SYS_CPU = Path("/sys/devices/system/cpu")
#: CPU flags (as /proc/cpuinfo and lscpu name them) of the instructions int8 products use.
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni"})
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


@dataclass(frozen=True, slots=True)
class CpuInfo:
    #: CPUs this process may run on: its affinity, capped by a cgroup CPU quota.
    usable: int
    #: Physical cores among its affinity (SMT siblings counted once).
    cores: int
    model: str
    vnni: bool

    def to_json(self) -> dict[str, object]:
        return {"usable": self.usable, "cores": self.cores, "model": self.model, "vnni": self.vnni}

    @property
    def spare(self) -> bool:
        """Whether a worker process can run beside this one on a CPU of its own (the
        graph and Tantivy-document workers pay only then)."""
        return self.usable >= 2

    @property
    def signature(self) -> str:
        """What a measured layout depends on: the same on the same machine and limits."""
        return f"{self.model}|usable={self.usable}|cores={self.cores}|vnni={self.vnni}"


def usable_cpus(affinity: int, quota: float | None) -> int:
    """CPUs to plan for: the affinity's size, capped by a quota of `quota` CPUs."""
    if quota is None:
        return max(1, affinity)
    return max(1, min(affinity, math.ceil(quota)))


def parse_cpu_max(text: str) -> float | None:
    """cgroup v2 `cpu.max` ("max 100000" or "200000 100000") as CPUs, None for no quota."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        return int(parts[0]) / int(parts[1])
    except (ValueError, ZeroDivisionError):
        return None


def physical_cores(cpus: Iterable[int], sys_cpu: Path = SYS_CPU) -> int:
    """Distinct (package, core) pairs of `cpus`; each CPU counts alone where the
    topology cannot be read."""
    seen: set[tuple[str, str]] = set()
    for cpu in cpus:
        topo = sys_cpu / f"cpu{cpu}" / "topology"
        try:
            key = (
                (topo / "physical_package_id").read_text().strip(),
                (topo / "core_id").read_text().strip(),
            )
        except OSError:
            key = ("cpu", str(cpu))
        seen.add(key)
    return max(1, len(seen))


def _cpuinfo() -> tuple[str, bool]:
    model, flags = "unknown", ""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model == "unknown":
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = value
    return model, not VNNI_FLAGS.isdisjoint(flags.split())


def cpu_info() -> CpuInfo:
    """This process's CPUs (Linux's affinity, cgroup v2 quota and topology; elsewhere
    `os.cpu_count()` and no topology)."""
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        affinity = list(range(os.cpu_count() or 1))
    try:
        quota = parse_cpu_max(CGROUP_CPU_MAX.read_text())
    except OSError:
        quota = None
    usable = usable_cpus(len(affinity), quota)
    cores = min(usable, physical_cores(affinity))
    model, vnni = _cpuinfo()
    return CpuInfo(usable=usable, cores=cores, model=model, vnni=vnni)
