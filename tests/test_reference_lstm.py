"""Tests of lstmkit/reference/lstm.py, the article's LSTM: a ladder of oracles.

Finite differences (every element) -> step-by-step equals the whole sequence -> equal to
``torch.nn.LSTM`` in float64 (outputs and every gradient, atol 1e-12) -> the article's names are
PyTorch's row blocks. Not tested here: the fast paths (their own tests compare to this file).
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

from lstmkit.reference import LSTMWeights, lstm_backward, lstm_forward, lstm_step

T, B, I, H = 4, 2, 3, 5


def make_problem(seed: int = 0, T: int = T, B: int = B, I: int = I, H: int = H):
    """Random weights, inputs, initial states and output gradients (dhs, dh_T, dc_T)."""
    rng = np.random.default_rng(seed)
    w = LSTMWeights.random(I, H, rng)
    x, h0, c0 = rng.standard_normal((T, B, I)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    dhs, dh_T, dc_T = rng.standard_normal((T, B, H)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    return w, x, h0, c0, dhs, dh_T, dc_T


def test_backward_matches_finite_differences_on_every_element():
    """∂L/∂(x, h0, c0, every weight) from lstm_backward vs central differences, atol 1e-8."""
    w, x, h0, c0, dhs, dh_T, dc_T = make_problem()

    def loss() -> float:
        hs, (h_T, c_T), _ = lstm_forward(x, h0, c0, w)
        return float((hs * dhs).sum() + (h_T * dh_T).sum() + (c_T * dc_T).sum())

    _, _, cache = lstm_forward(x, h0, c0, w)
    grads = lstm_backward(dhs, dh_T, dc_T, cache, w)
    assert_matches_finite_differences(loss, {"dx": x, "dh0": h0, "dc0": c0, **weight_arrays(w)}, grads)


def test_forward_step_by_step_and_in_halves_equals_whole_sequence():
    """A loop of lstm_step, and two lstm_forward calls carrying (h, c), give the whole forward exactly."""
    w, x, h0, c0, *_ = make_problem()
    hs, (h_T, c_T), _ = lstm_forward(x, h0, c0, w)
    h, c = h0, c0
    for t in range(T):
        h, c, _ = lstm_step(x[t], h, c, w)
        assert_close(h, hs[t], atol=0)
    hs1, (h_mid, c_mid), _ = lstm_forward(x[:2], h0, c0, w)
    hs2, (h_end, c_end), _ = lstm_forward(x[2:], h_mid, c_mid, w)
    assert_close(np.concatenate([hs1, hs2]), hs, atol=0)
    assert_close(h_end, h_T, atol=0)
    assert_close(c_end, c_T, atol=0)


def test_backward_in_halves_equals_whole_sequence():
    """Backward of the second half, its (dh0, dc0) carried into the first half's (dh_T, dc_T),
    gives the whole backward: dx concatenated, weight gradients summed (atol 1e-13)."""
    w, x, h0, c0, dhs, dh_T, dc_T = make_problem()
    _, _, cache = lstm_forward(x, h0, c0, w)
    whole = lstm_backward(dhs, dh_T, dc_T, cache, w)
    _, (h_mid, c_mid), cache1 = lstm_forward(x[:2], h0, c0, w)
    _, _, cache2 = lstm_forward(x[2:], h_mid, c_mid, w)
    late = lstm_backward(dhs[2:], dh_T, dc_T, cache2, w)
    early = lstm_backward(dhs[:2], late.dh0, late.dc0, cache1, w)
    assert_close(np.concatenate([early.dx, late.dx]), whole.dx, atol=1e-13)
    assert_close(early.dh0, whole.dh0, atol=1e-13)
    assert_close(early.dc0, whole.dc0, atol=1e-13)
    for a, b, c in zip(early.to_torch(), late.to_torch(), whole.to_torch(), strict=True):
        assert_close(a + b, c, atol=1e-13)


def assert_matches_torch(seed: int, T: int, B: int, I: int, H: int) -> None:
    """Reference vs torch.nn.LSTM (both biases random): hs, h_T, c_T and every gradient, atol 1e-12."""
    rng = np.random.default_rng(seed)
    module = random_torch_module(torch.nn.LSTM, 4, I, H, rng)
    w = LSTMWeights.from_torch(*module.parameters())
    _, x, h0, c0, dhs, dh_T, dc_T = make_problem(seed + 1, T, B, I, H)
    hs, (h_T, c_T), cache = lstm_forward(x, h0, c0, w)
    grads = lstm_backward(dhs, dh_T, dc_T, cache, w)
    ref = torch_run(module, x, [h0, c0], dhs, [dh_T, dc_T])
    for name, ours, theirs in [("hs", hs, ref["hs"]), ("h_T", h_T, ref["finals"][0]),
                               ("c_T", c_T, ref["finals"][1]), ("dx", grads.dx, ref["dx"]),
                               ("dh0", grads.dh0, ref["dstates"][0]), ("dc0", grads.dc0, ref["dstates"][1])]:
        assert_close(ours, theirs, err_msg=name)
    dw_ih, dw_hh, db = grads.to_torch()
    for name, ours, theirs in zip(["dw_ih", "dw_hh", "db_ih", "db_hh"], [dw_ih, dw_hh, db, db],
                                  ref["dparams"], strict=True):
        assert_close(ours, theirs, err_msg=name)


def test_matches_torch_lstm_outputs_and_every_gradient():
    assert_matches_torch(0, T, B, I, H)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), T=st.integers(1, 6), B=st.integers(1, 3),
       I=st.integers(1, 4), H=st.integers(1, 5))
def test_matches_torch_lstm_over_random_sizes(seed, T, B, I, H):
    assert_matches_torch(seed, T, B, I, H)


def test_from_torch_to_torch_round_trip():
    """Weights survive both directions; the two torch biases arrive summed (b_ih + b_hh)."""
    rng = np.random.default_rng(3)
    w_ih, w_hh, b_ih, b_hh = torch_params(random_torch_module(torch.nn.LSTM, 4, I, H, rng))
    out_ih, out_hh, out_bih, out_bhh = LSTMWeights.from_torch(w_ih, w_hh, b_ih, b_hh).to_torch()
    assert_close(out_ih, w_ih, atol=0)
    assert_close(out_hh, w_hh, atol=0)
    assert_close(out_bih, b_ih + b_hh, atol=0)
    assert_close(out_bhh, np.zeros(4 * H), atol=0)
    no_bias = LSTMWeights.from_torch(w_ih, w_hh)
    assert_close(no_bias.b_f, np.zeros(H), atol=0)


def test_article_names_are_pytorch_row_blocks_in_order_i_f_g_o():
    """W_x<g>, W_h<g>, b_<g> for g = i, f, c, o are rows [kH:(k+1)H] of PyTorch's stacked tensors."""
    rng = np.random.default_rng(4)
    w_ih, w_hh, b_ih, b_hh = torch_params(random_torch_module(torch.nn.LSTM, 4, I, H, rng))
    w = LSTMWeights.from_torch(w_ih, w_hh, b_ih, b_hh)
    for k, g in enumerate("ifco"):
        rows = slice(k * H, (k + 1) * H)
        assert_close(getattr(w, f"W_x{g}"), w_ih[rows], atol=0)
        assert_close(getattr(w, f"W_h{g}"), w_hh[rows], atol=0)
        assert_close(getattr(w, f"b_{g}"), b_ih[rows] + b_hh[rows], atol=0)


