"""One LSTM layer and direction as PyTorch operators, with autograd, and the entry that picks a path.

Operators (``torch.ops.lstmkit``; fake kernels give their shapes to ``torch.compile``/``export``):
- ``lstm_layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, keep_trace)
  -> y (T,B,P), h_n (B,P), c_n (B,H), gates (T,B,4H), cs (T,B,H), hs (T,B,P)``: the forward that
  keeps what backward needs; gates and cs are also the trace (the very tensors backward reads, not
  differentiable); hs, the states, is y's own copy (without lengths), so a caller may change y in
  place. With keep_trace=False they are internal: backward writes dz over the gates and
  hands the buffer to ``workspace`` for the next step's forward. Autograd: ``_backward`` below.
- ``lstm_layer_inference(...same but keep_trace) -> y, h_n, c_n``: no cache kept (no gates, no
  cell states; the input projection chunk by chunk). Its backward raises.
- ``lstm_layer_backward(dy, dh_n, dc_n, inputs..., gates, cs, hs, need, overwrite, recompute)
  -> dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr`` (empty where ``need`` says no).

Each runs the compiled recurrence of ``lstmkit.kernels`` where there is one for its tensors, else
the PyTorch one of ``functional.lstm`` (``backend.recurrence_for``). Shapes: T time, B batch,
I input, H hidden, P projection (P == H without w_hr). lengths (B,) int64 or None.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lstmkit.functional import ops, workspace
from lstmkit.functional.backend import (
    _dense,
    _input_grads,
    _output_grads,
    _recurrent_weight_grad,
    _valid_steps,
    recurrence_for,
)
from lstmkit.functional.composite import lstm_layer_composite

_INPUTS = "Tensor x, Tensor h0, Tensor c0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, Tensor? w_hr, " \
          "Tensor? lengths"


def _bias(b_ih: Tensor | None, b_hh: Tensor | None) -> Tensor | None:
    """The one bias the cell sees, b_ih + b_hh (4H,), or None."""
    return None if b_ih is None else b_ih + b_hh


def _forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, keep_trace):
    T, B, _ = x.shape
    rec = recurrence_for(x, w_hh)
    buf = None if keep_trace else workspace.take((T, B, w_ih.shape[0]), x)   # dz goes over it in backward
    gates, cs, hs = rec.lstm_layer_forward(x, h0, c0, w_ih, w_hh, _bias(b_ih, b_hh), w_hr, lengths, gates_out=buf)
    y = hs.clone() if lengths is None else hs * _valid_steps(lengths, T, hs)  # (T,B,P), not hs itself
    return y, hs[-1].clone(), cs[-1].clone(), gates, cs, hs


def _forward_fake(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, keep_trace):
    T, B, _ = x.shape
    G, P = w_ih.shape[0], h0.shape[1]
    return x.new_empty(T, B, P), x.new_empty(B, P), x.new_empty(B, G // 4), x.new_empty(T, B, G), \
        x.new_empty(T, B, G // 4), x.new_empty(T, B, P)


def _inference(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, rec=None):
    """y (T,B,P), h_n (B,P), c_n (B,H); h_n and c_n may be views (of y's last step, of a scratch
    row): the operator copies them, an eager caller that stacks them need not. One step (a
    streaming call) is the compiled cell's one call, the biases added in C++: the same sums as the
    layer's (tested), less Python. rec: the namespace that runs x, where the caller has it."""
    T = x.shape[0]
    rec = rec or recurrence_for(x, w_hh)
    if T == 1 and lengths is None and w_hr is None and rec.name == "cpp":
        h, c = rec.lstm_cell_forward(*_dense(x[0], h0, c0, w_ih, w_hh, b_ih, b_hh))  # (B,H) each
        return h.unsqueeze(0), h, c
    _, c_last, hs = rec.lstm_layer_forward(x, h0, c0, w_ih, w_hh, _bias(b_ih, b_hh), w_hr, lengths, cache=False)
    y = hs if lengths is None else hs * _valid_steps(lengths, T, hs)          # (T,B,P)
    return y, hs[-1], c_last[0]


def _inference_op(*inputs):
    y, h_n, c_n = _inference(*inputs)
    return y, h_n.clone(), c_n.clone()                      # an operator's outputs never alias


def _inference_fake(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths):
    return _forward_fake(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, False)[:3]


def _layer_backward(dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, gates, cs, hs, need,
                    overwrite, recompute):
    """The hand-written backward: dz from the recurrence's backward, then every weight and input
    gradient as one large product after the loop."""
    T, B, I = x.shape
    H, P = cs.shape[2], hs.shape[2]
    rec = recurrence_for(x, w_hh)
    if recompute:                                           # the first backward wrote dz over the gates
        gates, _, _ = rec.lstm_layer_forward(x, h0, c0, w_ih, w_hh, _bias(b_ih, b_hh), w_hr, lengths)
    dhs = _output_grads(dy, dh_n, hs, lengths)                                  # (T,B,P)
    dc_last = c0.new_zeros(B, H) if dc_n is None else dc_n.contiguous()
    r = gates[:, :, 3 * H:] * cs.tanh() if w_hr is not None and need[7] else None   # (T,B,H) before dz
    dz, dh0, dc0, dhtot = rec.lstm_recurrence_backward(dhs, dc_last, gates, cs, hs, h0, c0, w_hh, w_hr, lengths,
                                                       overwrite=overwrite or recompute)
    dx, dw_ih = _input_grads(dz, x, w_ih, need[0], need[3], rec.mm)
    dw_hh = _recurrent_weight_grad(dz, h0, hs, rec.mm) if need[4] else ops.placeholder(x)
    db = dz.flatten(0, 1).sum(0) if b_ih is not None and (need[5] or need[6]) else ops.placeholder(x)
    dw_hr = rec.mm(dhtot.view(T * B, P).t(), r.reshape(T * B, H)) if r is not None else ops.placeholder(x)
    grads = (dx, dh0 if need[1] else ops.placeholder(x), dc0 if need[2] else ops.placeholder(x), dw_ih, dw_hh,
             db, db.clone(), dw_hr)
    if overwrite:
        workspace.give(dz)                                  # nobody else sees it: the next forward may take it
    return grads


