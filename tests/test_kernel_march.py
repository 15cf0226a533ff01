"""The kernel as built for a CPU without AVX-512, checked against the oracles on this one.

The suite's kernel is built for this machine's instructions (-march=native; here AVX-512, 64-byte
vectors). Most users' CPUs have AVX2 only, where the kernel's vectors are 32 bytes and its register
block and panels narrower (cpu_math.h): other code, which the rest of the suite never runs. Here
the kernel is built with LSTMKIT_MARCH=x86-64-v3 (AVX2 and FMA, no AVX-512) into its own cache
folder, and the kernel and module oracle tests (every recurrence and cell against torch.nn and
autograd, both step-product paths, float32 and float64, odd sizes, the drop-in suite) run on it in
a second process. Skips where this CPU cannot run AVX2 code, where it has no AVX-512 (the suite's
own kernel is then the AVX2 one), or where the kernel cannot be built. About two minutes on a fresh
cache, most of it the build.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lstmkit import kernels

REPO = Path(__file__).resolve().parents[1]
ORACLE_TESTS = ["tests/test_kernels.py", "tests/test_gemm.py", "tests/test_cells_compiled.py",
                "tests/test_modules_oracle.py", "tests/test_compiled_inference.py", "tests/test_dropin.py"]


def _runs_avx2() -> bool:
    if platform.machine() not in ("x86_64", "AMD64"):
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return {"avx2", "fma"} <= set(flags)


@pytest.mark.skipif(not _runs_avx2(), reason="needs an x86-64 CPU that runs AVX2 code (Linux)")
def test_the_avx2_build_agrees_with_the_oracles():
    if not kernels.cpp_available():
        pytest.skip("the C++ CPU kernel could not be built on this machine")
    if kernels.load_extension().vector_bytes() == 32 and os.environ.get("LSTMKIT_MARCH", "native") == "native":
        pytest.skip("no AVX-512 here: the suite's own kernel is the AVX2 one, and every other test runs it")
    env = {**os.environ, "LSTMKIT_MARCH": "x86-64-v3", "LSTMKIT_BACKEND": "cpp"}
    probe = subprocess.run(
        [sys.executable, "-c", "from lstmkit import kernels; print(kernels.load_extension().vector_bytes())"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.split()[-1] == "32", probe.stdout        # AVX2's registers, not this CPU's widest
    command = [sys.executable, "-m", "pytest", "-x", "-p", "no:cacheprovider", "-o", "addopts=", "-W", "ignore"]
    run = subprocess.run([*command, *ORACLE_TESTS], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    passed = re.search(r"(\d+) passed", run.stdout)
    assert passed and int(passed.group(1)) >= 500 and " failed" not in run.stdout, run.stdout[-2000:]


def test_a_march_that_is_not_a_target_name_is_refused(monkeypatch):
    monkeypatch.setenv("LSTMKIT_MARCH", "native -fplugin=evil.so")
    with pytest.raises(ValueError, match="LSTMKIT_MARCH must name a -march target"):
        kernels._cflags()
    monkeypatch.setenv("LSTMKIT_MARCH", "x86-64-v3")
    assert "-march=x86-64-v3" in kernels._cflags()
