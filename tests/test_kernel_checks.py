"""The compiled entry points refuse every argument they would mis-read (lstmkit/kernels/checks.h).

What it is: tests of the raw extension functions (``kernels.load_extension().lstm_forward`` and the
six others), not of the Python wrappers:
- one wrong thing at a time, for every tensor argument of every entry point (rank, a size, dtype,
  device, layout, non-contiguous and expanded views, a lazy negation, a storage shrunk under a
  view, None), then lengths out of [1, T], bad scalars, an output buffer that overlaps an input,
  T = 0, H = 0: each raises RuntimeError whose message names the entry point and the argument
  (None where a tensor is required is refused by pybind11 itself, with TypeError);
- zero sizes that work, against the pure-PyTorch recurrences (``lstmkit.functional``) as oracle:
  B = 0 (empty outputs), and I = 0 for the layer forward (max |a - b| <= 1e-10 in float64);
- a fuzz: thousands of calls with randomly corrupted arguments, in a subprocess, so that a crash
  (segfault, abort) fails the test and prints the case that caused it. Every call must either
  return or raise a Python exception.
Skips, with the reason, where the kernel cannot build (as tests/test_kernels.py).
Run the fuzz alone: ``python tests/test_kernel_checks.py SEED CASES``.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor

from lstmkit import functional as F
from lstmkit import kernels

pytestmark = pytest.mark.skipif(not kernels.cpp_available(),
                                reason=f"C++ CPU kernel unavailable: {kernels._build_error}")

# Sizes of the valid calls: T time, B batch, H hidden, P projection, I input.
T_, B_, H_, P_, I_ = 3, 2, 4, 3, 5
OPTIONAL = ("w_hr", "lengths", "bias", "gates_out", "b_hh")                   # tensor or None
FIRST = {"lstm_forward": "zx", "lstm_layer_forward": "x", "lstm_backward": "dhs", "gru_forward": "zx",
         "gru_backward": "dhs", "rnn_forward": "zx", "rnn_backward": "dhs"}


def valid_args(fn: str, T: int = T_, B: int = B_, H: int = H_, P: int = P_, I: int = I_,  # noqa: E741
               dtype: torch.dtype = torch.float64, proj: bool = True, seed: int = 0) -> dict[str, object]:
    """A valid call of the raw entry point fn, as {argument name: value} in positional order."""
    g = torch.Generator().manual_seed(seed)
    P = P if proj else H

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)

    lengths = torch.randint(1, max(T, 1) + 1, (B,), generator=g)
    w_hr = r(P, H) if proj else None
    if fn == "lstm_forward":
        return dict(zx=r(T, B, 4 * H), h0=r(B, P), c0=r(B, H), w_hh=r(4 * H, P), w_hr=w_hr, lengths=lengths,
                    path=0, cache=True)
    if fn == "lstm_layer_forward":
        return dict(x=r(T, B, I), h0=r(B, P), c0=r(B, H), w_ih=r(4 * H, I), w_hh=r(4 * H, P), bias=r(4 * H),
                    w_hr=w_hr, lengths=lengths, path=0, cache=True, chunk_elems=1 << 20, gates_out=r(T, B, 4 * H))
    if fn == "lstm_backward":
        return dict(dhs=r(T, B, P), dc_last=r(B, H), gates=r(T, B, 4 * H).sigmoid(), cs=r(T, B, H), h0=r(B, P),
                    c0=r(B, H), w_hh=r(4 * H, P), w_hr=w_hr, lengths=lengths, path=0, overwrite=False)
    if fn == "gru_forward":
        return dict(zx=r(T, B, 3 * H), h0=r(B, H), w_hh=r(3 * H, H), b_hh=r(3 * H), lengths=lengths, cache=True)
    if fn == "gru_backward":
        return dict(dhs=r(T, B, H), gates=r(T, B, 3 * H).sigmoid(), ghn=r(T, B, H), hs=r(T, B, H), h0=r(B, H),
                    w_hh=r(3 * H, H), lengths=lengths)
    if fn == "rnn_forward":
        return dict(zx=r(T, B, H), h0=r(B, H), w_hh=r(H, H), nonlinearity="tanh", lengths=lengths)
    if fn == "rnn_backward":
        return dict(dhs=r(T, B, H), hs=r(T, B, H).tanh(), w_hh=r(H, H), nonlinearity="tanh", lengths=lengths)
    raise KeyError(fn)


def call(fn: str, args: dict[str, object]):
    return getattr(kernels.load_extension(), fn)(*args.values())


def tensor_args() -> list[tuple[str, str]]:
    return [(fn, name) for fn in FIRST for name, v in valid_args(fn).items() if isinstance(v, Tensor)]


def expect(fn: str, args: dict, pattern: str) -> None:
    with pytest.raises(RuntimeError, match=pattern):
        call(fn, args)


# ---- the oracle: the same call through lstmkit.functional's PyTorch recurrences ---------------

# The contract functions (kernels.* and lstmkit.functional.*), with their arguments from a raw call's.
CONTRACT = {
    "lstm_forward": ("lstm_recurrence_forward", ["zx", "h0", "c0", "w_hh", "w_hr", "lengths", "cache"]),
    "lstm_layer_forward": ("lstm_layer_forward",
                           ["x", "h0", "c0", "w_ih", "w_hh", "bias", "w_hr", "lengths", "cache"]),
    "lstm_backward": ("lstm_recurrence_backward",
                      ["dhs", "dc_last", "gates", "cs", "hs", "h0", "c0", "w_hh", "w_hr", "lengths"]),
    "gru_forward": ("gru_recurrence_forward", ["zx", "h0", "w_hh", "b_hh", "lengths", "cache"]),
    "gru_backward": ("gru_recurrence_backward", ["dhs", "gates", "ghn", "hs", "h0", "w_hh", "lengths"]),
    "rnn_forward": ("rnn_recurrence_forward", ["zx", "h0", "w_hh", "nonlinearity", "lengths"]),
    "rnn_backward": ("rnn_recurrence_backward", ["dhs", "hs", "h0", "w_hh", "nonlinearity", "lengths"]),
}


def _compare_with_functional(fn: str, args: dict) -> None:
    """The raw call's arguments through the contract function of kernels and of lstmkit.functional:
    same outputs (None where None), max |a - b| <= 1e-10 * max(1, max |b|) in float64. The layer
    forward's oracle is the PyTorch recurrence over zx = x W_ih^T + b (lstmkit.functional's layer
    forward cannot take B = 0: its chunk size divides by B, its projection reshapes by -1)."""
    name, keys = CONTRACT[fn]
    first = args[FIRST[fn]]
    extra = {"hs": torch.zeros_like(first), "h0": torch.zeros_like(first[0])}  # taken, not read (backward)
    pick = [{**extra, **args}[k] for k in keys]
    got = getattr(kernels, name)(*pick)
    if fn == "lstm_layer_forward":                     # zx = x W_ih^T + b, then the recurrence with the cache
        zx = torch.matmul(args["x"], args["w_ih"].t()) + args["bias"]
        want = F.lstm_recurrence_forward(zx, *(args[k] for k in ("h0", "c0", "w_hh", "w_hr", "lengths")))
        want = want if args["cache"] else (None, want[1][-1:], want[2])        # c_{T-1} as (1,B,H)
    else:
        want = getattr(F, name)(*pick)
    got, want = (got, want) if isinstance(want, tuple) else ((got,), (want,))
    assert len(got) == len(want)
    for k, (a, b) in enumerate(zip(got, want, strict=True)):
        assert (a is None) == (b is None), f"{fn} output {k}"
        if b is not None:
            assert a.shape == b.shape, f"{fn} output {k}: {tuple(a.shape)} != {tuple(b.shape)}"
            err = (a - b).abs().max().item() if b.numel() else 0.0
            assert err <= 1e-10 * max(1.0, b.abs().max().item() if b.numel() else 0.0), f"{fn} output {k}: {err:.3g}"


@pytest.mark.parametrize("fn", FIRST)
def test_valid_calls_match_functional(fn):
    """The valid calls that the tests below corrupt run, and give what the PyTorch recurrences give
    (else every test below could pass vacuously)."""
    _compare_with_functional(fn, valid_args(fn))


# ---- one wrong thing at a time ------------------------------------------------------------------

@pytest.mark.parametrize("fn,name", tensor_args())
def test_extra_dimension_is_refused(fn, name):
    args = valid_args(fn)
    args[name] = args[name].unsqueeze(0)
    expect(fn, args, rf"{fn}: {name} should have (\d dimensions|shape)")


# A size that no other argument's size is read from (those would blame the others instead).
_SIZE_DIM = {("lstm_backward", "gates"): 0}


@pytest.mark.parametrize("fn,name", [(fn, n) for fn, n in tensor_args() if n != FIRST[fn]])
def test_wrong_size_is_refused(fn, name):
    args = valid_args(fn)
    t = args[name]
    shape = list(t.shape)
    shape[_SIZE_DIM.get((fn, name), -1)] += 1
    args[name] = torch.zeros(shape, dtype=t.dtype)
    expected = ", ".join(str(n) for n in t.shape) + ("," if t.dim() == 1 else "")
    expect(fn, args, rf"{fn}: {name} should have shape \(.*\) = \({expected}\), got \(")


def test_message_example():
    """The message names the function, the argument, the shape in symbols and numbers, what came."""
    args = valid_args("lstm_forward")
    args["w_hh"] = torch.zeros(4 * H_, P_ + 1, dtype=torch.float64)
    expect("lstm_forward", args, r"^lstm_forward: w_hh should have shape \(4H, P\) = \(16, 3\), got \(16, 4\)$")


@pytest.mark.parametrize("fn,name", tensor_args())
def test_wrong_dtype_is_refused(fn, name):
    args = valid_args(fn)
    if name == "lengths":
        args[name] = args[name].int()
        pattern = rf"{fn}: lengths should have dtype Long, got Int"
    elif name == FIRST[fn]:
        args[name] = args[name].half()
        pattern = rf"{fn}: {name} should be float32 or float64, got Half"
    else:
        args[name] = args[name].float()
        pattern = rf"{fn}: {name} should have dtype Double \(as {FIRST[fn]}\), got Float; convert with"
    expect(fn, args, pattern)


def _transposed(t: Tensor) -> Tensor:
    """Same shape and values, not contiguous: a transposed copy, or every other element of a 1-D one."""
    if t.dim() == 1:
        return torch.stack((t, t), 1)[:, 0]
    return t.transpose(0, -1).contiguous().transpose(0, -1)


@pytest.mark.parametrize("view", [_transposed, lambda t: t[:1].expand_as(t)], ids=["transposed", "expanded"])
@pytest.mark.parametrize("fn,name", tensor_args())
def test_non_contiguous_is_refused(fn, name, view):
    args = valid_args(fn)
    args[name] = view(args[name])
    assert not args[name].is_contiguous()
    expect(fn, args, rf"{fn}: {name} should be contiguous, got strides \(.*\); pass {name}.contiguous\(\)")


@pytest.mark.parametrize("fn,name", tensor_args())
def test_other_device_or_layout_is_refused(fn, name):
    args = valid_args(fn)
    t = args[name]
    args[name] = t.to("meta")
    expect(fn, args, rf"{fn}: {name} should be on the CPU, got device meta")
    args[name] = t.to_sparse()
    expect(fn, args, rf"{fn}: {name} should be a dense \(strided\) tensor, got layout Sparse")


@pytest.mark.parametrize("fn,name", tensor_args())
def test_lazy_negation_is_refused(fn, name):
    """torch._neg_view stores x and reads -x; the kernel reads what is stored, so it refuses it."""
    args = valid_args(fn)
    args[name] = torch._neg_view(args[name])
    expect(fn, args, rf"{fn}: {name} should hold its values, got a lazy negation or conjugation; "
                     rf"pass {name}.resolve_neg\(\)")


@pytest.mark.parametrize("fn,name", tensor_args())
def test_storage_shrunk_under_a_view_is_refused(fn, name):
    """A view whose storage was resized to nothing (as FSDP frees parameters) points at no memory."""
    args = valid_args(fn)
    t = args[name]
    base = torch.empty(t.numel() + 7, dtype=t.dtype)
    args[name] = base[7:].view(t.shape).copy_(t)
    base.untyped_storage().resize_(0)
    expect(fn, args, rf"{fn}: {name} needs \d+ bytes of its storage \(offset and shape\), which holds 0")


@pytest.mark.parametrize("fn,name", tensor_args())
def test_none_where_a_tensor_is_required(fn, name):
    args = valid_args(fn, proj=name != "w_hr")                 # without w_hr, P is H
    args[name] = None
    if name in OPTIONAL:                                      # None is a valid choice there
        call(fn, args)
        return
    with pytest.raises(TypeError, match="incompatible function arguments"):
        call(fn, args)


@pytest.mark.parametrize("fn", FIRST)
@pytest.mark.parametrize("value", [0, T_ + 1, -1, 2**62, -2**63])
def test_lengths_out_of_range_are_refused(fn, value):
    args = valid_args(fn)
    args["lengths"][1] = value
    expect(fn, args, rf"^{fn}: lengths should lie in \[1, T\] = \[1, {T_}\], got lengths\[1\] = {value}$")


@pytest.mark.parametrize("fn", FIRST)
def test_no_steps_is_refused(fn):
    """T = 0 raises, as torch.nn does ("Expected sequence length to be larger than 0")."""
    expect(fn, valid_args(fn, T=0), rf"{fn}: {FIRST[fn]} should have at least one step, T >= 1, got T = 0")


@pytest.mark.parametrize("fn", FIRST)
def test_no_hidden_units_is_refused(fn):
    args = valid_args(fn, H=0, proj=False)
    expect(fn, args, rf"{fn}: \w+'s (last|first) dimension should be \d?H with H >= 1, got 0")


@pytest.mark.parametrize("fn", ["lstm_forward", "lstm_layer_forward", "lstm_backward"])
@pytest.mark.parametrize("path", [-1, 3, 2**40])
def test_bad_path_is_refused(fn, path):
    args = valid_args(fn)
    args["path"] = path
    expect(fn, args, rf"{fn}: path should be 0 \(auto\), 1 \(hand-written product\) or 2 \(BLAS per step\), "
                     rf"got {path}")


def test_bad_scalars_are_refused():
    args = valid_args("lstm_layer_forward")
    expect("lstm_layer_forward", {**args, "chunk_elems": 0}, "chunk_elems should be positive, got 0")
    expect("lstm_layer_forward", {**args, "cache": False}, "gates_out is for cache=True")
    for fn in ("rnn_forward", "rnn_backward"):
        expect(fn, {**valid_args(fn), "nonlinearity": "sigmoid"},
               rf"{fn}: nonlinearity should be 'tanh' or 'relu', got 'sigmoid'")


def test_gate_dimension_not_a_multiple_is_refused():
    args = valid_args("lstm_forward")
    args["zx"] = torch.zeros(T_, B_, 4 * H_ + 1, dtype=torch.float64)
    expect("lstm_forward", args, r"lstm_forward: zx's last dimension should be 4H with H >= 1, got 17")
    args = valid_args("gru_forward")
    args["zx"] = torch.zeros(T_, B_, 3 * H_ + 2, dtype=torch.float64)
    expect("gru_forward", args, r"gru_forward: zx's last dimension should be 3H with H >= 1, got 14")


def test_projection_of_no_rows_is_refused():
    args = valid_args("lstm_forward")
    args["w_hr"] = torch.zeros(0, H_, dtype=torch.float64)
    expect("lstm_forward", args, r"lstm_forward: w_hr should have shape \(P, H\) with P >= 1, got \(0, 4\)")


def test_written_buffer_overlapping_an_input_is_refused():
    """gates_out (layer forward) and gates under overwrite=True (backward) are written while the
    other arguments are read: sharing memory with one of them would give wrong numbers."""
    args = valid_args("lstm_layer_forward", I=4 * H_)                         # x (T,B,4H) like the gates
    n = T_ * B_ * 4 * H_
    buf = torch.randn(2 * n, dtype=torch.float64)
    args["x"] = buf[:n].view(T_, B_, 4 * H_)
    args["gates_out"] = buf[n // T_:n + n // T_].view(T_, B_, 4 * H_)           # one step past x's start
    expect("lstm_layer_forward", args, r"lstm_layer_forward: gates_out \(written\) should not share memory with x")
    args["gates_out"] = buf[n:].view(T_, B_, 4 * H_)                            # right after x: fine
    call("lstm_layer_forward", args)
    args = valid_args("lstm_backward", proj=False)
    args["overwrite"] = True
    args["cs"] = args["gates"][:, :, :H_].contiguous()
    call("lstm_backward", args)
    args["cs"] = args["gates"].view(-1)[:T_ * B_ * H_].view(T_, B_, H_)
    expect("lstm_backward", args, r"lstm_backward: gates \(written\) should not share memory with cs")


# ---- zero sizes that work ----------------------------------------------------------------------

@pytest.mark.parametrize("cache", [True, False])
@pytest.mark.parametrize("fn", FIRST)
def test_empty_batch_gives_empty_outputs(fn, cache):
    """B = 0 works, as in torch.nn: outputs of batch 0, as the PyTorch recurrences give them."""
    args = valid_args(fn, B=0)
    if "cache" in args:
        args["cache"] = cache
    _compare_with_functional(fn, args)


@pytest.mark.parametrize("path", [kernels.PATH_SMALL, kernels.PATH_BLAS])
@pytest.mark.parametrize("T,B", [(1, 1), (3, 2), (4, 5)])
@pytest.mark.parametrize("cache", [True, False])
def test_layer_forward_without_input_features(T, B, cache, path):
    """I = 0 works (every product path: fused in the step, one product, chunks): zx is the bias."""
    args = valid_args("lstm_layer_forward", T=T, B=B, I=0, seed=T * 10 + B)
    args["cache"] = cache
    previous, kernels._path = kernels._path, path
    try:
        _compare_with_functional("lstm_layer_forward", args)
    finally:
        kernels._path = previous


# ---- the fuzz: random corruptions in a subprocess ---------------------------------------------

_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int32, torch.int64, torch.bool,
           torch.complex64]


def _corrupt_tensor(rng: random.Random, t: Tensor | None, others: list[Tensor]) -> tuple[str, object]:
    """One random corruption of a tensor argument: (what, the new value)."""
    like = t if t is not None else torch.zeros(2, 3)
    kind = rng.choice(["shape", "dtype", "transpose", "expand", "stride", "zero", "huge-empty", "none", "meta",
                       "sparse", "shrunk", "alias", "offset", "negated", "scalar"])
    if kind == "shape":
        shape = [rng.choice([0, 1, 2, 3, 5, 8, 16]) for _ in range(rng.randint(0, 4))]
        return f"shape {shape}", torch.randn(shape, dtype=torch.float64).to(like.dtype)
    if kind == "dtype":
        dtype = rng.choice(_DTYPES)
        return f"dtype {dtype}", like.to(dtype)
    if kind == "transpose" and like.dim() >= 2:
        return "transposed", like.transpose(0, -1)
    if kind == "expand" and like.dim() >= 1:
        return "expanded", like[:1].expand(rng.choice([1, 2, 9]), *like.shape[1:])
    if kind == "stride" and like.dim() >= 1:
        return "every other", torch.cat((like, like), 0)[::2]
    if kind == "zero" and like.dim() >= 1:
        shape = list(like.shape)
        shape[rng.randrange(len(shape))] = 0
        return f"zero-size {shape}", torch.zeros(shape, dtype=like.dtype)
    if kind == "huge-empty" and like.dim() >= 2:
        shape = list(like.shape)
        i, j = rng.sample(range(len(shape)), 2)
        shape[i], shape[j] = 0, 2**40
        return f"empty {shape}", torch.empty(shape, dtype=like.dtype)
    if kind == "none":
        return "None", None
    if kind == "meta":
        return "meta", like.to("meta")
    if kind == "sparse":
        return "sparse", like.to_sparse()
    if kind == "shrunk":                               # shrunk by fuzz() just before the call: torch's own
        v = like.clone()                               # ops would crash on it while the case is built
        v.shrink_before_call = True
        return "shrunk storage", v
    if kind == "alias" and others:
        other = rng.choice(others)
        n = other.numel()
        return "view of another argument", other.reshape(-1)[:n - n // 2].to(like.dtype) if n else other
    if kind == "negated":
        return "lazy negation", torch._neg_view(like)
    if kind == "offset":
        base = torch.randn(like.numel() + 3).to(like.dtype)
        return "view at an offset", base[3:].view(like.shape)
    return "0-d", torch.tensor(1.0, dtype=like.dtype)


def _corrupt_scalar(rng: random.Random, name: str, value: object) -> object:
    if name == "nonlinearity":
        return rng.choice(["tanh", "relu", "", "sigmoid", "TANH"])
    if isinstance(value, bool):
        return not value
    return rng.choice([-2**63, -1, 0, 1, 2, 3, 7, 2**40, 2**63 - 1])


def _corrupt(rng: random.Random, args: dict, name: str, T: int) -> tuple[object, str]:
    """One random corruption of argument name: (the new value, what it is)."""
    value = args[name]
    if name == "lengths" and isinstance(value, Tensor) and value.numel() and rng.random() < 0.5:
        value = value.clone()
        value[rng.randrange(value.numel())] = rng.choice([-2**63, -1, 0, 2**62, T + 1])
        return value, f"values {value.tolist()}"
    if isinstance(value, Tensor) or (value is None and name in OPTIONAL):
        others = [v for n, v in args.items() if isinstance(v, Tensor) and n != name]
        desc, value = _corrupt_tensor(rng, value, others)
        return value, desc
    value = _corrupt_scalar(rng, name, value)
    return value, repr(value)


def fuzz(seed: int, cases: int) -> int:
    """Call the raw entry points with random corruptions; prints each case before its call.
    Returns how many calls raised (the rest returned)."""
    rng = random.Random(seed)
    raised = 0
    for k in range(cases):
        fn = rng.choice(list(FIRST))
        sizes = dict(T=rng.choice([0, 1, 1, 2, 5]), B=rng.choice([0, 1, 2, 3, 9]), H=rng.choice([0, 1, 3, 17]),
                     P=rng.choice([1, 2]), I=rng.choice([0, 1, 4]), dtype=rng.choice([torch.float32, torch.float64]),
                     proj=rng.random() < 0.5)
        args = valid_args(fn, seed=k, **sizes)
        required = [n for n, v in args.items() if isinstance(v, Tensor) and n not in OPTIONAL]
        what = []
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            name = rng.choice(list(args))
            try:
                args[name], desc = _corrupt(rng, args, name, sizes["T"])
            except Exception as e:  # noqa: BLE001 (a corruption torch itself refuses to build: skip it)
                desc = f"not built ({type(e).__name__})"
            what.append(f"{name}: {desc}")
        # pybind11 prints the arguments of a call it cannot match (None for a tensor): torch's repr
        # of a shrunk tensor would crash there, before any kernel runs, so shrink only typed calls
        if all(isinstance(args[n], Tensor) for n in required):
            for v in args.values():
                if getattr(v, "shrink_before_call", False) and v.layout == torch.strided and v.device.type == "cpu":
                    v.untyped_storage().resize_(0)
        print(f"case {k}: {fn} {sizes} {'; '.join(what) or 'valid'}", flush=True)
        try:
            call(fn, args)
        except Exception:  # noqa: BLE001 (any Python exception is a refusal; only a crash fails)
            raised += 1
    return raised


FUZZ_CASES = 10000


def _python(*args: str) -> subprocess.CompletedProcess:
    """Run python with args in a subprocess, this checkout first on the path, glibc's malloc checks
    on where the system has them (a heap write out of bounds that does not crash at once then
    aborts at the next free)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]))
    debug = Path("/usr/lib/x86_64-linux-gnu/libc_malloc_debug.so.0")
    if debug.exists():
        env.update(LD_PRELOAD=str(debug), GLIBC_TUNABLES="glibc.malloc.check=3", MALLOC_PERTURB_="165")
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300)