def _layer_backward_fake(dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, gates, cs, hs, need,
                         overwrite, recompute):
    like = (x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
    return ops.fake_grads(like, need, x)


def _setup(ctx, inputs, output) -> None:
    *tensors, lengths, keep_trace = inputs
    _, _, _, gates, cs, hs = output
    ctx.save_for_backward(*tensors, lengths, gates, cs, hs)
    ctx.keep_trace, ctx.gates_overwritten = keep_trace, False
    ctx.mark_non_differentiable(gates, cs, hs)
    ctx.set_materialize_grads(False)                        # no zero-filled (T,B,4H) gradient for the trace


def _backward(ctx, dy, dh_n, dc_n, _dgates, _dcs, _dhs):
    *tensors, lengths, gates, cs, hs = ctx.saved_tensors
    need = list(ctx.needs_input_grad[:8])
    if torch.is_grad_enabled():                             # create_graph: the gradient is itself differentiated
        return (*ops.composite_vjp(lstm_layer_composite, tensors, (lengths,), (dy, dh_n, dc_n), need), None, None)
    overwrite = not ctx.keep_trace and not torch.compiler.is_compiling()
    backward = _layer_backward if ops.plain_eager(*tensors) else torch.ops.lstmkit.lstm_layer_backward
    grads = backward(dy, dh_n, dc_n, *tensors, lengths, gates, cs, hs, need, overwrite, ctx.gates_overwritten)
    ctx.gates_overwritten = ctx.gates_overwritten or overwrite
    return (*(ops.present(g, n) for g, n in zip(grads, need, strict=True)), None, None)


ops.define(f"lstm_layer({_INPUTS}, bool keep_trace) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
           _forward, _forward_fake)
ops.define(f"lstm_layer_inference({_INPUTS}) -> (Tensor, Tensor, Tensor)", _inference_op, _inference_fake)
ops.define(f"lstm_layer_backward(Tensor? dy, Tensor? dh_n, Tensor? dc_n, {_INPUTS}, Tensor gates, Tensor cs, "
           "Tensor hs, bool[] need, bool overwrite, bool recompute) "
           "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
           _layer_backward, _layer_backward_fake)
torch.library.register_autograd("lstmkit::lstm_layer", _backward, setup_context=_setup)
torch.library.register_autograd("lstmkit::lstm_layer_inference",
                                ops.refuse_backward("lstm_layer_inference", "lstm_layer"), setup_context=ops.none_setup)
_EagerLSTMLayer = ops.eager_function("_EagerLSTMLayer", _forward, _setup, _backward)


@ops.outside_autocast
def lstm_layer(x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
               b_hh: Tensor | None, w_hr: Tensor | None, lengths: Tensor | None, keep_trace: bool = False
               ) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
    """One layer and direction: y (T,B,P) (zero past each length), h_n (B,P), c_n (B,H), and with
    keep_trace the trace, gates (T,B,4H) activated [i f g o] and cs (T,B,H), else None, None.

    x (T,B,I), h0 (B,P), c0 (B,H), w_ih (4H,I), w_hh (4H,P), b_ih, b_hh (4H,) or None, w_hr (P,H)
    or None, lengths (B,) int64 or None. The operator that keeps a cache runs where a gradient or
    a trace is wanted or ``torch.jit.trace`` records (``ops.needs_cache``), the inference operator
    elsewhere; see the module docstring of ``ops``."""
    args = (x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
    dtype = ops.compute_dtype(*args)
    if dtype is not None:
        out = lstm_layer(*ops.cast(args, dtype), lengths, keep_trace)
        return tuple(None if t is None else t.to(x.dtype) for t in out)
    if ops.use_composite(*args):
        y, h_n, c_n, gates, cs = lstm_layer_composite(*args, lengths)
    elif keep_trace or ops.needs_cache(*args):
        eager = ops.plain_eager(*args)
        if eager and not keep_trace and x.shape[0] == 1 and lengths is None and w_hr is None \
                and (rec := recurrence_for(x, w_hh)).name == "cpp":
            h, c = rec.lstm_cell_step(*_dense(x[0], *args[1:7]))                 # (B,H) each, a C++ autograd node
            return h.unsqueeze(0).clone(), h.clone(), c.clone(), None, None   # (the node keeps its outputs)
        layer = _EagerLSTMLayer.apply if eager else torch.ops.lstmkit.lstm_layer
        y, h_n, c_n, gates, cs, _ = layer(*args, lengths, keep_trace)
    else:
        layer = _inference if ops.plain_eager(*args) else torch.ops.lstmkit.lstm_layer_inference
        return (*layer(*args, lengths), None, None)
    return (y, h_n, c_n, gates, cs) if keep_trace else (y, h_n, c_n, None, None)
