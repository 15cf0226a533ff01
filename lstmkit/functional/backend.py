"""Which implementation runs a recurrence, and the small helpers every recurrence shares.

``recurrence_for(x)`` returns a namespace with the recurrence functions (``lstm_layer_forward``,
``lstm_/gru_/rnn_recurrence_forward/backward``): the compiled CPU kernels where ``lstmkit.kernels``
has them for tensors like x and they are selected, else the pure-PyTorch functions of this
package, which each model file registers here (every device, and the fallback of every kernel).
``lstmkit.kernels`` is a leaf: it never imports this package.
"""

from __future__ import annotations

import types
from collections.abc import Callable

import torch
from torch import Tensor

from lstmkit import kernels


def _project(x: Tensor, w: Tensor, bias: Tensor | None, out: Tensor | None = None) -> Tensor:
    """x (M,I) W^T (+ bias) -> (M,G): one product, into out where given (the compiled namespace has
    its own, ``kernels.project``)."""
    return torch.mm(x, w.t(), out=out) if bias is None else torch.addmm(bias, x, w.t(), out=out)


_torch_recurrences = types.SimpleNamespace(name="torch", mm=torch.mm, project=_project)


def register_torch(**functions) -> None:
    """Add a model's pure-PyTorch recurrence functions (called once by each model file)."""
    vars(_torch_recurrences).update(functions)


def recurrence_for(x: Tensor, *others: Tensor) -> types.SimpleNamespace:
    """The namespace of recurrence functions that runs tensors like x (and others: an empty one,
    e.g. the weights of a cell of hidden size 0, also takes the PyTorch path)."""
    return kernels.recurrence_for(x, *others) or _torch_recurrences


def _dense(*tensors: Tensor | None) -> tuple[Tensor | None, ...]:
    """The tensors contiguous (None as given): what the compiled cells' one call takes."""
    return tuple(None if t is None else t.contiguous() for t in tensors)


def _step_mask(lengths: Tensor | None, t: int) -> Tensor | None:
    """(B,1) bool: which sequences still run at step t (None: all of them)."""
    return None if lengths is None else (lengths > t).unsqueeze(1)


def _valid_steps(lengths: Tensor, T: int, like: Tensor) -> Tensor:
    """(T,B,1) 1 where step t < lengths[b], 0 on padding, in like's dtype."""
    t = torch.arange(T, device=lengths.device).unsqueeze(1)  # (T,1)
    return (t < lengths.unsqueeze(0)).unsqueeze(2).to(like.dtype)


def _outside_grad(dy: Tensor, lengths: Tensor | None) -> Tensor:
    """(T,B,P) the gradient reaching each h_t from the outputs: dy, zero on padding (the output
    there is a constant zero); a new contiguous tensor the caller may add into."""
    if lengths is None:
        return dy.clone(memory_format=torch.contiguous_format)
    return (dy * _valid_steps(lengths, dy.shape[0], dy)).contiguous()


def _output_grads(dy: Tensor | None, dh_n: Tensor | None, hs: Tensor, lengths: Tensor | None) -> Tensor:
    """(T,B,P) the gradient reaching each h_t from outside the recurrence: the outputs' (zero on
    padding) and, at the last step, h_n's (h_n is h_{T-1}, held past each length). Read only by
    every recurrence backward: dy itself where nothing is added to it (no h_n gradient, no
    lengths; a copy of 1 MB at T=50, B=20, H=256 was 2% of a training step), else a fresh tensor."""
    if dy is not None and dh_n is None and lengths is None:
        return dy
    dhs = hs.new_zeros(hs.shape) if dy is None else _outside_grad(dy, lengths)
    if dh_n is not None:
        dhs[-1] += dh_n
    return dhs


def _input_grads(dz: Tensor, x: Tensor, w_ih: Tensor, need_dx: bool, need_dw: bool,
                 mm: Callable[[Tensor, Tensor], Tensor] = torch.mm) -> tuple[Tensor, Tensor]:
    """dx (T,B,I) = dz W_ih and dW_ih (G,I) = sum_t dz_t^T x_t, one product each over all steps;
    dz (T,B,G). An empty placeholder where not needed (an operator cannot return None). mm: the
    path's matrix product (``rec.mm``: the compiled path's takes oneDNN for float32)."""
    T, B, I = x.shape
    dz2 = dz.view(T * B, dz.shape[2])                                                   # (T*B,G)
    dx = mm(dz2, w_ih).view(T, B, I) if need_dx else x.new_empty(0)
    dw_ih = mm(dz2.t(), x.reshape(T * B, I)) if need_dw else x.new_empty(0)
    return dx, dw_ih


def _recurrent_weight_grad(dz: Tensor, h0: Tensor, hs: Tensor,
                           mm: Callable[[Tensor, Tensor], Tensor] = torch.mm) -> Tensor:
    """dW_hh (G,P) = sum_t dz_t^T h_{t-1}, h_{-1} = h0: two products, h0 and hs never concatenated.
    dz (T,B,G), h0 (B,P), hs (T,B,P); mm as in ``_input_grads``."""
    T, B, P = hs.shape
    dw_hh = mm(dz[0].t(), h0)
    if T > 1:
        dw_hh += mm(dz[1:].reshape((T - 1) * B, dz.shape[2]).t(), hs[:-1].reshape((T - 1) * B, P))
    return dw_hh


def _alias(t: Tensor) -> Tensor:
    """t's memory under a new tensor with a version counter of its own. Writing dz over the saved
    gates through it leaves the saved tensor's version unchanged, so a retained graph can still
    unpack it (and recomputes the gates rather than reading them: see LSTMLayerFunction)."""
    return t.new_empty(0).set_(t.untyped_storage(), t.storage_offset(), t.shape, t.stride())


def _project_steps(rec: types.SimpleNamespace, x: Tensor, w_ih: Tensor, bias: Tensor | None) -> Tensor:
    """zx (T,B,G) = x W_ih^T + bias for every step at once by the path's product (``rec.project``:
    the compiled one takes one or two rows by hand, as the cells' one-call step does)."""
    T, B, I = x.shape
    return rec.project(x.reshape(T * B, I), w_ih, bias).view(T, B, w_ih.shape[0])


def _input_projection(x: Tensor, w_ih: Tensor, bias: Tensor | None, out: Tensor | None = None) -> Tensor:
    """zx (T,B,G) = x W_ih^T + bias for every step at once: one matrix product; written into
    out's first T steps where given (a buffer of at least T steps)."""
    T, B, I = x.shape
    x2 = x.reshape(T * B, I)                                # (T*B,I)
    out2 = None if out is None else out.view(out.shape[0] * B, out.shape[2])[:T * B]            # (T*B,G)
    return _project(x2, w_ih, bias, out2).view(T, B, w_ih.shape[0])
