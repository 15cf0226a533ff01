"""Each layer's forward as plain differentiable PyTorch operations: the path for derivatives of
any order and for ``torch.func`` transforms.

What it is: the same recurrences as ``lstmkit.functional.lstm/gru/rnn`` (equations in
``lstmkit.reference``), written without ``out=`` buffers or in-place writes, so that autograd,
forward-mode AD and ``torch.func`` (grad, jacrev, jacfwd, vmap, hessian) can differentiate
through every step. The operators use it where a gradient must itself be differentiable
(``create_graph=True``: gradient penalties, second-order meta-learning, ``gradgradcheck``) and
the entry functions use it under ``torch.func`` transforms and forward-mode AD.

What it is not: the fast path. It keeps every step's graph; the operators' hand-written backward
is what a first-order training step runs.

Dimensions: T time, B batch, I input, H hidden, P projection (P == H without one). Held steps
(``lengths``) as in ``functional.lstm``: state kept, gates zero, output zero past each length.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _held(lengths: Tensor | None, t: int) -> Tensor | None:
    """(B,1) bool, which sequences still run at step t (None: all)."""
    return None if lengths is None else (lengths > t).unsqueeze(1)


def _bias(b_ih: Tensor | None, b_hh: Tensor | None) -> Tensor | int:
    return 0 if b_ih is None else b_ih + b_hh


def lstm_layer_composite(x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
                         b_hh: Tensor | None, w_hr: Tensor | None, lengths: Tensor | None
                         ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """-> y (T,B,P), h_n (B,P), c_n (B,H), gates (T,B,4H) [i f g o], cs (T,B,H), as ``lstmkit::lstm_layer``."""
    zx = x @ w_ih.t() + _bias(b_ih, b_hh)                   # (T,B,4H)
    h, c = h0, c0
    ys, gates, cs = [], [], []
    for t in range(x.shape[0]):
        i, f, g, o = (zx[t] + h @ w_hh.t()).chunk(4, dim=1)  # (B,H) each
        i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
        c_new = f * c + i * g
        h_new = o * c_new.tanh()
        h_new = h_new if w_hr is None else h_new @ w_hr.t()  # (B,P)
        run = _held(lengths, t)
        if run is not None:
            c_new, h_new = torch.where(run, c_new, c), torch.where(run, h_new, h)
            i, f, g, o = (a * run for a in (i, f, g, o))
            ys.append(h_new * run)
        else:
            ys.append(h_new)
        gates.append(torch.cat((i, f, g, o), dim=1))
        cs.append(c_new)
        h, c = h_new, c_new
    return torch.stack(ys), h, c, torch.stack(gates), torch.stack(cs)


def gru_layer_composite(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
                        b_hh: Tensor | None, lengths: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """-> y (T,B,H), h_n (B,H), gates (T,B,3H) [r z n], as ``lstmkit::gru_layer``."""
    zx = x @ w_ih.t() + (0 if b_ih is None else b_ih)        # (T,B,3H)
    h = h0
    ys, gates = [], []
    for t in range(x.shape[0]):
        gh = h @ w_hh.t() + (0 if b_hh is None else b_hh)    # (B,3H)
        xr, xz, xn = zx[t].chunk(3, dim=1)
        hr, hz, hn = gh.chunk(3, dim=1)
        r, z = (xr + hr).sigmoid(), (xz + hz).sigmoid()
        n = (xn + r * hn).tanh()
        h_new = (1 - z) * n + z * h
        run = _held(lengths, t)
        if run is not None:
            h_new = torch.where(run, h_new, h)
            r, z, n = (a * run for a in (r, z, n))
            ys.append(h_new * run)
        else:
            ys.append(h_new)
        gates.append(torch.cat((r, z, n), dim=1))
        h = h_new
    return torch.stack(ys), h, torch.stack(gates)


def rnn_layer_composite(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
                        b_hh: Tensor | None, nonlinearity: str, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
    """-> y (T,B,H), h_n (B,H), as ``lstmkit::rnn_layer``."""
    act = torch.tanh if nonlinearity == "tanh" else torch.relu
    zx = x @ w_ih.t() + _bias(b_ih, b_hh)                   # (T,B,H)
    h = h0
    ys = []
    for t in range(x.shape[0]):
        h_new = act(zx[t] + h @ w_hh.t())
        run = _held(lengths, t)
        if run is not None:
            h_new = torch.where(run, h_new, h)
            ys.append(h_new * run)
        else:
            ys.append(h_new)
        h = h_new
    return torch.stack(ys), h
