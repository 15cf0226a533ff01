"""The LSTM's variants in NumPy (float64): forward and hand-derived backward (BPTT) of every switch
of ``lstmkit.variants.VariantSpec``.

What it is: the executable specification of the variants (NIG, NFG, NOG, NIAF, NOAF, CIFG,
peepholes, FGR, layer norm, recurrent dropout, zoneout, and any combination). The equations are
those of ``lstmkit/variants.py``'s docstring, written there once; each is one line of
``variant_step`` below, in the same symbols. With every switch off this file computes exactly
what ``reference/lstm.py`` does (tests/test_reference_variants.py asserts it, and checks every
gradient against finite differences and torch autograd).

What it is not: fast, multi-layer, bidirectional or length-aware; it draws no random numbers
inside a step (the caller passes the dropout and zoneout masks, e.g. from ``sample_masks``), and
it never imports torch.

Choices the equations leave open, taken here and everywhere else:
    * the peephole p_o and the output activation look at the new cell *before* zoneout
      (``c_new``); zoneout comes last, on both states: c_t ← d^c c_{t-1} + (1 − d^c) c_new,
      h_t ← d^h h_{t-1} + (1 − d^h) h_new, and the zoned c_t, h_t are the step's outputs;
    * the dropout mask m multiplies h_{t-1} only where it enters W_h; zoneout keeps the
      un-dropped h_{t-1};
    * FGR's q_t holds the activated gates of ``spec.recurrent_gates`` (i, f, o among those with
      weights), concatenated in that order: (B, nQ·H).

Dimensions: the legend of ``reference/lstm.py`` (T, B, I, H), plus n = len(spec.blocks) stacked
blocks (nH = n·H rows), nP = nQ = len(spec.peephole_gates) gates with peepholes / in q.
Parameters: ``params`` is a dict name -> float64 array with exactly the names and shapes of
``spec.parameter_shapes(I, H, bias)``; the stacked rows are the blocks of ``spec.blocks``.

Backward (``variant_step_backward``) runs the lines bottom to top; each gradient is named
``d`` + the forward name, activation derivatives use saved outputs (σ' = y(1 − y),
tanh' = 1 − y²), and LN's backward uses the saved normalised value and 1/σ.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lstmkit.variants import LN_EPS, VariantSpec

from .lstm import Array, as_float64, check_sequence, sigmoid

__all__ = [
    "VariantStepCache", "VariantCache", "random_params", "sample_masks", "check_params",
    "variant_step", "variant_step_backward", "variant_forward", "variant_backward", "as_float64",
]


# ---------------------------------------------------------------------------------------------
# Parameters and masks
# ---------------------------------------------------------------------------------------------

def random_params(spec: VariantSpec, I: int, H: int, rng: np.random.Generator, bias: bool = True
                  ) -> dict[str, Array]:
    """Weights, peepholes, W_q and biases uniform(-1/√H, 1/√H) like ``torch.nn.LSTM``; LN gains
    1 + uniform(-0.3, 0.3) and β_c uniform(-0.3, 0.3), so that tests see them at work."""
    k = 1.0 / np.sqrt(H)
    params = {}
    for name, shape in spec.parameter_shapes(I, H, bias).items():
        if name in ("ln_x_weight", "ln_h_weight", "ln_c_weight"):
            params[name] = 1.0 + rng.uniform(-0.3, 0.3, size=shape)
        elif name == "ln_c_bias":
            params[name] = rng.uniform(-0.3, 0.3, size=shape)
        else:
            params[name] = rng.uniform(-k, k, size=shape)
    return params


def sample_masks(spec: VariantSpec, T: int, B: int, H: int, rng: np.random.Generator, training: bool = True
                 ) -> tuple[Array | None, tuple[Array, Array] | None]:
    """(dropout_mask (B, H) or None, zoneout_masks (d_c, d_h) (T, B, H) or None) from the spec's rates.

    Training: m ~ Bernoulli(1 − p) / (1 − p) once per sequence, d ~ Bernoulli(z) per step and unit.
    Otherwise: no dropout mask, d = z (the expectation). None where every rate is 0.
    """
    p, z_c, z_h = spec.recurrent_dropout, spec.zoneout_cell, spec.zoneout_hidden
    dropout_mask = None
    if training and p > 0:
        dropout_mask = (rng.random((B, H)) >= p) / (1.0 - p)  # (B, H)  0 or 1/(1 − p)
    zoneout_masks = None
    if z_c > 0 or z_h > 0:
        if training:
            zoneout_masks = tuple((rng.random((T, B, H)) < z).astype(np.float64) for z in (z_c, z_h))
        else:
            zoneout_masks = (np.full((T, B, H), z_c), np.full((T, B, H), z_h))  # (T, B, H) each
    return dropout_mask, zoneout_masks


def check_params(params: dict[str, Array], spec: VariantSpec) -> tuple[int, int]:
    """ValueError naming the parameter when a name is missing or extra or a shape is wrong.
    Returns (I, H), read from weight_ih and weight_hh."""
    for name in ("weight_ih", "weight_hh"):
        if name not in params or np.ndim(params[name]) != 2:
            raise ValueError(f"params must hold {name}, a 2-D array; got {params.get(name)!r:.60}")
    I, H = params["weight_ih"].shape[1], params["weight_hh"].shape[1]
    expected = spec.parameter_shapes(I, H, bias="bias_ih" in params)
    missing, extra = sorted(expected.keys() - params.keys()), sorted(params.keys() - expected.keys())
    if missing:
        raise ValueError(f"params is missing {missing[0]} of shape {expected[missing[0]]} "
                         f"(spec switches: {spec.switched()})")
    if extra:
        raise ValueError(f"params has {extra[0]}, which this spec has no use for (expected {sorted(expected)})")
    for name, shape in expected.items():
        if params[name].shape != shape:
            raise ValueError(f"params[{name!r}] must have shape {shape} (I = {I}, H = {H}, blocks "
                             f"{spec.blocks}), got {tuple(params[name].shape)}")
    return I, H


def split_blocks(stacked: Array, names: tuple[str, ...], axis: int = -1) -> dict[str, Array]:
    """Stacked blocks of equal size along ``axis`` -> {block name: block}, e.g. Z (B, nH) -> {"i": (B, H)...}."""
    return dict(zip(names, np.split(stacked, len(names), axis=axis), strict=True))


# ---------------------------------------------------------------------------------------------
# Layer norm and zoneout: forward, and right under each its backward
# ---------------------------------------------------------------------------------------------

def layer_norm(v: Array) -> tuple[Array, Array]:
    """LN(v) = (v − mean(v)) / sqrt(var(v) + ε) over the last axis (population variance).
    Returns (v̂ (B, N), 1/σ (B, 1)); both are what the backward needs."""
    mu = v.mean(axis=-1, keepdims=True)  # (B, 1)
    inv_std = 1.0 / np.sqrt(v.var(axis=-1, keepdims=True) + LN_EPS)  # (B, 1)
    return (v - mu) * inv_std, inv_std


def layer_norm_backward(dv_hat: Array, v_hat: Array, inv_std: Array) -> Array:
    """dv from dv̂: (dv̂ − mean(dv̂) − v̂ ⊙ mean(dv̂ ⊙ v̂)) / σ, the mean over the normalised axis."""
    mean_d = dv_hat.mean(axis=-1, keepdims=True)  # (B, 1)
    mean_dv = (dv_hat * v_hat).mean(axis=-1, keepdims=True)  # (B, 1)
    return (dv_hat - mean_d - v_hat * mean_dv) * inv_std  # (B, N)


def zoneout(new: Array, prev: Array, d: Array | None) -> Array:
    """new ← d ⊙ prev + (1 − d) ⊙ new; d None: no zoneout."""
    return new if d is None else d * prev + (1.0 - d) * new


def zoneout_backward(dout: Array, d: Array | None) -> tuple[Array, Array]:
    """(dnew, dprev) from the gradient at the zoned state."""
    if d is None:
        return dout, np.zeros_like(dout)
    return (1.0 - d) * dout, d * dout


# ---------------------------------------------------------------------------------------------
# One step's cache: what the backward needs and what the gate pictures show
# ---------------------------------------------------------------------------------------------

@dataclass
class VariantStepCache:
    """Everything one step computed; absent gates hold constant arrays (1, or 1 − i_t for CIFG),
    so that traces read the same for every variant. Fields that a spec does not use are None."""

    x_t: Array  # (B, I)
    h_prev: Array  # (B, H)  h_{t-1}
    c_prev: Array  # (B, H)  c_{t-1}
    q_prev: Array | None  # (B, nQ·H)  FGR: the last step's gates
    m: Array | None  # (B, H)  recurrent dropout mask
    hm: Array  # (B, H)  m ⊙ h_{t-1}, stored: W_hh's gradient needs it
    a_hat: Array | None = None  # (B, nH)  LN: the normalised W_x x_t, before α_x
    a_inv_std: Array | None = None  # (B, 1)
    r_hat: Array | None = None  # (B, nH)  LN: the normalised W_h (m ⊙ h_{t-1}), before α_h
    r_inv_std: Array | None = None  # (B, 1)
    Z: dict[str, Array] = field(default_factory=dict)  # block -> (B, H), peepholes included
    i_t: Array | None = None  # (B, H)  input gate (1 for NIG)
    f_t: Array | None = None  # (B, H)  forget gate (1 for NFG, 1 − i_t for CIFG)
    c_tilde: Array | None = None  # (B, H)  candidate c̃_t
    o_t: Array | None = None  # (B, H)  output gate (1 for NOG)
    c_new: Array | None = None  # (B, H)  f ⊙ c_{t-1} + i ⊙ c̃, before zoneout
    c_hat: Array | None = None  # (B, H)  LN: the normalised c_new, before α_c, β_c
    c_inv_std: Array | None = None  # (B, 1)
    phi_c: Array | None = None  # (B, H)  tanh(c) (NOAF: c), LN: of LN(c)α_c + β_c; stored for the backward
    h_new: Array | None = None  # (B, H)  o ⊙ phi_c, before zoneout
    d_c: Array | None = None  # (B, H)  zoneout of c this step
    d_h: Array | None = None  # (B, H)  zoneout of h this step
    c_t: Array | None = None  # (B, H)  the cell state carried forward (zoned)
    h_t: Array | None = None  # (B, H)  the output and hidden state carried forward (zoned)
    q_t: Array | None = None  # (B, nQ·H)  FGR: this step's gates, q for the next step


# ---------------------------------------------------------------------------------------------
# The pre-activations Z = a_t + r_t + b (+ W_q q_{t-1}): forward, and under it its backward
# ---------------------------------------------------------------------------------------------

def pre_activations(s: VariantStepCache, params: dict[str, Array], spec: VariantSpec) -> Array:
    """Z (B, nH) of the docstring's first four lines; stores the LN values in ``s``."""
    a_t = s.x_t @ params["weight_ih"].T  # (B, nH)  W_x x_t
    r_t = s.hm @ params["weight_hh"].T  # (B, nH)  W_h (m ⊙ h_{t-1})
    if spec.layer_norm:
        s.a_hat, s.a_inv_std = layer_norm(a_t)  # (B, nH), (B, 1)
        s.r_hat, s.r_inv_std = layer_norm(r_t)
        a_t = s.a_hat * params["ln_x_weight"]  # (B, nH)  LN(W_x x_t) ⊙ α_x
        r_t = s.r_hat * params["ln_h_weight"]  # (B, nH)  LN(W_h (m ⊙ h_{t-1})) ⊙ α_h
    Z = a_t + r_t  # (B, nH)
    if "bias_ih" in params:
        Z = Z + params["bias_ih"] + params["bias_hh"]
    if spec.full_gate_recurrence:
        Z = Z + s.q_prev @ params["weight_qh"].T  # (B, nH)  W_q q_{t-1}
    return Z


