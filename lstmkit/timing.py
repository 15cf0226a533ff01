"""Side-by-side timing, shared by ``lstmkit bench`` (bench.py) and its grid (bench_grid.py).

What it is: ``median_ms`` times contenders interleaved in one process (a busy machine slows them
alike) and keeps each one's median; ``machine`` says where the numbers came from.
What it is not: a benchmark (no configs, no tables).
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable

import torch

from lstmkit import kernels


def median_ms(fns: dict[str, Callable[[], object]], repeats: int, min_s: float) -> dict[str, float]:
    """Interleaved timing: warm every contender, pick a per-contender inner count so a sample lasts
    about min_s, then in each repeat time every contender once; median ms per call."""
    inner = {}
    for name, fn in fns.items():
        fn()
        t0 = time.perf_counter()
        fn()
        once = max(time.perf_counter() - t0, 1e-6)
        inner[name] = max(1, int(min_s / once))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner[name]):
                fn()
            samples[name].append((time.perf_counter() - t0) / inner[name] * 1e3)
    return {name: statistics.median(s) for name, s in samples.items()}


def machine() -> dict:
    """Where the numbers came from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "backend": kernels.get_backend(), "cpp_kernel": kernels.cpp_available()}
