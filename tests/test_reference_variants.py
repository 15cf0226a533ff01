"""Tests of lstmkit/reference/lstm_variants.py, the NumPy specification of the LSTM's variants.

The ladder, for every case of ``CASES`` (each switch alone, LN with NOAF, the masks, no bias, and
two combinations): every gradient against central finite differences (float64, rtol 1e-6,
atol 1e-8) -> outputs and every gradient against torch autograd through an independent float64
implementation of ``lstmkit/variants.py``'s equations written below (atol 1e-10). Then: the
standard spec equals ``reference/lstm.py`` (atol 1e-12), the constant gates and states the
switches promise, the masks drawn from a spec, and bad arguments named.
Not tested here: the PyTorch layer ``functional/variant_lstm.py`` (its own tests compare to this).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from lstmkit.reference.lstm import LSTMWeights, lstm_backward, lstm_forward
from lstmkit.reference.lstm_variants import random_params, sample_masks, variant_backward, variant_forward
from lstmkit.variants import LN_EPS, VariantSpec

T, B, I, H = 4, 3, 2, 3
FD_EPS = 1e-6  # central differences: truncation ~eps², rounding ~1e-16/eps
FD_RTOL, FD_ATOL = 1e-6, 1e-8
TORCH_ATOL = 1e-10  # reference vs torch autograd, both float64
LSTM_ATOL = 1e-12  # standard spec vs reference/lstm.py


@dataclass(frozen=True)
class Case:
    spec: VariantSpec
    bias: bool = True
    training: bool = True  # masks drawn as in training (0/1) or at evaluation (d = z)


CASES = {
    "standard": Case(VariantSpec()),
    "nig": Case(VariantSpec(input_gate=False)),
    "nfg": Case(VariantSpec(forget_gate=False)),
    "nog": Case(VariantSpec(output_gate=False)),
    "niaf": Case(VariantSpec(input_activation=False)),
    "noaf": Case(VariantSpec(output_activation=False)),
    "cifg": Case(VariantSpec(coupled=True)),
    "peepholes": Case(VariantSpec(peepholes=True)),
    "fgr": Case(VariantSpec(full_gate_recurrence=True)),
    "layernorm": Case(VariantSpec(layer_norm=True)),
    "layernorm-noaf": Case(VariantSpec(layer_norm=True, output_activation=False)),
    "recurrent-dropout": Case(VariantSpec(recurrent_dropout=0.4)),
    "zoneout-train": Case(VariantSpec(zoneout_cell=0.4, zoneout_hidden=0.3)),
    "zoneout-eval": Case(VariantSpec(zoneout_cell=0.4, zoneout_hidden=0.3), training=False),
    "no-bias": Case(VariantSpec(), bias=False),
    "peepholes-fgr-ln-cifg-masks": Case(VariantSpec(peepholes=True, full_gate_recurrence=True, layer_norm=True,
                                                    coupled=True, recurrent_dropout=0.3, zoneout_cell=0.3,
                                                    zoneout_hidden=0.4)),
    "nig-nog-peepholes-fgr": Case(VariantSpec(input_gate=False, output_gate=False, peepholes=True,
                                              full_gate_recurrence=True)),
}


@dataclass
class Problem:
    params: dict[str, np.ndarray]
    inputs: dict[str, np.ndarray]  # "x", "h0", "c0", "q0" (FGR)
    masks: tuple  # (dropout_mask, zoneout_masks)
    douts: dict[str, np.ndarray]  # "hs", "h_T", "c_T", "q_T" (FGR): random weights of the loss


def make_problem(case: Case, seed: int = 0) -> Problem:
    rng = np.random.default_rng(seed)
    spec = case.spec
    params = random_params(spec, I, H, rng, bias=case.bias)
    inputs = {"x": rng.standard_normal((T, B, I)), "h0": rng.standard_normal((B, H)),
              "c0": rng.standard_normal((B, H))}
    douts = {"hs": rng.standard_normal((T, B, H)), "h_T": rng.standard_normal((B, H)),
             "c_T": rng.standard_normal((B, H))}
    if spec.full_gate_recurrence:
        nQ = len(spec.recurrent_gates)
        inputs["q0"] = rng.uniform(0, 1, (B, nQ * H))  # gates live in (0, 1)
        douts["q_T"] = rng.standard_normal((B, nQ * H))
    return Problem(params, inputs, sample_masks(spec, T, B, H, rng, training=case.training), douts)


def run_reference(case: Case, p: Problem):
    """(outputs {"hs", "h_T", "c_T", "q_T"?}, loss, cache) of L = Σ output ⊙ its random weight."""
    hs, (h_T, c_T, q_T), cache = variant_forward(p.inputs["x"], p.inputs["h0"], p.inputs["c0"], p.inputs.get("q0"),
                                                 p.params, case.spec, *p.masks)
    outs = {"hs": hs, "h_T": h_T, "c_T": c_T} | ({"q_T": q_T} if q_T is not None else {})
    return outs, sum(float((outs[k] * p.douts[k]).sum()) for k in outs), cache


def reference_grads(case: Case, p: Problem) -> dict[str, np.ndarray]:
    _, _, cache = run_reference(case, p)
    return variant_backward(p.douts["hs"], p.douts["h_T"], p.douts["c_T"], p.douts.get("q_T"), cache, p.params,
                            case.spec)


def perturbed_arrays(p: Problem) -> dict[str, np.ndarray]:
    """{gradient name: the array itself}, every input and parameter the loss depends on."""
    return {f"d{k}": v for k, v in p.inputs.items()} | {f"d{k}": v for k, v in p.params.items()}


# -- finite differences ------------------------------------------------------------------------

@pytest.mark.parametrize("name", CASES)
def test_every_gradient_matches_central_finite_differences(name):
    """∂L/∂(x, h0, c0, q0, every parameter) from the hand-derived backward vs central differences."""
    case = CASES[name]
    p = make_problem(case)
    grads = reference_grads(case, p)
    arrays = perturbed_arrays(p)
    assert set(grads) == set(arrays)
    for gname, a in arrays.items():
        numeric = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            old = a[idx]
            a[idx] = old + FD_EPS
            up = run_reference(case, p)[1]
            a[idx] = old - FD_EPS
            down = run_reference(case, p)[1]
            a[idx] = old
            numeric[idx] = (up - down) / (2 * FD_EPS)
        np.testing.assert_allclose(grads[gname], numeric, rtol=FD_RTOL, atol=FD_ATOL, err_msg=gname)


# -- torch autograd on an independent implementation ---------------------------------------------

def torch_layer_norm(v: torch.Tensor) -> torch.Tensor:
    return (v - v.mean(-1, keepdim=True)) / torch.sqrt(v.var(-1, unbiased=False, keepdim=True) + LN_EPS)


def torch_variant_forward(spec: VariantSpec, x, h0, c0, q0, P: dict[str, torch.Tensor], m, d_c, d_h):
    """The equations of lstmkit/variants.py in torch float64, written apart from the reference."""
    one = torch.ones_like(h0)
    h, c, q, hs = h0, c0, q0, []
    for t in range(x.shape[0]):
        a, r = x[t] @ P["weight_ih"].T, (m * h) @ P["weight_hh"].T
        if spec.layer_norm:
            a, r = torch_layer_norm(a) * P["ln_x_weight"], torch_layer_norm(r) * P["ln_h_weight"]
        Z = a + r + (P["bias_ih"] + P["bias_hh"] if "bias_ih" in P else 0.0)
        if spec.full_gate_recurrence:
            Z = Z + q @ P["weight_qh"].T
        Zb = dict(zip(spec.blocks, Z.split(H, dim=1), strict=True))
        pe = dict(zip(spec.peephole_gates, P["weight_ch"].split(H), strict=True)) if spec.peepholes else {}
        i = torch.sigmoid(Zb["i"] + pe.get("i", 0.0) * c) if spec.input_gate else one
        if spec.coupled:
            f = 1 - i
        else:
            f = torch.sigmoid(Zb["f"] + pe.get("f", 0.0) * c) if spec.forget_gate else one
        cand = torch.tanh(Zb["g"]) if spec.input_activation else Zb["g"]
        c_new = f * c + i * cand
        o = torch.sigmoid(Zb["o"] + pe.get("o", 0.0) * c_new) if spec.output_gate else one
        y = torch_layer_norm(c_new) * P["ln_c_weight"] + P["ln_c_bias"] if spec.layer_norm else c_new
        h_new = o * (torch.tanh(y) if spec.output_activation else y)
        if spec.full_gate_recurrence:
            q = torch.cat([{"i": i, "f": f, "o": o}[g] for g in spec.recurrent_gates], dim=1)
        c, h = d_c[t] * c + (1 - d_c[t]) * c_new, d_h[t] * h + (1 - d_h[t]) * h_new
        hs.append(h)
    outs = {"hs": torch.stack(hs), "h_T": h, "c_T": c}
    return outs | ({"q_T": q} if spec.full_gate_recurrence else {})


@pytest.mark.parametrize("name", CASES)
def test_outputs_and_every_gradient_match_torch_autograd(name):
    case = CASES[name]
    p = make_problem(case, seed=1)
    outs, _, _ = run_reference(case, p)
    grads = reference_grads(case, p)
    leaves = {k: torch.tensor(v, requires_grad=True) for k, v in (p.inputs | p.params).items()}
    dropout_mask, zoneout_masks = p.masks
    m = torch.ones(B, H, dtype=torch.float64) if dropout_mask is None else torch.tensor(dropout_mask)
    d_c, d_h = (torch.zeros(T, B, H, dtype=torch.float64),) * 2 if zoneout_masks is None else map(
        torch.tensor, zoneout_masks)
    touts = torch_variant_forward(case.spec, leaves["x"], leaves["h0"], leaves["c0"], leaves.get("q0"), leaves,
                                  m, d_c, d_h)
    assert set(touts) == set(outs)
    sum((touts[k] * torch.tensor(p.douts[k])).sum() for k in touts).backward()
    for k in outs:
        np.testing.assert_allclose(outs[k], touts[k].detach().numpy(), rtol=0, atol=TORCH_ATOL, err_msg=k)
    for k, leaf in leaves.items():
        np.testing.assert_allclose(grads[f"d{k}"], leaf.grad.numpy(), rtol=0, atol=TORCH_ATOL, err_msg=f"d{k}")


# -- the standard spec is reference/lstm.py ------------------------------------------------------

def test_standard_spec_equals_the_lstm_reference():
    """Outputs, final states and every gradient, atol 1e-12 (the two sum in different orders)."""
    case = CASES["standard"]
    p = make_problem(case, seed=2)
    outs, _, _ = run_reference(case, p)
    grads = reference_grads(case, p)
    w = LSTMWeights.from_torch(*(p.params[k] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
    hs, (h_T, c_T), cache = lstm_forward(p.inputs["x"], p.inputs["h0"], p.inputs["c0"], w)
    lg = lstm_backward(p.douts["hs"], p.douts["h_T"], p.douts["c_T"], cache, w)
    dw_ih, dw_hh, db = lg.to_torch()
    pairs = {"hs": (outs["hs"], hs), "h_T": (outs["h_T"], h_T), "c_T": (outs["c_T"], c_T),
             "dx": (grads["dx"], lg.dx), "dh0": (grads["dh0"], lg.dh0), "dc0": (grads["dc0"], lg.dc0),
             "dweight_ih": (grads["dweight_ih"], dw_ih), "dweight_hh": (grads["dweight_hh"], dw_hh),
             "dbias_ih": (grads["dbias_ih"], db), "dbias_hh": (grads["dbias_hh"], db)}
    for k, (ours, theirs) in pairs.items():
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=LSTM_ATOL, err_msg=k)
    for g in ("i_t", "f_t", "o_t", "c_tilde", "c_t", "h_t"):
        np.testing.assert_allclose(cache.stacked(g), run_reference(case, p)[2].stacked(g), rtol=0, atol=LSTM_ATOL)


# -- what the switches promise -------------------------------------------------------------------

def trace(spec: VariantSpec, seed: int = 3, params: dict | None = None, **masks):
    p = make_problem(Case(spec), seed)
    params = p.params if params is None else params
    hs, finals, cache = variant_forward(p.inputs["x"], p.inputs["h0"], p.inputs["c0"], p.inputs.get("q0"),
                                        params, spec, **masks)
    return p, hs, finals, cache


@pytest.mark.parametrize("spec, gate", [(VariantSpec(input_gate=False), "i_t"),
                                        (VariantSpec(forget_gate=False), "f_t"),
                                        (VariantSpec(output_gate=False), "o_t")])
def test_a_removed_gate_is_one_in_the_trace_and_the_others_are_not(spec, gate):
    _, _, _, cache = trace(spec)
    np.testing.assert_array_equal(cache.stacked(gate), 1.0)
    for other in {"i_t", "f_t", "o_t"} - {gate}:
        assert np.all(cache.stacked(other) < 1.0), other


def test_cifg_forget_gate_is_one_minus_input_gate():
    _, _, _, cache = trace(VariantSpec(coupled=True, peepholes=True))
    i_t, f_t = cache.stacked("i_t"), cache.stacked("f_t")
    np.testing.assert_array_equal(f_t, 1.0 - i_t)
    assert np.all((0 < i_t) & (i_t < 1))


def test_nfg_with_a_closed_input_gate_keeps_the_cell():
    """NFG: c_t = c_{t-1} + i_t ⊙ c̃_t, so i_t ≈ 0 (b_i = −50) keeps c0 at every step; with the
    random bias the cell moves (the check can fail)."""
    spec = VariantSpec(forget_gate=False)
    p, _, (_, c_T, _), cache = trace(spec)
    assert np.abs(c_T - p.inputs["c0"]).max() > 1e-2
    params = dict(p.params, bias_ih=p.params["bias_ih"].copy())
    params["bias_ih"][:H] = -50.0  # block "i" comes first in spec.blocks
    p, _, (_, c_T, _), cache = trace(spec, params=params)
    np.testing.assert_allclose(cache.stacked("c_t"), np.broadcast_to(p.inputs["c0"], (T, B, H)), rtol=0, atol=1e-18)


def test_zoneout_mask_of_ones_keeps_both_states_and_of_zeros_changes_nothing():
    spec = VariantSpec(zoneout_cell=0.5, zoneout_hidden=0.5)
    ones, zeros = np.ones((T, B, H)), np.zeros((T, B, H))
    p, hs, (h_T, c_T, _), _ = trace(spec, zoneout_masks=(ones, ones))
    np.testing.assert_array_equal(hs, np.broadcast_to(p.inputs["h0"], (T, B, H)))
    np.testing.assert_array_equal(c_T, p.inputs["c0"])
    _, hs_plain, finals_plain, _ = trace(spec)
    _, hs_zero, finals_zero, _ = trace(spec, zoneout_masks=(zeros, zeros))
    np.testing.assert_array_equal(hs_zero, hs_plain)
    np.testing.assert_array_equal(finals_zero[1], finals_plain[1])
    assert np.abs(hs_plain - p.inputs["h0"]).max() > 1e-2


def test_fgr_without_q0_starts_from_zero_gates():
    spec = VariantSpec(full_gate_recurrence=True, coupled=True)
    p = make_problem(Case(spec))
    x, h0, c0 = (p.inputs[k] for k in ("x", "h0", "c0"))
    hs_none, (_, _, q_T), cache = variant_forward(x, h0, c0, None, p.params, spec)
    hs_zero, _, _ = variant_forward(x, h0, c0, np.zeros((B, 2 * H)), p.params, spec)
    np.testing.assert_array_equal(hs_none, hs_zero)
    np.testing.assert_array_equal(q_T, np.concatenate([cache.stacked(g)[-1] for g in ("i_t", "o_t")], axis=1))
    hs_q, _, _ = variant_forward(x, h0, c0, p.inputs["q0"], p.params, spec)
    assert np.abs(hs_q - hs_zero).max() > 1e-3


def test_sample_masks_training_and_evaluation():
    spec = VariantSpec(recurrent_dropout=0.25, zoneout_cell=0.3, zoneout_hidden=0.6)
    rng = np.random.default_rng(0)
    m, (d_c, d_h) = sample_masks(spec, 50, 8, 16, rng, training=True)
    assert set(np.unique(m)) == {0.0, 1.0 / 0.75}
    assert set(np.unique(d_c)) == set(np.unique(d_h)) == {0.0, 1.0}
    assert abs(d_c.mean() - 0.3) < 0.05 and abs(d_h.mean() - 0.6) < 0.05
    m, (d_c, d_h) = sample_masks(spec, 5, 2, 3, rng, training=False)
    assert m is None
    np.testing.assert_array_equal(d_c, 0.3)
    np.testing.assert_array_equal(d_h, 0.6)
    assert sample_masks(VariantSpec(), 5, 2, 3, rng) == (None, None)


# -- bad arguments are named ---------------------------------------------------------------------

SPEC_FULL = VariantSpec(full_gate_recurrence=True, peepholes=True, layer_norm=True)


@pytest.mark.parametrize("what, needle", [
    ("x", "x must"), ("h0", "h0 must"), ("c0", "c0 must"), ("q0", "q0 must"), ("dropout_mask", "dropout_mask"),
    ("d_h", "zoneout_masks[1]"), ("weight_ch", "params['weight_ch']"), ("missing", "missing ln_c_bias"),
    ("extra", "has weight_xx"),
])
def test_a_bad_shape_or_name_raises_value_error_naming_it(what, needle):
    p = make_problem(Case(SPEC_FULL))
    x, h0, c0, q0 = (p.inputs[k] for k in ("x", "h0", "c0", "q0"))
    params, kw = dict(p.params), {"zoneout_masks": (np.zeros((T, B, H)), np.zeros((T, B, H)))}
    if what == "x":
        x = np.zeros((T, B, I + 1))
    elif what in ("h0", "c0", "q0"):
        h0, c0, q0 = (np.zeros((B, H + 1)) if what == k else v for k, v in (("h0", h0), ("c0", c0), ("q0", q0)))
    elif what == "dropout_mask":
        kw["dropout_mask"] = np.ones((B + 1, H))
    elif what == "d_h":
        kw["zoneout_masks"] = (np.zeros((T, B, H)), np.zeros((T - 1, B, H)))
    elif what == "weight_ch":
        params["weight_ch"] = np.zeros(2 * H)
    elif what == "missing":
        del params["ln_c_bias"]
    else:
        params["weight_xx"] = np.zeros(1)
    with pytest.raises(ValueError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        variant_forward(x, h0, c0, q0, params, SPEC_FULL, **kw)