def pre_activations_backward(dZ: Array, s: VariantStepCache, params: dict[str, Array], spec: VariantSpec
                             ) -> tuple[Array, Array, Array | None, dict[str, Array]]:
    """dZ (B, nH) -> (dx_t (B, I), dh_prev (B, H), dq_prev (B, nQ·H) or None, {param gradients})."""
    grads, dq_prev = {}, None
    if spec.full_gate_recurrence:
        grads["dweight_qh"] = dZ.T @ s.q_prev  # (nH, nQ·H)
        dq_prev = dZ @ params["weight_qh"]  # (B, nQ·H)
    if "bias_ih" in params:
        grads["dbias_ih"] = grads["dbias_hh"] = dZ.sum(axis=0)  # (nH,)  Z uses their sum
    da_t = dr_t = dZ  # (B, nH)
    if spec.layer_norm:
        grads["dln_x_weight"] = (dZ * s.a_hat).sum(axis=0)  # (nH,)
        grads["dln_h_weight"] = (dZ * s.r_hat).sum(axis=0)  # (nH,)
        da_t = layer_norm_backward(dZ * params["ln_x_weight"], s.a_hat, s.a_inv_std)  # (B, nH)
        dr_t = layer_norm_backward(dZ * params["ln_h_weight"], s.r_hat, s.r_inv_std)  # (B, nH)
    grads["dweight_ih"] = da_t.T @ s.x_t  # (nH, I)
    grads["dweight_hh"] = dr_t.T @ s.hm  # (nH, H)
    dx_t = da_t @ params["weight_ih"]  # (B, I)
    dhm = dr_t @ params["weight_hh"]  # (B, H)
    dh_prev = dhm if s.m is None else dhm * s.m  # (B, H)
    return dx_t, dh_prev, dq_prev, grads


