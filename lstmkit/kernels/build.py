"""Build-once cache of a JIT-compiled extension, safe under kills, crashes and concurrent processes.

What it is: ``load_cached(...)`` returns the extension built from given sources, building it at
most once per cache key into ``<root>/torch<version>-<key>``. The key is a hash of everything that
decides the binary: the source and header bytes (not their paths: two checkouts of the same sources
share one build), the flags, ``$CXX`` and the first line of its ``--version``, torch's version and
C++ ABI, the Python ABI tag, the machine and its CPU features (``flags`` on x86 Linux, ``Features``
on ARM Linux, ``sysctl`` on macOS, ``platform.processor()`` elsewhere).

How a build runs:

- the sources are copied (the very bytes that were hashed) into a private temporary folder
  ``<root>/.<dir>.tmp-<pid>-<random>``, compiled there, and the folder is renamed into place only
  after the module imported: a half-build is never seen under the final name;
- one builder per key at a time: an ``fcntl.flock`` on ``<root>/<dir>.lock``, which records the
  owner's pid, host and start time. The kernel drops a flock when its owner dies (SIGKILL, OOM
  killer, a closed terminal), so a dead builder never blocks anyone; a lock still held although
  the recorded owner (on this host) is gone, e.g. by a forked child, is taken over;
- a waiter waits at most ``wait_s`` seconds (``$LSTMKIT_BUILD_WAIT``, default 600), says once
  whom and what it waits for, and then raises ``BuildTimeout`` (callers fall back);
- where flock is unavailable (Windows, some network file systems) it builds without a lock: the
  private folder and the atomic rename still keep every result whole, at worst built twice;
- temporary folders left by killed builders are removed by the next builder of the same key.

What it is not: a general build system. It imports nothing of lstmkit.
"""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import json
import os
import platform
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Sequence
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

DEFAULT_WAIT_S = 600.0
_MARKER = "MODULE"          # in a finished build folder: the file name of the module to import


class BuildTimeout(TimeoutError):
    """Another process held the build lock for longer than the wait allowed."""


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- the cache key --------------------------------------------------------------------------------

def compiler() -> str:
    """The C++ compiler command torch's JIT build uses (``$CXX``, else c++; cl on Windows)."""
    return os.environ.get("CXX", "cl" if sys.platform == "win32" else "c++")


def compiler_version(cxx: str) -> str:
    """First line of ``$CXX --version``, or why it could not be run."""
    try:
        out = subprocess.run([*shlex.split(cxx), "--version"], capture_output=True, text=True, timeout=60)
        text = out.stdout or out.stderr
        return next((ln.strip() for ln in text.splitlines() if ln.strip()), f"exit {out.returncode}")
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        return f"unavailable ({type(e).__name__})"


_CPUINFO_KEYS = ("vendor_id", "cpu family", "model", "model name", "flags", "features", "cpu implementer",
                 "cpu architecture", "cpu variant", "cpu part", "isa", "cpu")


