"""What torch.nn.LSTM lacks, each checked against an oracle: lengths= equals the PackedSequence
result, traces equal the reference's gates and states, forget_bias / update_bias shift exactly the
keep gate's block and chrono draws it in its stated range, T streaming steps equal one T-step call,
and weights move to and from torch.nn unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch_oracle import BACKENDS, assert_same, use_backend

import lstmkit
from lstmkit import reference
from lstmkit.registry import NAMES, RECURRENT

F64 = {"rtol": 0.0, "atol": 1e-9}
KINDS = {name: r.module for name, r in RECURRENT.items()}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", NAMES)
@settings(max_examples=10, deadline=None)
@given(batch=st.integers(1, 4), layers=st.integers(1, 2), bidirectional=st.booleans(),
       batch_first=st.booleans(), data=st.data())
def test_lengths_equal_packed_sequence_through_torch(backend, kind, batch, layers, bidirectional, batch_first,
                                                     data):
    """lengths= on padded input gives torch.nn's packed result: outputs (zero on padding), final
    states, and every gradient — no sorting or packing by the user."""
    torch.manual_seed(batch)
    ours = KINDS[kind](3, 4, layers, bidirectional=bidirectional, batch_first=batch_first, dtype=torch.float64)
    theirs = ours.to_torch()
    lengths = torch.tensor(data.draw(st.lists(st.integers(1, 5), min_size=batch, max_size=batch)))
    T = int(lengths.max()) + data.draw(st.integers(0, 2))          # extra padding beyond the longest
    x = torch.randn(*((batch, T) if batch_first else (T, batch)), 3, dtype=torch.float64)

    class PackedTorch(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = theirs

        def forward(self, x, hx=None):
            packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
            y, state = self.inner(packed, hx)
            y, _ = pad_packed_sequence(y, batch_first=batch_first, total_length=T)
            return y, state

    class Padded(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = ours

        def forward(self, x, hx=None):
            return self.inner(x, hx, lengths=lengths)

    with use_backend(backend):
        assert_same(Padded(), PackedTorch(), x)


def test_lstm_trace_equals_reference_gates_and_states():
    """Every traced tensor equals the NumPy reference's i_t, f_t, c̃_t, o_t, c_t, h_t, per layer and
    direction (the reverse direction against the reference run on the reversed sequence)."""
    torch.manual_seed(0)
    lstm = lstmkit.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True, dtype=torch.float64)
    x = torch.randn(2, 5, 3, dtype=torch.float64)                   # (B,T,I)
    y, _, trace = lstm(x, return_trace=True)
    layer_input = x.transpose(0, 1).numpy()                         # (T,B,I)
    for layer in range(2):
        outs = []
        for direction in range(2):
            sfx = f"_l{layer}" + ("_reverse" if direction else "")
            w = reference.LSTMWeights.from_torch(*(getattr(lstm, n + sfx) for n in
                                                  ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
            seq = layer_input[::-1] if direction else layer_input
            hs, _, cache = reference.lstm_forward(seq, np.zeros((2, 4)), np.zeros((2, 4)), w)
            flip = (lambda a: a[::-1]) if direction else (lambda a: a)
            t = trace[layer][direction]
            for field, name in [("input_gate", "i_t"), ("forget_gate", "f_t"), ("candidate", "c_tilde"),
                                ("output_gate", "o_t"), ("cell", "c_t"), ("hidden", "h_t")]:
                expected = np.ascontiguousarray(flip(cache.stacked(name))).transpose(1, 0, 2)  # (B,T,H)
                np.testing.assert_allclose(getattr(t, field).detach().numpy(), expected, atol=1e-12,
                                           err_msg=f"layer {layer} direction {direction} {field}")
            outs.append(flip(hs))
        layer_input = np.concatenate(outs, axis=2)
    np.testing.assert_allclose(y.detach().numpy(), layer_input.transpose(1, 0, 2), atol=1e-12)


def test_trace_with_lengths_is_zero_on_padding_and_matches_output():
    lstm = lstmkit.LSTM(2, 3, bidirectional=True, dtype=torch.float64)
    x = torch.randn(6, 2, 2, dtype=torch.float64)
    lengths = torch.tensor([6, 3])
    y, _, trace = lstm(x, lengths=lengths, return_trace=True)
    for t in trace[0]:
        for field in ("input_gate", "forget_gate", "candidate", "output_gate", "cell", "hidden"):
            assert getattr(t, field)[3:, 1].abs().max() == 0, field
            assert getattr(t, field)[:3, 1].abs().min() > 0, field
    torch.testing.assert_close(torch.cat([trace[0][0].hidden, trace[0][1].hidden], dim=2), y)


@pytest.mark.parametrize("kind", ["gru", "rnn"])
def test_gru_and_rnn_traces_match_reference(kind):
    torch.manual_seed(1)
    module = KINDS[kind](3, 4, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    y, _, trace = module(x, return_trace=True)
    params = [p.detach().numpy() for p in module.parameters()]
    if kind == "gru":
        w = reference.GRUWeights.from_torch(*params)
        _, _, cache = reference.gru_forward(x.numpy(), np.zeros((2, 4)), w)
        got = trace[0][0]
        for field, name in [("reset_gate", "r_t"), ("update_gate", "z_t"), ("candidate", "n_t")]:
            np.testing.assert_allclose(getattr(got, field).detach().numpy(), cache.stacked(name), atol=1e-12)
    torch.testing.assert_close(trace[0][0].hidden, y, **F64)


def test_forget_bias_shifts_exactly_the_forget_block():
    torch.manual_seed(5)
    plain = lstmkit.LSTM(3, 4, num_layers=2, bidirectional=True)
    torch.manual_seed(5)
    biased = lstmkit.LSTM(3, 4, num_layers=2, bidirectional=True, forget_bias=1.0)
    for (name, a), b in zip(plain.named_parameters(), biased.parameters(), strict=True):
        expected = a.detach().clone()
        if name.startswith("bias_ih"):
            expected[4:8] += 1.0                                   # rows [H:2H]: the forget gate
        torch.testing.assert_close(b, expected, rtol=0, atol=0, msg=name)
    assert torch.equal(plain.to_torch().weight_ih_l0, plain.weight_ih_l0)  # default keeps parity


def test_update_bias_zero_is_torch_gru_and_otherwise_shifts_exactly_the_z_block():
    torch.manual_seed(5)
    twin = nn.GRU(3, 4, num_layers=2, bidirectional=True)
    torch.manual_seed(5)
    plain = lstmkit.GRU(3, 4, num_layers=2, bidirectional=True, update_bias=0.0)
    torch.manual_seed(5)
    biased = lstmkit.GRU(3, 4, num_layers=2, bidirectional=True, update_bias=2.5)
    for (name, t), a, b in zip(twin.named_parameters(), plain.parameters(), biased.parameters(), strict=True):
        torch.testing.assert_close(a, t, rtol=0, atol=0, msg=name)   # same parameters as nn.GRU for a seed
        expected = t.detach().clone()
        if name.startswith("bias_ih"):
            expected[4:8] += 2.5                                   # rows [H:2H]: the update gate z
        torch.testing.assert_close(b, expected, rtol=0, atol=0, msg=name)


def _gate_bias(module, name: str, block: int) -> torch.Tensor:
    """b_ih + b_hh of gate ``block`` of the layer and direction ``name`` ("_l1_reverse"), (H,)."""
    H = module.hidden_size
    return (getattr(module, "bias_ih" + name) + getattr(module, "bias_hh" + name))[block * H:(block + 1) * H]


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_chrono_draws_the_keep_gate_bias_in_its_range(kind):
    """Keep gate (LSTM f, GRU z): b_ih + b_hh in [0, log(T_max − 1)], spread over it; the LSTM's
    input gate is its negative; every other parameter is torch.nn's for the seed; a seed reproduces it."""
    T_max, H, keep = 50, 200, 1                                    # f is block 1 of i,f,g,o; z of r,z,n
    torch.manual_seed(3)
    plain = KINDS[kind](3, H, num_layers=2, bidirectional=True)
    torch.manual_seed(3)
    chrono = KINDS[kind](3, H, num_layers=2, bidirectional=True, chrono=T_max)
    torch.manual_seed(3)
    again = KINDS[kind](3, H, num_layers=2, bidirectional=True, chrono=T_max)
    for suffix in ("_l0", "_l0_reverse", "_l1", "_l1_reverse"):
        b = _gate_bias(chrono, suffix, keep)
        assert b.min() >= 0.0 and b.max() <= np.log(T_max - 1) + 1e-6, suffix
        assert b.max() - b.min() > 0.8 * np.log(T_max - 1), suffix          # drawn, not a constant
        assert torch.equal(getattr(chrono, "bias_hh" + suffix)[H:2 * H], torch.zeros(H))
        if kind == "lstm":
            torch.testing.assert_close(_gate_bias(chrono, suffix, 0), -b, rtol=0, atol=0)
    changed = {"lstm": [0, 1], "gru": [1]}[kind]
    for (name, a), c, d in zip(plain.named_parameters(), chrono.parameters(), again.parameters(), strict=True):
        assert torch.equal(c, d), name                                       # reproducible under a seed
        if name.startswith("bias"):
            keep_rows = torch.cat([torch.arange(k * H, (k + 1) * H) for k in changed])
            other = torch.ones(a.shape[0], dtype=torch.bool)
            other[keep_rows] = False
            a, c = a[other], c[other]
        assert torch.equal(a, c), name                                       # the rest is the standard init


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("grad", [True, False], ids=["autograd-step", "no-grad-step"])
@pytest.mark.parametrize("kind", NAMES)
@pytest.mark.parametrize("batched", [True, False])
def test_steps_equal_one_sequence_call(kind, batched, grad, backend):
    """Both step paths: the autograd one (a graph to backpropagate) and the no-grad fast one."""
    torch.manual_seed(2)
    module = KINDS[kind](3, 5, num_layers=3, dtype=torch.float64)
    x = torch.randn(7, 2, 3, dtype=torch.float64) if batched else torch.randn(7, 3, dtype=torch.float64)
    with use_backend(backend):
        y, state = module(x)
        step_state, ys = None, []
        with torch.set_grad_enabled(grad):
            for x_t in x:
                y_t, step_state = module.step(x_t, step_state)
                ys.append(y_t)
    assert ys[-1].requires_grad == grad
    torch.testing.assert_close(torch.stack(ys), y, **F64)
    for a, b in zip(step_state if kind == "lstm" else (step_state,), state if kind == "lstm" else (state,),
                    strict=True):
        torch.testing.assert_close(a, b, **F64)


