"""Tests of lstmkit/reference/gru.py, the GRU with PyTorch's equations: a ladder of oracles.

Finite differences (every element, atol 1e-8) -> step-by-step equals the whole sequence ->
equal to ``torch.nn.GRU`` in float64 (outputs and every gradient, atol 1e-12) -> names are
PyTorch's row blocks in order r, z, n.
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_helpers import (
    assert_close,
    assert_matches_finite_differences,
    random_torch_module,
    torch_params,
    torch_run,
    weight_arrays,
)

from lstmkit.reference import GRUWeights, gru_backward, gru_forward, gru_step

T, B, I, H = 4, 2, 3, 5


def make_problem(seed: int = 0, T: int = T, B: int = B, I: int = I, H: int = H):
    """Random weights, inputs, h0 and output gradients (dhs, dh_T)."""
    rng = np.random.default_rng(seed)
    w = GRUWeights.random(I, H, rng)
    x, h0 = rng.standard_normal((T, B, I)), rng.standard_normal((B, H))
    dhs, dh_T = rng.standard_normal((T, B, H)), rng.standard_normal((B, H))
    return w, x, h0, dhs, dh_T


def test_backward_matches_finite_differences_on_every_element():
    """∂L/∂(x, h0, all six W and six b) from gru_backward vs central differences, atol 1e-8."""
    w, x, h0, dhs, dh_T = make_problem()

    def loss() -> float:
        hs, h_T, _ = gru_forward(x, h0, w)
        return float((hs * dhs).sum() + (h_T * dh_T).sum())

    _, _, cache = gru_forward(x, h0, w)
    grads = gru_backward(dhs, dh_T, cache, w)
    assert_matches_finite_differences(loss, {"dx": x, "dh0": h0, **weight_arrays(w)}, grads)


def test_forward_and_backward_in_halves_equal_whole_sequence():
    """gru_step in a loop equals gru_forward exactly; backward of two halves carrying dh equals the
    whole backward (atol 1e-13)."""
    w, x, h0, dhs, dh_T = make_problem(1)
    hs, h_T, cache = gru_forward(x, h0, w)
    h = h0
    for t in range(T):
        h, _ = gru_step(x[t], h, w)
        assert_close(h, hs[t], atol=0)
    whole = gru_backward(dhs, dh_T, cache, w)
    _, h_mid, cache1 = gru_forward(x[:2], h0, w)
    _, _, cache2 = gru_forward(x[2:], h_mid, w)
    late = gru_backward(dhs[2:], dh_T, cache2, w)
    early = gru_backward(dhs[:2], late.dh0, cache1, w)
    assert_close(np.concatenate([early.dx, late.dx]), whole.dx, atol=1e-13)
    assert_close(early.dh0, whole.dh0, atol=1e-13)
    for a, b, c in zip(early.to_torch(), late.to_torch(), whole.to_torch(), strict=True):
        assert_close(a + b, c, atol=1e-13)


def assert_matches_torch(seed: int, T: int, B: int, I: int, H: int) -> None:
    """Reference vs torch.nn.GRU: hs, h_T and every gradient (both bias vectors), atol 1e-12."""
    rng = np.random.default_rng(seed)
    module = random_torch_module(torch.nn.GRU, 3, I, H, rng)
    w = GRUWeights.from_torch(*module.parameters())
    _, x, h0, dhs, dh_T = make_problem(seed + 1, T, B, I, H)
    hs, h_T, cache = gru_forward(x, h0, w)
    grads = gru_backward(dhs, dh_T, cache, w)
    ref = torch_run(module, x, [h0], dhs, [dh_T])
    assert_close(hs, ref["hs"], err_msg="hs")
    assert_close(h_T, ref["finals"][0], err_msg="h_T")
    assert_close(grads.dx, ref["dx"], err_msg="dx")
    assert_close(grads.dh0, ref["dstates"][0], err_msg="dh0")
    for name, ours, theirs in zip(["dw_ih", "dw_hh", "db_ih", "db_hh"], grads.to_torch(), ref["dparams"],
                                  strict=True):
        assert_close(ours, theirs, err_msg=name)


def test_matches_torch_gru_outputs_and_every_gradient():
    assert_matches_torch(0, T, B, I, H)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), T=st.integers(1, 6), B=st.integers(1, 3),
       I=st.integers(1, 4), H=st.integers(1, 5))
def test_matches_torch_gru_over_random_sizes(seed, T, B, I, H):
    assert_matches_torch(seed, T, B, I, H)


def test_from_torch_to_torch_round_trip_and_row_blocks_in_order_r_z_n():
    """to_torch(from_torch(p)) == p exactly, and W_i<g>, W_h<g>, b_i<g>, b_h<g> are rows [kH:(k+1)H]."""
    params = torch_params(random_torch_module(torch.nn.GRU, 3, I, H, np.random.default_rng(2)))
    w = GRUWeights.from_torch(*params)
    for ours, theirs in zip(w.to_torch(), params, strict=True):
        assert_close(ours, theirs, atol=0)
    for k, g in enumerate("rzn"):
        rows = slice(k * H, (k + 1) * H)
        for name, stacked in zip((f"W_i{g}", f"W_h{g}", f"b_i{g}", f"b_h{g}"), params, strict=True):
            assert_close(getattr(w, name), stacked[rows], atol=0, err_msg=name)


def test_huge_update_bias_keeps_the_hidden_state_in_both_implementations():
    """b_iz = +40 makes z_t ≈ 1, so h_t = h_{t-1}: the reference and torch.nn.GRU loaded from
    to_torch() both return h_T = h0 (atol 1e-12): b_iz hits torch's z rows."""
    w, x, h0, _, _ = make_problem(5)
    w.b_iz[:] = 40.0
    _, h_T, cache = gru_forward(x, h0, w)
    assert cache.stacked("z_t").min() > 1 - 1e-12
    assert_close(h_T, h0, atol=1e-12)
    module = torch.nn.GRU(I, H).double()
    with torch.no_grad():
        for p, a in zip(module.parameters(), w.to_torch(), strict=True):
            p.copy_(torch.from_numpy(a))
    _, h_T_torch = module(torch.from_numpy(x), torch.from_numpy(h0)[None])
    assert_close(h_T_torch[0].detach().numpy(), h0, atol=1e-12)


def test_bad_shapes_raise_value_errors_naming_the_argument():
    w, x, h0, _, _ = make_problem()
    with pytest.raises(ValueError, match=r"w_ih of shape \(3H, I\) and w_hh of shape \(3H, H\)"):
        GRUWeights.from_torch(np.zeros((4 * H, I)), np.zeros((4 * H, H)))
    with pytest.raises(ValueError, match=r"b_hh must have shape \(15,\), got \(5,\)"):
        GRUWeights.from_torch(np.zeros((3 * H, I)), np.zeros((3 * H, H)), None, np.zeros(5))
    with pytest.raises(ValueError, match=r"x must have shape \(T, B, I\)"):
        gru_forward(x[0], h0, w)
