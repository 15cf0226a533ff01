"""The plain (Elman) RNN layer in pure PyTorch: the recurrence and its hand-written backward.

The article's contrast model, with PyTorch's equations (``lstmkit.reference.rnn``):
    h_t = act(zx_t + h_{t-1} W_hh^T),  zx = x W_ih^T + b_ih + b_hh,  act = tanh or relu.
Dimensions: T time, B batch, I input, H hidden. Held steps as in ``functional.lstm``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lstmkit.functional.backend import _outside_grad, _step_mask, _valid_steps, recurrence_for

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


class RNNLayerFunction(torch.autograd.Function):
    """One RNN layer and direction over a sequence. forward(x (T,B,I), h0 (B,H), w_ih (H,I),
    w_hh (H,H), b_ih, b_hh (H,) or None, nonlinearity, lengths) -> y (T,B,H), h_n (B,H)."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, lengths):
        T, B, I = x.shape
        x2 = x.reshape(T * B, I)
        zx = x2 @ w_ih.t() if b_ih is None else torch.addmm(b_ih + b_hh, x2, w_ih.t())  # (T*B,H)
        rec = recurrence_for(x)
        hs = rec.rnn_recurrence_forward(zx.view(T, B, -1), h0, w_hh, nonlinearity, lengths)
        y = hs if lengths is None else hs * _valid_steps(lengths, T, hs)
        ctx.save_for_backward(x, h0, w_ih, w_hh, hs, lengths)
        ctx.has_bias, ctx.nonlinearity = b_ih is not None, nonlinearity
        return y, hs[-1].clone()

    @staticmethod
    def backward(ctx, dy, dh_n):
        x, h0, w_ih, w_hh, hs, lengths = ctx.saved_tensors
        T, B, I = x.shape
        dhs = _outside_grad(dy, lengths)                    # (T,B,H)
        dhs[-1] += dh_n
        rec = recurrence_for(x)
        dz, dh0 = rec.rnn_recurrence_backward(dhs, hs, h0, w_hh, ctx.nonlinearity, lengths)
        dz2 = dz.view(T * B, -1)                            # (T*B,H)
        need = ctx.needs_input_grad
        dx = torch.mm(dz2, w_ih).view(T, B, I) if need[0] else None
        dw_ih = torch.mm(dz2.t(), x.reshape(T * B, I)) if need[2] else None
        h_prev = torch.cat((h0.unsqueeze(0), hs[:-1]))      # (T,B,H)
        dw_hh = torch.mm(dz2.t(), h_prev.view(T * B, -1)) if need[3] else None
        db = dz2.sum(0) if ctx.has_bias else None
        return dx, dh0, dw_ih, dw_hh, db, None if db is None else db.clone(), None, None
