"""``lstmkit.VariantLSTM`` and ``VariantLSTMCell``: the LSTM's variants (``lstmkit.variants``: CIFG,
peepholes, no input gate, layer norm, zoneout ...) as ``torch.nn``-style modules.

What it is: ``RecurrentBase``'s loop (layers, directions, layouts, ``lengths=``, PackedSequence,
``step``, traces) around ``functional.variant_lstm_layer``, with the parameters the variant's
``VariantSpec.parameter_shapes`` lists, named like torch.nn's (``weight_ih_l0``, ``weight_ch_l0``,
``ln_x_weight_l1_reverse`` ...), and the random masks of its regularisers, drawn here in training
and set to their expectations in evaluation.
What it is not: ``torch.nn.LSTM`` (not a subclass: its parameters differ) nor the compiled path.
Every variant runs in PyTorch operations, step by step, with autograd: slower than
``lstmkit.LSTM``, which is the standard LSTM to use (with the standard spec this module gives
exactly ``nn.LSTM``'s results, which the tests check, only slower). No ``proj_size``; no ONNX
export (ONNX has no operator for a variant).

State: (h_0, c_0), each (L*D,B,H); with FGR (h_0, c_0, q_0), q_0 (L*D,B,nQ*H) the last step's
sigmoid gates (``VariantSpec.recurrent_gates``), returned the same way, so that continuing a
sequence from the returned state equals one long call.
Randomness (training only): the recurrent-dropout mask, Bernoulli(1−p)/(1−p) of shape (B,H), is
drawn once per call for each layer and direction; the zoneout masks, Bernoulli(z) of shape
(T,B,H), at every step. In evaluation there is no dropout mask and the zoneout masks are z.

Dimensions: T time, B batch, I input, H hidden, L layers, D directions, nQ FGR's fed-back gates.
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch
from torch import Tensor, nn

from lstmkit.functional.variant_lstm import variant_lstm_layer
from lstmkit.modules.base import RecurrentBase
from lstmkit.modules.checks import check_cell_input, check_flag, check_sizes, check_state
from lstmkit.modules.trace import VariantTrace
from lstmkit.variants import NAMED, STANDARD, VariantSpec, variant_spec

NOTICE = ("lstmkit: LSTM variants run on the PyTorch path (autograd, step by step), not the compiled "
          "kernel: they are slower than lstmkit.LSTM (this notice is shown once per process)")
_notice_given = False


def notify_once(spec: VariantSpec) -> None:
    """Warn (UserWarning), the first time a non-standard variant is built in this process, that it is slow."""
    global _notice_given
    if spec.is_standard or _notice_given:
        return
    _notice_given = True
    warnings.warn(NOTICE, UserWarning, stacklevel=3)


def variant_name(spec: VariantSpec) -> str:
    """The name of ``spec`` in ``variants.NAMED``, "standard", or "custom" for any other spec."""
    if spec.is_standard:
        return STANDARD
    return next((name for name, v in NAMED.items() if v.spec == spec), "custom")


def check_forget_bias(forget_bias: object, bias: bool, spec: VariantSpec) -> float:
    """A number; refused (ValueError) without a bias or without a forget gate (NFG)."""
    if isinstance(forget_bias, bool) or not isinstance(forget_bias, numbers.Real):
        raise TypeError(f"forget_bias should be a number, got {type(forget_bias).__name__}")
    if forget_bias and not spec.forget_gate:
        raise ValueError(f"forget_bias={forget_bias} needs a forget gate, and this variant has none (NFG: f_t = 1)")
    if forget_bias and not bias:
        raise ValueError(f"forget_bias={forget_bias} needs bias=True (there is no bias to add it to)")
    return float(forget_bias)


@torch.no_grad()
def init_parameters(params: dict[str, Tensor], spec: VariantSpec, hidden_size: int, forget_bias: float) -> None:
    """One layer and direction, names as ``parameter_shapes``: torch.nn.LSTM's uniform(−1/√H, 1/√H)
    for weights, biases, peepholes and W_q; LN gains 1, LN bias 0; ``forget_bias`` added to the
    forget block of bias_ih (CIFG: subtracted from the input block, since f_t = 1 − i_t)."""
    H = hidden_size
    stdv = 1.0 / math.sqrt(H)
    for name, p in params.items():
        if name in ("ln_x_weight", "ln_h_weight", "ln_c_weight"):
            p.fill_(1.0)
        elif name == "ln_c_bias":
            p.zero_()
        else:
            p.uniform_(-stdv, stdv)
    if forget_bias:
        k = spec.blocks.index("i" if spec.coupled else "f")
        params["bias_ih"][k * H:(k + 1) * H] += -forget_bias if spec.coupled else forget_bias


def dropout_mask(spec: VariantSpec, training: bool, like: Tensor, B: int, H: int) -> Tensor | None:
    """Training with recurrent dropout p: Bernoulli(1−p)/(1−p), (B,H); otherwise None (no mask)."""
    p = spec.recurrent_dropout
    if not (p and training):
        return None
    return like.new_empty(B, H).bernoulli_(1 - p) / (1 - p)


def zoneout_masks(spec: VariantSpec, training: bool, like: Tensor, T: int, B: int, H: int
                  ) -> tuple[Tensor, Tensor] | None:
    """(d_c, d_h), each (T,B,H): Bernoulli(z) in training, z itself otherwise; None without zoneout."""
    rates = (spec.zoneout_cell, spec.zoneout_hidden)
    if not any(rates):
        return None
    if training:
        return tuple(like.new_empty(T, B, H).bernoulli_(z) for z in rates)
    return tuple(like.new_full((T, B, H), z) for z in rates)


def state_sizes(spec: VariantSpec, hidden_size: int) -> tuple[int, ...]:
    """The last size of each state tensor: (H, H), or (H, H, nQ*H) with FGR."""
    H = hidden_size
    return (H, H, len(spec.recurrent_gates) * H) if spec.full_gate_recurrence else (H, H)


class VariantLSTM(RecurrentBase):
    """Multi-layer LSTM variant with ``torch.nn.LSTM``'s conventions (module docstring).

    Args: input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0 (between
    layers), bidirectional=False as torch.nn.LSTM (no proj_size); variant: a name of
    ``lstmkit.variants.NAMED`` ("cifg", "nig", "peephole", "fgr", "layernorm", ...), "standard", or
    a ``VariantSpec``; forget_bias: added to the forget block of ``bias_ih_l*`` at initialisation
    (CIFG: subtracted from the input block; NFG: refused), device, dtype.

    forward(input, hx=None, lengths=None, return_trace=False) as ``lstmkit.LSTM``'s; hx = (h_0, c_0)
    or, with FGR, (h_0, c_0, q_0). Returns output (T,B,D*H), the final state in hx's form
    [, ``trace[layer][direction]``, a ``VariantTrace``].
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 variant: str | VariantSpec = STANDARD, forget_bias: float = 0.0, device=None, dtype=None) -> None:
        spec = variant_spec(variant)
        check_flag("bias", bias)
        self.forget_bias = check_forget_bias(forget_bias, bias, spec)
        self.spec, self.variant = spec, variant_name(spec)
        self._built = False  # nn.RNNBase's constructor calls reset_parameters on parameters replaced below
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, device, dtype)
        self._replace_parameters(device, dtype)
        self._built = True
        self.reset_parameters()
        self.gate_count = len(spec.blocks)
        self.state_names = ("h_0", "c_0", "q_0")[:len(state_sizes(spec, hidden_size))]
        notify_once(spec)

    def _replace_parameters(self, device, dtype) -> None:
        """nn.RNNBase's LSTM parameters -> the variant's, per layer and direction, keeping its
        bookkeeping (``_flat_weights_names``, ``_all_weights``, ``_flat_weights``) consistent."""
        for name in self._flat_weights_names:
            delattr(self, name)
        D, H = self.num_directions, self.hidden_size
        self._all_weights = []
        for layer in range(self.num_layers):
            in_size = self.input_size if layer == 0 else D * H
            for direction in range(D):
                suffix = self._suffix(layer, direction)
                for name, shape in self.spec.parameter_shapes(in_size, H, self.bias).items():
                    self.register_parameter(name + suffix, nn.Parameter(torch.empty(shape, device=device, dtype=dtype)))
                self._all_weights.append([n + suffix for n in self.spec.parameter_shapes(in_size, H, self.bias)])
        self._flat_weights_names = [n for names in self._all_weights for n in names]
        self._init_flat_weights()

    def reset_parameters(self) -> None:
        """``init_parameters`` for every layer and direction (in registration order, so the standard
        spec draws the same values as torch.nn.LSTM for one seed)."""
        if not getattr(self, "_built", False):
            return
        for layer in range(self.num_layers):
            for direction in range(self.num_directions):
                init_parameters(self._params(layer, direction), self.spec, self.hidden_size, self.forget_bias)

    def flatten_parameters(self) -> None:
        """A no-op: cuDNN's flat LSTM layout does not hold a variant's parameters."""

    def extra_repr(self) -> str:
        return super().extra_repr() + f", variant={self.variant if self.variant != 'custom' else self.spec}"

    def _params(self, layer: int, direction: int) -> dict[str, Tensor]:
        """One layer and direction's parameters under ``parameter_shapes``' names (read as attributes:
        parametrizations and pruning work)."""
        suffix = self._suffix(layer, direction)
        names = self._all_weights[layer * self.num_directions + direction]
        return {name[:-len(suffix)]: getattr(self, name) for name in names}

    def _state_shapes(self, batch: int):
        LD = self.num_layers * self.num_directions
        return tuple((LD, batch, size) for size in state_sizes(self.spec, self.hidden_size))

    def _hx_description(self) -> str:
        if self.spec.full_gate_recurrence:
            return ("a tuple (h_0, c_0, q_0) of shapes (L*D, B, H), (L*D, B, H) and "
                    f"(L*D, B, {len(self.spec.recurrent_gates)}*H) (FGR carries the last gates)")
        return "a tuple (h_0, c_0) of shapes (L*D, B, H) each"

    def _onnx_forward(self, input, hx, lengths, return_trace):
        raise RuntimeError(f"VariantLSTM (variant {self.variant}) cannot be exported to ONNX: ONNX has no "
                           "operator for an LSTM variant (lstmkit.LSTM, the standard LSTM, exports)")

    def _run_direction(self, x, state, layer, direction, lengths, want_trace):
        T, B, _ = x.shape
        H = self.hidden_size
        h0, c0, *q0 = state                                                    # (B,H), (B,H) [, (B,nQ*H)]
        out = variant_lstm_layer(x, h0, c0, q0[0] if q0 else None, self._params(layer, direction), self.spec,
                                 lengths, dropout_mask(self.spec, self.training, x, B, H),
                                 zoneout_masks(self.spec, self.training, x, T, B, H), want_trace)
        state_n = (out.h_n, out.c_n) if out.q_n is None else (out.h_n, out.c_n, out.q_n)
        raw = None
        if want_trace:                                                         # (T,B,H) each, trace_fields' order
            raw = tuple(out.y if name == "hidden" else out.trace[name] for name in self.spec.trace_fields)
        return out.y, state_n, raw

    def _make_trace(self, raw, unbatched: bool) -> VariantTrace:
        return VariantTrace(**{name: self._output_layout(t, unbatched)
                               for name, t in zip(self.spec.trace_fields, raw, strict=True)})


