"""The kernel build cache under faults: killed builders, held locks, failed builds, cache keys.

Most tests replace the compiler step (``build._compile``) and the import (``build._import``) with
fakes, so they run in milliseconds yet go through the real locking, temporary folder and rename;
the kill tests SIGKILL real processes. One test compiles a tiny real extension (a few seconds) with
a compiler wrapper that stalls, and kills it part-way; it skips without a compiler or ninja.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import types
from pathlib import Path

import pytest

import lstmkit.kernels as kernels
from lstmkit.kernels import build

REPO = Path(__file__).resolve().parents[1]
KERNELS = REPO / "lstmkit" / "kernels"


def _checkout(tmp_path: Path, name: str) -> Path:
    """A copy of the kernel sources elsewhere, as a second checkout would have them."""
    dst = tmp_path / name
    shutil.copytree(KERNELS, dst, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return dst


def _args(src: Path, root: Path):
    return ("lstmkit_cpu", [src / s for s in kernels._SOURCES], [src / h for h in kernels._HEADERS],
            kernels._cflags(), ["-fopenmp"], root)


class FakeCompiler:
    """Writes a module file into the build folder like the real build; counts calls."""

    def __init__(self, delay: float = 0.0, fail: str | None = None):
        self.calls, self.delay, self.fail = 0, delay, fail

    def __call__(self, name, folder, sources, cflags, ldflags, verbose):
        self.calls += 1
        assert all(Path(s).parent == folder / "src" for s in sources)  # compiled from the private copy
        (folder / "half.o").write_text("partial")
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError(self.fail)
        so = folder / f"{name}.so"
        so.write_text("fake")
        return types.SimpleNamespace(__file__=str(so), fake=True)


@pytest.fixture
def fake(monkeypatch):
    compiler = FakeCompiler()
    monkeypatch.setattr(build, "_compile", compiler)
    monkeypatch.setattr(build, "_import", lambda path: types.SimpleNamespace(__file__=str(path), fake=True))
    return compiler


# ---- the cache key ----------------------------------------------------------------------------

def test_two_checkouts_share_one_build(tmp_path, fake):
    a, b = _checkout(tmp_path, "a"), _checkout(tmp_path, "b")
    root = tmp_path / "cache"
    assert build.build_dir(root, "x", {"f": b"1"}, [], []) == build.build_dir(root, "x", {"f": b"1"}, [], [])
    m1 = build.load_cached(*_args(a, root), log=lambda m: None)
    m2 = build.load_cached(*_args(b, root), log=lambda m: None)
    assert fake.calls == 1 and Path(m1.__file__).name == Path(m2.__file__).name
    assert [p.name for p in root.iterdir() if p.is_dir()] == [Path(m2.__file__).parent.name]


def test_key_follows_sources_flags_compiler_and_cpu(tmp_path, monkeypatch):
    root = tmp_path
    files = {"a.cpp": b"int f();", "a.h": b"#pragma once"}
    base = build.build_dir(root, "m", files, ["-O3"], [])
    assert build.build_dir(root, "m", {**files, "a.h": b"#pragma once\n"}, ["-O3"], []) != base  # a header
    assert build.build_dir(root, "m", files, ["-O2"], []) != base
    assert build.build_dir(root, "m", files, ["-O3"], ["-lm"]) != base
    monkeypatch.setenv("CXX", "clang++-17")
    monkeypatch.setattr(build, "compiler_version", lambda cxx: "clang version 17.0.6")
    other_cxx = build.build_dir(root, "m", files, ["-O3"], [])
    assert other_cxx != base
    monkeypatch.setattr(build, "compiler_version", lambda cxx: "clang version 18.1.0")
    assert build.build_dir(root, "m", files, ["-O3"], []) != other_cxx
    monkeypatch.setattr(build, "cpu_features", lambda: "aarch64\nfeatures=fp asimd")
    assert build.build_dir(root, "m", files, ["-O3"], []) != other_cxx


X86 = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 85
model name\t: Intel(R) Xeon(R) Gold 6230
microcode\t: 0x5003604
flags\t\t: fpu sse2 avx2 avx512f
processor\t: 1
flags\t\t: fpu sse2
"""
ARM = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes sve
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x1
CPU part\t: 0xd40
"""


def test_cpu_features_on_every_platform():
    x86 = build.cpu_features("Linux", X86)
    assert "flags=fpu sse2 avx2 avx512f" in x86 and "Gold 6230" in x86 and "microcode" not in x86
    arm = build.cpu_features("Linux", ARM)
    assert "features=fp asimd evtstrm aes sve" in arm and "cpu part=0xd40" in arm
    assert build.cpu_features("Linux", ARM.replace(" sve", "")) != arm  # a CPU without SVE: another build
    mac = {("-n", "machdep.cpu.brand_string"): "Apple M2", ("hw.optional",): "hw.optional.arm.FEAT_BF16: 1"}
    got = build.cpu_features("Darwin", sysctl=lambda *a: mac.get(a, ""))
    assert "Apple M2" in got and "FEAT_BF16" in got
    mac[("hw.optional",)] = "hw.optional.arm.FEAT_BF16: 0"
    assert build.cpu_features("Darwin", sysctl=lambda *a: mac.get(a, "")) != got
    assert "processor=" in build.cpu_features("Windows")
    assert "processor=" in build.cpu_features("Linux", "")  # no /proc/cpuinfo: still a key


def test_kernels_build_dir_is_the_content_key(monkeypatch, tmp_path):
    monkeypatch.setenv("LSTMKIT_CACHE", str(tmp_path))
    src = KERNELS
    assert kernels._build_dir() == build.build_dir(tmp_path, "lstmkit_cpu", {
        n: (src / n).read_bytes() for n in kernels._SOURCES + kernels._HEADERS}, kernels._cflags(), ["-fopenmp"])


# ---- failed builds, leftovers -------------------------------------------------------------------

def test_failed_build_leaves_nothing_and_falls_back_with_one_line(tmp_path, monkeypatch, fake):
    fake.fail = "c++: error: unrecognized command-line option '-march=native'\nmore"
    monkeypatch.setenv("LSTMKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(kernels, "_ext", None)
    monkeypatch.setattr(kernels, "_build_error", None)
    monkeypatch.setattr(kernels, "_warned", False)
    monkeypatch.setattr(kernels, "_backend", "auto")
    assert kernels.load_extension() is None
    assert kernels._build_error == "RuntimeError: c++: error: unrecognized command-line option '-march=native'"
    assert [p.name for p in tmp_path.iterdir()] == [kernels._build_dir().name + ".lock"]  # no half-build
    import torch
    with pytest.warns(UserWarning, match="unavailable .*unrecognized.*pure-PyTorch") as record:
        kernels.recurrence_for(torch.zeros(2, 1))
        kernels.recurrence_for(torch.zeros(2, 1))
    assert len(record) == 1
    assert fake.calls == 1  # never retried in this process


def test_leftovers_of_a_killed_build_are_removed_and_never_loaded(tmp_path, fake):
    root = tmp_path / "cache"
    final = build.build_dir(root, *_args(KERNELS, root)[:1], {
        n: (KERNELS / n).read_bytes() for n in kernels._SOURCES + kernels._HEADERS}, kernels._cflags(), ["-fopenmp"])
    stale = root / f".{final.name}.tmp-{socket.gethostname()}-999999-deadbeef"
    alive = root / f".{final.name}.tmp-{socket.gethostname()}-{os.getpid()}-cafecafe"  # another live builder's
    alive.mkdir(parents=True)
    (stale / "src").mkdir(parents=True)
    (stale / "lstmkit_cpu.so").write_text("half")
    final.mkdir()                                  # a final folder without its marker: not ours, replaced
    (final / "lock").write_text("")                # torch's own baton, as the old loader left it
    module = build.load_cached(*_args(KERNELS, root), log=lambda m: None)
    assert fake.calls == 1 and not stale.exists() and alive.exists()
    assert Path(module.__file__).name == "lstmkit_cpu.so" and (final / "MODULE").read_text() == "lstmkit_cpu.so"


# ---- locks ----------------------------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import fcntl, json, os, socket, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    pid = int(sys.argv[2]) if len(sys.argv) > 2 else os.getpid()
    os.write(fd, json.dumps({"pid": pid, "host": socket.gethostname(), "time": time.time()}).encode())
    print("locked", flush=True)
    time.sleep(60)
""")


