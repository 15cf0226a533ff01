"""One GRU layer and direction as PyTorch operators, with autograd, and the entry that picks a path.

Operators (``torch.ops.lstmkit``, each with a fake kernel), as ``functional.lstm_op`` for the LSTM:
- ``gru_layer(x, h0, w_ih, w_hh, b_ih, b_hh, lengths) -> y (T,B,H), h_n (B,H), gates (T,B,3H),
  ghn (T,B,H), hs (T,B,H)``: gates [r z n] are the trace; ghn = gh_n, the recurrent part of n's
  pre-activation, and hs, the states, are what backward needs (all three not differentiable).
  hs is y's own copy (without lengths), so a caller may change y in place, as nn.GRU allows.
  Autograd: ``_backward`` below.
- ``gru_layer_inference(...) -> y, h_n``: no gates or gh_n kept. Its backward raises.
- ``gru_layer_backward(dy, dh_n, inputs..., gates, ghn, hs, need) -> dx, dh0, dw_ih, dw_hh, db_ih, db_hh``.
Shapes: T time, B batch, I input, H hidden; lengths (B,) int64 or None.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lstmkit.functional import ops
from lstmkit.functional.backend import (
    _dense,
    _input_grads,
    _output_grads,
    _project_steps,
    _recurrent_weight_grad,
    _valid_steps,
    recurrence_for,
)
from lstmkit.functional.composite import gru_layer_composite

_INPUTS = "Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, Tensor? lengths"


def _forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths):
    T = x.shape[0]
    rec = recurrence_for(x, w_hh)
    gates, ghn, hs = rec.gru_recurrence_forward(_project_steps(rec, x, w_ih, b_ih), h0, w_hh, b_hh, lengths)
    y = hs.clone() if lengths is None else hs * _valid_steps(lengths, T, hs)  # (T,B,H), not hs itself
    return y, hs[-1].clone(), gates, ghn, hs


def _forward_fake(x, h0, w_ih, w_hh, b_ih, b_hh, lengths):
    T, B, _ = x.shape
    G, H = w_ih.shape[0], h0.shape[1]
    return x.new_empty(T, B, H), x.new_empty(B, H), x.new_empty(T, B, G), x.new_empty(T, B, H), x.new_empty(T, B, H)


def _inference(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, rec=None):
    """y (T,B,H), h_n (B,H) a view; one step is the compiled cell's one call; rec as ``lstm_op._inference``."""
    T = x.shape[0]
    rec = rec or recurrence_for(x, w_hh)
    if T == 1 and lengths is None and rec.name == "cpp":
        h = rec.gru_cell_forward(*_dense(x[0], h0, w_ih, w_hh, b_ih, b_hh))[0]   # (B,H)
        return h.unsqueeze(0), h
    _, _, hs = rec.gru_recurrence_forward(_project_steps(rec, x, w_ih, b_ih), h0, w_hh, b_hh, lengths, cache=False)
    y = hs if lengths is None else hs * _valid_steps(lengths, T, hs)
    return y, hs[-1]                                        # a view: the operator copies it


def _inference_op(*inputs):
    y, h_n = _inference(*inputs)
    return y, h_n.clone()                                   # an operator's outputs never alias


def _inference_fake(x, h0, w_ih, w_hh, b_ih, b_hh, lengths):
    return _forward_fake(x, h0, w_ih, w_hh, b_ih, b_hh, lengths)[:2]


def _layer_backward(dy, dh_n, x, h0, w_ih, w_hh, b_ih, b_hh, lengths, gates, ghn, hs, need):
    """dzx, dgh from the recurrence's backward, then the weight and input gradients as products."""
    dhs = _output_grads(dy, dh_n, hs, lengths)                                  # (T,B,H)
    rec = recurrence_for(x, w_hh)
    dzx, dgh, dh0 = rec.gru_recurrence_backward(dhs, gates, ghn, hs, h0, w_hh, lengths)
    dx, dw_ih = _input_grads(dzx, x, w_ih, need[0], need[2], rec.mm)
    with_bias = b_ih is not None
    return (dx, dh0 if need[1] else ops.placeholder(x), dw_ih,
            _recurrent_weight_grad(dgh, h0, hs, rec.mm) if need[3] else ops.placeholder(x),
            dzx.flatten(0, 1).sum(0) if with_bias and need[4] else ops.placeholder(x),
            dgh.flatten(0, 1).sum(0) if with_bias and need[5] else ops.placeholder(x))


