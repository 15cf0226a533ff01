"""Shared oracles for the reference tests: central finite differences and a float64 torch run.

What it is: test plumbing for tests/test_reference.py, no assertions of its own except the
finite-difference comparison: ``Case`` drives any model of ``lstmkit.registry`` through its
reference with one signature (a list of states: [h] or [h, c]). What it is not: a public part of lstmkit.
Loss convention everywhere: L = Σ hs ⊙ dhs + Σ_state state_T ⊙ dstate_T, so the gradient the
reference backward receives (dhs, dh_T, dc_T) is exactly ∂L/∂hs, ∂L/∂h_T, ∂L/∂c_T.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import torch

from lstmkit.reference.rnn import NONLINEARITIES
from lstmkit.registry import RECURRENT, Recurrent

FD_EPS = 1e-6  # central differences in float64: truncation ~eps², rounding ~1e-16/eps
FD_RTOL, FD_ATOL = 0.0, 1e-8  # gradients are O(1); measured worst error ~7e-10 (T=4, B=2, I=3, H=5)
TORCH_ATOL = 1e-12  # reference vs torch autograd in float64, rtol 0; measured worst ~2e-15


def weight_arrays(weights) -> dict[str, np.ndarray]:
    """{gradient name "d" + weight name: the weight array itself (perturbed in place by FD)}."""
    return {f"d{f.name}": getattr(weights, f.name) for f in fields(weights)}


def assert_matches_finite_differences(loss: Callable[[], float], inputs: dict[str, np.ndarray],
                                      grads, eps: float = FD_EPS) -> None:
    """Perturb every element of every array in ``inputs`` (in place, restored) and compare the
    central difference of ``loss()`` with the field of the same name in ``grads``."""
    for name, a in inputs.items():
        numeric = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            old = a[idx]
            a[idx] = old + eps
            up = loss()
            a[idx] = old - eps
            down = loss()
            a[idx] = old
            numeric[idx] = (up - down) / (2 * eps)
        np.testing.assert_allclose(getattr(grads, name), numeric, rtol=FD_RTOL, atol=FD_ATOL, err_msg=name)


def random_torch_module(cls: type, n_gates: int, I: int, H: int, rng: np.random.Generator, **kw):
    """A one-layer float64 ``cls(I, H, **kw)`` with every parameter (both biases) drawn from rng."""
    module = cls(I, H, **kw).double()
    shapes = {"weight_ih_l0": (n_gates * H, I), "weight_hh_l0": (n_gates * H, H),
              "bias_ih_l0": (n_gates * H,), "bias_hh_l0": (n_gates * H,)}
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.from_numpy(rng.uniform(-0.8, 0.8, size=shapes[name])))
    return module


def torch_params(module) -> list[np.ndarray]:
    """(weight_ih, weight_hh, bias_ih, bias_hh) of layer 0 as NumPy arrays."""
    return [getattr(module, f"{n}_l0").detach().numpy().copy()
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


def torch_run(module, x: np.ndarray, states: list[np.ndarray], dhs: np.ndarray,
              dstates: list[np.ndarray]) -> dict:
    """Forward and autograd backward of the loss convention above, through a torch module."""
    xt = torch.tensor(x, requires_grad=True)  # (T, B, I)
    st = [torch.tensor(s[None], requires_grad=True) for s in states]  # (1, B, H) each
    out, final = module(xt, tuple(st) if len(st) == 2 else st[0])  # (T, B, H)
    finals = final if isinstance(final, tuple) else (final,)
    loss = (out * torch.tensor(dhs)).sum()
    for f, d in zip(finals, dstates, strict=True):
        loss = loss + (f[0] * torch.tensor(d)).sum()
    loss.backward()
    return {"hs": out.detach().numpy(), "finals": [f[0].detach().numpy() for f in finals],
            "dx": xt.grad.numpy(), "dstates": [s.grad[0].numpy() for s in st],
            "dparams": [p.grad.numpy() for p in (module.weight_ih_l0, module.weight_hh_l0,
                                                 module.bias_ih_l0, module.bias_hh_l0)]}


def assert_close(actual, expected, atol: float = TORCH_ATOL, err_msg: str = "") -> None:
    np.testing.assert_allclose(actual, expected, rtol=0, atol=atol, err_msg=err_msg)


@dataclass(frozen=True)
class Case:
    """One model of the registry (the RNN with one of its nonlinearities) as the reference tests
    drive it: states and their gradients are lists, in the order of ``Recurrent.states``."""

    name: str
    nonlinearity: str | None = None  # the RNN's "tanh" or "relu"

    @property
    def id(self) -> str:
        return self.name + (f"-{self.nonlinearity}" if self.nonlinearity else "")

    @property
    def entry(self) -> Recurrent:
        return RECURRENT[self.name]

    @property
    def weights(self) -> type:
        return getattr(self.entry.reference, f"{self.entry.title}Weights")

    def _fn(self, what: str) -> Callable:
        return getattr(self.entry.reference, f"{self.name}_{what}")

    def _extra(self) -> tuple:
        return (self.nonlinearity,) if self.nonlinearity else ()

    def forward(self, x, states, w):
        """(hs, [final states], cache)."""
        hs, finals, cache = self._fn("forward")(x, *states, w, *self._extra())
        return hs, list(finals) if isinstance(finals, tuple) else [finals], cache

    def backward(self, dhs, dfinals, cache, w):
        return self._fn("backward")(dhs, *dfinals, cache, w)

    def step(self, x_t, states, w):
        """([next states], step cache)."""
        *nxt, cache = self._fn("step")(x_t, *states, w, *self._extra())
        return nxt, cache

    def state_grads(self, grads) -> list[np.ndarray]:
        """[dh0] or [dh0, dc0]."""
        return [getattr(grads, f"d{name}0") for name in self.entry.states]

    def torch_grads(self, grads) -> list[np.ndarray]:
        """The gradients of torch's (weight_ih, weight_hh, bias_ih, bias_hh); the LSTM's reference has
        one summed bias, whose gradient is that of both torch biases."""
        g = list(grads.to_torch())
        return g + [g[-1]] if len(g) == 3 else g

    def torch_module(self, I: int, H: int, rng: np.random.Generator) -> torch.nn.Module:
        kw = {"nonlinearity": self.nonlinearity} if self.nonlinearity else {}
        return random_torch_module(self.entry.torch_module, self.entry.gates, I, H, rng, **kw)


CASES = [Case(name, nl) for name in RECURRENT for nl in (NONLINEARITIES if name == "rnn" else (None,))]


@dataclass
class Problem:
    w: object  # the reference's weights
    x: np.ndarray  # (T, B, I)
    states: list[np.ndarray]  # initial states, (B, H) each
    dhs: np.ndarray  # (T, B, H) gradient of the loss w.r.t. the outputs
    dfinals: list[np.ndarray]  # gradients w.r.t. the final states, (B, H) each


def make_problem(case: Case, seed: int = 0, T: int = 4, B: int = 2, I: int = 3, H: int = 5) -> Problem:
    """Random weights, inputs, initial states and output gradients (drawn in that order)."""
    rng = np.random.default_rng(seed)
    w = case.weights.random(I, H, rng)
    x = rng.standard_normal((T, B, I))
    states = [rng.standard_normal((B, H)) for _ in case.entry.states]
    dhs = rng.standard_normal((T, B, H))
    dfinals = [rng.standard_normal((B, H)) for _ in case.entry.states]
    return Problem(w, x, states, dhs, dfinals)
