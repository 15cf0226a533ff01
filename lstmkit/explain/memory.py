"""Memory over distance: how much the last state still depends on each earlier input.

What it is: the article's figure of the red area of the first words shrinking step by step in an
RNN, measured. For one input sequence x (T, I) and a recurrent core, ``memory_curve`` is

    m_t = ‖∂h_T/∂x_t‖_F        for t = 1..T

(the Frobenius norm of the Jacobian of the last layer's final hidden state with respect to the
input at step t), by autograd through the lstmkit module in float64. A plain RNN's m_t falls off
geometrically with the distance T − t (vanishing gradient); an LSTM's forget gate, held open,
lets it fall much more slowly. ``baseline_cores`` gives a freshly initialised RNN and LSTM of
the same size, so both can be measured on the very same input as the trained model.
What it is not: a training signal or a statement about what the model uses; a large m_t only
says that h_T would move if x_t moved.

Dimension legend: T tokens, I input features, H hidden units, K probes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

import lstmkit

from .traces import as_lstmkit, check_inputs

EXACT_MAX_HIDDEN = 64  # up to this many units the Jacobian norm is exact (one backward, batch H)
PROBES = 16  # beyond it, a random-probe estimate: E‖J^T u‖² = ‖J‖_F² for u ~ N(0, I)
WINDOW = 256  # the last tokens measured; further back m_t has vanished (underflows even in float64)


@dataclass
class MemoryCurve:
    """One model's m_t over the tokens."""

    label: str  # e.g. "trained LSTM", "fresh RNN"
    norms: np.ndarray  # (W,) m_t = ‖∂h_T/∂x_t‖_F for the last W tokens
    start: int  # token index of norms[0] (T − W)
    exact: bool  # False: estimated with PROBES random probes


def memory_curve(core: nn.Module, x: Tensor, label: str, seed: int = 0, window: int = WINDOW) -> MemoryCurve:
    """m_t of ``core`` on one sequence x (T, I) for its last ``window`` tokens; see the module
    docstring. The tokens before the window only set the starting state (unidirectional cores)."""
    fast = as_lstmkit(core)
    check_inputs(fast, x)
    P, start = fast.output_size, max(0, x.shape[0] - window)
    exact = P <= EXACT_MAX_HIDDEN
    K = P if exact else PROBES
    hx = _state_after(fast, x[:start], K)  # in the core's own dtype: the fast path
    core = copy.deepcopy(fast).double().eval()
    xs = x[start:].detach().double().unsqueeze(0).repeat(K, 1, 1).requires_grad_(True)  # (K, W, I)
    y = core(xs if core.batch_first else xs.transpose(0, 1), hx)[0]  # (K, W, D*P) or (W, K, D*P)
    h_T = (y[:, -1] if core.batch_first else y[-1])[:, :P]  # (K, P): forward direction, last step
    if exact:
        probes = torch.eye(P, dtype=torch.float64)  # (K=P, P): row k picks unit k of h_T
    else:
        probes = torch.randn(K, P, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    (h_T * probes).sum().backward()
    sq = xs.grad.pow(2).sum(dim=2)  # (K, W): row k is ‖J_t^T u_k‖²
    norms = sq.sum(0) if exact else sq.mean(0)  # (W,)  ‖J_t‖_F² (exact) or its estimate
    return MemoryCurve(label, norms.sqrt().numpy(), start, exact)


@torch.no_grad()
def _state_after(core: nn.Module, prefix: Tensor, K: int):
    """The state after ``prefix`` (T0, I), repeated over a batch of K; None (zeros) when the prefix
    is empty or the core is bidirectional (its backward direction starts at the window's end)."""
    if prefix.shape[0] == 0 or core.bidirectional:
        return None
    was_training = core.training
    core.eval()
    state = core(prefix.to(core.weight_ih_l0.dtype).unsqueeze(0 if core.batch_first else 1))[1]
    core.train(was_training)
    states = state if isinstance(state, tuple) else (state,)  # (L, 1, ·) each
    out = tuple(s.double().expand(-1, K, -1).contiguous() for s in states)
    return out if isinstance(state, tuple) else out[0]


def baseline_cores(input_size: int, hidden_size: int, seed: int = 0) -> dict[str, nn.Module]:
    """A fresh tanh RNN and a fresh LSTM (forget_bias 1.0) of the same sizes, seeded, untrained."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rnn = lstmkit.RNN(input_size, hidden_size, batch_first=True)
        lstm = lstmkit.LSTM(input_size, hidden_size, batch_first=True, forget_bias=1.0)
    return {"fresh RNN (untrained)": rnn, "fresh LSTM (untrained)": lstm}


def memory_curves(core: nn.Module, x: Tensor, label: str, baselines: bool = True,
                  seed: int = 0) -> list[MemoryCurve]:
    """The model's curve, then (``baselines``) a fresh RNN's and LSTM's on the same input."""
    curves = [memory_curve(core, x, label, seed)]
    if baselines:
        H = as_lstmkit(core).hidden_size
        for name, base in baseline_cores(x.shape[1], H, seed).items():
            curves.append(memory_curve(base, x, name, seed))
    return curves