def _hold_lock(lock: Path, *pid: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock), *pid], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


def _lock_of(root: Path) -> Path:
    files = {n: (KERNELS / n).read_bytes() for n in kernels._SOURCES + kernels._HEADERS}
    final = build.build_dir(root, "lstmkit_cpu", files, kernels._cflags(), ["-fopenmp"])
    root.mkdir(parents=True, exist_ok=True)
    return root / f"{final.name}.lock"


@pytest.mark.skipif(build.fcntl is None, reason="no flock on this platform")
def test_wait_for_a_live_builder_is_bounded_and_names_it(tmp_path, fake):
    root = tmp_path / "cache"
    holder = _hold_lock(_lock_of(root))
    try:
        messages = []
        t0 = time.monotonic()
        with pytest.raises(build.BuildTimeout, match=f"waited 1s for pid {holder.pid} on .* to finish building "
                                                     f"the CPU kernel in {root}"):
            build.load_cached(*_args(KERNELS, root), wait_s=1.0, log=messages.append)
        assert time.monotonic() - t0 < 5
        assert len(messages) == 1 and re.fullmatch(
            re.escape(f"lstmkit: waiting for pid {holder.pid} on {socket.gethostname()} (started ") + r"\d+"
            + re.escape(f"s ago) to finish building the CPU kernel in {_lock_of(root).with_suffix('')} "
                        "(up to 1s; $LSTMKIT_BUILD_WAIT sets it)..."), messages[0])
        assert fake.calls == 0
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.skipif(build.fcntl is None, reason="no flock on this platform")
def test_bad_wait_setting_is_one_line(tmp_path, monkeypatch, fake):
    monkeypatch.setenv("LSTMKIT_BUILD_WAIT", "ten")
    with pytest.raises(ValueError, match="LSTMKIT_BUILD_WAIT must be a number of seconds; got 'ten'"):
        build.load_cached(*_args(KERNELS, tmp_path))


