"""The forward and the streaming step of LSTM, GRU and RNN with nothing to record: the general
path's kernel calls, without its Python.

What it is: ``compiled_inference(module, input, hx)``, what ``forward`` tries first, and
``compiled_step(module, x_t, state)``, what ``step`` tries first. For a short call the Python
around the kernel cost more than the kernel (T=1, B=8, H=128: 43 us in C++, 116 us for the module
call; onnxruntime's whole call 49 us; a streaming step of B=1, H=128 took 110 us against 16 us in
C++, slower than torch.nn's GRU and RNN on a one-step sequence): checks, state, the operators'
dispatch decisions and stacking, each a microsecond or two. Here they are done once, cheapest
first, and each layer and direction is the very call the general path makes in inference (the
class's ``_infer_direction``: ``functional.*_op._inference``, which the entries call where nothing
watches), so the results are the same bit for bit (tested). For this package's LSTM, GRU and RNN
(and subclasses that keep their layers' calls: ``base.stack_kind``) the loop over layers itself is
one C++ call, ``kernels.stack_inference`` (kernels/stack_cpu.cpp: those calls, the zero states and
the stacking of the final states in C++; T=50, B=1, H=50: ~100 us of Python around a ~100 us
kernel before, onnxruntime's whole call ~100 us); a subclass's own ``_infer_direction`` runs
in the loop here. The two directions of a bidirectional
LSTM layer are those two calls made at once (``kernels.lstm_layer_forward_pair``; the reverse one on
the input flipped in time, its output flipped back, as there; at two threads each runs on one
thread, where BLAS's input projection may round its last bits differently: equal to 1e-14 in
float64, tested); a GRU's or RNN's one after the other, as there.
One step (T=1: a streaming or generation loop) where autograd records takes every layer's C++
autograd step in one call (``kernels.stack_one_step``: the calls the general path's one-step layers
make with a gradient, the same values and gradients, tested), for this package's unidirectional
classes without a projection.
What it is not: a second implementation. It returns None, and the general path runs (and raises
torch.nn's errors), wherever anything could tell the two apart or anything is out of the
ordinary: a trace wanted, a gradient through more than one step (or through a bidirectional
module, a projection or a subclass's own layer call), lengths, a PackedSequence, unbatched input to forward,
dropout while training, a parametrized or pruned weight, hx not plain tensors of the exact shapes,
a dtype or device the kernel does not take, the kernel not built or not selected, a tracer,
compiler, exporter, transform, autocast or mode watching, a subclass that runs its layers its own way.
Dimensions: T time, B batch, I input, H hidden, P projection (H without one), L layers, D directions.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lstmkit.functional.lstm_op import _bias
from lstmkit.functional.ops import compiled_unobserved

_FLOATS = (torch.float32, torch.float64)
_Parameter = torch.nn.Parameter


def _given_state(module, hx, B: int, like: Tensor, grad_ok: bool = False) -> tuple[Tensor, ...] | None:
    """hx's tensors, (h_0 (L*D,B,P),) or, for an LSTM, (h_0, c_0 (L*D,B,H)), where they are plain
    tensors of the exact shapes, dtype and device (and, unless grad_ok, not wanting a gradient); ()
    for None; None where the general path must look at hx (anything else: it raises torch.nn's error
    or converts)."""
    if hx is None:
        return ()
    if module.mode != "LSTM":                         # GRU, RNN: h_0 itself; an LSTM: a tuple (h_0, c_0)
        if type(hx) is not Tensor:
            return None
        given = (hx,)
    elif type(hx) is not tuple or len(hx) != 2:
        return None
    else:
        given = hx
    for t, shape in zip(given, module._state_shapes(B), strict=True):
        if type(t) is not Tensor or tuple(t.shape) != shape or t.dtype is not like.dtype \
                or t.device != like.device or (t.requires_grad and not grad_ok):
            return None
    return given


def _layers(module, dtype: torch.dtype, grad_ok: bool = False) -> list[tuple] | None:
    """(w_ih, w_hh, b_ih, b_hh, w_hr) of every layer and direction (layer k // D, direction k % D),
    each a parameter (or None where the module has none); None where one is anything else (a
    parametrized, pruned or dropped weight, a tensor swapped in by ``torch.func.functional_call``:
    the general path reads it as an attribute), of another dtype, or (unless grad_ok) would want a
    gradient."""
    params, grad = module._parameters, torch.is_grad_enabled() and not grad_ok
    layers = []
    for names in module._layer_weight_names():
        weights = tuple(params.get(name) for name in names)
        w_ih, w_hh, b_ih, b_hh, w_hr = weights
        if w_ih is None or w_hh is None or (module.bias and (b_ih is None or b_hh is None)) \
                or (module.proj_size and w_hr is None):
            return None
        for w in weights:                                 # (a training call leaves at its first weight)
            if w is not None and (type(w) is not _Parameter or w.dtype is not dtype or (grad and w.requires_grad)):
                return None
        layers.append(weights)
    return layers


def _run(module, x: Tensor, hx) -> tuple[Tensor, tuple[Tensor, ...]] | None:
    """y (T,B,D*P) and the final state ((L*D,B,·) tensors) of time-major x (T,B,I), or None."""
    T, B, I = x.shape
    if T == 0 or B == 0 or I != module.input_size or (module.dropout and module.training):
        return None
    step = T == 1 and torch.is_grad_enabled()      # one step may record: each layer's C++ autograd step
    if x.requires_grad and torch.is_grad_enabled() and not step:
        return None
    layers = _layers(module, x.dtype, step)
    given = None if layers is None else _given_state(module, hx, B, x, step)
    rec = None if given is None else compiled_unobserved(x, *given)
    if rec is None:
        return None
    D, kind = 2 if module.bidirectional else 1, module._stack_kind_of()
    flat = [w for weights in layers for w in weights]
    nonlinearity = module.nonlinearity if kind == "rnn" else "tanh"
    if step and (x.requires_grad or any(t.requires_grad for t in given)
                 or any(w is not None and w.requires_grad for w in flat)):
        if kind is None or D == 2 or module.proj_size:
            return None
        y, *finals = rec.stack_one_step(kind, x, given, flat, nonlinearity)   # (the one-step layers' calls)
        return y, tuple(finals)
    if kind is not None:                              # every layer in one C++ call: the same calls
        y, *finals = rec.stack_inference(kind, x, given, flat, D, nonlinearity)
        return y, tuple(finals)
    zeros = given or tuple(x.new_zeros(shape[1:]) for shape in module._state_shapes(B))  # (B,·) each

    def state(k: int) -> tuple[Tensor, ...]:                                   # layer and direction k's
        return tuple(t[k] for t in given) if given else zeros

    infer = module._infer_direction
    finals = []
    for layer in range(module.num_layers):
        k = layer * D
        if D == 1:
            x, final = infer(rec, x, state(k), layers[k])                       # (T,B,P)
            finals.append(final)
            continue
        if module.mode == "LSTM":                         # both directions in one call
            y_f, final_f, y_r, final_r = _lstm_pair(rec, x, state(k), state(k + 1), layers[k], layers[k + 1])
        else:
            y_f, final_f = infer(rec, x, state(k), layers[k])
            y_r, final_r = infer(rec, x.flip(0), state(k + 1), layers[k + 1])
        finals += [final_f, final_r]
        x = torch.cat([y_f, y_r.flip(0)], dim=2)                                # (T,B,2P)
    return x, tuple(torch.stack(parts) for parts in zip(*finals, strict=True))  # stack copies: h_n is not y


def _lstm_pair(rec, x, state, state_rev, weights, weights_rev):
    """Both directions of an LSTM layer at once (rec: the compiled namespace); the reverse one reads
    x backwards in time. -> y (T,B,P), (h_n, c_n), y_rev (T,B,P) in the reversed time order, and
    the reverse one's (h_n, c_n)."""
    def call(w):
        w_ih, w_hh, b_ih, b_hh, w_hr = w
        return w_ih, w_hh, _bias(b_ih, b_hh), w_hr
    c_f, y_f, c_r, y_r = rec.lstm_layer_forward_pair(x, x.flip(0), *state, *state_rev, call(weights),
                                                     call(weights_rev))
    return y_f, (y_f[-1], c_f[0]), y_r, (y_r[-1], c_r[0])


def _result(y: Tensor, finals: tuple[Tensor, ...]):
    """The module's return value: (y, h_n), or for an LSTM (y, (h_n, c_n))."""
    return y, (finals if len(finals) > 1 else finals[0])


def compiled_inference(module, input, hx):
    """``module(input, hx)`` where nothing is traced and nothing needs a gradient, or one step that
    does: output, h_n (an LSTM: (h_n, c_n)); None where the general path must run (see the module
    docstring)."""
    if type(input) is not Tensor or input.dim() != 3 or not input.is_cpu or input.dtype not in _FLOATS:
        return None
    x = input.transpose(0, 1) if module.batch_first else input                 # (T,B,I)
    out = _run(module, x, hx)
    if out is None:
        return None
    y, finals = out
    return _result(y.transpose(0, 1) if module.batch_first else y, finals)


def compiled_step(module, x_t, state):
    """``module.step(x_t, state)``: y_t (B,P) (unbatched: (P,)) and the new state; None where the
    general step must run. A step is a one-step forward (with a gradient: ``_run``'s one step)."""
    if type(x_t) is not Tensor or not x_t.is_cpu or x_t.dtype not in _FLOATS or module.bidirectional:
        return None
    if x_t.dim() == 2:
        out = _run(module, x_t.unsqueeze(0), state)
        return None if out is None else _result(out[0][0], out[1])
    if x_t.dim() != 1:
        return None
    if state is not None:                             # unbatched: (L,·) tensors, a batch of one inside
        given = (state,) if type(state) is Tensor else state
        if type(given) is not tuple or any(type(t) is not Tensor or t.dim() != 2 for t in given):
            return None
        state = tuple(t.unsqueeze(1) for t in given)
        state = state if len(state) > 1 else state[0]
    out = _run(module, x_t.view(1, 1, -1), state)
    return None if out is None else _result(out[0][0, 0], tuple(t.squeeze(1) for t in out[1]))
