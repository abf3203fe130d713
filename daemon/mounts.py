"""Kernel file systems (proc, sysfs, devtmpfs, ...): where they are mounted.

They hold kernel state, never source, and walking them costs: `/proc` alone lists a
folder per process and task. A root of `/` (indexed with `--yes`) leaves them out, and
a folder on one of them is refused as a root (an agent's `/proc/self` became a root
named after the daemon's pid, gone at the next start).
"""

from __future__ import annotations

import re
from pathlib import Path

#: File system types whose files are made up by the kernel.
KERNEL_TYPES = frozenset(
    {
        "autofs",
        "binfmt_misc",
        "bpf",
        "cgroup",
        "cgroup2",
        "configfs",
        "debugfs",
        "devpts",
        "devtmpfs",
        "efivarfs",
        "fusectl",
        "hugetlbfs",
        "mqueue",
        "proc",
        "pstore",
        "securityfs",
        "sysfs",
        "tracefs",
    }
)
MOUNTS = Path("/proc/self/mounts")
_ESCAPE = re.compile(r"\\([0-7]{3})")


def kernel_mounts(mounts: Path = MOUNTS) -> list[Path]:
    """The mount points of kernel file systems (none where `mounts` cannot be read:
    macOS has no such table, and its /dev is no folder anyone indexes either)."""
    try:
        text = mounts.read_text(errors="surrogateescape")
    except OSError:
        return []
    out: list[Path] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] in KERNEL_TYPES:
            # Spaces and tabs in a mount point are written as octal escapes (`\040`).
            out.append(Path(_ESCAPE.sub(lambda m: chr(int(m[1], 8)), fields[1])))
    return out


def kernel_mount_of(path: Path, mounts: list[Path]) -> Path | None:
    """The kernel file system `path` lies on (at or below its mount point), if any."""
    return next((m for m in mounts if m == path or m in path.parents), None)


def kernel_mounts_below(root: Path, mounts: list[Path]) -> frozenset[str]:
    """The kernel mount points strictly inside `root`, relative to it (posix)."""
    return frozenset(m.relative_to(root).as_posix() for m in mounts if root in m.parents)
