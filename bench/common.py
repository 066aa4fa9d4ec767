"""Helpers shared by the benchmarks: timing, machine description, and the fixtures path."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# the checkout's parent holds shared/ (or, for a git worktree nested deeper, an ancestor does)
FIXTURES = next(
    (p / "shared" / "fixtures" for p in REPO.parents if (p / "shared" / "fixtures").is_dir()),
    REPO.parent / "shared" / "fixtures",
)
OUT = REPO / "bench" / "out"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


def best_of(fn: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    """Median wall time of ``repeats`` calls (the machines are shared: the median resists noise)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times
