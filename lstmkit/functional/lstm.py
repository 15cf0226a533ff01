"""The LSTM layer in pure PyTorch: the recurrence and its hand-written backward.

The equations are those of ``lstmkit.reference.lstm`` (its docstring is the one place they are
written out); here they run on torch tensors, batched, gates stacked in PyTorch's order i, f, g, o.
This file is the readable fast path on every device and the fallback of every compiled kernel:
``lstmkit.kernels`` implements ``lstm_layer_forward`` and ``lstm_recurrence_forward/backward`` with
the same contract. The operators that run them, with autograd, live in ``functional.lstm_op``.

Split of the work (what makes it fast without a compiler):
- the input projection ``zx = x W_ih^T + b_ih + b_hh`` for all steps is one matrix product
  (``lstm_layer_forward``: projection and recurrence, the unit a kernel may fuse);
- only the recurrent part ``h_{t-1} W_hh^T`` and the pointwise gate math run step by step;
- in backward only ``dh_{t-1}`` is sequential; weight and input gradients are large products
  taken once after the loop;
- where nothing needs a gradient or a trace, the inference operator runs the same forward with
  ``cache=False``: no gates or cell states are written, only the outputs;
- in training without a trace, backward writes dz over the saved gates and hands that buffer to
  ``workspace`` for the next step's forward (no fresh sequence-sized allocation per step).

Dimensions: T time, B batch, I input, H hidden, P projection (P == H without ``proj_size``).
Held steps: with ``lengths``, a step ``t >= lengths[b]`` leaves sequence b's state unchanged
(``h_t = h_{t-1}``, ``c_t = c_{t-1}``) and its gates are zero, so padded input never leaks in.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lstmkit.functional.backend import _alias, _input_projection, _step_mask, register_torch
from lstmkit.kernels import zx_chunk_elements


def lstm_recurrence_forward(
    zx: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, w_hr: Tensor | None, lengths: Tensor | None,
    cache: bool = True, gates_out: Tensor | None = None,
) -> tuple[Tensor | None, Tensor, Tensor]:
    """Run the recurrence over precomputed input projections.

    zx (T,B,4H) pre-activations from the input; h0 (B,P), c0 (B,H); w_hh (4H,P); w_hr (P,H) or None.
    Returns gates (T,B,4H) activated [i f g o], cs (T,B,H) and hs (T,B,P), the states after each step.
    cache=False (inference: no backward, no trace) keeps neither gates nor cell states: returns
    (None, c_{T-1} as (1,B,H), hs), so cs[-1] still is c_n. gates_out: where to write the gates;
    it may be zx itself (step t's zx is read before its gates are written).
    """
    T, B, H4 = zx.shape
    H = H4 // 4
    gates = (torch.empty_like(zx) if gates_out is None else gates_out) if cache else None   # (T,B,4H)
    cs = zx.new_empty(T, B, H) if cache else None           # (T,B,H)
    hs = zx.new_empty(T, B, h0.shape[1])                    # (T,B,P)
    h, c = h0, c0
    for t in range(T):
        z = torch.addmm(zx[t], h, w_hh.t())                 # (B,4H)
        i, f, g, o = z.chunk(4, dim=1)
        i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
        c_new = f * c + i * g                               # (B,H)
        r = o * c_new.tanh()                                # (B,H)
        h_new = r if w_hr is None else r @ w_hr.t()         # (B,P)
        run = _step_mask(lengths, t)
        if run is not None:
            c_new, h_new = torch.where(run, c_new, c), torch.where(run, h_new, h)
        if cache:
            i, f, g, o = (i, f, g, o) if run is None else (a * run for a in (i, f, g, o))
            torch.cat((i, f, g, o), dim=1, out=gates[t])
            cs[t] = c_new
        hs[t] = h_new
        h, c = h_new, c_new
    return gates, (cs if cache else c.unsqueeze(0)), hs


def lstm_recurrence_backward(
    dhs: Tensor, dc_last: Tensor, gates: Tensor, cs: Tensor, hs: Tensor, h0: Tensor, c0: Tensor,
    w_hh: Tensor, w_hr: Tensor | None, lengths: Tensor | None, overwrite: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """Backpropagate through time from the saved gates and cell states (nothing is recomputed
    but tanh(c_t), one pointwise op per step, cheaper than storing it).

    dhs (T,B,P) gradient reaching each h_t from outside the recurrence; dc_last (B,H) reaching c_{T-1}.
    Returns dz (T,B,4H) gradient of the pre-activations, dh0 (B,P), dc0 (B,H), and with a projection
    dhtot (T,B,P), the total gradient at each h_t (zero at held steps), else None.
    overwrite=True writes dz over gates (step t's gates are read before its dz is written): one
    (T,B,4H) buffer less, for a caller that needs the gates no more.
    """
    T, B, _ = dhs.shape
    dz = _alias(gates) if overwrite else torch.empty_like(gates)    # (T,B,4H)
    dhtot = torch.zeros_like(dhs) if w_hr is not None else None
    dh, dc = torch.zeros_like(h0), dc_last.clone()
    for t in reversed(range(T)):
        dh = dh + dhs[t]                                    # (B,P) everything that reaches h_t
        i, f, g, o = gates[t].chunk(4, dim=1)                # views: read before dz[t] is written
        c_prev = cs[t - 1] if t > 0 else c0
        tanh_c = cs[t].tanh()
        if dhtot is not None:
            dhtot[t] = dh
        dr = dh if w_hr is None else dh @ w_hr              # (B,H)
        dc_t = dc + dr * o * (1 - tanh_c * tanh_c)          # tanh' = 1 - y^2
        dzi = dc_t * g * i * (1 - i)                        # sigma' = y(1 - y)
        dzf = dc_t * c_prev * f * (1 - f)
        dzg = dc_t * i * (1 - g * g)
        dzo = dr * tanh_c * o * (1 - o)
        dc_prev = dc_t * f                                  # (B,H) before f's memory may become dz
        torch.cat((dzi, dzf, dzg, dzo), dim=1, out=dz[t])
        dh_prev = dz[t] @ w_hh                              # (B,P)
        run = _step_mask(lengths, t)
        if run is not None:                                 # held steps pass dh, dc straight through
            dz[t] *= run
            if dhtot is not None:
                dhtot[t] *= run
            dh_prev, dc_prev = torch.where(run, dh_prev, dh), torch.where(run, dc_prev, dc)
        dh, dc = dh_prev, dc_prev
    return dz, dh, dc, dhtot


def lstm_layer_forward(
    x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, bias: Tensor | None, w_hr: Tensor | None,
    lengths: Tensor | None, cache: bool = True, gates_out: Tensor | None = None,
) -> tuple[Tensor | None, Tensor, Tensor]:
    """A layer's forward: the input projection zx = x W_ih^T + b for every step, then the recurrence.

    x (T,B,I); bias (4H,) = b_ih + b_hh, or None. Returns what ``lstm_recurrence_forward`` returns.
    gates_out (cache only): a (T,B,4H) tensor for the gates (zx is written into it, then the gates).
    With cache=False the projection is taken in chunks of about ``kernels.zx_chunk_elements(4H)`` elements, each
    into the same buffer, and no gates or cell states are kept (inference: no backward, no trace).
    The compiled kernels (``lstmkit.kernels``) do the same in one C++ call.
    """
    if cache:
        zx = _input_projection(x, w_ih, bias, out=gates_out)                   # (T,B,4H)
        return lstm_recurrence_forward(zx, h0, c0, w_hh, w_hr, lengths, gates_out=gates_out)
    T, B, _ = x.shape
    steps = max(1, zx_chunk_elements(w_ih.shape[0]) // max(1, B * w_ih.shape[0]))  # steps per chunk
    hs = x.new_empty(T, B, h0.shape[1])                                        # (T,B,P)
    buf = None
    h, c = h0, c0
    for t0 in range(0, T, steps):
        zx = _input_projection(x[t0:t0 + steps], w_ih, bias, out=buf)          # (steps,B,4H)
        buf = zx if buf is None else buf
        left = None if lengths is None else (lengths - t0).clamp(min=0)         # steps left at t0
        _, c_last, hs_n = lstm_recurrence_forward(zx, h, c, w_hh, w_hr, left, cache=False)
        hs[t0:t0 + steps] = hs_n
        h, c = hs[min(T, t0 + steps) - 1], c_last[0]
    return None, c.unsqueeze(0), hs


register_torch(lstm_layer_forward=lstm_layer_forward, lstm_recurrence_forward=lstm_recurrence_forward,
               lstm_recurrence_backward=lstm_recurrence_backward)