# ---------------------------------------------------------------------------------------------
# One step: forward, and right under it its backward
# ---------------------------------------------------------------------------------------------

def variant_step(x_t: Array, h_prev: Array, c_prev: Array, q_prev: Array | None, params: dict[str, Array],
                 spec: VariantSpec, dropout_mask: Array | None = None, zoneout_c: Array | None = None,
                 zoneout_h: Array | None = None) -> tuple[Array, Array, Array | None, VariantStepCache]:
    """One step of ``lstmkit/variants.py``'s equations: x_t (B, I), h_prev, c_prev (B, H), q_prev
    (B, nQ·H) (FGR, None: zeros; else ignored) -> (h_t, c_t, q_t or None, cache). dropout_mask,
    zoneout_c, zoneout_h (B, H) or None: m, d^c_t, d^h_t (any numbers in [0, 1] for d)."""
    if spec.full_gate_recurrence and q_prev is None:
        q_prev = np.zeros((h_prev.shape[0], len(spec.recurrent_gates) * h_prev.shape[1]))  # no gates yet
    hm = h_prev if dropout_mask is None else dropout_mask * h_prev  # (B, H)  m ⊙ h_{t-1}
    s = VariantStepCache(x_t=x_t, h_prev=h_prev, c_prev=c_prev, m=dropout_mask, hm=hm, d_c=zoneout_c,
                         d_h=zoneout_h, q_prev=q_prev if spec.full_gate_recurrence else None)
    Z = s.Z = split_blocks(pre_activations(s, params, spec), spec.blocks)  # block -> (B, H)
    p = peepholes(params, spec)  # gate -> (H,)
    for g in ("i", "f"):
        if g in p:
            Z[g] = Z[g] + p[g] * c_prev  # (B, H)  Z_g += p_g ⊙ c_{t-1}
    ones = np.ones_like(c_prev)  # (B, H)  an absent gate is the constant 1
    s.i_t = sigmoid(Z["i"]) if "i" in Z else ones  # (B, H)
    s.f_t = sigmoid(Z["f"]) if "f" in Z else (1.0 - s.i_t if spec.coupled else ones)  # (B, H)
    s.c_tilde = np.tanh(Z["g"]) if spec.input_activation else Z["g"]  # (B, H)
    s.c_new = s.f_t * c_prev + s.i_t * s.c_tilde  # (B, H)
    if "o" in p:
        Z["o"] = Z["o"] + p["o"] * s.c_new  # (B, H)  Z_o += p_o ⊙ c_t (before zoneout)
    s.o_t = sigmoid(Z["o"]) if "o" in Z else ones  # (B, H)
    c_out = s.c_new  # (B, H)  the cell as the output sees it
    if spec.layer_norm:
        s.c_hat, s.c_inv_std = layer_norm(s.c_new)  # (B, H), (B, 1)
        c_out = s.c_hat * params["ln_c_weight"] + params["ln_c_bias"]  # (B, H)  LN(c_t) ⊙ α_c + β_c
    s.phi_c = np.tanh(c_out) if spec.output_activation else c_out  # (B, H)
    s.h_new = s.o_t * s.phi_c  # (B, H)
    s.c_t = zoneout(s.c_new, c_prev, zoneout_c)  # (B, H)
    s.h_t = zoneout(s.h_new, h_prev, zoneout_h)  # (B, H)
    if spec.full_gate_recurrence:
        gates = {"i": s.i_t, "f": s.f_t, "o": s.o_t}
        s.q_t = np.concatenate([gates[g] for g in spec.recurrent_gates], axis=1)  # (B, nQ·H)
    return s.h_t, s.c_t, s.q_t, s