@pytest.mark.parametrize("grad", [True, False], ids=["autograd-step", "no-grad-step"])
def test_step_of_projected_lstm_equals_torch(grad):
    torch.manual_seed(4)
    ours = lstmkit.LSTM(3, 6, num_layers=2, proj_size=2, dtype=torch.float64)
    theirs = ours.to_torch()
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    state = None
    with torch.set_grad_enabled(grad):
        for t in range(4):
            y_t, state = ours.step(x[t], state)
    y, (h, c) = theirs(x)
    torch.testing.assert_close(y_t, y[-1], **F64)
    torch.testing.assert_close(state[1], c, **F64)


@pytest.mark.parametrize("kind", NAMES)
def test_no_grad_step_output_does_not_alias_the_state(kind):
    """Writing into y_t leaves the returned state alone (as torch.nn's output and h_n)."""
    module = KINDS[kind](3, 4)
    with torch.no_grad():
        y_t, state = module.step(torch.randn(2, 3))
        h = state[0] if kind == "lstm" else state
        before = h.clone()
        y_t.add_(1.0)
    assert torch.equal(h, before)


@pytest.mark.parametrize("kind", NAMES)
def test_state_dicts_load_both_ways(kind):
    ours = KINDS[kind](3, 4, 2, bidirectional=True)
    twin = RECURRENT[kind].torch_module(3, 4, 2, bidirectional=True)
    ours.load_state_dict(twin.state_dict())
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(ours(x)[0], twin(x)[0], rtol=1e-5, atol=1e-6)
    twin2 = RECURRENT[kind].torch_module(3, 4, 2, bidirectional=True)
    ours2 = KINDS[kind](3, 4, 2, bidirectional=True)
    twin2.load_state_dict(ours2.state_dict())
    torch.testing.assert_close(ours2(x)[0], twin2(x)[0], rtol=1e-5, atol=1e-6)


