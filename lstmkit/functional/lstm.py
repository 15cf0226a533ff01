"""The LSTM layer in pure PyTorch: the recurrence and its hand-written backward.

The equations are those of ``lstmkit.reference.lstm`` (its docstring is the one place they are
written out); here they run on torch tensors, batched, gates stacked in PyTorch's order i, f, g, o.
This file is the readable fast path on every device and the fallback of every compiled kernel:
``lstmkit.kernels`` implements ``lstm_recurrence_forward/backward`` with the same contract.

Split of the work (what makes it fast without a compiler):
- the input projection ``zx = x W_ih^T + b_ih + b_hh`` for all steps is one matrix product
  (``lstm_layer_forward``: projection and recurrence, the unit a kernel may fuse);
- only the recurrent part ``h_{t-1} W_hh^T`` and the pointwise gate math run step by step;
- in backward only ``dh_{t-1}`` is sequential; weight and input gradients are large products
  taken once after the loop;
- where nothing needs a gradient or a trace, ``lstm_layer_inference`` runs the same forward with
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

from lstmkit.functional import workspace
from lstmkit.functional.backend import (
    _alias,
    _copy,
    _input_projection,
    _outside_grad,
    _step_mask,
    _valid_steps,
    recurrence_for,
)


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
    With cache=False the projection is taken in chunks of about ZX_CHUNK_ELEMENTS elements, each
    into the same buffer, and no gates or cell states are kept (inference: no backward, no trace).
    The compiled kernels (``lstmkit.kernels``) do the same in one C++ call.
    """
    if cache:
        zx = _input_projection(x, w_ih, bias, out=gates_out)                   # (T,B,4H)
        return lstm_recurrence_forward(zx, h0, c0, w_hh, w_hr, lengths, gates_out=gates_out)
    T, B, _ = x.shape
    steps = max(1, ZX_CHUNK_ELEMENTS // (B * w_ih.shape[0]))                   # steps per chunk
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


# Inference takes the input projection in chunks of about this many elements of zx (4 MB in
# float32), each into the same buffer: a whole-sequence zx past glibc's 32 MB mmap threshold is
# mapped afresh and page-faulted on every call (config C of ``lstmkit bench``: 14% of its time),
# and a chunk this size is still in cache when the recurrence reads it (measured against 1 MB and
# 16 MB chunks: 2-8% faster on configs B, C, D).
ZX_CHUNK_ELEMENTS = 1 << 20


def lstm_layer_inference(
    x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
    b_hh: Tensor | None, w_hr: Tensor | None, lengths: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """LSTMLayerFunction's forward where no gradient and no trace is wanted: the same arguments and
    the same y (T,B,P), h_n (B,P), c_n (B,H), computed alike, but with ``lstm_layer_forward``'s
    cache=False: neither gates nor cell states are kept (nothing for backward to read), and the
    input projection is taken chunk by chunk into one buffer.
    h_n and c_n may be views (of y's last step, of a scratch row); copy before writing into them.
    """
    T = x.shape[0]
    rec = recurrence_for(x)
    _, c_last, hs = rec.lstm_layer_forward(x, h0, c0, w_ih, w_hh, _bias(b_ih, b_hh), w_hr, lengths, cache=False)
    y = hs if lengths is None else hs * _valid_steps(lengths, T, hs)           # (T,B,P)
    return y, hs[-1], c_last[0]


def _bias(b_ih: Tensor | None, b_hh: Tensor | None) -> Tensor | None:
    """The one bias the cell sees, b_ih + b_hh (4H,), or None."""
    return None if b_ih is None else b_ih + b_hh


class LSTMLayerFunction(torch.autograd.Function):
    """One layer, one direction, over a whole sequence, with the backward above.

    forward(x (T,B,I), h0 (B,P), c0 (B,H), w_ih (4H,I), w_hh (4H,P), b_ih, b_hh (4H,) or None,
    w_hr (P,H) or None, lengths (B,) int64 or None, keep_trace=True) -> y (T,B,P) (zero past each
    length), h_n (B,P), c_n (B,H), gates (T,B,4H), cs (T,B,H). The last two are the trace: the very
    tensors saved for backward, returned without a second computation (not differentiable). With
    keep_trace=False they come back empty, and backward writes dz over the saved gates (one
    sequence-sized buffer less); a second backward through the same graph (retain_graph=True)
    then recomputes the gates first, so it gets the same gradients.
    """

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, keep_trace=True):
        T = x.shape[0]
        rec = recurrence_for(x)
        buf = None if keep_trace else workspace.take((T, x.shape[1], w_ih.shape[0]), x)   # dz goes over it
        gates, cs, hs = rec.lstm_layer_forward(x, h0, c0, w_ih, w_hh, _bias(b_ih, b_hh), w_hr, lengths,
                                               gates_out=buf)
        y = hs if lengths is None else hs * _valid_steps(lengths, T, hs)   # (T,B,P)
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, gates, cs, hs, lengths)
        ctx.has_bias, ctx.keep_trace, ctx.gates_overwritten = b_ih is not None, keep_trace, False
        ctx.set_materialize_grads(False)                    # no zero-filled (T,B,4H) gradient for the trace
        h_n, c_n = hs[-1].clone(), cs[-1].clone()
        if not keep_trace:
            gates, cs = gates.new_empty(0), cs.new_empty(0)
        ctx.mark_non_differentiable(gates, cs)
        return y, h_n, c_n, gates, cs

    @staticmethod
    def backward(ctx, dy, dh_n, dc_n, _dgates, _dcs):
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, gates, cs, hs, lengths = ctx.saved_tensors
        T, B, I = x.shape
        rec = recurrence_for(x)
        if ctx.gates_overwritten:                           # a second backward: the first wrote dz over them
            gates, _, _ = rec.lstm_layer_forward(x, h0, c0, w_ih, w_hh, _bias(b_ih, b_hh), w_hr, lengths)
        H = cs.shape[2]
        dhs = x.new_zeros(T, B, hs.shape[2]) if dy is None else _outside_grad(dy, lengths)  # (T,B,P) fresh
        if dh_n is not None:
            dhs[-1] += dh_n                                 # h_n is h_{T-1} (held past each length)
        dc_last = c0.new_zeros(B, H) if dc_n is None else dc_n.contiguous()
        need = ctx.needs_input_grad
        r = None
        if w_hr is not None and need[7]:
            r = gates[:, :, 3 * H:] * cs.tanh()             # (T,B,H) recomputed: one pointwise op, before dz
        dz, dh0, dc0, dhtot = rec.lstm_recurrence_backward(
            dhs, dc_last, gates, cs, hs, h0, c0, w_hh, w_hr, lengths, overwrite=not ctx.keep_trace)
        ctx.gates_overwritten = not ctx.keep_trace
        dz2 = dz.view(T * B, -1)                            # (T*B,4H)
        dx = torch.mm(dz2, w_ih).view(T, B, I) if need[0] else None
        dw_ih = torch.mm(dz2.t(), x.reshape(T * B, I)) if need[3] else None
        dw_hh = None
        if need[4]:                                         # sum_t dz_t^T h_{t-1}, h_{-1} = h0: no concatenation
            P = hs.shape[2]
            dw_hh = torch.mm(dz[0].t(), h0)
            if T > 1:
                dw_hh.addmm_(dz2[B:].t(), hs[:-1].reshape((T - 1) * B, P))
        db = dz2.sum(0) if ctx.has_bias else None
        dw_hr = torch.mm(dhtot.view(T * B, -1).t(), r.reshape(T * B, H)) if r is not None else None
        if not ctx.keep_trace:
            workspace.give(dz)                              # nobody else sees it: the next forward may take it
        return dx, dh0, dc0, dw_ih, dw_hh, db, _copy(db), dw_hr, None, None