def variant_step_backward(dh_t: Array, dc_t: Array, dq_t: Array | None, s: VariantStepCache,
                          params: dict[str, Array], spec: VariantSpec
                          ) -> tuple[Array, Array, Array, Array | None, dict[str, Array]]:
    """The step's lines bottom to top. dh_t, dc_t (B, H), dq_t (B, nQ·H) or None: total gradients
    arriving at the step's outputs. Returns (dx_t, dh_prev, dc_prev, dq_prev, {param: this step's part})."""
    # zoneout: h_t = d^h h_{t-1} + (1 − d^h) h_new, the same for c
    dh_new, dh_prev = zoneout_backward(dh_t, s.d_h)  # (B, H) each
    dc_new, dc_prev = zoneout_backward(dc_t, s.d_c)
    dq = split_blocks(dq_t, spec.recurrent_gates) if dq_t is not None else {}  # FGR: gate -> (B, H)
    p = peepholes(params, spec)  # gate -> (H,)
    do_t, dc_out, grads = output_backward(dh_new, s, params, spec)  # (B, H), (B, H)
    dc_new = dc_new + dc_out  # (B, H)
    dZ = {}  # block -> (B, H)
    if "o" in spec.blocks:
        dZ["o"] = (do_t + dq.get("o", 0.0)) * s.o_t * (1.0 - s.o_t)  # (B, H)  σ' = y(1 − y)
    if "o" in p:
        dc_new = dc_new + dZ["o"] * p["o"]  # (B, H)  Z_o += p_o ⊙ c_new
    # c_new = f_t ⊙ c_{t-1} + i_t ⊙ c̃_t
    df_t = dc_new * s.c_prev  # (B, H)
    dc_prev = dc_prev + dc_new * s.f_t  # (B, H)
    di_t = dc_new * s.c_tilde  # (B, H)
    dc_tilde = dc_new * s.i_t  # (B, H)
    if spec.coupled:
        di_t = di_t - df_t  # (B, H)  f_t = 1 − i_t
    dZ["g"] = dc_tilde * (1.0 - s.c_tilde**2) if spec.input_activation else dc_tilde  # (B, H)  tanh' = 1 − y²
    for g, dgate, gate in (("f", df_t, s.f_t), ("i", di_t, s.i_t)):
        if g in spec.blocks:
            dZ[g] = (dgate + dq.get(g, 0.0)) * gate * (1.0 - gate)  # (B, H)  σ' = y(1 − y)
        if g in p:
            dc_prev = dc_prev + dZ[g] * p[g]  # (B, H)  Z_g += p_g ⊙ c_{t-1}
    if spec.peepholes:
        seen = {"i": s.c_prev, "f": s.c_prev, "o": s.c_new}  # the cell each peephole looks at
        grads["dweight_ch"] = np.concatenate([(dZ[g] * seen[g]).sum(axis=0) for g in spec.peephole_gates])
    dZ_stacked = np.concatenate([dZ[b] for b in spec.blocks], axis=1)  # (B, nH)
    dx_t, dh_prev_r, dq_prev, pre_grads = pre_activations_backward(dZ_stacked, s, params, spec)
    return dx_t, dh_prev + dh_prev_r, dc_prev, dq_prev, grads | pre_grads