def test_huge_forget_bias_by_article_name_keeps_the_cell_in_both_implementations():
    """b_f = +40 (f_t ≈ 1) and b_i = -40 (i_t ≈ 0): the cell keeps c0 through every step, in the
    reference and in torch.nn.LSTM loaded from to_torch() (atol 1e-12): the names hit the right rows."""
    w, x, h0, c0, *_ = make_problem(5)
    w.b_f[:] = 40.0
    w.b_i[:] = -40.0
    _, (_, c_T), cache = lstm_forward(x, h0, c0, w)
    assert cache.stacked("f_t").min() > 1 - 1e-12
    assert cache.stacked("i_t").max() < 1e-12
    assert_close(c_T, c0, atol=1e-12)
    module = torch.nn.LSTM(I, H).double()
    with torch.no_grad():
        for p, a in zip(module.parameters(), w.to_torch(), strict=True):
            p.copy_(torch.from_numpy(a))
    _, (_, c_T_torch) = module(torch.from_numpy(x), (torch.from_numpy(h0)[None], torch.from_numpy(c0)[None]))
    assert_close(c_T_torch[0].detach().numpy(), c0, atol=1e-12)


def test_step_cache_holds_the_article_quantities():
    """The step cache's values satisfy the article's two state equations (atol 1e-15)."""
    w, x, h0, c0, *_ = make_problem(6)
    _, _, s = lstm_step(x[0], h0, c0, w)
    assert_close(s.c_t, s.f_t * s.c_prev + s.i_t * s.c_tilde, atol=1e-15)
    assert_close(s.h_t, s.o_t * np.tanh(s.c_t), atol=1e-15)
    assert_close(s.f_t, 1 / (1 + np.exp(-s.Z_f)), atol=1e-15)


def test_bad_shapes_raise_value_errors_naming_the_argument():
    w, x, h0, c0, *_ = make_problem()
    with pytest.raises(ValueError, match=r"w_ih of shape \(4H, I\)"):
        LSTMWeights.from_torch(np.zeros((7, I)), np.zeros((4 * H, H)))
    with pytest.raises(ValueError, match=r"b_hh must have shape \(20,\)"):
        LSTMWeights.from_torch(np.zeros((4 * H, I)), np.zeros((4 * H, H)), None, np.zeros(5))
    with pytest.raises(ValueError, match=r"x must have shape \(T, B, I\) with I = 3, got \(4, 2, 2\)"):
        lstm_forward(x[..., :2], h0, c0, w)
    with pytest.raises(ValueError, match=r"c0 must have shape \(B, H\)"):
        lstm_forward(x, h0, c0[:1], w)
