"""Tests of lstmkit/reference/, the NumPy specification of every model in ``lstmkit.registry``:
a ladder of oracles, then what only one model has.

The ladder, for each model (the RNN with tanh and with relu): finite differences (every element,
atol 1e-8) -> step by step and in halves equals the whole sequence -> equal to its ``torch.nn``
twin in float64 (outputs and every gradient, atol 1e-12). Then, per model: the names are PyTorch's
row blocks in order, a saturated gate keeps the state in both implementations, bad arguments are
named. Not tested here: the fast paths (their own tests compare to the reference).
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_helpers import (
    CASES,
    assert_close,
    assert_matches_finite_differences,
    make_problem,
    random_torch_module,
    torch_params,
    torch_run,
    weight_arrays,
)

from lstmkit.reference import (
    GRUWeights,
    LSTMWeights,
    RNNWeights,
    gru_forward,
    lstm_forward,
    lstm_step,
    rnn_forward,
)

T, B, I, H = 4, 2, 3, 5
IDS = [case.id for case in CASES]


# -- the ladder, for every model ---------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_backward_matches_finite_differences_on_every_element(case):
    """∂L/∂(x, every initial state, every weight) from the reference backward vs central
    differences, atol 1e-8."""
    p = make_problem(case)

    def loss() -> float:
        hs, finals, _ = case.forward(p.x, p.states, p.w)
        return float((hs * p.dhs).sum() + sum((f * d).sum() for f, d in zip(finals, p.dfinals, strict=True)))

    _, _, cache = case.forward(p.x, p.states, p.w)
    grads = case.backward(p.dhs, p.dfinals, cache, p.w)
    states = {f"d{name}0": s for name, s in zip(case.entry.states, p.states, strict=True)}
    assert_matches_finite_differences(loss, {"dx": p.x, **states, **weight_arrays(p.w)}, grads)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_and_backward_step_by_step_and_in_halves_equal_whole_sequence(case):
    """A loop of the step, and two forwards carrying the state, give the whole forward exactly;
    backward of the second half, its initial-state gradients carried into the first half, gives
    the whole backward: dx concatenated, weight gradients summed (atol 1e-13)."""
    p = make_problem(case, 1)
    hs, finals, cache = case.forward(p.x, p.states, p.w)
    states = p.states
    for t in range(T):
        states, _ = case.step(p.x[t], states, p.w)
        assert_close(states[0], hs[t], atol=0)
    hs1, mid, cache1 = case.forward(p.x[:2], p.states, p.w)
    hs2, end, cache2 = case.forward(p.x[2:], mid, p.w)
    assert_close(np.concatenate([hs1, hs2]), hs, atol=0)
    for a, b in zip(end, finals, strict=True):
        assert_close(a, b, atol=0)
    whole = case.backward(p.dhs, p.dfinals, cache, p.w)
    late = case.backward(p.dhs[2:], p.dfinals, cache2, p.w)
    early = case.backward(p.dhs[:2], case.state_grads(late), cache1, p.w)
    assert_close(np.concatenate([early.dx, late.dx]), whole.dx, atol=1e-13)
    for a, b in zip(case.state_grads(early), case.state_grads(whole), strict=True):
        assert_close(a, b, atol=1e-13)
    for a, b, c in zip(early.to_torch(), late.to_torch(), whole.to_torch(), strict=True):
        assert_close(a + b, c, atol=1e-13)


def assert_matches_torch(case, seed: int, T: int, B: int, I: int, H: int) -> None:
    """Reference vs the torch.nn twin (both biases random): outputs, final states and every
    gradient, atol 1e-12."""
    module = case.torch_module(I, H, np.random.default_rng(seed))
    w = case.weights.from_torch(*module.parameters())
    p = make_problem(case, seed + 1, T, B, I, H)
    hs, finals, cache = case.forward(p.x, p.states, w)
    grads = case.backward(p.dhs, p.dfinals, cache, w)
    ref = torch_run(module, p.x, p.states, p.dhs, p.dfinals)
    assert_close(hs, ref["hs"], err_msg="hs")
    assert_close(grads.dx, ref["dx"], err_msg="dx")
    for name, final, theirs in zip(case.entry.states, finals, ref["finals"], strict=True):
        assert_close(final, theirs, err_msg=f"{name}_T")
    for name, ours, theirs in zip(case.entry.states, case.state_grads(grads), ref["dstates"], strict=True):
        assert_close(ours, theirs, err_msg=f"d{name}0")
    for name, ours, theirs in zip(["dw_ih", "dw_hh", "db_ih", "db_hh"], case.torch_grads(grads), ref["dparams"],
                                  strict=True):
        assert_close(ours, theirs, err_msg=name)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matches_its_torch_twin_outputs_and_every_gradient(case):
    assert_matches_torch(case, 0, T, B, I, H)


@pytest.mark.parametrize("case", CASES, ids=IDS)
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), T=st.integers(1, 6), B=st.integers(1, 3), I=st.integers(1, 4),
       H=st.integers(1, 5))
def test_matches_its_torch_twin_over_random_sizes(case, seed, T, B, I, H):
    assert_matches_torch(case, seed, T, B, I, H)


# -- the LSTM: the article's names ---------------------------------------------------------------

def test_lstm_from_torch_to_torch_round_trip():
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


def test_lstm_article_names_are_pytorch_row_blocks_in_order_i_f_g_o():
    """W_x<g>, W_h<g>, b_<g> for g = i, f, c, o are rows [kH:(k+1)H] of PyTorch's stacked tensors."""
    rng = np.random.default_rng(4)
    w_ih, w_hh, b_ih, b_hh = torch_params(random_torch_module(torch.nn.LSTM, 4, I, H, rng))
    w = LSTMWeights.from_torch(w_ih, w_hh, b_ih, b_hh)
    for k, g in enumerate("ifco"):
        rows = slice(k * H, (k + 1) * H)
        assert_close(getattr(w, f"W_x{g}"), w_ih[rows], atol=0)
        assert_close(getattr(w, f"W_h{g}"), w_hh[rows], atol=0)
        assert_close(getattr(w, f"b_{g}"), b_ih[rows] + b_hh[rows], atol=0)