def peepholes(params: dict[str, Array], spec: VariantSpec) -> dict[str, Array]:
    """gate -> its peephole p_g (H,); {} without peepholes."""
    return split_blocks(params["weight_ch"], spec.peephole_gates) if spec.peepholes else {}


def output_backward(dh_new: Array, s: VariantStepCache, params: dict[str, Array], spec: VariantSpec
                    ) -> tuple[Array, Array, dict[str, Array]]:
    """h_new = o_t ⊙ φ(c_out), φ = tanh (NOAF: identity), c_out = c_new (LN: LN(c_new) ⊙ α_c + β_c).
    Returns (do_t (B, H), this line's part of dc_new (B, H), {LN gain and bias gradients})."""
    do_t = dh_new * s.phi_c  # (B, H)
    dc_out = dh_new * s.o_t  # (B, H)
    if spec.output_activation:
        dc_out = dc_out * (1.0 - s.phi_c**2)  # (B, H)  tanh' from the saved output
    grads = {}
    if spec.layer_norm:
        grads["dln_c_weight"] = (dc_out * s.c_hat).sum(axis=0)  # (H,)
        grads["dln_c_bias"] = dc_out.sum(axis=0)  # (H,)
        dc_out = layer_norm_backward(dc_out * params["ln_c_weight"], s.c_hat, s.c_inv_std)  # (B, H)
    return do_t, dc_out, grads


# ---------------------------------------------------------------------------------------------
# The sequence: forward over t = 1..T, and beside it backward over t = T..1
# ---------------------------------------------------------------------------------------------

@dataclass
class VariantCache:
    """Every step's cache, in time order; ``stacked(name)`` gives one quantity over time."""

    steps: list[VariantStepCache] = field(default_factory=list)

    def stacked(self, name: str) -> Array:
        """E.g. ``stacked("f_t")`` -> (T, B, H): the forget gate at every step (ones for NFG)."""
        return np.stack([getattr(s, name) for s in self.steps])


