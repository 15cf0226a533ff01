"""The article's computation for one step, with the real numbers, from ``lstmkit.reference``.

What it is: for one LSTM layer and direction, every step's intermediate values in the article's
order and symbols (``lstmkit.reference.lstm`` writes the equations out):

    Z_f = W_h^(f) h_{t-1} + W_x^(f) x_t + b^(f) -> f_t = σ(Z_f) -> f_t ⊙ c_{t-1}
    Z_c -> c̃_t = tanh(Z_c);  Z_i -> i_t = σ(Z_i) -> i_t ⊙ c̃_t;  c_t = f_t ⊙ c_{t-1} + i_t ⊙ c̃_t
    tanh(c_t);  Z_o -> o_t = σ(Z_o) -> h_t = o_t ⊙ tanh(c_t)

computed in float64 by ``lstmkit.reference.lstm_step`` from the module's weights and the layer's
input, for every step and a chosen set of units, so the report's panel works offline.
What it is not: the traced values (those are float32, from the module); the two agree to float32
precision, which the tests check.

Dimension legend: T tokens, U units shown in the panel, H hidden units, I layer input.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from lstmkit.reference import LSTMCache, LSTMWeights, lstm_forward

from .traces import LayerTrace, as_lstmkit

GATE_ORDER = ("f", "c", "i", "o")  # the article's order of the four linear steps
ACTIVATED = {"f": "f_t", "c": "c_tilde", "i": "i_t", "o": "o_t"}
STATE_FIELDS = ("c_prev", "c_t", "tanh_c_t", "h_t")


def layer_weights(core: nn.Module, layer: int, direction: int) -> LSTMWeights:
    """The article's named float64 weights of one LSTM layer and direction."""
    w_ih, w_hh, b_ih, b_hh, _ = as_lstmkit(core)._weights(layer, direction)
    return LSTMWeights.from_torch(w_ih, w_hh, b_ih, b_hh)


def reference_cache(w: LSTMWeights, tr: LayerTrace) -> LSTMCache:
    """Run the reference over the layer's input in the direction's own time order (from zeros)."""
    x = tr.inputs[::-1] if tr.direction else tr.inputs  # (T, I)
    H = w.hidden_size
    _, _, cache = lstm_forward(np.ascontiguousarray(x)[:, None, :], np.zeros((1, H)), np.zeros((1, H)), w)
    return cache


def step_panel(core: nn.Module, tr: LayerTrace, units: np.ndarray) -> dict[str, np.ndarray]:
    """Every step's panel values for ``units`` (U,): name -> (T, U) float64 in token order, plus
    "b_f", "b_c", "b_i", "b_o" -> (U,). Names: "Wh_f" = (W_h^(f) h_{t-1})_j, "Wx_f" = (W_x^(f) x_t)_j,
    "Z_f", "f_t", ..., "fc" = f_t ⊙ c_{t-1}, "ic" = i_t ⊙ c̃_t, "c_prev", "c_t", "tanh_c_t", "h_t"."""
    if tr.cell != "lstm":
        raise ValueError(f"the step panel shows the LSTM's computation; this layer is a {tr.cell}")
    w = layer_weights(core, tr.layer, tr.direction)
    cache = reference_cache(w, tr)
    order = slice(None, None, -1) if tr.direction else slice(None)  # the direction's order -> token order

    def take(a: np.ndarray) -> np.ndarray:  # (T, 1, H) -> (T, U) in token order
        return np.ascontiguousarray(a[order, 0][:, units])

    h_prev, x_t = cache.stacked("h_prev"), cache.stacked("x_t")  # (T, 1, H), (T, 1, I)
    out: dict[str, np.ndarray] = {}
    for g in GATE_ORDER:
        out[f"Wh_{g}"] = take(h_prev @ getattr(w, f"W_h{g}").T)
        out[f"Wx_{g}"] = take(x_t @ getattr(w, f"W_x{g}").T)
        out[f"Z_{g}"] = take(cache.stacked(f"Z_{g}"))
        out[ACTIVATED[g]] = take(cache.stacked(ACTIVATED[g]))
        out[f"b_{g}"] = getattr(w, f"b_{g}")[units].copy()  # (U,)
    for name in STATE_FIELDS:
        out[name] = take(cache.stacked(name))
    out["fc"] = out["f_t"] * out["c_prev"]  # the same products lstm_step adds up
    out["ic"] = out["i_t"] * out["c_tilde"]
    return out


def panel_units(order: np.ndarray, T: int, budget: int = 1_500_000) -> np.ndarray:
    """The units whose panel values are embedded: all of them when T·H·(fields) fits ``budget``
    numbers, else the most active ones (at least 8), in ``order``."""
    per_unit = T * 22  # 22 (T,)-long fields per unit
    keep = max(8, budget // per_unit)
    return np.asarray(order[:keep])
