"""Compiled recurrences, and the choice between them and the pure-PyTorch ones.

What it is: the loader of the C++ CPU kernels in this folder (``lstm_cpu.cpp``, ``gru_cpu.cpp``,
``rnn_cpu.cpp``), built with ``torch.utils.cpp_extension.load`` on first use into the user's cache
(``$LSTMKIT_CACHE`` or ``~/.cache/lstmkit``; one folder per content key, built by one process at a
time, a wait bounded by ``$LSTMKIT_BUILD_WAIT`` seconds: see ``lstmkit.kernels.build``; for this
CPU's instructions, or ``$LSTMKIT_MARCH``'s), and the one switch that picks a backend:

- ``LSTMKIT_BACKEND=auto`` (default): the C++ kernels for CPU tensors when they build, else PyTorch;
- ``LSTMKIT_BACKEND=cpp``: the C++ kernels, an error if they cannot be built;
- ``LSTMKIT_BACKEND=torch``: always the pure-PyTorch recurrences of ``lstmkit.functional``.

``set_backend(name)`` and the context manager ``backend(name)`` do the same from code. CUDA (and any
non-CPU) tensors, dtypes other than float32/float64 and empty tensors always take the PyTorch path.
``recurrence_for(x)`` returns the namespace of compiled recurrence functions for tensors like ``x``
(``lstm_layer_forward``, ``lstm_recurrence_forward/backward``, ``gru_recurrence_*``,
``rnn_recurrence_*``, with the contract of ``lstmkit.functional``), or None where the PyTorch path runs.

Where a kernel has two correct paths (the hand-written step product or a GEMM per step, ...), the
limit between them is measured on this machine the first time a thread count calls a kernel and
cached beside the build (``tune``, ``limits``; ``lstmkit.kernels.tuning``, ``LSTMKIT_TUNING``).

What it is not: autograd or operators. This package is a leaf: it imports nothing of lstmkit;
the operators of ``lstmkit.functional`` choose between these functions and their own.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import types
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from . import build as _build
from . import tuning as _tuning

BACKENDS = ("auto", "cpp", "torch")
_SOURCES = ("bindings.cpp", "lstm_cpu.cpp", "gru_cpu.cpp", "rnn_cpu.cpp", "cell_cpu.cpp", "cell_autograd.cpp",
            "gemm.cpp", "tuning.cpp", "bidir_cpu.cpp", "stack_cpu.cpp", "watchers.cpp")
_HEADERS = ("checks.h", "cpu_math.h", "entries.h", "gemm.h", "nt_gemm.h", "one_step.h", "team.h", "tuning.h",
            "vec_math.h")
# -ffast-math is left out on purpose: it would let the compiler reorder sums (results would then
# depend on the build) and, with gcc < 13, link crtfastmath and flush denormals for the whole process.
# -ffp-contract=off: a * b + c is a multiply and an add, never an FMA the compiler chose. GCC chose
# by its tuning for the CPU and by the function around the expression (for AMD Zen 3 it kept some
# 256-bit FMA chains apart and not others): the same sum rounded differently in two places, and
# results changed with the thread count. The FMAs the kernels want are written out (cpu_math.h's
# fmadd).
_LDFLAGS = ["-fopenmp"]


def _cflags() -> list[str]:
    """The compiler's flags: ``-march`` from ``$LSTMKIT_MARCH`` (default ``native``, this CPU's
    instructions; e.g. ``x86-64-v3`` builds for any AVX2 machine, such as a cluster's mix)."""
    march = os.environ.get("LSTMKIT_MARCH", "native")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", march):
        raise ValueError(f"LSTMKIT_MARCH must name a -march target such as native or x86-64-v3; got {march!r}")
    return ["-O3", f"-march={march}", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off", "-fopenmp"]

_backend: str | None = None          # set_backend(); None: read LSTMKIT_BACKEND
_ext = None                          # the loaded extension module
_build_error: str | None = None      # why it could not be built (then we never try again)
_ext_dir: Path | None = None         # the build's cache folder (tuning.json lives there)
_tuned: set[int] = set()             # thread counts whose path limits are this machine's (tuning.py)

# Which batched product each call uses: 0 auto, 1 the hand-written small-batch one, 2 BLAS per step.
# Tests set it to check both paths against the same oracle.
PATH_AUTO, PATH_SMALL, PATH_BLAS = 0, 1, 2
_path = PATH_AUTO

# Inference takes the input projection in chunks of about this many elements of zx (4 MB in
# float32), each into the same buffer: a whole-sequence zx past glibc's 32 MB mmap threshold is
# mapped afresh and page-faulted on every call (config C of ``lstmkit bench``: 14% of its time),
# and a chunk this size is still in cache when the recurrence reads it (measured against 1 MB and
# 16 MB chunks: 2-8% faster on configs B, C, D). The PyTorch path uses the same size.
ZX_CHUNK_ELEMENTS = 1 << 20
# ... and at least this many rows (steps x batch) a chunk: with fewer, MKL's product of a chunk runs
# below its rate. Measured side by side (this AVX2 EPYC, 2 threads, H = 1000, LSTM inference time
# over torch.nn's, 256 rows a chunk / 1024): B = 256 1.33 / 1.18, B = 64 1.31 / 1.15, B = 20 0.98
# / 0.90; H = 300-650 level.
ZX_CHUNK_MIN_ROWS = 1024


def zx_chunk_elements(G: int) -> int:
    """The elements of zx one chunk of inference's input projection holds, G = 4H columns a row
    (the compiled path and the PyTorch one alike)."""
    return max(ZX_CHUNK_ELEMENTS, ZX_CHUNK_MIN_ROWS * G)


_KERNEL_DTYPES = (torch.float32, torch.float64)


def _check_name(name: str, where: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"{where} must be one of {', '.join(BACKENDS)}; got {name!r}")
    return name


# os.environ.get costs ~0.7 us where the variable is unset (a KeyError raised and caught inside),
# and a cell called step by step asks every step: CPython keeps the process environment in
# os.environ._data, a dict of encoded names, which is read directly where it is one (else the
# public mapping). Both see every change made through os.environ.
_ENV_DATA = getattr(os.environ, "_data", None)
_ENV_KEY = os.environ.encodekey("LSTMKIT_BACKEND") if hasattr(os.environ, "encodekey") else None


def _env_backend() -> str:
    if type(_ENV_DATA) is dict and _ENV_KEY is not None:
        raw = _ENV_DATA.get(_ENV_KEY)
        return "auto" if raw is None else os.environ.decodevalue(raw)
    return os.environ.get("LSTMKIT_BACKEND", "auto")


def get_backend() -> str:
    """The selected backend: ``set_backend``'s choice, else ``$LSTMKIT_BACKEND``, else 'auto'."""
    if _backend is not None:
        return _backend
    name = _env_backend()
    return name if name in BACKENDS else _check_name(name, "LSTMKIT_BACKEND")


def set_backend(name: str) -> None:
    """Select 'auto', 'cpp' or 'torch' for every later call (overrides ``$LSTMKIT_BACKEND``)."""
    global _backend
    _backend = _check_name(name, "backend")


@contextlib.contextmanager
def backend(name: str) -> Iterator[None]:
    """``with lstmkit.kernels.backend('torch'): ...`` runs the block on that backend."""
    global _backend
    previous, _backend = _backend, _check_name(name, "backend")
    try:
        yield
    finally:
        _backend = previous


def _cache_root() -> Path:
    return Path(os.environ.get("LSTMKIT_CACHE", Path.home() / ".cache" / "lstmkit"))


def _build_dir() -> Path:
    """The cache folder of this build: one per hash of the source bytes (not their paths), flags,
    compiler and its version, torch and Python ABI, machine and CPU features (-march=native code is
    not portable). See ``lstmkit.kernels.build``."""
    here = Path(__file__).parent
    files = {name: (here / name).read_bytes() for name in _SOURCES + _HEADERS}
    return _build.build_dir(_cache_root(), "lstmkit_cpu", files, _cflags(), _LDFLAGS)


_load_lock = threading.Lock()


def load_extension(verbose: bool = False):
    """The compiled module, built on first call (about a minute, once per machine); None if it fails.
    Never waits forever: a build held by another live process is waited for at most
    ``$LSTMKIT_BUILD_WAIT`` seconds (default 600), then the PyTorch path runs."""
    global _ext, _build_error, _ext_dir
    if _ext is not None or _build_error is not None:
        return _ext
    with _load_lock:
        if _ext is not None or _build_error is not None:
            return _ext
        here = Path(__file__).parent
        try:
            ext = _build.load_cached("lstmkit_cpu", [here / s for s in _SOURCES], [here / h for h in _HEADERS],
                                      _cflags(), _LDFLAGS, _cache_root(), verbose=verbose)
            _ext_dir = _build_dir()
            _ext = ext
        except Exception as e:  # noqa: BLE001 (no compiler, no ninja, a compile error, a timeout: "fall back")
            lines = [ln for ln in str(e).splitlines() if "error" in ln.lower()] or [str(e)]
            _build_error = f"{type(e).__name__}: {lines[0].strip()}"
    return _ext


def tune(threads: int | None = None, again: bool = False) -> dict | None:
    """Give the kernels' path limits for this thread count (torch's now, by default) this machine's
    values: from the cache beside the built kernel, or measured once (~8 s) and cached there; with
    again, measured anew. Returns the entry ({"limits", "ratios", "seconds", "when"}), or None where
    nothing is measured (LSTMKIT_TUNING=defaults, without again; or no kernel). Runs by itself the
    first time a thread count calls a kernel; see ``lstmkit.kernels.tuning``."""
    n = torch.get_num_threads() if threads is None else threads
    if load_extension() is None or torch.compiler.is_compiling():
        return None
    with _load_lock:
        entry = _tuning.ensure(_ext, _ext_dir, n, again=again)
        _tuned.add(n)
    return entry


def _tune_if_new() -> None:
    """tune() the first time a thread count calls a kernel where nothing records what runs: not
    while torch.compile or torch.jit.trace traces, nor under a torch-function or dispatch mode (a
    FLOP counter, a logger), which would see the measurement's own operations. Such a call runs on
    the limits in force, and a later one measures."""
    if torch.compiler.is_compiling() or torch.get_num_threads() in _tuned:
        return
    if torch._C._is_tracing() or torch._C._is_torch_function_mode_enabled() or torch._C._len_torch_dispatch_stack():
        return
    tune()


def _built():
    """The extension, or a RuntimeError saying why there is none."""
    if load_extension() is None:
        raise RuntimeError(f"the CPU kernel is unavailable: {_build_error}")
    return _ext


def limits(threads: int | None = None) -> dict[str, int]:
    """The path limits the kernels use now at this thread count (torch's now, by default)."""
    return dict(_built().get_tuning(torch.get_num_threads() if threads is None else threads))


def default_limits() -> dict[str, int]:
    """The built-in path limits (measured on the machine lstmkit was written on, 2 threads)."""
    return dict(_built().default_tuning())


def tuning_file() -> Path | None:
    """Where the measured limits are cached (beside the built kernel), or None without a kernel."""
    return None if load_extension() is None else _ext_dir / _tuning.FILE


def cpp_available() -> bool:
    """True when the C++ kernels are built (building them now if needed)."""
    return load_extension() is not None


def recurrence_for(x: Tensor, *others: Tensor) -> types.SimpleNamespace | None:
    """The compiled recurrence functions for tensors like ``x``, or None where the PyTorch path runs
    (backend 'torch', a non-CPU device, a dtype other than float32/float64, x or any of the others
    empty, or 'auto' without a compiler: then one warning)."""
    name = get_backend()
    if name == "torch" or x.device.type != "cpu" or x.dtype not in _KERNEL_DTYPES or x.numel() == 0 \
            or any(t.numel() == 0 for t in others):
        return None
    if load_extension() is None:
        if name == "cpp":
            raise RuntimeError(f"LSTMKIT_BACKEND=cpp but the CPU kernel could not be built: {_build_error}. "
                               "Install a C++ compiler (g++) and ninja, or use LSTMKIT_BACKEND=torch.")
        _warn_fallback()
        return None
    _tune_if_new()
    return _cpp_namespace()


def compiled_cells() -> types.SimpleNamespace | None:
    """The compiled namespace where the C++ kernels are selected and already built, else None (then
    the cells' general path runs, which builds them or says why not). Cheap: a cell step asks it
    every call; the tensors' device and dtype are the caller's to check."""
    name = _backend if _backend is not None else get_backend()
    if _ext is None or name == "torch":
        return None
    _tune_if_new()
    return _cpp_namespace()


_warned = False


def _warn_fallback() -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(f"lstmkit: the C++ CPU kernel is unavailable ({_build_error}); using the pure-PyTorch "
                      "recurrence (correct, slower). Set LSTMKIT_BACKEND=torch to silence this.", stacklevel=3)


# ---- the C++ functions under the contract's names and signatures --------------------------------

def lstm_recurrence_forward(zx: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, w_hr: Tensor | None,
                            lengths: Tensor | None, cache: bool = True) -> tuple[Tensor | None, Tensor, Tensor]:
    """zx (T,B,4H), h0 (B,P), c0 (B,H), w_hh (4H,P), w_hr (P,H) or None, lengths (B,) int64 or None
    -> gates (T,B,4H) activated [i f g o], cs (T,B,H), hs (T,B,P).

    cache=False (inference: no backward, no trace) keeps neither gates nor cell states: returns
    (None, c_{T-1} as (1,B,H), hs), so cs[-1] still is c_n. Saves 5/6 of the memory written (with
    P == H) and, on a fresh allocation, its page faults."""
    gates, cs, hs = _ext.lstm_forward(zx.contiguous(), h0.contiguous(), c0.contiguous(), w_hh.contiguous(),
                                      _c(w_hr), _c(lengths), _path, cache)
    return gates, cs, hs


def lstm_layer_forward(x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, bias: Tensor | None,
                       w_hr: Tensor | None, lengths: Tensor | None, cache: bool = True,
                       gates_out: Tensor | None = None) -> tuple[Tensor | None, Tensor, Tensor]:
    """x (T,B,I), w_ih (4H,I), bias (4H,) = b_ih + b_hh or None; the rest and the result as
    ``lstm_recurrence_forward``. One C++ call: the projection x W_ih^T (whole, written into the
    gates tensor, with the cache; else chunk by chunk into one buffer, or inside each step where
    the weights fit in L2), the bias added in the cell. gates_out: a (T,B,4H) tensor to write the
    gates into (cache only)."""
    gates, cs, hs = _ext.lstm_layer_forward(x.contiguous(), h0.contiguous(), c0.contiguous(), w_ih.contiguous(),
                                            w_hh.contiguous(), _c(bias), _c(w_hr), _c(lengths), _path, cache,
                                            zx_chunk_elements(w_ih.shape[0]), gates_out)
    return gates, cs, hs


def lstm_layer_forward_pair(x: Tensor, x_rev: Tensor, h0: Tensor, c0: Tensor, h0_rev: Tensor, c0_rev: Tensor,
                            weights: tuple[Tensor | None, ...], weights_rev: tuple[Tensor | None, ...]
                            ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Both directions of a bidirectional layer, inference without lengths: ``lstm_layer_forward``
    (cache=False) of (x, h0, c0, *weights) and of (x_rev, h0_rev, c0_rev, *weights_rev), where
    weights = (w_ih, w_hh, bias, w_hr); at two threads one thread each (kernels/bidir_cpu.cpp).
    -> (c_last, hs, c_last_rev, hs_rev), hs_rev in x_rev's time order."""
    w_ih, w_hh, bias, w_hr = weights
    w_ih_r, w_hh_r, bias_r, w_hr_r = weights_rev
    c_last, hs, c_last_r, hs_r = _ext.lstm_layer_forward_pair(
        x.contiguous(), x_rev.contiguous(), h0.contiguous(), c0.contiguous(), h0_rev.contiguous(), c0_rev.contiguous(),
        w_ih.contiguous(), w_hh.contiguous(), _c(bias), _c(w_hr), w_ih_r.contiguous(), w_hh_r.contiguous(), _c(bias_r),
        _c(w_hr_r), _path, zx_chunk_elements(weights[0].shape[0]))
    return c_last, hs, c_last_r, hs_r


def lstm_recurrence_backward(dhs: Tensor, dc_last: Tensor, gates: Tensor, cs: Tensor, hs: Tensor, h0: Tensor,
                             c0: Tensor, w_hh: Tensor, w_hr: Tensor | None, lengths: Tensor | None,
                             overwrite: bool = False) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """-> dz (T,B,4H), dh0 (B,P), dc0 (B,H), and with w_hr the total gradient at each h_t, dhtot (T,B,P)
    (zero at held steps; dW_hr = sum_t dhtot_t^T r_t), else None. hs is not needed here (the caller
    forms dW_hh from it); it is taken for the contract. overwrite=True writes dz over gates."""
    dz, dh0, dc0, dhtot = _ext.lstm_backward(dhs.contiguous(), dc_last.contiguous(), gates, cs, h0.contiguous(),
                                             c0.contiguous(), w_hh.contiguous(), _c(w_hr), _c(lengths), _path,
                                             overwrite)
    return dz, dh0, dc0, dhtot


def gru_recurrence_forward(zx: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor | None, lengths: Tensor | None,
                           cache: bool = True) -> tuple[Tensor | None, Tensor | None, Tensor]:
    """zx (T,B,3H), h0 (B,H), w_hh (3H,H), b_hh (3H,) or None -> gates (T,B,3H) [r z n], ghn (T,B,H), hs (T,B,H);
    cache=False: (None, None, hs)."""
    gates, ghn, hs = _ext.gru_forward(zx.contiguous(), h0.contiguous(), w_hh.contiguous(), _c(b_hh), _c(lengths),
                                     cache)
    return gates, ghn, hs


def gru_recurrence_backward(dhs: Tensor, gates: Tensor, ghn: Tensor, hs: Tensor, h0: Tensor, w_hh: Tensor,
                            lengths: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """-> dzx (T,B,3H), dgh (T,B,3H), dh0 (B,H)."""
    dzx, dgh, dh0 = _ext.gru_backward(dhs.contiguous(), gates, ghn, hs, h0.contiguous(), w_hh.contiguous(),
                                      _c(lengths))
    return dzx, dgh, dh0


def rnn_recurrence_forward(zx: Tensor, h0: Tensor, w_hh: Tensor, nonlinearity: str, lengths: Tensor | None
                           ) -> Tensor:
    """zx (T,B,H) with both biases, h0 (B,H), w_hh (H,H), 'tanh' or 'relu' -> hs (T,B,H)."""
    return _ext.rnn_forward(zx.contiguous(), h0.contiguous(), w_hh.contiguous(), nonlinearity, _c(lengths))


def rnn_recurrence_backward(dhs: Tensor, hs: Tensor, h0: Tensor, w_hh: Tensor, nonlinearity: str,
                            lengths: Tensor | None) -> tuple[Tensor, Tensor]:
    """-> dz (T,B,H), dh0 (B,H). h0 is not needed (derivatives come from the saved outputs)."""
    dz, dh0 = _ext.rnn_backward(dhs.contiguous(), hs, w_hh.contiguous(), nonlinearity, _c(lengths))
    return dz, dh0


def lstm_cell_forward(x: Tensor, h: Tensor, c: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
                      b_hh: Tensor | None, cache: bool = False) -> list[Tensor]:
    """One LSTMCell step: x (B,I), h, c (B,H), w_ih (4H,I), w_hh (4H,H), b_ih, b_hh (4H,) or None
    -> [h', c'], with cache also the activated gates (B,4H). Contiguous tensors only (the C++ checks
    refuse others); the cells call it where ``lstmkit.modules.cells`` says."""
    return _ext.lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh, _path, cache)


def gru_cell_forward(x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None,
                     cache: bool = False) -> list[Tensor]:
    """One GRUCell step: w_ih (3H,I), w_hh (3H,H), b_ih, b_hh (3H,) or None -> [h'] (cache: [h', gates
    (B,3H), ghn (B,H)])."""
    return _ext.gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh, cache)


def rnn_cell_forward(x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None,
                     nonlinearity: str) -> Tensor:
    """One RNNCell step: w_ih (H,I), w_hh (H,H), b_ih, b_hh (H,) or None -> h' (B,H)."""
    return _ext.rnn_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity)


