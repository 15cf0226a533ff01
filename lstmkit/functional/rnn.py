"""The plain (Elman) RNN layer in pure PyTorch: the recurrence and its hand-written backward.

The article's contrast model, with PyTorch's equations (``lstmkit.reference.rnn``):
    h_t = act(zx_t + h_{t-1} W_hh^T),  zx = x W_ih^T + b_ih + b_hh,  act = tanh or relu.
Dimensions: T time, B batch, I input, H hidden. Held steps as in ``functional.lstm``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lstmkit.functional.backend import _step_mask, register_torch

NONLINEARITIES = ("tanh", "relu")


def rnn_recurrence_forward(
    zx: Tensor, h0: Tensor, w_hh: Tensor, nonlinearity: str, lengths: Tensor | None
) -> Tensor:
    """zx (T,B,H) input pre-activations with both biases, h0 (B,H), w_hh (H,H). Returns hs (T,B,H)."""
    act = torch.tanh if nonlinearity == "tanh" else torch.relu
    hs = torch.empty_like(zx)                               # (T,B,H)
    h = h0
    for t in range(zx.shape[0]):
        h_new = act(torch.addmm(zx[t], h, w_hh.t()))        # (B,H)
        run = _step_mask(lengths, t)
        if run is not None:
            h_new = torch.where(run, h_new, h)
        hs[t] = h_new
        h = h_new
    return hs


def rnn_recurrence_backward(
    dhs: Tensor, hs: Tensor, h0: Tensor, w_hh: Tensor, nonlinearity: str, lengths: Tensor | None
) -> tuple[Tensor, Tensor]:
    """dhs (T,B,H) gradient reaching each h_t from outside. Returns dz (T,B,H), dh0 (B,H).
    The derivative comes from the saved output: tanh' = 1 - h^2, relu' = [h > 0]."""
    dz = torch.empty_like(hs)                               # (T,B,H)
    dh = torch.zeros_like(h0)
    for t in reversed(range(hs.shape[0])):
        dh = dh + dhs[t]
        h = hs[t]
        dz[t] = dh * (1 - h * h) if nonlinearity == "tanh" else dh * (h > 0)
        dh_prev = dz[t] @ w_hh                              # (B,H)
        run = _step_mask(lengths, t)
        if run is not None:
            dz[t] *= run
            dh_prev = torch.where(run, dh_prev, dh)
        dh = dh_prev
    return dz, dh


register_torch(rnn_recurrence_forward=rnn_recurrence_forward, rnn_recurrence_backward=rnn_recurrence_backward)
