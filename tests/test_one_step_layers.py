"""A one-step layer (a streaming step, a generation loop calling the module on one-step sequences)
runs as the compiled cell's one call: without a gradient ``functional.*_op._inference`` calls
``*_cell_forward``, with one the entry calls ``*_cell_step`` (its autograd node is C++'s). Checked
here: the same numbers as the cell kernels bit for bit, as the layer kernel within rounding, as
torch.nn in outputs, states and every gradient, and exact second derivatives."""

from __future__ import annotations

import pytest
import torch
from torch_oracle import TOLERANCE, assert_same, require_cpp

import lstmkit
from lstmkit import kernels
from lstmkit.functional import gru_layer, lstm_layer, rnn_layer

KINDS = {"lstm": lstmkit.LSTM, "gru": lstmkit.GRU, "rnn": lstmkit.RNN}
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
# two correct orders of the same sums (values of order 1) differ by less than this
ROUNDING = {torch.float64: {"rtol": 0.0, "atol": 1e-13}, torch.float32: {"rtol": 0.0, "atol": 1e-6}}


def _tensors(kind, B, I, H, dtype, bias=True):
    G = GATES[kind] * H
    g = torch.Generator().manual_seed(7)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype) * 0.5
    x, h, c = r(1, B, I), r(B, H), r(B, H)
    w_ih, w_hh = r(G, I), r(G, H)
    b_ih, b_hh = (r(G), r(G)) if bias else (None, None)
    return x, h, c, w_ih, w_hh, b_ih, b_hh


def _layer(kind, x, h, c, w_ih, w_hh, b_ih, b_hh):
    """y (T,B,H), h_n (B,H) (and c_n) through the functional entry."""
    if kind == "lstm":
        y, h_n, c_n, _, _ = lstm_layer(x, h, c, w_ih, w_hh, b_ih, b_hh, None, None)
        return y, h_n, c_n
    if kind == "gru":
        y, h_n, _ = gru_layer(x, h, w_ih, w_hh, b_ih, b_hh, None)
        return y, h_n
    return rnn_layer(x, h, w_ih, w_hh, b_ih, b_hh, "tanh", None)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("B,I,H", [(1, 7, 13), (3, 16, 40), (20, 30, 50)])
@pytest.mark.parametrize("bias", [True, False])
def test_one_step_without_a_gradient_is_the_cells_call_and_the_layers_sums(kind, dtype, B, I, H, bias):
    require_cpp()
    x, h, c, w_ih, w_hh, b_ih, b_hh = _tensors(kind, B, I, H, dtype, bias)
    rec = kernels.compiled_cells()
    with torch.no_grad():
        got = _layer(kind, x, h, c, w_ih, w_hh, b_ih, b_hh)
        if kind == "lstm":
            cell = rec.lstm_cell_forward(x[0], h, c, w_ih, w_hh, b_ih, b_hh)
        elif kind == "gru":
            cell = rec.gru_cell_forward(x[0], h, w_ih, w_hh, b_ih, b_hh)
        else:
            cell = [rec.rnn_cell_forward(x[0], h, w_ih, w_hh, b_ih, b_hh, "tanh")]
        assert torch.equal(got[0][0], cell[0]) and torch.equal(got[1], cell[0])
        if kind == "lstm":
            assert torch.equal(got[2], cell[1])
        # the layer kernel on the same step, the step written twice (a 2-step call: no one-step path)
        two = _layer(kind, x.expand(2, B, I), h, c, w_ih, w_hh, b_ih, b_hh)
    torch.testing.assert_close(got[0][0], two[0][0], **ROUNDING[dtype])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("B", [1, 3, 20])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("with_hx", [False, True])
def test_one_step_with_gradients_matches_torch_nn(kind, B, layers, with_hx):
    """Outputs, final states and the gradients of the input, the state and every parameter
    (float64, TOLERANCE), through the module as a training loop calls it."""
    require_cpp()
    torch.manual_seed(3)
    ours = KINDS[kind](6, 9, num_layers=layers, dtype=torch.float64)
    theirs = ours.to_torch()
    x = torch.randn(1, B, 6, dtype=torch.float64)
    hx = None
    if with_hx:
        hx = tuple(torch.randn(layers, B, 9, dtype=torch.float64) for _ in range(2 if kind == "lstm" else 1))
    assert_same(ours, theirs, x, hx)


@pytest.mark.parametrize("kind", KINDS)
def test_one_step_outputs_may_be_written_in_place_before_backward(kind):
    """As torch.nn allows: y and h_n are the caller's own tensors, not what the C++ node keeps."""
    require_cpp()
    torch.manual_seed(4)
    ours = KINDS[kind](4, 5, dtype=torch.float64)
    theirs = ours.to_torch()
    x = torch.randn(1, 2, 4, dtype=torch.float64)
    grads = []
    for m in (ours, theirs):
        y, state = m(x)
        h = state[0] if kind == "lstm" else state
        y.mul_(2.0)
        h.add_(1.0)
        (y.sum() + h.pow(2).sum()).backward()
        grads.append([p.grad.clone() for p in m.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, **TOLERANCE[torch.float64])


@pytest.mark.parametrize("kind", KINDS)
def test_one_step_second_derivatives_are_exact(kind):
    require_cpp()
    torch.manual_seed(5)
    m = KINDS[kind](3, 4, num_layers=2, dtype=torch.float64)
    x = torch.randn(1, 2, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 2, 4, dtype=torch.float64, requires_grad=True)

    def f(x, h0):
        hx = (h0, torch.zeros_like(h0)) if kind == "lstm" else h0
        y, _ = m(x, hx)
        return y
    assert torch.autograd.gradgradcheck(f, (x, h0))