def lstm_cell_step(x: Tensor, h: Tensor, c: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
                   b_hh: Tensor | None) -> tuple[Tensor, Tensor]:
    """One LSTMCell step for training: (h', c') carrying their autograd node, forward and backward in
    C++ (kernels/cell_autograd.cpp; with create_graph the backward is a differentiable graph)."""
    h_new, c_new = _ext.lstm_cell_step(x, h, c, w_ih, w_hh, b_ih, b_hh, _path)
    return h_new, c_new


def gru_cell_step(x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
                  b_hh: Tensor | None) -> Tensor:
    """One GRUCell step for training: h' carrying its autograd node (as ``lstm_cell_step``)."""
    return _ext.gru_cell_step(x, h, w_ih, w_hh, b_ih, b_hh)


def rnn_cell_step(x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None,
                  nonlinearity: str) -> Tensor:
    """One RNNCell step for training: h' (B,H) carrying its autograd node, forward and backward in C++
    (the backward in differentiable ATen operations: create_graph gives exact second derivatives)."""
    return _ext.rnn_cell_step(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity)


def stack_inference(kind: str, x: Tensor, state: tuple[Tensor, ...], weights: list[Tensor | None], directions: int,
                    nonlinearity: str) -> list[Tensor]:
    """Every layer and direction of a module's inference in one call (kernels/stack_cpu.cpp): kind
    'lstm', 'gru' or 'rnn'; x (T,B,I); state () or (h_0 (L*D,B,P),) or, an LSTM, (h_0, c_0 (L*D,B,H));
    weights (w_ih, w_hh, b_ih, b_hh, w_hr) for each layer and direction in turn, None where absent.
    -> [y (T,B,D*P), h_n (L*D,B,P)] and, an LSTM, c_n (L*D,B,H): the calls the general path makes for
    each layer (``functional.*_op._inference``), the same bits."""
    G = weights[1].shape[0]                                 # (an LSTM's 4H: its zx chunks; unused otherwise)
    return _ext.stack_inference(kind, x, list(state), weights, directions, nonlinearity, _path,
                                zx_chunk_elements(G))


