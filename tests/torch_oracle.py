"""Shared oracle for the module tests: run an lstmkit module and its torch.nn twin (same weights)
on the same input and state, and compare outputs, final states and every gradient; the one table
of float32/float64 tolerances for such comparisons, and the one skip where the C++ kernel cannot
be built."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence

from lstmkit import kernels

BACKENDS = ["torch", "cpp"]


def require_cpp() -> None:
    """Skip the calling test where the C++ kernel cannot be built."""
    if not kernels.cpp_available():
        pytest.skip("the C++ CPU kernel could not be built on this machine")


@contextlib.contextmanager
def use_backend(name: str):
    """Run the block on one recurrence backend; skip where the C++ kernel cannot be built."""
    if name == "cpp":
        require_cpp()
    with kernels.backend(name):
        yield

# Stated tolerances: float64 within 1e-9 absolute, float32 within 1e-5 relative (atol for values
# near zero, where a relative bound means nothing).
TOLERANCE = {torch.float64: {"rtol": 0.0, "atol": 1e-9}, torch.float32: {"rtol": 1e-5, "atol": 1e-5}}


def leaves(value):
    """Flatten nested tuples of tensors / PackedSequences to a list of tensors."""
    if isinstance(value, PackedSequence):
        return [value.data]
    if isinstance(value, torch.Tensor):
        return [value]
    return [t for v in value for t in leaves(v)]


def run_and_grad(module, x, hx, seed_grads, **kwargs):
    """Outputs of module(x, hx) and gradients w.r.t. x, hx and every parameter of a fixed random
    weighted sum of all outputs (seed_grads, one per output tensor)."""
    x_leaf = x.detach().clone().requires_grad_()
    hx_leaf = None if hx is None else tuple(h.detach().clone().requires_grad_() for h in hx)
    hx_arg = None if hx_leaf is None else (hx_leaf if len(hx_leaf) > 1 else hx_leaf[0])
    out = module(x_leaf, hx_arg, **kwargs)
    outs = leaves(out)
    loss = sum((o * g).sum() for o, g in zip(outs, seed_grads(outs), strict=True))
    inputs = [x_leaf, *(hx_leaf or ()), *module.parameters()]
    grads = torch.autograd.grad(loss, inputs)
    return outs, grads


def assert_same(ours, theirs, x, hx=None, ours_kwargs=None, **kwargs):
    """ours(x, hx) equals theirs(x, hx) in outputs, states and every gradient, within TOLERANCE."""
    tol = TOLERANCE[next(ours.parameters()).dtype]
    cache = {}

    def seed_grads(outs):
        if "g" not in cache:
            gen = torch.Generator().manual_seed(1234)
            cache["g"] = [torch.randn(o.shape, generator=gen, dtype=o.dtype) for o in outs]
        return cache["g"]

    out_theirs, grad_theirs = run_and_grad(theirs, x, hx, seed_grads, **kwargs)
    out_ours, grad_ours = run_and_grad(ours, x, hx, seed_grads, **(ours_kwargs or kwargs))
    assert len(out_ours) == len(out_theirs)
    for a, b in zip(out_ours, out_theirs, strict=True):
        torch.testing.assert_close(a, b, **tol)
    names = ["input"] + [f"hx[{i}]" for i in range(len(hx or ()))] + [n for n, _ in ours.named_parameters()]
    for name, a, b in zip(names, grad_ours, grad_theirs, strict=True):
        torch.testing.assert_close(a, b, **tol, msg=lambda m, name=name: f"gradient of {name}: {m}")