class VariantLSTMCell(nn.Module):
    """One step of an LSTM variant: forward(input (B,I) or (I,), hx=None) -> (h', c') (FGR: (h', c', q')).

    Args as ``VariantLSTM``'s (input_size, hidden_size, bias, variant, forget_bias, device, dtype);
    parameters named weight_ih, weight_hh, bias_ih, ... without a suffix. hx as the output, zeros
    when None; the step is ``variant_lstm_layer`` over a one-step sequence, masks as in VariantLSTM.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, variant: str | VariantSpec = STANDARD,
                 forget_bias: float = 0.0, device=None, dtype=None) -> None:
        super().__init__()
        self.input_size = check_sizes("input_size", input_size, 1)
        self.hidden_size = check_sizes("hidden_size", hidden_size, 1)
        self.bias = check_flag("bias", bias)
        self.spec = variant_spec(variant)
        self.variant = variant_name(self.spec)
        self.forget_bias = check_forget_bias(forget_bias, bias, self.spec)
        self._names = tuple(self.spec.parameter_shapes(input_size, hidden_size, bias))
        for name, shape in self.spec.parameter_shapes(input_size, hidden_size, bias).items():
            self.register_parameter(name, nn.Parameter(torch.empty(shape, device=device, dtype=dtype)))
        self.reset_parameters()
        notify_once(self.spec)

    def reset_parameters(self) -> None:
        init_parameters({n: getattr(self, n) for n in self._names}, self.spec, self.hidden_size, self.forget_bias)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}, variant={self.variant}"

    def forward(self, input: Tensor, hx=None):
        if torch.onnx.is_in_onnx_export():
            raise RuntimeError("VariantLSTMCell cannot be exported to ONNX: ONNX has no operator for an LSTM variant")
        x, state, unbatched = self._inputs(input, hx)                          # (1,B,I), (B,·) each
        B, H = x.shape[1], self.hidden_size
        out = variant_lstm_layer(x, state[0], state[1], state[2] if len(state) > 2 else None,
                                 {n: getattr(self, n) for n in self._names}, self.spec, None,
                                 dropout_mask(self.spec, self.training, x, B, H),
                                 zoneout_masks(self.spec, self.training, x, 1, B, H))
        new = (out.h_n, out.c_n) if out.q_n is None else (out.h_n, out.c_n, out.q_n)
        return tuple(t[0] if unbatched else t for t in new)

    def _inputs(self, input: Tensor, hx) -> tuple[Tensor, tuple[Tensor, ...], bool]:
        """Checked input as (1,B,I) and the state tensors as (B,·); whether the input was unbatched."""
        x, unbatched = check_cell_input(self, input)                               # (1,B,I)
        B, sizes = x.shape[1], state_sizes(self.spec, self.hidden_size)
        if hx is None:
            return x, tuple(x.new_zeros(B, n) for n in sizes), unbatched
        given = hx if isinstance(hx, tuple | list) else (hx,)
        if len(given) != len(sizes):
            names = "(h, c, q)" if len(sizes) == 3 else "(h, c)"
            raise TypeError(f"hx should be a tuple {names} of {len(sizes)} tensors, got {len(given)}")
        state = tuple(check_state(name, t, (n,) if unbatched else (B, n), self.weight_ih).reshape(B, n)
                      for name, t, n in zip(("h_0", "c_0", "q_0")[:len(sizes)], given, sizes, strict=True))
        return x, state, unbatched