def load_into_torch(module: torch.nn.Module, w) -> torch.nn.Module:
    """``module`` with the reference weights ``w`` (``w.to_torch()``, in parameter order)."""
    with torch.no_grad():
        for p, a in zip(module.parameters(), w.to_torch(), strict=True):
            p.copy_(torch.from_numpy(a))
    return module


def test_lstm_huge_forget_bias_by_article_name_keeps_the_cell_in_both_implementations():
    """b_f = +40 (f_t ≈ 1) and b_i = -40 (i_t ≈ 0): the cell keeps c0 through every step, in the
    reference and in torch.nn.LSTM loaded from to_torch() (atol 1e-12): the names hit the right rows."""
    p = make_problem(CASES[0], 5)
    (h0, c0), w = p.states, p.w
    w.b_f[:] = 40.0
    w.b_i[:] = -40.0
    _, (_, c_T), cache = lstm_forward(p.x, h0, c0, w)
    assert cache.stacked("f_t").min() > 1 - 1e-12
    assert cache.stacked("i_t").max() < 1e-12
    assert_close(c_T, c0, atol=1e-12)
    module = load_into_torch(torch.nn.LSTM(I, H).double(), w)
    _, (_, c_T_torch) = module(torch.from_numpy(p.x), (torch.from_numpy(h0)[None], torch.from_numpy(c0)[None]))
    assert_close(c_T_torch[0].detach().numpy(), c0, atol=1e-12)


def test_lstm_step_cache_holds_the_article_quantities():
    """The step cache's values satisfy the article's two state equations (atol 1e-15)."""
    p = make_problem(CASES[0], 6)
    _, _, s = lstm_step(p.x[0], *p.states, p.w)
    assert_close(s.c_t, s.f_t * s.c_prev + s.i_t * s.c_tilde, atol=1e-15)
    assert_close(s.h_t, s.o_t * np.tanh(s.c_t), atol=1e-15)
    assert_close(s.f_t, 1 / (1 + np.exp(-s.Z_f)), atol=1e-15)


def test_lstm_bad_shapes_raise_value_errors_naming_the_argument():
    p = make_problem(CASES[0])
    (h0, c0), w = p.states, p.w
    with pytest.raises(ValueError, match=r"w_ih of shape \(4H, I\)"):
        LSTMWeights.from_torch(np.zeros((7, I)), np.zeros((4 * H, H)))
    with pytest.raises(ValueError, match=r"b_hh must have shape \(20,\)"):
        LSTMWeights.from_torch(np.zeros((4 * H, I)), np.zeros((4 * H, H)), None, np.zeros(5))
    with pytest.raises(ValueError, match=r"x must have shape \(T, B, I\) with I = 3, got \(4, 2, 2\)"):
        lstm_forward(p.x[..., :2], h0, c0, w)
    with pytest.raises(ValueError, match=r"c0 must have shape \(B, H\)"):
        lstm_forward(p.x, h0, c0[:1], w)


