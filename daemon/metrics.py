"""Process figures for status: resident memory now and at peak."""

from __future__ import annotations

import os
import resource
import sys


def rss_bytes() -> int:
    """Current resident set size; falls back to the peak where /proc is missing (macOS)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024
