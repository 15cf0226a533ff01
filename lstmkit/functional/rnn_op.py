"""One plain RNN layer and direction as PyTorch operators, with autograd, and the entry.

Operators (``torch.ops.lstmkit``, each with a fake kernel), as ``functional.lstm_op`` for the LSTM:
- ``rnn_layer(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, lengths) -> y (T,B,H), h_n (B,H),
  hs (T,B,H)``: its only cache is the states hs (the derivative comes from h_t itself; not
  differentiable), y's own copy without lengths, so a caller may change y in place as nn.RNN
  allows. Autograd: ``_backward`` below.
- ``rnn_layer_inference(...same) -> y, h_n``: without grad, no copy of the states is kept (y is
  them). Its backward raises.
- ``rnn_layer_backward(dy, dh_n, inputs..., hs, need) -> dx, dh0, dw_ih, dw_hh, db_ih, db_hh``.
Shapes: T time, B batch, I input, H hidden; nonlinearity 'tanh' or 'relu'; lengths (B,) or None.
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
from lstmkit.functional.composite import rnn_layer_composite

_INPUTS = "Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, str nonlinearity, Tensor? lengths"


def _states(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, lengths, rec=None):
    """hs (T,B,H): the input projection in one product, then the recurrence (rec: the namespace
    that runs x, where the caller has it)."""
    rec = rec or recurrence_for(x, w_hh)
    zx = _project_steps(rec, x, w_ih, None if b_ih is None else b_ih + b_hh)            # (T,B,H)
    return rec.rnn_recurrence_forward(zx, h0, w_hh, nonlinearity, lengths)


def _forward(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, lengths):
    hs = _states(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, lengths)
    y = hs.clone() if lengths is None else hs * _valid_steps(lengths, x.shape[0], hs)  # (T,B,H), not hs itself
    return y, hs[-1].clone(), hs


def _inference(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, lengths, rec=None):
    """y (T,B,H), h_n (B,H): y is the states themselves (nothing else keeps them); h_n a copy. One
    step is the compiled cell's one call; rec as ``lstm_op._inference``."""
    rec = rec or recurrence_for(x, w_hh)
    if x.shape[0] == 1 and lengths is None and rec.name == "cpp":
        h = rec.rnn_cell_forward(*_dense(x[0], h0, w_ih, w_hh, b_ih, b_hh), nonlinearity)   # (B,H)
        return h.unsqueeze(0), h.clone()
    hs = _states(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, lengths, rec)
    y = hs if lengths is None else hs * _valid_steps(lengths, x.shape[0], hs)
    return y, hs[-1].clone()


def _inference_fake(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, lengths):
    return _forward_fake(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, lengths)[:2]


def _forward_fake(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, lengths):
    T, B, _ = x.shape
    return x.new_empty(T, B, h0.shape[1]), x.new_empty(h0.shape), x.new_empty(T, B, h0.shape[1])


def _layer_backward(dy, dh_n, x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, lengths, hs, need):
    """dz from the recurrence's backward, then the weight and input gradients as products."""
    dhs = _output_grads(dy, dh_n, hs, lengths)                                  # (T,B,H)
    rec = recurrence_for(x, w_hh)
    dz, dh0 = rec.rnn_recurrence_backward(dhs, hs, h0, w_hh, nonlinearity, lengths)
    dx, dw_ih = _input_grads(dz, x, w_ih, need[0], need[2], rec.mm)
    db = dz.flatten(0, 1).sum(0) if b_ih is not None and (need[4] or need[5]) else ops.placeholder(x)
    return (dx, dh0 if need[1] else ops.placeholder(x), dw_ih,
            _recurrent_weight_grad(dz, h0, hs, rec.mm) if need[3] else ops.placeholder(x),
            db, db.clone())


def _layer_backward_fake(dy, dh_n, x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, lengths, hs, need):
    like = (x, h0, w_ih, w_hh, b_ih, b_hh)
    return ops.fake_grads(like, need, x)


def _setup(ctx, inputs, output) -> None:
    *tensors, nonlinearity, lengths = inputs
    ctx.save_for_backward(*tensors, lengths, output[2])
    ctx.mark_non_differentiable(output[2])
    ctx.nonlinearity = nonlinearity
    ctx.set_materialize_grads(False)


def _backward(ctx, dy, dh_n, _dhs):
    *tensors, lengths, hs = ctx.saved_tensors
    need = list(ctx.needs_input_grad[:6])
    if torch.is_grad_enabled():                             # create_graph: the gradient is itself differentiated
        grads = ops.composite_vjp(rnn_layer_composite, tensors, (ctx.nonlinearity, lengths), (dy, dh_n), need)
        return (*grads, None, None)
    backward = _layer_backward if ops.plain_eager(*tensors) else torch.ops.lstmkit.rnn_layer_backward
    grads = backward(dy, dh_n, *tensors, ctx.nonlinearity, lengths, hs, need)
    return (*(ops.present(g, n) for g, n in zip(grads, need, strict=True)), None, None)


ops.define(f"rnn_layer({_INPUTS}) -> (Tensor, Tensor, Tensor)", _forward, _forward_fake)
ops.define(f"rnn_layer_backward(Tensor? dy, Tensor? dh_n, {_INPUTS}, Tensor hs, bool[] need) "
           "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)", _layer_backward, _layer_backward_fake)
ops.define(f"rnn_layer_inference({_INPUTS}) -> (Tensor, Tensor)", _inference, _inference_fake)
torch.library.register_autograd("lstmkit::rnn_layer", _backward, setup_context=_setup)
torch.library.register_autograd("lstmkit::rnn_layer_inference",
                                ops.refuse_backward("rnn_layer_inference", "rnn_layer"), setup_context=ops.none_setup)
_EagerRNNLayer = ops.eager_function("_EagerRNNLayer", _forward, _setup, _backward)


@ops.outside_autocast
def rnn_layer(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None,
              nonlinearity: str, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
    """One layer and direction: y (T,B,H) (zero past each length), h_n (B,H). x (T,B,I), h0 (B,H),
    w_ih (H,I), w_hh (H,H), b_ih, b_hh (H,) or None. Paths as ``lstm_op.lstm_layer``."""
    args = (x, h0, w_ih, w_hh, b_ih, b_hh)
    dtype = ops.compute_dtype(*args)
    if dtype is not None:
        y, h_n = rnn_layer(*ops.cast(args, dtype), nonlinearity, lengths)
        return y.to(x.dtype), h_n.to(x.dtype)
    if ops.use_composite(*args):
        return rnn_layer_composite(*args, nonlinearity, lengths)
    if ops.needs_cache(*args):
        eager = ops.plain_eager(*args)
        if eager and x.shape[0] == 1 and lengths is None and (rec := recurrence_for(x, w_hh)).name == "cpp":
            h = rec.rnn_cell_step(*_dense(x[0], *args[1:]), nonlinearity)        # (B,H), a C++ autograd node
            return h.unsqueeze(0).clone(), h.clone()        # (the node keeps h: a caller may write into y)
        layer = _EagerRNNLayer.apply if eager else torch.ops.lstmkit.rnn_layer
        y, h_n, _ = layer(*args, nonlinearity, lengths)
        return y, h_n
    layer = _inference if ops.plain_eager(*args) else torch.ops.lstmkit.rnn_layer_inference
    return layer(*args, nonlinearity, lengths)