# -- the GRU: PyTorch's equations, row blocks r, z, n ---------------------------------------------

def test_gru_from_torch_to_torch_round_trip_and_row_blocks_in_order_r_z_n():
    """to_torch(from_torch(p)) == p exactly, and W_i<g>, W_h<g>, b_i<g>, b_h<g> are rows [kH:(k+1)H]."""
    params = torch_params(random_torch_module(torch.nn.GRU, 3, I, H, np.random.default_rng(2)))
    w = GRUWeights.from_torch(*params)
    for ours, theirs in zip(w.to_torch(), params, strict=True):
        assert_close(ours, theirs, atol=0)
    for k, g in enumerate("rzn"):
        rows = slice(k * H, (k + 1) * H)
        for name, stacked in zip((f"W_i{g}", f"W_h{g}", f"b_i{g}", f"b_h{g}"), params, strict=True):
            assert_close(getattr(w, name), stacked[rows], atol=0, err_msg=name)


def test_gru_huge_update_bias_keeps_the_hidden_state_in_both_implementations():
    """b_iz = +40 makes z_t ≈ 1, so h_t = h_{t-1}: the reference and torch.nn.GRU loaded from
    to_torch() both return h_T = h0 (atol 1e-12): b_iz hits torch's z rows."""
    p = make_problem(CASES[1], 5)
    (h0,), w = p.states, p.w
    w.b_iz[:] = 40.0
    _, h_T, cache = gru_forward(p.x, h0, w)
    assert cache.stacked("z_t").min() > 1 - 1e-12
    assert_close(h_T, h0, atol=1e-12)
    module = load_into_torch(torch.nn.GRU(I, H).double(), w)
    _, h_T_torch = module(torch.from_numpy(p.x), torch.from_numpy(h0)[None])
    assert_close(h_T_torch[0].detach().numpy(), h0, atol=1e-12)


def test_gru_bad_shapes_raise_value_errors_naming_the_argument():
    p = make_problem(CASES[1])
    with pytest.raises(ValueError, match=r"w_ih of shape \(3H, I\) and w_hh of shape \(3H, H\)"):
        GRUWeights.from_torch(np.zeros((4 * H, I)), np.zeros((4 * H, H)))
    with pytest.raises(ValueError, match=r"b_hh must have shape \(15,\), got \(5,\)"):
        GRUWeights.from_torch(np.zeros((3 * H, I)), np.zeros((3 * H, H)), None, np.zeros(5))
    with pytest.raises(ValueError, match=r"x must have shape \(T, B, I\)"):
        gru_forward(p.x[0], p.states[0], p.w)


# -- the plain RNN: tanh and relu ----------------------------------------------------------------

@pytest.mark.parametrize("case", [c for c in CASES if c.name == "rnn"], ids=lambda c: c.id)
def test_rnn_finite_difference_problem_exercises_relu_and_never_crosses_its_kink(case):
    """The problem of the finite-difference test: every pre-activation is far from relu's kink at 0
    compared with eps, and (relu) both branches of relu' are exercised."""
    p = make_problem(case)
    _, _, cache = case.forward(p.x, p.states, p.w)
    assert np.abs(cache.stacked("Z_t")).min() > 1e-4  # the FD stencil never crosses relu's kink
    if case.nonlinearity == "relu":
        assert 0 < (cache.stacked("h_t") == 0).mean() < 1  # both branches of relu' are exercised


def test_rnn_from_torch_to_torch_round_trip():
    """The four tensors come back unchanged (exact); missing biases become zeros."""
    params = torch_params(random_torch_module(torch.nn.RNN, 1, I, H, np.random.default_rng(2)))
    for ours, theirs in zip(RNNWeights.from_torch(*params).to_torch(), params, strict=True):
        assert_close(ours, theirs, atol=0)
    assert_close(RNNWeights.from_torch(*params[:2]).b_hh, np.zeros(H), atol=0)


def test_rnn_bad_arguments_raise_value_errors_naming_the_argument():
    p = make_problem(CASES[2])
    (h0,), w = p.states, p.w
    with pytest.raises(ValueError, match=r"nonlinearity must be one of \('tanh', 'relu'\), got 'sigmoid'"):
        rnn_forward(p.x, h0, w, "sigmoid")
    with pytest.raises(ValueError, match=r"h0 must have shape \(B, H\) = \(2, 5\), got \(2, 4\)"):
        rnn_forward(p.x, h0[:, :4], w)
    with pytest.raises(ValueError, match=r"b_ih must have shape \(5,\)"):
        RNNWeights.from_torch(np.zeros((H, I)), np.zeros((H, H)), np.zeros(4))