def _sysctl(*args: str) -> str:
    try:
        return subprocess.run(["sysctl", *args], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_features(system: str | None = None, cpuinfo: str | None = None,
                 sysctl: Callable[..., str] = _sysctl) -> str:
    """What -march=native reads from this CPU, as text: on Linux the first value of each of
    ``_CPUINFO_KEYS`` in /proc/cpuinfo (x86 'flags' and 'model name', ARM 'Features' and 'CPU part',
    RISC-V 'isa', ...); on macOS the brand string, features and ``hw.optional`` from sysctl; else, or
    when those give nothing, ``platform.processor()``. Always prefixed with the machine name."""
    system = system or platform.system()
    parts = [platform.machine()]
    if system == "Linux":
        if cpuinfo is None:
            try:
                cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
            except OSError:
                cpuinfo = ""
        seen: dict[str, str] = {}
        for line in cpuinfo.splitlines():
            key, sep, value = line.partition(":")
            key = key.strip().lower()
            if sep and key in _CPUINFO_KEYS and key not in seen:
                seen[key] = " ".join(value.split())
        parts += [f"{k}={seen[k]}" for k in _CPUINFO_KEYS if k in seen]
    elif system == "Darwin":
        for name in ("machdep.cpu.brand_string", "machdep.cpu.features", "machdep.cpu.leaf7_features"):
            value = sysctl("-n", name)
            if value:
                parts.append(f"{name}={value}")
        optional = sysctl("hw.optional")
        if optional:
            parts.append(optional)
    if len(parts) == 1:
        parts.append(f"processor={platform.processor()}")
        parts.append(f"identifier={os.environ.get('PROCESSOR_IDENTIFIER', '')}")
    return "\n".join(parts)


def cache_key(name: str, files: dict[str, bytes], cflags: Sequence[str], ldflags: Sequence[str]) -> str:
    """Hex digest of everything that decides the binary (see the module docstring)."""
    import torch

    h = hashlib.sha256()

    def put(label: str, data: bytes | str) -> None:
        data = data.encode() if isinstance(data, str) else data
        h.update(f"{label}:{len(data)}:".encode())
        h.update(data)

    put("name", name)
    for fname in sorted(files):
        put(f"file {fname}", files[fname])
    put("cflags", json.dumps(list(cflags)))
    put("ldflags", json.dumps(list(ldflags)))
    cxx = compiler()
    put("cxx", cxx)
    put("cxx --version", compiler_version(cxx))
    put("torch", f"{torch.__version__} git={getattr(torch.version, 'git_version', '')} "
                 f"cxx11abi={getattr(torch._C, '_GLIBCXX_USE_CXX11_ABI', '')}")
    put("python", f"{sys.implementation.cache_tag} {sysconfig.get_config_var('SOABI')} "
                  f"{sysconfig.get_config_var('EXT_SUFFIX')}")
    put("platform", f"{platform.system()} {platform.machine()}")
    put("cpu", cpu_features())
    return h.hexdigest()


def build_dir(root: Path, name: str, files: dict[str, bytes], cflags: Sequence[str],
              ldflags: Sequence[str]) -> Path:
    import torch

    key = cache_key(name, files, cflags, ldflags)
    return Path(root) / f"torch{torch.__version__.replace('+', '_')}-{key[:16]}"


# ---- the lock -------------------------------------------------------------------------------------

def _owner(lock_path: Path) -> dict:
    try:
        return json.loads(lock_path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _owner_gone(owner: dict) -> bool:
    """True when the recorded owner ran on this host and no longer exists."""
    pid = owner.get("pid")
    if not isinstance(pid, int) or owner.get("host") != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: it exists, under another user
        return False
    return False


def _describe(owner: dict) -> str:
    if not owner:
        return "another process"
    age = time.time() - owner.get("time", time.time())
    return f"pid {owner.get('pid')} on {owner.get('host')} (started {age:.0f}s ago)"


class _Lock:
    """Exclusive build lock on ``path``: flock where it works, else none. ``acquire`` returns when
    this process may build; raises BuildTimeout after ``wait_s``."""

    def __init__(self, path: Path, target: Path, wait_s: float, log: Callable[[str], None]):
        self.path, self.target, self.wait_s, self.log = path, target, wait_s, log
        self.fd: int | None = None

    def _try(self) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise

    def acquire(self, done: Callable[[], bool]) -> None:
        """Wait for the lock; returns early (without it) once ``done()`` is true."""
        if fcntl is None:
            return
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            return  # cannot create a lock file here: build unlocked
        try:
            got = self._try()
        except OSError:  # ENOLCK, EOPNOTSUPP...: no locking on this file system
            self.release()
            return
        if not got:
            owner = _owner(self.path)
            self.log(f"lstmkit: waiting for {_describe(owner)} to finish building the CPU kernel in "
                     f"{self.target} (up to {self.wait_s:.0f}s; $LSTMKIT_BUILD_WAIT sets it)...")
            deadline = time.monotonic() + self.wait_s
            gone_since: tuple[object, float] | None = None  # (pid, when) the recorded owner was seen gone
            while not got:
                if done():
                    self.release()
                    return
                owner = _owner(self.path) or owner
                if not _owner_gone(owner):
                    gone_since = None
                elif gone_since is None or gone_since[0] != owner.get("pid"):
                    gone_since = (owner.get("pid"), time.monotonic())  # a new owner may not have written yet
                elif time.monotonic() - gone_since[1] >= 1.0:
                    self.log(f"lstmkit: the build lock {self.path} is held although its owner pid "
                             f"{owner.get('pid')} is gone; building anyway")
                    self.release()
                    return
                if time.monotonic() >= deadline:
                    self.release()
                    raise BuildTimeout(f"waited {self.wait_s:.0f}s for {_describe(owner)} to finish building "
                                       f"the CPU kernel in {self.target} (lock {self.path})")
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
                got = self._try()
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()})
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, record.encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            try:
                os.close(self.fd)  # closing drops the flock
            finally:
                self.fd = None


