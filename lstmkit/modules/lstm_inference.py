"""The LSTM's forward with nothing to record: one compiled call per layer and direction, no operators.

What it is: ``compiled_inference(module, input, hx)``, what ``lstmkit.LSTM.forward`` tries first. For
a short call the Python around the kernel cost more than the kernel (T=1, B=8, H=128: 43 us in
C++, 116 us for the module call; onnxruntime's whole call 49 us): checks, state, the operator's
dispatch decisions and stacking, each a microsecond or two. Here they are done once, cheapest
first, and each layer is the very call the general path makes (``kernels.lstm_layer_forward``
with the same arguments, so the results are the same bit for bit, tested; the two directions of a
bidirectional layer are those two calls made at once, ``kernels.lstm_layer_forward_pair``, the
reverse one on the input flipped in time, its output flipped back, as there; at two threads each
runs on one thread, where BLAS's input projection may round its last bits differently: equal to
1e-14 in float64, tested).
What it is not: a second implementation. It returns None, and the general path runs (and raises
torch.nn's errors), wherever anything could tell the two apart or anything is out of the
ordinary: a gradient or a trace wanted, lengths, a PackedSequence, unbatched input, dropout while
training, a parametrized or pruned weight, hx not two plain tensors of the exact
shapes, a dtype or device the kernel does not take, the kernel not built or not selected, a
tracer, compiler, exporter, transform, autocast or mode watching.
Dimensions: T time, B batch, I input, H hidden, P projection (H without one), L layers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lstmkit.functional.lstm_op import _bias
from lstmkit.functional.ops import compiled_unobserved
from lstmkit.modules.base import _weight_names

_FLOATS = (torch.float32, torch.float64)


def _state(hx, L: int, B: int, P: int, H: int, like: Tensor) -> tuple[list, list] | None:
    """Each layer and direction's (h_0 (B,P), c_0 (B,H)), L of them: from hx when it is two plain
    tensors of the exact shapes (L,B,P), (L,B,H), dtype and device; zeros for None (one pair, read
    by every layer); None where the general path must look at hx."""
    if hx is None:
        h, c = like.new_zeros(B, P), like.new_zeros(B, H)
        return [h] * L, [c] * L
    if type(hx) is not tuple or len(hx) != 2:
        return None
    h, c = hx
    if type(h) is not Tensor or type(c) is not Tensor or tuple(h.shape) != (L, B, P) or tuple(c.shape) != (L, B, H) \
            or h.dtype is not like.dtype or c.dtype is not like.dtype or h.device != like.device \
            or c.device != like.device or h.requires_grad or c.requires_grad:
        return None
    return list(h), list(c)


def compiled_inference(module, input, hx) -> tuple[Tensor, tuple[Tensor, Tensor]] | None:
    """output, (h_n, c_n) of ``module(input, hx)`` where nothing needs a gradient or a trace; None
    where the general path must run (see the module docstring)."""
    if type(input) is not Tensor or input.dim() != 3 or input.device.type != "cpu" or input.dtype not in _FLOATS \
            or (module.dropout and module.training) or input.requires_grad:
        return None
    params, grad = module._parameters, torch.is_grad_enabled()
    D = 2 if module.bidirectional else 1
    layers = []                                   # (w_ih, w_hh, b_ih, b_hh, w_hr) of layer k // D, direction k % D
    for k in range(module.num_layers * D):
        weights = tuple(params.get(name) for name in _weight_names(module._suffix(k // D, k % D)))
        w_ih, w_hh, b_ih, b_hh, w_hr = weights
        if w_ih is None or w_hh is None or (module.bias and (b_ih is None or b_hh is None)) \
                or (module.proj_size and w_hr is None):
            return None                                   # parametrized, pruned or dropped: read as attributes
        for w in weights:                                 # (a training call leaves at its first weight)
            if w is not None and (w.dtype is not input.dtype or (grad and w.requires_grad)):
                return None
        layers.append(weights)
    x = input.transpose(0, 1) if module.batch_first else input                  # (T,B,I)
    T, B, I = x.shape
    if T == 0 or B == 0 or I != module.input_size:
        return None
    rec = compiled_unobserved(input)
    if rec is None:
        return None
    state = _state(hx, len(layers), B, module.output_size, module.hidden_size, x)
    if state is None:
        return None
    h0, c0 = state
    h_n, c_n = [], []
    weights = [(w_ih, w_hh, _bias(b_ih, b_hh), w_hr) for w_ih, w_hh, b_ih, b_hh, w_hr in layers]
    for layer in range(module.num_layers):
        k = layer * D
        if D == 1:
            _, c_last, x = rec.lstm_layer_forward(x, h0[k], c0[k], *weights[k], None, cache=False)  # (T,B,P)
            h_n.append(x[-1])                                                    # (B,P)
            c_n.append(c_last[0])                                                # (B,H)
            continue
        # both directions in one call; the reverse one reads x backwards in time (T,B,·)
        c_f, y_f, c_r, y_r = rec.lstm_layer_forward_pair(x, x.flip(0), h0[k], c0[k], h0[k + 1], c0[k + 1],
                                                         weights[k], weights[k + 1])
        h_n += [y_f[-1], y_r[-1]]                                                # (B,P) each
        c_n += [c_f[0], c_r[0]]                                                  # (B,H) each
        x = torch.cat([y_f, y_r.flip(0)], dim=2)                                 # (T,B,2P)
    y = x.transpose(0, 1) if module.batch_first else x
    return y, (torch.stack(h_n), torch.stack(c_n))                              # stack copies: h_n is not y
