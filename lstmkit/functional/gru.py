"""The GRU layer in pure PyTorch: the recurrence and its hand-written backward.

PyTorch's GRU (``lstmkit.reference.gru`` writes the equations out), gates stacked r, z, n:
    r_t = σ(zx_r + gh_r),  z_t = σ(zx_z + gh_z),  n_t = tanh(zx_n + r_t ⊙ gh_n),
    h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t-1},
with zx = x W_ih^T + b_ih (all steps at once) and gh = h_{t-1} W_hh^T + b_hh (step by step; its
n-part sits inside the reset gate, so b_hh cannot be folded into zx as for the LSTM).
Dimensions: T time, B batch, I input, H hidden. Held steps as in ``functional.lstm``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lstmkit.functional.backend import _step_mask, register_torch


def gru_recurrence_forward(
    zx: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor | None, lengths: Tensor | None, cache: bool = True,
) -> tuple[Tensor | None, Tensor | None, Tensor]:
    """zx (T,B,3H), h0 (B,H), w_hh (3H,H), b_hh (3H,) or None.
    Returns gates (T,B,3H) activated [r z n], ghn (T,B,H) = gh_n (kept for backward), hs (T,B,H).
    cache=False (inference: no backward, no trace) keeps neither: returns (None, None, hs)."""
    T, B, H3 = zx.shape
    H = H3 // 3
    gates = torch.empty_like(zx) if cache else None         # (T,B,3H)
    ghn = zx.new_empty(T, B, H) if cache else None           # (T,B,H)
    hs = zx.new_empty(T, B, H)                              # (T,B,H)
    h = h0
    for t in range(T):
        gh = h @ w_hh.t() if b_hh is None else torch.addmm(b_hh, h, w_hh.t())  # (B,3H)
        xr, xz, xn = zx[t].chunk(3, dim=1)
        hr, hz, ghn_t = gh.chunk(3, dim=1)
        r, z = (xr + hr).sigmoid(), (xz + hz).sigmoid()
        n = (xn + r * ghn_t).tanh()
        h_new = (1 - z) * n + z * h                         # (B,H)
        run = _step_mask(lengths, t)
        if run is not None:
            h_new = torch.where(run, h_new, h)
            r, z, n = (a * run for a in (r, z, n))
        if cache:
            torch.cat((r, z, n), dim=1, out=gates[t])
            ghn[t] = ghn_t
        hs[t] = h_new
        h = h_new
    return gates, ghn, hs


def gru_recurrence_backward(
    dhs: Tensor, gates: Tensor, ghn: Tensor, hs: Tensor, h0: Tensor, w_hh: Tensor, lengths: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """dhs (T,B,H) gradient reaching each h_t from outside. Returns dzx (T,B,3H) the gradient of the
    input pre-activations, dgh (T,B,3H) that of the recurrent ones, and dh0 (B,H)."""
    T = dhs.shape[0]
    dzx, dgh = torch.empty_like(gates), torch.empty_like(gates)
    dh = torch.zeros_like(h0)
    for t in reversed(range(T)):
        dh = dh + dhs[t]                                    # (B,H)
        r, z, n = gates[t].chunk(3, dim=1)
        h_prev = hs[t - 1] if t > 0 else h0
        dn_pre = dh * (1 - z) * (1 - n * n)                 # through n = tanh(.)
        dz_pre = dh * (h_prev - n) * z * (1 - z)
        dr_pre = dn_pre * ghn[t] * r * (1 - r)
        torch.cat((dr_pre, dz_pre, dn_pre), dim=1, out=dzx[t])
        torch.cat((dr_pre, dz_pre, dn_pre * r), dim=1, out=dgh[t])
        dh_prev = dh * z + dgh[t] @ w_hh                    # (B,H)
        run = _step_mask(lengths, t)
        if run is not None:
            dzx[t] *= run
            dgh[t] *= run
            dh_prev = torch.where(run, dh_prev, dh)
        dh = dh_prev
    return dzx, dgh, dh


register_torch(gru_recurrence_forward=gru_recurrence_forward, gru_recurrence_backward=gru_recurrence_backward)