# ---- compile and import (tests replace these) ----------------------------------------------------

def _compile(name: str, folder: Path, sources: Sequence[Path], cflags: Sequence[str], ldflags: Sequence[str],
             verbose: bool):
    """Compile ``sources`` (headers beside them) in ``folder``; return the imported module."""
    from torch.utils import cpp_extension

    return cpp_extension.load(name=name, sources=[str(s) for s in sources], extra_cflags=list(cflags),
                              extra_ldflags=list(ldflags), extra_include_paths=[str(sources[0].parent)],
                              build_directory=str(folder), verbose=verbose)


def _import(path: Path):
    """Import the compiled module at ``path`` (its name is the file name up to the first dot)."""
    spec = importlib.util.spec_from_file_location(path.name.split(".")[0], path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _finished(folder: Path) -> Path | None:
    """The module file of a finished build in ``folder``, else None."""
    try:
        return folder / (folder / _MARKER).read_text().strip()
    except OSError:
        return None


def _tmp_name(final: Path) -> str:
    return f".{final.name}.tmp-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


def _remove_leftovers(root: Path, final: Path) -> None:
    """Remove the temporary folders of builders that are gone (same host, pid dead; or a day old),
    and a final folder without its marker."""
    for tmp in root.glob(f".{final.name}.tmp-*"):
        fields = tmp.name[len(f".{final.name}.tmp-"):].rsplit("-", 2)
        host, pid = (fields[0], fields[1]) if len(fields) == 3 else ("", "")
        try:
            old = time.time() - tmp.stat().st_mtime > 86400
        except OSError:
            continue
        if old or (pid.isdigit() and _owner_gone({"pid": int(pid), "host": host})):
            shutil.rmtree(tmp, ignore_errors=True)
    if final.exists() and _finished(final) is None:  # not ours: never loaded, replaced
        shutil.rmtree(final, ignore_errors=True)


# ---- the entry point ------------------------------------------------------------------------------

def load_cached(name: str, sources: Sequence[Path], headers: Sequence[Path], cflags: Sequence[str],
                ldflags: Sequence[str], root: Path, *, verbose: bool = False, wait_s: float | None = None,
                log: Callable[[str], None] = _stderr, what: str = "the CPU kernel (once, ~1 min)"):
    """The module built from ``sources`` (+ ``headers``, found beside them), from the cache or built
    now. Raises on a failed build, or BuildTimeout when another builder holds the lock too long."""
    if wait_s is None:
        value = os.environ.get("LSTMKIT_BUILD_WAIT", str(DEFAULT_WAIT_S))
        try:
            wait_s = float(value)
        except ValueError:
            raise ValueError(f"LSTMKIT_BUILD_WAIT must be a number of seconds; got {value!r}") from None
    files = {Path(p).name: Path(p).read_bytes() for p in [*sources, *headers]}
    root = Path(root)
    final = build_dir(root, name, files, cflags, ldflags)
    so = _finished(final)
    if so is not None:
        return _import(so)
    root.mkdir(parents=True, exist_ok=True)
    lock = _Lock(root / f"{final.name}.lock", final, wait_s, log)
    lock.acquire(done=lambda: _finished(final) is not None)
    try:
        so = _finished(final)
        if so is not None:
            return _import(so)
        if lock.fd is not None:  # only the lock holder may remove what others might be writing
            _remove_leftovers(root, final)
        tmp = root / _tmp_name(final)
        src = tmp / "src"
        src.mkdir(parents=True)
        for fname, data in files.items():
            (src / fname).write_bytes(data)
        log(f"lstmkit: compiling {what} into {final}...")
        try:
            module = _compile(name, tmp, [src / Path(s).name for s in sources], cflags, ldflags, verbose)
            relative = str(Path(module.__file__).resolve().relative_to(tmp.resolve()))
            (tmp / _MARKER).write_text(relative)
            try:
                os.replace(tmp, final)
                module.__file__ = str(final / relative)  # where it stays (it was loaded from tmp)
            except OSError:  # a finished folder appeared meanwhile (unlocked build), or no rename here
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return module
    finally:
        lock.release()
