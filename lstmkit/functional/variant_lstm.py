"""One layer and direction of an LSTM variant over a sequence, in differentiable PyTorch operations.

The equations and the parameter layout are those of ``lstmkit.variants`` (its docstring writes
them out once); the NumPy reference with the hand-derived backward is
``lstmkit.reference.lstm_variants``, which the tests hold this file to. Autograd differentiates it
(derivatives of any order, ``torch.func``), on every device.

What it is not: the compiled path. The standard LSTM (every switch off) runs through
``functional.lstm_layer`` and the C++ kernels; a variant runs here, step by step, about as fast as
an LSTM written in PyTorch (``modules.variant_lstm`` says so once when a variant is built).

Randomness is the caller's: the recurrent-dropout mask and the zoneout masks come in as tensors
(training draws them, evaluation passes the rates), so the same call always gives the same result.

Dimensions: T time, B batch, I input, H hidden, n the stacked blocks (``spec.blocks``), nQ the
sigmoid gates FGR feeds back (``spec.recurrent_gates``). Held steps (``lengths``), as in
``functional.lstm``: past a sequence's length its state is kept, its output and gates are zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor

from lstmkit.functional.backend import _step_mask
from lstmkit.variants import GATE_FIELDS, LN_EPS, VariantSpec


class VariantLayerOutput(NamedTuple):
    y: Tensor  # (T,B,H) h_t at each step, zero at held steps
    h_n: Tensor  # (B,H)
    c_n: Tensor  # (B,H)
    q_n: Tensor | None  # (B,nQ*H) FGR: the last step's sigmoid gates; None without FGR
    trace: dict[str, Tensor]  # spec.trace_fields but "hidden" (that is y) -> (T,B,H); {} unless asked


def layer_norm(v: Tensor, weight: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
    """LN(v) ⊙ weight + bias over the last dimension (population variance, ε = LN_EPS)."""
    return torch.nn.functional.layer_norm(v, v.shape[-1:], weight, bias, LN_EPS)


def variant_lstm_layer(x: Tensor, h0: Tensor, c0: Tensor, q0: Tensor | None, params: Mapping[str, Tensor],
                       spec: VariantSpec, lengths: Tensor | None = None, dropout_mask: Tensor | None = None,
                       zoneout_masks: tuple[Tensor, Tensor] | None = None, want_trace: bool = False
                       ) -> VariantLayerOutput:
    """x (T,B,I); h0, c0 (B,H); q0 (B,nQ*H) or None (zeros; FGR only); params as
    ``spec.parameter_shapes`` names them (no ``_l{k}``); dropout_mask (B,H) multiplies h_{t-1} before
    W_h; zoneout_masks (d_c, d_h), each (T,B,H) in [0, 1]."""
    H = c0.shape[1]
    a = _input_part(x, params, spec)                                   # (T,B,nH)
    w_hh, w_qh = params["weight_hh"], params.get("weight_qh")
    peep = dict(zip(spec.peephole_gates, params["weight_ch"].split(H), strict=True)) if spec.peepholes else {}
    if spec.full_gate_recurrence and q0 is None:
        q0 = h0.new_zeros(h0.shape[0], len(spec.recurrent_gates) * H)
    h, c, q = h0, c0, (q0 if spec.full_gate_recurrence else None)
    ys, traced = [], []
    for t in range(x.shape[0]):
        hm = h if dropout_mask is None else h * dropout_mask            # (B,H)
        r = hm @ w_hh.t()                                                # (B,nH)
        z = a[t] + (layer_norm(r, params["ln_h_weight"]) if spec.layer_norm else r)
        if w_qh is not None:
            z = z + q @ w_qh.t()
        gates, c_new, h_new = _cell(dict(zip(spec.blocks, z.split(H, dim=1), strict=True)), c, peep, params, spec)
        if zoneout_masks is not None:
            d_c, d_h = zoneout_masks[0][t], zoneout_masks[1][t]          # (B,H)
            c_new, h_new = d_c * c + (1 - d_c) * c_new, d_h * h + (1 - d_h) * h_new
        q_new = torch.cat([gates[g] for g in spec.recurrent_gates], dim=1) if q is not None else None
        run = _step_mask(lengths, t)                                     # (B,1) or None
        if run is not None:
            c_new, h_new = torch.where(run, c_new, c), torch.where(run, h_new, h)
            q_new = None if q is None else torch.where(run, q_new, q)
            gates = {k: v * run for k, v in gates.items()}
        ys.append(h_new if run is None else h_new * run)
        if want_trace:
            traced.append((gates, c_new if run is None else c_new * run))
        h, c, q = h_new, c_new, q_new
    return VariantLayerOutput(torch.stack(ys), h, c, q, _stack_trace(traced, spec) if want_trace else {})


def _input_part(x: Tensor, params: Mapping[str, Tensor], spec: VariantSpec) -> Tensor:
    """a_t + b for every step at once: (T,B,nH)."""
    a = x @ params["weight_ih"].t()                                     # (T,B,nH)
    if spec.layer_norm:
        a = layer_norm(a, params["ln_x_weight"])
    if "bias_ih" in params:
        a = a + (params["bias_ih"] + params["bias_hh"])
    return a


def _cell(z: dict[str, Tensor], c: Tensor, peep: dict[str, Tensor], params: Mapping[str, Tensor],
          spec: VariantSpec) -> tuple[dict[str, Tensor], Tensor, Tensor]:
    """From the pre-activations of one step (block name -> (B,H)) and c_{t-1}: the gates (the
    trace's names: i, f, g, o where they exist), c_t and h_t before zoneout."""
    gates = {}
    if spec.input_gate:
        gates["i"] = torch.sigmoid(z["i"] + peep["i"] * c if "i" in peep else z["i"])
    if spec.coupled:
        gates["f"] = 1 - gates["i"]
    elif spec.forget_gate:
        gates["f"] = torch.sigmoid(z["f"] + peep["f"] * c if "f" in peep else z["f"])
    gates["g"] = torch.tanh(z["g"]) if spec.input_activation else z["g"]
    kept = gates["f"] * c if "f" in gates else c                        # f_t ⊙ c_{t-1}
    c_new = kept + (gates["i"] * gates["g"] if "i" in gates else gates["g"])
    if spec.output_gate:
        gates["o"] = torch.sigmoid(z["o"] + peep["o"] * c_new if "o" in peep else z["o"])
    s = layer_norm(c_new, params["ln_c_weight"], params["ln_c_bias"]) if spec.layer_norm else c_new
    s = torch.tanh(s) if spec.output_activation else s
    h_new = gates["o"] * s if "o" in gates else s
    return gates, c_new, h_new


def _stack_trace(traced: list[tuple[dict[str, Tensor], Tensor]], spec: VariantSpec) -> dict[str, Tensor]:
    """Per-step (gates, c_t) -> the trace fields, each (T,B,H)."""
    trace = {GATE_FIELDS[k]: torch.stack([g[k] for g, _ in traced]) for k in traced[0][0]}
    trace["cell"] = torch.stack([c for _, c in traced])
    return {name: trace[name] for name in spec.trace_fields if name != "hidden"}
