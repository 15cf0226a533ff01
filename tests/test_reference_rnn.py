"""Tests of lstmkit/reference/rnn.py, the plain RNN (tanh and relu): a ladder of oracles.

Finite differences (every element, atol 1e-8) -> step-by-step equals the whole sequence ->
equal to ``torch.nn.RNN`` in float64 (outputs and every gradient, atol 1e-12).
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

from lstmkit.reference import RNNWeights, rnn_backward, rnn_forward, rnn_step

T, B, I, H = 4, 2, 3, 5
NONLINEARITIES = ["tanh", "relu"]


def make_problem(seed: int = 0, T: int = T, B: int = B, I: int = I, H: int = H):
    """Random weights, inputs, h0 and output gradients (dhs, dh_T)."""
    rng = np.random.default_rng(seed)
    w = RNNWeights.random(I, H, rng)
    x, h0 = rng.standard_normal((T, B, I)), rng.standard_normal((B, H))
    dhs, dh_T = rng.standard_normal((T, B, H)), rng.standard_normal((B, H))
    return w, x, h0, dhs, dh_T


@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_backward_matches_finite_differences_on_every_element(nonlinearity):
    """∂L/∂(x, h0, w_ih, w_hh, b_ih, b_hh) from rnn_backward vs central differences, atol 1e-8.
    (relu: random inputs keep every pre-activation far from the kink at 0 compared with eps.)"""
    w, x, h0, dhs, dh_T = make_problem()

    def loss() -> float:
        hs, h_T, _ = rnn_forward(x, h0, w, nonlinearity)
        return float((hs * dhs).sum() + (h_T * dh_T).sum())

    _, _, cache = rnn_forward(x, h0, w, nonlinearity)
    assert np.abs(cache.stacked("Z_t")).min() > 1e-4  # the FD stencil never crosses relu's kink
    if nonlinearity == "relu":
        assert 0 < (cache.stacked("h_t") == 0).mean() < 1  # both branches of relu' are exercised
    grads = rnn_backward(dhs, dh_T, cache, w)
    assert_matches_finite_differences(loss, {"dx": x, "dh0": h0, **weight_arrays(w)}, grads)


@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_forward_and_backward_in_halves_equal_whole_sequence(nonlinearity):
    """rnn_step in a loop equals rnn_forward exactly; backward of two halves carrying dh equals the
    whole backward (atol 1e-13)."""
    w, x, h0, dhs, dh_T = make_problem(1)
    hs, h_T, cache = rnn_forward(x, h0, w, nonlinearity)
    h = h0
    for t in range(T):
        h, _ = rnn_step(x[t], h, w, nonlinearity)
        assert_close(h, hs[t], atol=0)
    whole = rnn_backward(dhs, dh_T, cache, w)
    _, h_mid, cache1 = rnn_forward(x[:2], h0, w, nonlinearity)
    _, _, cache2 = rnn_forward(x[2:], h_mid, w, nonlinearity)
    late = rnn_backward(dhs[2:], dh_T, cache2, w)
    early = rnn_backward(dhs[:2], late.dh0, cache1, w)
    assert_close(np.concatenate([early.dx, late.dx]), whole.dx, atol=1e-13)
    assert_close(early.dh0, whole.dh0, atol=1e-13)
    for a, b, c in zip(early.to_torch(), late.to_torch(), whole.to_torch(), strict=True):
        assert_close(a + b, c, atol=1e-13)


def assert_matches_torch(seed: int, T: int, B: int, I: int, H: int, nonlinearity: str) -> None:
    """Reference vs torch.nn.RNN: hs, h_T and every gradient, atol 1e-12."""
    rng = np.random.default_rng(seed)
    module = random_torch_module(torch.nn.RNN, 1, I, H, rng, nonlinearity=nonlinearity)
    w = RNNWeights.from_torch(*module.parameters())
    _, x, h0, dhs, dh_T = make_problem(seed + 1, T, B, I, H)
    hs, h_T, cache = rnn_forward(x, h0, w, nonlinearity)
    grads = rnn_backward(dhs, dh_T, cache, w)
    ref = torch_run(module, x, [h0], dhs, [dh_T])
    assert_close(hs, ref["hs"], err_msg="hs")
    assert_close(h_T, ref["finals"][0], err_msg="h_T")
    assert_close(grads.dx, ref["dx"], err_msg="dx")
    assert_close(grads.dh0, ref["dstates"][0], err_msg="dh0")
    for name, ours, theirs in zip(["dw_ih", "dw_hh", "db_ih", "db_hh"], grads.to_torch(), ref["dparams"],
                                  strict=True):
        assert_close(ours, theirs, err_msg=name)


@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_matches_torch_rnn_outputs_and_every_gradient(nonlinearity):
    assert_matches_torch(0, T, B, I, H, nonlinearity)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), T=st.integers(1, 6), B=st.integers(1, 3), I=st.integers(1, 4),
       H=st.integers(1, 5), nonlinearity=st.sampled_from(NONLINEARITIES))
def test_matches_torch_rnn_over_random_sizes(seed, T, B, I, H, nonlinearity):
    assert_matches_torch(seed, T, B, I, H, nonlinearity)


def test_from_torch_to_torch_round_trip():
    """The four tensors come back unchanged (exact); missing biases become zeros."""
    params = torch_params(random_torch_module(torch.nn.RNN, 1, I, H, np.random.default_rng(2)))
    for ours, theirs in zip(RNNWeights.from_torch(*params).to_torch(), params, strict=True):
        assert_close(ours, theirs, atol=0)
    assert_close(RNNWeights.from_torch(*params[:2]).b_hh, np.zeros(H), atol=0)


def test_bad_arguments_raise_value_errors_naming_the_argument():
    w, x, h0, _, _ = make_problem()
    with pytest.raises(ValueError, match=r"nonlinearity must be one of \('tanh', 'relu'\), got 'sigmoid'"):
        rnn_forward(x, h0, w, "sigmoid")
    with pytest.raises(ValueError, match=r"h0 must have shape \(B, H\) = \(2, 5\), got \(2, 4\)"):
        rnn_forward(x, h0[:, :4], w)
    with pytest.raises(ValueError, match=r"b_ih must have shape \(5,\)"):
        RNNWeights.from_torch(np.zeros((H, I)), np.zeros((H, H)), np.zeros(4))