def _layer_backward_fake(dy, dh_n, x, h0, w_ih, w_hh, b_ih, b_hh, lengths, gates, ghn, hs, need):
    like = (x, h0, w_ih, w_hh, b_ih, b_hh)
    return ops.fake_grads(like, need, x)


def _setup(ctx, inputs, output) -> None:
    *tensors, lengths = inputs
    _, _, gates, ghn, hs = output
    ctx.save_for_backward(*tensors, lengths, gates, ghn, hs)
    ctx.mark_non_differentiable(gates, ghn, hs)
    ctx.set_materialize_grads(False)


def _backward(ctx, dy, dh_n, _dgates, _dhn, _dhs):
    *tensors, lengths, gates, ghn, hs = ctx.saved_tensors
    need = list(ctx.needs_input_grad[:6])
    if torch.is_grad_enabled():                             # create_graph: the gradient is itself differentiated
        return (*ops.composite_vjp(gru_layer_composite, tensors, (lengths,), (dy, dh_n), need), None)
    backward = _layer_backward if ops.plain_eager(*tensors) else torch.ops.lstmkit.gru_layer_backward
    grads = backward(dy, dh_n, *tensors, lengths, gates, ghn, hs, need)
    return (*(ops.present(g, n) for g, n in zip(grads, need, strict=True)), None)


ops.define(f"gru_layer({_INPUTS}) -> (Tensor, Tensor, Tensor, Tensor, Tensor)", _forward, _forward_fake)
ops.define(f"gru_layer_inference({_INPUTS}) -> (Tensor, Tensor)", _inference_op, _inference_fake)
ops.define(f"gru_layer_backward(Tensor? dy, Tensor? dh_n, {_INPUTS}, Tensor gates, Tensor ghn, Tensor hs, bool[] need) "
           "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)", _layer_backward, _layer_backward_fake)
torch.library.register_autograd("lstmkit::gru_layer", _backward, setup_context=_setup)
torch.library.register_autograd("lstmkit::gru_layer_inference", ops.refuse_backward("gru_layer_inference", "gru_layer"),
                                setup_context=ops.none_setup)
_EagerGRULayer = ops.eager_function("_EagerGRULayer", _forward, _setup, _backward)


@ops.outside_autocast
def gru_layer(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None,
              lengths: Tensor | None, keep_trace: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
    """One layer and direction: y (T,B,H) (zero past each length), h_n (B,H), and with keep_trace
    the gates (T,B,3H) activated [r z n], else None. x (T,B,I), h0 (B,H), w_ih (3H,I), w_hh (3H,H),
    b_ih, b_hh (3H,) or None, lengths (B,) int64 or None. Paths as ``lstm_op.lstm_layer``."""
    args = (x, h0, w_ih, w_hh, b_ih, b_hh)
    dtype = ops.compute_dtype(*args)
    if dtype is not None:
        out = gru_layer(*ops.cast(args, dtype), lengths, keep_trace)
        return tuple(None if t is None else t.to(x.dtype) for t in out)
    if ops.use_composite(*args):
        y, h_n, gates = gru_layer_composite(*args, lengths)
    elif keep_trace or ops.needs_cache(*args):
        eager = ops.plain_eager(*args)
        if eager and not keep_trace and x.shape[0] == 1 and lengths is None \
                and (rec := recurrence_for(x, w_hh)).name == "cpp":
            h = rec.gru_cell_step(*_dense(x[0], *args[1:]))                      # (B,H), a C++ autograd node
            return h.unsqueeze(0).clone(), h.clone(), None  # (the node keeps h: a caller may write into y)
        layer = _EagerGRULayer.apply if eager else torch.ops.lstmkit.gru_layer
        y, h_n, gates, _, _ = layer(*args, lengths)
    else:
        layer = _inference if ops.plain_eager(*args) else torch.ops.lstmkit.gru_layer_inference
        return (*layer(*args, lengths), None)
    return y, h_n, (gates if keep_trace else None)