def check_sequence_args(x: Array, h0: Array, c0: Array, q0: Array | None, dropout_mask: Array | None,
                        zoneout_masks: tuple[Array | None, Array | None] | None, I: int, H: int,
                        spec: VariantSpec) -> None:
    """ValueError naming the argument whose shape does not fit x (T, B, I) and the parameters."""
    check_sequence(x, (H, I), {"h0": h0, "c0": c0})
    T, B, _ = x.shape
    nQ = len(spec.recurrent_gates)
    if spec.full_gate_recurrence and q0 is not None and q0.shape != (B, nQ * H):
        raise ValueError(f"q0 must have shape (B, nQ·H) = {(B, nQ * H)} (FGR's last gates "
                         f"{spec.recurrent_gates}), got {tuple(q0.shape)}")
    if dropout_mask is not None and dropout_mask.shape != (B, H):
        raise ValueError(f"dropout_mask must have shape (B, H) = {(B, H)}, got {tuple(dropout_mask.shape)}")
    for name, d in zip(("zoneout_masks[0] (d_c)", "zoneout_masks[1] (d_h)"), zoneout_masks or (None, None),
                       strict=True):
        if d is not None and d.shape != (T, B, H):
            raise ValueError(f"{name} must have shape (T, B, H) = {(T, B, H)}, got {tuple(d.shape)}")


def variant_forward(x: Array, h0: Array, c0: Array, q0: Array | None, params: dict[str, Array],
                    spec: VariantSpec, dropout_mask: Array | None = None,
                    zoneout_masks: tuple[Array | None, Array | None] | None = None
                    ) -> tuple[Array, tuple[Array, Array, Array | None], VariantCache]:
    """x (T, B, I), h0 and c0 (B, H), q0 (B, nQ·H) or None (zeros; ignored without FGR), dropout_mask
    (B, H) or None, zoneout_masks (d_c, d_h) (T, B, H) each, or None
    -> (hs (T, B, H), (h_T, c_T, q_T (None without FGR)), cache)."""
    I, H = check_params(params, spec)
    check_sequence_args(x, h0, c0, q0, dropout_mask, zoneout_masks, I, H, spec)
    T = x.shape[0]
    d_c, d_h = zoneout_masks if zoneout_masks is not None else (None, None)
    h, c, q, cache = h0, c0, q0 if spec.full_gate_recurrence else None, VariantCache()
    for t in range(T):
        h, c, q, step = variant_step(x[t], h, c, q, params, spec, dropout_mask,
                                     None if d_c is None else d_c[t], None if d_h is None else d_h[t])
        cache.steps.append(step)
    hs = cache.stacked("h_t")  # (T, B, H)
    return hs, (h, c, q), cache


def variant_backward(dhs: Array, dh_T: Array | None, dc_T: Array | None, dq_T: Array | None,
                     cache: VariantCache, params: dict[str, Array], spec: VariantSpec) -> dict[str, Array]:
    """BPTT. dhs (T, B, H): gradient at each output h_t; dh_T, dc_T (B, H), dq_T (B, nQ·H): at the
    final state, or None (zeros). Returns {"dx", "dh0", "dc0", "dq0" (FGR only), "d" + every param}."""
    T, B, H = dhs.shape
    dh = np.zeros((B, H)) if dh_T is None else dh_T  # (B, H)  gradient flowing back through h
    dc = np.zeros((B, H)) if dc_T is None else dc_T  # (B, H)  gradient flowing back through c
    dq = None  # (B, nQ·H)  FGR: gradient flowing back through q
    if spec.full_gate_recurrence:
        dq = np.zeros((B, len(spec.recurrent_gates) * H)) if dq_T is None else dq_T
    dx = np.zeros((T, B, params["weight_ih"].shape[1]))  # (T, B, I)
    grads = {f"d{name}": np.zeros_like(p) for name, p in params.items()}
    for t in reversed(range(T)):
        dx[t], dh, dc, dq, dparams_t = variant_step_backward(dhs[t] + dh, dc, dq, cache.steps[t], params, spec)
        for name, g in dparams_t.items():
            grads[name] += g  # the same parameters are used at every step: their gradients add
    out = {"dx": dx, "dh0": dh, "dc0": dc}
    if spec.full_gate_recurrence:
        out["dq0"] = dq
    return out | grads
