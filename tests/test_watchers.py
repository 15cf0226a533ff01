"""``dispatch_unwatched`` (kernels/watchers.cpp) reads in one C++ call what the Python checks of
``functional/ops.py`` read one by one: it is False under every tracer, mode and autocast that the
compiled shortcuts must step aside for, True in plain eager mode, and agrees with the Python checks
in each case; ``compiled_unobserved`` (which adds the flags that live in Python and torch.func's
transforms) answers None under each of them."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import lstmkit
from lstmkit import kernels
from lstmkit.functional import ops

pytestmark = pytest.mark.skipif(not kernels.cpp_available(),
                                reason=f"C++ CPU kernel unavailable: {kernels._build_error}")


class _FunctionMode(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


class _DispatchMode(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def _python_checks() -> bool:
    """The Python checks the C++ call stands for (plain_eager, no CPU autocast, no transform)."""
    return ops.plain_eager() and not torch.is_autocast_enabled("cpu") and not ops.use_composite()


def _seen_inside(context) -> tuple[bool, bool, bool]:
    """(dispatch_unwatched, the Python checks, compiled_unobserved's answer) read inside context."""
    ext = kernels.load_extension()
    seen = {}

    def probe(x):
        seen["c"], seen["py"] = ext.dispatch_unwatched(), _python_checks()
        seen["rec"] = ops.compiled_unobserved() is not None
        return x

    with context():
        probe(torch.ones(1))
    return seen["c"], seen["py"], seen["rec"]


WATCHERS = {
    "torch-function mode": _FunctionMode,
    "torch-dispatch mode": _DispatchMode,
    "CPU autocast": lambda: torch.autocast("cpu", dtype=torch.bfloat16),
}


def test_plain_eager_is_unwatched():
    assert _seen_inside(contextlib.nullcontext) == (True, True, True)


@pytest.mark.parametrize("name", WATCHERS)
def test_each_watcher_is_seen(name):
    assert _seen_inside(WATCHERS[name]) == (False, False, False)


def test_a_fake_tensor_mode_is_seen():
    from torch._subclasses.fake_tensor import FakeTensorMode

    assert _seen_inside(FakeTensorMode) == (False, False, False)


def test_the_jit_tracer_is_seen():
    ext = kernels.load_extension()
    seen = []

    def f(x):
        seen.append((ext.dispatch_unwatched(), _python_checks()))
        return x * 2

    torch.jit.trace(f, torch.ones(2), check_trace=False)
    assert seen == [(False, False)]


@pytest.mark.parametrize("transform", ["vmap", "grad"])
def test_torch_func_transforms_are_seen(transform):
    seen = []

    def f(x):
        seen.append((_python_checks(), ops.compiled_unobserved(x) is not None))
        return x.sin().sum()

    x = torch.ones(3, 2)
    torch.func.vmap(f)(x) if transform == "vmap" else torch.func.grad(f)(x[0])
    assert seen == [(False, False)]


def test_a_forward_mode_tangent_is_seen():
    import torch.autograd.forward_ad as fwAD

    x = torch.ones(2)
    assert ops.compiled_unobserved(x) is not None
    with fwAD.dual_level():
        dual = fwAD.make_dual(x, torch.ones(2))
        assert ops.compiled_unobserved(dual) is None
        assert ops.compiled_unobserved(x) is not None          # a tensor without a tangent
    assert ops.compiled_unobserved(x) is not None


def test_the_profiler_is_seen():
    x = torch.ones(2)
    with torch.profiler.profile():
        assert ops.compiled_unobserved(x) is None
    assert ops.compiled_unobserved(x) is not None


def test_a_module_under_a_dispatch_mode_runs_torch_s_operators():
    """Under a watcher the module takes its general path, whose operators the mode sees."""
    m = lstmkit.LSTM(4, 3).eval()
    x = torch.randn(5, 2, 4)
    calls = []

    class Counting(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            calls.append(func)
            return func(*args, **(kwargs or {}))

    with torch.no_grad():
        expected = m(x)[0]
        with Counting():
            got = m(x)[0]
    assert calls
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