@pytest.mark.skipif(build.fcntl is None, reason="no flock on this platform")
def test_timeout_falls_back_in_kernels(tmp_path, monkeypatch, fake):
    root = tmp_path / "cache"
    monkeypatch.setenv("LSTMKIT_CACHE", str(root))
    monkeypatch.setenv("LSTMKIT_BUILD_WAIT", "0.5")
    monkeypatch.setattr(kernels, "_ext", None)
    monkeypatch.setattr(kernels, "_build_error", None)
    holder = _hold_lock(_lock_of(root))
    try:
        assert kernels.load_extension() is None
        assert kernels._build_error.startswith(f"BuildTimeout: waited 0s for pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.skipif(build.fcntl is None, reason="no flock on this platform")
def test_lock_held_for_a_dead_owner_is_taken_over(tmp_path, fake):
    """The flock is held (by a leaked descriptor, say a forked child) but the recorded owner is gone."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    root = tmp_path / "cache"
    holder = _hold_lock(_lock_of(root), str(dead.pid))
    try:
        messages = []
        t0 = time.monotonic()
        build.load_cached(*_args(KERNELS, root), wait_s=30, log=messages.append)
        assert fake.calls == 1 and time.monotonic() - t0 < 5
        assert f"owner pid {dead.pid} is gone; building anyway" in messages[1]
    finally:
        holder.kill()
        holder.wait()


def test_stale_lock_file_of_a_dead_process_does_not_wait(tmp_path, fake):
    lock = _lock_of(tmp_path / "cache")
    lock.write_text(json.dumps({"pid": 999999, "host": socket.gethostname(), "time": 0}))
    messages = []
    t0 = time.monotonic()
    build.load_cached(*_args(KERNELS, tmp_path / "cache"), wait_s=30, log=messages.append)
    assert time.monotonic() - t0 < 2 and fake.calls == 1 and len(messages) == 1
    assert json.loads(lock.read_text())["pid"] == os.getpid()


def test_concurrent_loaders_build_once(tmp_path, fake):
    fake.delay = 0.5
    root = tmp_path / "cache"
    results, messages = [], []
    threads = [threading.Thread(target=lambda: results.append(
        build.load_cached(*_args(KERNELS, root), wait_s=30, log=messages.append))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and fake.calls == 1, messages
    assert sum(m.startswith("lstmkit: compiling") for m in messages) == 1


# ---- SIGKILL during a build ---------------------------------------------------------------------

KILLED_BUILDER = textwrap.dedent("""
    import sys, time, types
    from pathlib import Path
    from lstmkit.kernels import build
    import lstmkit.kernels as kernels
    def slow(name, folder, sources, cflags, ldflags, verbose):
        (folder / "lstmkit_cpu.so").write_text("half")   # a half-written module
        print("compiling", flush=True)
        time.sleep(120)
    build._compile = slow
    src = Path(kernels.__file__).parent
    build.load_cached("lstmkit_cpu", [src / s for s in kernels._SOURCES], [src / h for h in kernels._HEADERS],
                      kernels._cflags(), ["-fopenmp"], Path(sys.argv[1]))
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="no SIGKILL")
def test_sigkill_during_build_then_next_process_builds_without_waiting(tmp_path, fake):
    root = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    victim = subprocess.Popen([sys.executable, "-c", KILLED_BUILDER, str(root)], stdout=subprocess.PIPE,
                              text=True, env=env)
    assert victim.stdout.readline().strip() == "compiling"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert list(root.glob(".torch*.tmp-*"))  # what the killed build left
    messages = []
    t0 = time.monotonic()
    module = build.load_cached(*_args(KERNELS, root), wait_s=60, log=messages.append)
    assert time.monotonic() - t0 < 5 and fake.calls == 1
    assert len(messages) == 1 and messages[0].startswith("lstmkit: compiling")  # no wait announced
    assert not list(root.glob(".torch*.tmp-*")) and Path(module.__file__).read_text() == "fake"