def stack_one_step(kind: str, x: Tensor, state: tuple[Tensor, ...], weights: list[Tensor | None],
                   nonlinearity: str) -> list[Tensor]:
    """One step (x (1,B,I)) of every layer of a unidirectional module where autograd records, in one
    call (kernels/stack_cpu.cpp): arguments and result as ``stack_inference``; each layer the cell's
    C++ autograd step, as the general path's one-step layer with a gradient calls it."""
    return _ext.stack_one_step(kind, x, list(state), weights, nonlinearity, _path)


def _c(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.contiguous()


_cpp_ns: types.SimpleNamespace | None = None
_CPP_FUNCTIONS = ("lstm_layer_forward", "lstm_layer_forward_pair", "lstm_recurrence_forward",
                  "lstm_recurrence_backward", "gru_recurrence_forward", "gru_recurrence_backward",
                  "rnn_recurrence_forward", "rnn_recurrence_backward", "lstm_cell_forward", "gru_cell_forward",
                  "rnn_cell_forward", "lstm_cell_step", "gru_cell_step", "rnn_cell_step", "mm", "project",
                  "stack_inference", "stack_one_step")


def mm(a: Tensor, b: Tensor) -> Tensor:
    """a (M,K) b (K,N) for the large products around a recurrence (weight gradients): oneDNN's
    matmul for float32 where this PyTorch has it in full precision, else ATen's (kernels/gemm.h)."""
    return _ext.gemm(a, b)


def project(x: Tensor, w: Tensor, bias: Tensor | None) -> Tensor:
    """x (M,I) W^T (+ bias (G,)) -> (M,G): the input projection of GRU/RNN layers and cells, by the
    product the cells' one-call step takes too (kernels/gemm.h: by hand for one or two rows), so the
    two give the same bits."""
    return _ext.gemm(x, w.t(), bias)


def _cpp_namespace() -> types.SimpleNamespace:
    """The compiled recurrences under the contract's names."""
    global _cpp_ns
    if _cpp_ns is None:
        _cpp_ns = types.SimpleNamespace(name="cpp", dispatch_unwatched=_ext.dispatch_unwatched,
                                        **{fn: globals()[fn] for fn in _CPP_FUNCTIONS})
    return _cpp_ns