def test_same_seed_gives_same_initial_weights_as_torch():
    torch.manual_seed(11)
    theirs = nn.LSTM(3, 6, 2, bidirectional=True, proj_size=2)
    torch.manual_seed(11)
    ours = lstmkit.LSTM(3, 6, 2, bidirectional=True, proj_size=2)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b)


def test_dropout_between_layers_matches_torch_under_the_same_seed():
    torch.manual_seed(0)
    ours = lstmkit.LSTM(3, 4, num_layers=3, dropout=0.5, dtype=torch.float64)
    theirs = ours.to_torch()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    ours.train()
    theirs.train()
    torch.manual_seed(9)
    y_ours = ours(x)[0]
    torch.manual_seed(9)
    y_theirs = theirs(x)[0]
    # torch.nn draws its dropout masks in the same order (after layers 0 and 1)
    torch.testing.assert_close(y_ours, y_theirs, **F64)
    assert not torch.equal(y_ours, ours.eval()(x)[0])


def test_from_torch_keeps_device_dtype_and_training_results():
    theirs = nn.GRU(2, 3, dtype=torch.float64, batch_first=True)
    ours = lstmkit.GRU.from_torch(theirs)
    assert ours.weight_hh_l0.dtype == torch.float64 and ours.batch_first
    assert_same(ours, theirs, torch.randn(2, 4, 2, dtype=torch.float64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("kind", NAMES)
def test_cuda_matches_torch(kind):
    ours = KINDS[kind](3, 4, 2, bidirectional=True, device="cuda", dtype=torch.float64)
    theirs = ours.to_torch()
    x = torch.randn(5, 2, 3, device="cuda", dtype=torch.float64)
    y_ours, y_theirs = ours(x, lengths=torch.tensor([5, 3]))[0], theirs(x)[0]
    torch.testing.assert_close(y_ours[:, 0], y_theirs[:, 0], **F64)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lstm_inference_path_equals_training_path(backend, monkeypatch):
    """Under no_grad the module runs the inference operator (no cache); outputs and final states are
    bit-for-bit those of the training path, with layers, directions, proj and lengths."""

    torch.manual_seed(5)
    module = lstmkit.LSTM(3, 6, num_layers=2, bidirectional=True, proj_size=4, dtype=torch.float64)
    x = torch.randn(7, 3, 3, dtype=torch.float64)
    with use_backend(backend):
        want_y, want_state = module(x, lengths=[7, 2, 5])
        with torch.no_grad():
            y, state = module(x, lengths=[7, 2, 5])
    assert torch.equal(y, want_y.detach())
    for a, b in zip(state, want_state, strict=True):
        assert torch.equal(a, b.detach())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", NAMES)
def test_padding_never_reaches_outputs_or_gradients_whatever_it_holds(backend, kind):
    """NaN and Inf in the padding of a lengths= batch: outputs and every gradient equal those of
    the same batch padded with zeros, bit for bit, and the input's gradient is zero on padding."""
    torch.manual_seed(11)
    cls = KINDS[kind]
    module = cls(3, 5, num_layers=2, bidirectional=True, dtype=torch.float64)
    clean = torch.randn(6, 3, 3, dtype=torch.float64)
    lengths = torch.tensor([6, 2, 4])
    dirty = clean.clone()
    dirty[2:, 1], dirty[4:, 2] = float("nan"), float("inf")
    clean[2:, 1], clean[4:, 2] = 0.0, 0.0
    results = []
    with use_backend(backend):
        for x in (clean, dirty):
            x = x.clone().requires_grad_()
            y, _ = module(x, lengths=lengths)
            grads = torch.autograd.grad(y.sum(), [x, *module.parameters()])
            results.append((y, *grads))
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)
    dx = results[1][1]
    assert torch.isfinite(dx).all() and dx[2:, 1].abs().sum() == 0 and dx[4:, 2].abs().sum() == 0
