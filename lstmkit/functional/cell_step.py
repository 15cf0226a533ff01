"""One step of a gated cell as one compiled call, with autograd: what ``LSTMCell`` and ``GRUCell``
run step by step from Python where the C++ kernels are selected (``RNNCell``'s node is C++ itself:
``kernels.rnn_cell_step``, whose step is too small to carry a Python Function's bookkeeping).

What it is: two autograd Functions over ``lstmkit.kernels``' cell entries (``kernels/cell_cpu.cpp``):
the forward keeps what the backward reads (the gates), the backward is one call that returns every
wanted gradient. They compute what ``lstm_layer``/``gru_layer``/``rnn_layer`` compute over one step
(the same recurrences and cell math); where the gradient must itself be differentiated
(``create_graph``) the backward is the composite's, as the layer operators do.
What it is not: the general path. ``modules.cells`` calls these only for plain eager tensors of
one float dtype on the CPU (``_compiled_step`` says when); ``step_inference`` is the same step
where nothing needs a gradient.
Dimensions: B batch, I input, H hidden.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lstmkit.functional import ops
from lstmkit.functional.composite import gru_layer_composite, lstm_layer_composite


def _bits(need) -> int:
    """needs_input_grad -> the kernels' bit mask (bit k: input k wants its gradient)."""
    return sum(1 << k for k, n in enumerate(need) if n)


def _composite(layer, x: Tensor, state: tuple, weights: tuple, extra: tuple, grads: tuple, need) -> tuple:
    """The gradients as a graph (double backward): the layer's composite over the one step."""
    grads = ops.composite_vjp(layer, (x.unsqueeze(0), *state, *weights), extra, (None, *grads), need)
    return (None if grads[0] is None else grads[0][0], *grads[1:])


class LSTMCellStep(torch.autograd.Function):
    """(x, h, c, w_ih, w_hh, b_ih, b_hh) -> (h', c')."""

    @staticmethod
    def forward(ctx, rec, x, h, c, w_ih, w_hh, b_ih, b_hh):
        h_new, c_new, gates = rec.lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh, cache=True)
        ctx.rec = rec
        ctx.save_for_backward(x, h, c, w_ih, w_hh, b_ih, b_hh, gates, c_new)
        return h_new, c_new

    @staticmethod
    def backward(ctx, dh, dc):
        x, h, c, w_ih, w_hh, b_ih, b_hh, gates, c_new = ctx.saved_tensors
        need = ctx.needs_input_grad[1:]
        if torch.is_grad_enabled():                         # create_graph: the gradient is differentiated
            return (None, *_composite(lstm_layer_composite, x, (h, c), (w_ih, w_hh, b_ih, b_hh, None), (None,),
                                      (dh, dc), [*need, False])[:7])
        bias = b_ih is not None and (need[5] or need[6])
        dx, dh0, dc0, dw_ih, dw_hh, db = ctx.rec.lstm_cell_backward(dh, dc, x, h, c, w_ih, w_hh, gates, c_new,
                                                                    _bits((*need[:5], bias)))
        return (None, dx, dh0, dc0, dw_ih, dw_hh, db if need[5] else None,
                (db.clone() if need[5] else db) if need[6] else None)


class GRUCellStep(torch.autograd.Function):
    """(x, h, w_ih, w_hh, b_ih, b_hh) -> h'."""

    @staticmethod
    def forward(ctx, rec, x, h, w_ih, w_hh, b_ih, b_hh):
        h_new, gates, ghn = rec.gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh, cache=True)
        ctx.rec = rec
        ctx.save_for_backward(x, h, w_ih, w_hh, b_ih, b_hh, gates, ghn, h_new)
        return h_new

    @staticmethod
    def backward(ctx, dh):
        x, h, w_ih, w_hh, b_ih, b_hh, gates, ghn, h_new = ctx.saved_tensors
        need = ctx.needs_input_grad[1:]
        if torch.is_grad_enabled():
            return (None, *_composite(gru_layer_composite, x, (h,), (w_ih, w_hh, b_ih, b_hh), (None,), (dh,), need))
        return (None, *ctx.rec.gru_cell_backward(dh, x, h, w_ih, w_hh, gates, ghn, h_new,
                                                 _bits((*need[:4], need[4] and b_ih is not None,
                                                        need[5] and b_hh is not None))))