TINY = """
#include <Python.h>
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "tinyext", NULL, -1, NULL};
PyMODINIT_FUNC PyInit_tinyext(void) {
    PyObject *m = PyModule_Create(&def);
    if (m) PyModule_AddIntConstant(m, "answer", 42);
    return m;
}
"""
WRAPPER = """#!/bin/sh
case " $* " in *" -c "*) if [ -n "$TINY_CXX_STALL" ]; then echo stalled > "$TINY_CXX_STALL"; sleep 60; fi;; esac
exec c++ "$@"
"""
REAL_BUILDER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from lstmkit.kernels import build
    m = build.load_cached("tinyext", [Path(sys.argv[1])], [], ["-O0"], [], Path(sys.argv[2]), what="tinyext")
    print("answer", m.answer, flush=True)
""")


@pytest.mark.skipif(shutil.which("c++") is None or shutil.which("ninja") is None or not hasattr(os, "killpg"),
                    reason="needs c++, ninja and process groups")
def test_real_build_killed_part_way_then_rebuilt(tmp_path):
    src = tmp_path / "tinyext.cpp"
    src.write_text(TINY)
    cxx = tmp_path / "cxx"
    cxx.write_text(WRAPPER)
    cxx.chmod(0o755)
    root, stalled = tmp_path / "cache", tmp_path / "stalled"
    env = {**os.environ, "PYTHONPATH": str(REPO), "CXX": str(cxx)}
    victim = subprocess.Popen([sys.executable, "-c", REAL_BUILDER, str(src), str(root)],
                              env={**env, "TINY_CXX_STALL": str(stalled)}, start_new_session=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not stalled.exists():  # the compiler is running inside the victim's build
            assert victim.poll() is None, victim.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        os.killpg(victim.pid, signal.SIGKILL)  # the builder, ninja and the compiler: the whole session
        victim.wait()
    assert list(root.glob(".torch*.tmp-*")) and not [p for p in root.glob("torch*") if p.is_dir()]
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", REAL_BUILDER, str(src), str(root)], env=env, capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "answer 42" and "waiting" not in out.stderr
    assert not list(root.glob(".torch*.tmp-*"))
    again = subprocess.run([sys.executable, "-c", REAL_BUILDER, str(src), str(root)], env=env, capture_output=True,
                           text=True, timeout=120)
    assert again.stdout.strip() == "answer 42" and "compiling" not in again.stderr  # from the cache
    print(f"rebuild after the kill: {time.monotonic() - t0:.1f}s")
