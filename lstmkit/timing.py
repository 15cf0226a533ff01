"""Side-by-side timing, shared by ``lstmkit bench`` (bench.py) and its grid (bench_grid.py).

What it is: ``median_ms`` times contenders interleaved in one process (a busy machine slows them
alike) and keeps each one's median; ``machine`` says where the numbers came from; ``busy_cores``
keeps cores busy meanwhile, as another job on the machine would.
What it is not: a benchmark (no configs, no tables).
"""

from __future__ import annotations

import contextlib
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

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


@contextlib.contextmanager
def busy_cores(n: int) -> Iterator[None]:
    """n other processes, each spinning on a core for as long as the block runs (killed after it,
    also on an error or Ctrl-C): the timing of a machine that something else is using."""
    global _busy
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
             for _ in range(n)]
    _busy += n
    try:
        yield
    finally:
        _busy -= n
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


_busy = 0                               # processes busy_cores keeps spinning now


def machine() -> dict:
    """Where the numbers came from (busy: how many other processes spun meanwhile)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    built = kernels.cpp_available()
    return {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "backend": kernels.get_backend(), "cpp_kernel": built, "busy": _busy,
            "limits": kernels.limits() if built else None,
            "limits_from": kernels.tuning.mode() if built else None,
            "vector_bytes": kernels.load_extension().vector_bytes() if built else None}


def describe_limits(info: dict) -> str:
    """The kernels' path limits in force ("" without the kernel): measured here, or built in."""
    if not info.get("limits"):
        return ""
    measured = info.get("limits_from") == "measure"
    source = "measured on this machine" if measured else "built-in (LSTMKIT_TUNING=defaults)"
    return f"Path limits, {source}: " + ", ".join(f"{k} {v}" for k, v in sorted(info["limits"].items())) + "."


def describe(info: dict) -> str:
    """The machine line of a table: "CPU, 2 threads[, 1 other process spinning], torch 2.13.0[, kernel
    built for 64-byte vectors]" (64: AVX-512, 32: AVX2)."""
    busy = info.get("busy", 0)
    spinning = f", {busy} other process{'es' if busy > 1 else ''} spinning" if busy else ""
    vectors = f", kernel built for {info['vector_bytes']}-byte vectors" if info.get("vector_bytes") else ""
    return f"{info['cpu']}, {info['threads']} threads{spinning}, torch {info['torch']}{vectors}"