def test_fuzz_raw_entry_points_never_crash():
    """Every call either returns or raises; a segfault or abort of the subprocess fails the test
    with the case it was running."""
    proc = _python(__file__, "1234", str(FUZZ_CASES))
    tail = "\n".join(proc.stdout.splitlines()[-3:])
    assert proc.returncode == 0, f"the fuzz died (exit code {proc.returncode}) at:\n{tail}\n{proc.stderr[-2000:]}"
    assert f"fuzz done: {FUZZ_CASES} cases" in proc.stdout, tail


PRUNED_PROJECTION = """
import torch, lstmkit
from torch.nn.utils import prune
m = lstmkit.LSTM(8, 16, proj_size=4)
prune.l1_unstructured(m, "weight_hr_l0", amount=0.5)
try:
    m(torch.randn(5, 3, 8))
except RuntimeError as e:
    print("refused:", e)
print("survived")
"""


def test_pruned_projection_does_not_corrupt_the_heap():
    """Issue 9's crash: LSTM(proj_size=...) with weight_hr_l0 pruned handed the kernel states of
    size P without w_hr, which it read as size H (glibc: "malloc(): unaligned tcache chunk").
    The kernel now refuses that call (or the module passes w_hr and it runs); never a crash."""
    proc = _python("-c", PRUNED_PROJECTION)
    assert proc.returncode == 0 and "survived" in proc.stdout, f"exit code {proc.returncode}: {proc.stderr[-2000:]}"


if __name__ == "__main__":
    seed, cases = (int(a) for a in sys.argv[1:3])
    n_raised = fuzz(seed, cases)
    print(f"fuzz done: {cases} cases, {n_raised} raised, {cases - n_raised} returned", flush=True)
