"""PyTorch's own recurrent-module tests from test/test_nn.py (torch 2.13), ported to pytest and
pointed at lstmkit. Part of the ported suite (with tests/test_torch_suite_modules.py) that is the
drop-in spec: it should pass in full.

Where torch's test builds ``nn.LSTM(...)`` this builds ``lstmkit.LSTM(...)``; where it compares
against numbers or another module, the torch.nn twin (weights copied with load_state_dict, see
tests/torch_suite.py) is the oracle. Exception types are torch's; the message texts are
lstmkit's own (clearer), so only the type and the key facts are asserted. CPU only.

Ported (torch name -> test here):
  TestNN.test_rnn_weight_norm                   -> test_rnn_weight_norm
  TestNN.test_RNN_cudnn_weight_norm (CPU half)  -> test_RNN_weight_norm_keeps_output
  TestNN.test_RNN_cell                          -> test_RNN_cell
  TestNN.test_RNN_cell_forward_zero_hidden_size -> test_RNN_cell_forward_zero_hidden_size
  TestNN.test_RNN_cell_no_broadcasting          -> test_RNN_cell_no_broadcasting
  TestNN.test_LSTM_cell                         -> test_LSTM_cell
  TestNN.test_LSTM_cell_forward_input_size      -> test_LSTM_cell_forward_input_size
  TestNN.test_LSTM_cell_forward_hidden_size     -> test_LSTM_cell_forward_hidden_size
  TestNN.test_cudnn_forward_exception (runs on the CPU in torch) -> test_forward_exception
  TestNN.test_rnn_args_check                    -> test_rnn_args_check
  TestNN.test_projections_lstm_args_check       -> test_projections_lstm_args_check
  TestNN.test_rnn_check_device, test_projections_lstm_check_device (multi-GPU in torch;
      here with weights or state on the meta device)  -> test_rnn_check_device
  TestNN.test_rnn_initial_hidden_state          -> test_rnn_initial_hidden_state
  TestNN.test_projections_lstm_initial_hidden_state -> test_projections_lstm_initial_hidden_state
  TestNN.test_projections_errors_on_gru_and_rnn -> test_projections_errors_on_gru_and_rnn
  TestNN._test_RNN_cpu_vs_cudnn (via test_RNN_cpu_vs_cudnn_no_dropout / _with_dropout; here
      lstmkit vs torch.nn on the CPU, float64)  -> test_RNN_vs_torch_no_dropout / _with_dropout
      (its use of ``rnn.all_weights``)          -> test_all_weights
  TestNN.test_RNN_dropout (CPU branch)          -> test_RNN_dropout
  TestNN.test_error_RNN_seq_len_zero (CPU branch) -> test_error_RNN_seq_len_zero
  TestNN.test_RNN_input_size_zero (batch size 0) -> test_RNN_input_size_zero
  TestNN.test_RNN_dropout_state (CPU branch)    -> test_RNN_dropout_state
  TestNN.test_RNN_change_dropout (CPU branch)   -> test_RNN_change_dropout
  TestNN.test_cudnn_weight_tying (CPU analogue) -> test_weight_tying
  TestNN.test_partial_flat_weights (CPU analogue) -> test_partial_flat_weights
  TestNNDeviceType.test_rnn_retain_variables    -> test_rnn_retain_variables
  TestNNDeviceType.test_LSTM_grad_and_gradgrad  -> test_LSTM_grad_and_gradgrad
  TestNNDeviceType.test_GRU_grad_and_gradgrad   -> test_GRU_grad_and_gradgrad
  TestNNDeviceType.test_LSTM_differentiable_backward_using_oneDNN -> test_LSTM_differentiable_backward
  TestNNDeviceType.test_lstmcell_backward_only_one_output_grad (onlyCUDA in torch, device-generic
      logic)                                    -> test_lstmcell_backward_only_one_output_grad
  TestNNDeviceType.test_variable_sequence       -> test_variable_sequence

Left out, with the reason:
  test_cudnn_weight_format          cuDNN-only: the warning about weights outside one contiguous
                                    chunk comes from cuDNN's flattened weight buffer.
  test_cudnn_rnn_dropout_states_device, test_pack_sequence_batch_sizes_throw
                                    CUDA-only (multi-GPU dropout state; batch_sizes on a CUDA device).
  test_rnn_fused                    CUDA-only: compares the CPU result with the CUDA fused kernels.
  the CUDA halves of the tests above (cuDNN double-backward error message in _test_rnn_mod,
  cuda=True branches of the dropout tests, CPU->CUDA moves): CUDA/cuDNN-only.
"""

from __future__ import annotations

import copy
import io
import itertools
import re

import pytest
import torch
import torch.nn.utils.rnn as rnn_utils
from torch import nn
from torch.autograd import gradcheck, gradgradcheck
from torch_suite import flat, twin

import lstmkit

MODES = {"RNN": lstmkit.RNN, "GRU": lstmkit.GRU, "LSTM": lstmkit.LSTM}
F64 = {"rtol": 0.0, "atol": 1e-9}           # float64 against torch.nn
F32 = {"rtol": 0.0, "atol": 1e-5}           # torch's dtype2prec for float32


# ---- weight norm -----------------------------------------------------------------------------------

def test_rnn_weight_norm():
    def check(module, name, num_params):
        module = torch.nn.utils.weight_norm(module, name=name)
        assert sum(isinstance(p, nn.Parameter) for p in module._flat_weights) == num_params - 1
        module = torch.nn.utils.remove_weight_norm(module, name=name)
        assert sum(isinstance(p, nn.Parameter) for p in module._flat_weights) == num_params
        named = dict(module.named_parameters())
        assert module._parameters.get(name) is not None and named.get(name) is not None
        for suffix in ("_v", "_g"):
            assert name + suffix not in module._parameters and name + suffix not in named

    check(lstmkit.LSTM(32, 32), "weight_ih_l0", 4)
    check(lstmkit.LSTM(32, 32, proj_size=16), "weight_hr_l0", 5)


@pytest.mark.parametrize("kwargs, name", [({}, "weight_hh_l0"), ({"proj_size": 3}, "weight_hr_l0")])
def test_RNN_weight_norm_keeps_output(kwargs, name):
    """weight_norm reparametrises without changing the function; removing it restores it."""
    torch.manual_seed(0)
    m = lstmkit.LSTM(10, 6, 2, **kwargs)
    x = torch.randn(7, 6, 10)
    expected = flat(m(x))
    m = torch.nn.utils.weight_norm(m, name=name)
    for a, b in zip(flat(m(x)), expected, strict=True):
        torch.testing.assert_close(a, b)
    m = torch.nn.utils.remove_weight_norm(m, name=name)
    for a, b in zip(flat(m(x)), expected, strict=True):
        torch.testing.assert_close(a, b)


# ---- cells -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [lstmkit.RNNCell, lstmkit.GRUCell])
@pytest.mark.parametrize("bias", [True, False])
def test_RNN_cell(cls, bias):
    """Six steps then backward; torch's smoke test, here also equal to torch.nn's (float64)."""
    x = torch.randn(3, 10, dtype=torch.float64)
    cell = cls(10, 20, bias=bias, dtype=torch.float64)
    oracle = twin(cell)
    h = h_ref = torch.randn(3, 20, dtype=torch.float64)
    for _ in range(6):
        h, h_ref = cell(x, h), oracle(x, h_ref)
    h.sum().backward()
    h_ref.sum().backward()
    torch.testing.assert_close(h, h_ref, **F64)
    for (name, p), q in zip(cell.named_parameters(), oracle.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, **F64, msg=name)


def test_RNN_cell_forward_zero_hidden_size():
    x, hx = torch.randn(3, 10), torch.randn(3, 0)
    for cell in (lstmkit.RNNCell(10, 0, nonlinearity="relu"), lstmkit.RNNCell(10, 0, nonlinearity="tanh"),
                 lstmkit.GRUCell(10, 0)):
        assert cell(x, hx).shape == (3, 0)


def test_RNN_cell_no_broadcasting():
    """A state or input that would only fit by broadcasting is refused with RuntimeError."""
    def check_all(hidden_size, bad_hx, good_hx, input_size, x):
        for cls, hx in ((lstmkit.RNNCell, bad_hx), (lstmkit.GRUCell, bad_hx),
                        (lstmkit.LSTMCell, (bad_hx, good_hx)), (lstmkit.LSTMCell, (good_hx, bad_hx))):
            with pytest.raises(RuntimeError):
                cls(input_size, hidden_size)(x, hx)

    x, good_hx = torch.randn(3, 10), torch.randn(3, 20)
    check_all(20, torch.randn(1, 20), good_hx, 10, x)           # batch size 1 vs 3
    check_all(20, torch.randn(3, 1), good_hx, 10, x)            # hidden size 1 vs 20
    check_all(20, good_hx, good_hx, 10, torch.randn(3, 1))      # input size 1 vs 10


@pytest.mark.parametrize("bias", [True, False])
def test_LSTM_cell(bias):
    x = torch.randn(3, 10, dtype=torch.float64)
    cell = lstmkit.LSTMCell(10, 20, bias=bias, dtype=torch.float64)
    oracle = twin(cell)
    state = state_ref = (torch.randn(3, 20, dtype=torch.float64), torch.randn(3, 20, dtype=torch.float64))
    for _ in range(6):
        state, state_ref = cell(x, state), oracle(x, state_ref)
    sum(state).sum().backward()
    sum(state_ref).sum().backward()
    for a, b in zip(state, state_ref, strict=True):
        torch.testing.assert_close(a, b, **F64)
    for p, q in zip(cell.parameters(), oracle.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, **F64)


def test_LSTM_cell_forward_input_size():
    with pytest.raises(Exception):  # noqa: B017 (torch's test asserts only that it raises)
        lstmkit.LSTMCell(10, 20)(torch.randn(3, 11), (torch.randn(3, 20), torch.randn(3, 20)))


def test_LSTM_cell_forward_hidden_size():
    x, hx, cx = torch.randn(3, 10), torch.randn(3, 21), torch.randn(3, 20)
    cell = lstmkit.LSTMCell(10, 20)
    with pytest.raises(Exception):  # noqa: B017
        cell(x, (hx, cx))
    with pytest.raises(Exception):  # noqa: B017
        cell(x, (cx, hx))


# ---- argument checks -------------------------------------------------------------------------------

@pytest.mark.parametrize("rnn, hidden", [
    (lambda: lstmkit.LSTM(10, 20, batch_first=True), (torch.zeros(1, 2, 19), torch.zeros(1, 2, 19))),
    (lambda: lstmkit.LSTM(10, 20, batch_first=True, proj_size=10), (torch.zeros(1, 2, 19), torch.zeros(1, 2, 19))),
    (lambda: lstmkit.GRU(10, 20, batch_first=True), torch.zeros(1, 2, 19)),
    (lambda: lstmkit.RNN(10, 20, batch_first=True), torch.zeros(1, 2, 19)),
])
def test_forward_exception(rnn, hidden):
    rnn = rnn()
    with pytest.raises(RuntimeError, match="Expected hidden.*size.*got"):
        rnn(torch.randn(2, 3, 10), hidden)
    with pytest.raises(RuntimeError, match=re.escape("input.size(-1) must be equal to input_size")):
        rnn(torch.randn(2, 3, 3))


def _update_shape(shape, dim, size):
    shape = list(shape)
    shape[dim] = size
    return tuple(shape)


@pytest.mark.parametrize("mode", MODES)
def test_rnn_args_check(mode):
    I, H, L, B, T, bad = 3, 5, 2, 4, 6, 7       # bad is prime: no size divides it
    good_x, good_h = (T, B, I), (L, B, H)
    cases = [(_update_shape(good_x, 1, bad), good_h), (good_x, _update_shape(good_h, 1, bad)),
             (_update_shape(good_x, 2, bad), good_h), (good_x, _update_shape(good_h, 2, bad)),
             (good_x, _update_shape(good_h, 0, bad))]
    for x_shape, h_shape in cases:
        x, h = torch.randn(x_shape), torch.randn(h_shape)
        if mode != "LSTM":
            hiddens = [h]
        elif h_shape == good_h:
            hiddens = [(h, h)]
        else:
            hiddens = [(h, torch.randn(good_h)), (torch.randn(good_h), h)]
        for hidden in hiddens:
            with pytest.raises(RuntimeError):
                MODES[mode](I, H, L)(x, hidden)


def test_projections_lstm_args_check():
    I, H, P, L, B, T, bad = 3, 5, 2, 2, 4, 6, 7
    good_x, good_h, good_c = (T, B, I), (L, B, P), (L, B, H)
    cases = [
        (_update_shape(good_x, 1, bad), good_h, good_c),
        (good_x, _update_shape(good_h, 1, bad), _update_shape(good_c, 1, bad)),
        (_update_shape(good_x, 2, bad), good_h, good_c),
        (good_x, _update_shape(good_h, 2, bad), _update_shape(good_c, 2, bad)),
        (good_x, _update_shape(good_h, 0, bad), _update_shape(good_c, 0, bad)),
        (good_x, _update_shape(good_h, 0, H), good_c),
        (good_x, _update_shape(good_h, 0, bad), good_c),
        (good_x, good_h, _update_shape(good_c, 0, bad)),
    ]
    for x_shape, h_shape, c_shape in cases:
        with pytest.raises(RuntimeError):
            lstmkit.LSTM(I, H, L, proj_size=P)(torch.randn(x_shape), (torch.randn(h_shape), torch.randn(c_shape)))


@pytest.mark.parametrize("mode", MODES)
def test_rnn_check_device(mode):
    """torch's test needs two GPUs; the same mismatches with the meta device: RuntimeError."""
    x, h = torch.randn(6, 4, 3), torch.randn(2, 4, 5)
    on_meta = MODES[mode](3, 5, 2, device="meta")
    with pytest.raises(RuntimeError, match="meta"):
        on_meta(x)
    h_meta = h.to("meta")
    with pytest.raises(RuntimeError, match="meta"):
        MODES[mode](3, 5, 2)(x, (h_meta, h_meta) if mode == "LSTM" else h_meta)
    if mode == "LSTM":
        with pytest.raises(RuntimeError, match="meta"):
            lstmkit.LSTM(3, 5, 2, proj_size=2)(x, (torch.randn(2, 4, 2, device="meta"), h))


@pytest.mark.parametrize("mode", MODES)
def test_rnn_initial_hidden_state(mode):
    rnn = MODES[mode](30, 20, 2)
    x, hidden = torch.randn(10, 32, 30), torch.zeros(2, 32, 20)
    out1, h1 = rnn(x, (hidden, hidden) if mode == "LSTM" else hidden)
    out2, h2 = rnn(x)
    torch.testing.assert_close(out1, out2)
    for a, b in zip(flat(h1), flat(h2), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_projections_lstm_initial_hidden_state(bidirectional):
    D = 2 if bidirectional else 1
    rnn = lstmkit.LSTM(30, 20, 2, bidirectional=bidirectional, proj_size=10)
    x = torch.randn(10, 32, 30)
    out1, h1 = rnn(x, (torch.zeros(2 * D, 32, 10), torch.zeros(2 * D, 32, 20)))
    out2, h2 = rnn(x)
    torch.testing.assert_close(out1, out2)
    for a, b in zip(h1, h2, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("mode", ["RNN", "GRU"])
def test_projections_errors_on_gru_and_rnn(mode):
    with pytest.raises(ValueError, match="proj_size"):
        MODES[mode](30, 20, 2, proj_size=10)


# ---- against torch.nn: every layout, length and state (torch's CPU-vs-cuDNN test) -----------------

def _noncontiguous(t):
    """Same values, every second element of a doubled last axis (torch's make_noncontig)."""
    return torch.stack([torch.zeros_like(t), t], t.dim()).select(t.dim(), 1)


def _forward_backward(rnn, x, hx, grad_out, grad_hy):
    """Outputs, final states and the gradients of input, states and every parameter."""
    packed = isinstance(x, rnn_utils.PackedSequence)
    data = (x.data if packed else x).detach().clone().requires_grad_()
    x = rnn_utils.PackedSequence(data, x.batch_sizes, x.sorted_indices, x.unsorted_indices) if packed else data
    hx = tuple(h.detach().clone().requires_grad_() for h in hx)
    out, hy = rnn(x, hx if len(hx) == 2 else hx[0])
    outs = [out.data if packed else out, *flat(hy)]
    torch.autograd.backward(outs, [grad_out, *grad_hy])
    return outs + [data.grad] + [h.grad for h in hx] + [p.grad for p in rnn.parameters()]


def _vs_torch(rnn, x, hx, grad_out, grad_hy):
    ours = _forward_backward(rnn, x, hx, grad_out, grad_hy)
    oracle = _forward_backward(twin(rnn), x, hx, grad_out, grad_hy)
    for i, (a, b) in enumerate(zip(ours, oracle, strict=True)):
        torch.testing.assert_close(a, b, **F64, msg=lambda m, i=i: f"tensor {i}: {m}")


def _check_vs_torch(dropout):
    I, H, P, L, T, B = 10, 6, 3, 2, 7, 6
    dt = torch.float64
    configs = [(cls, 0) for cls in MODES.values()] + [(lstmkit.LSTM, P)]
    for (cls, proj), (bias, bidir, batch_first, contig, variable_len, lens_as_tensor) in itertools.product(
            configs, itertools.product((True, False), repeat=6)):
        D, out_size = (2 if bidir else 1), (proj or H)
        x = torch.randn(B, T, I, dtype=dt) if batch_first else torch.randn(T, B, I, dtype=dt)
        grad_out = torch.randn(*x.shape[:2], out_size * D, dtype=dt)
        hx = [torch.randn(L * D, B, out_size, dtype=dt)]
        grad_hy = [torch.randn(L * D, B, out_size, dtype=dt)]
        if cls is lstmkit.LSTM:
            hx.append(torch.randn(L * D, B, H, dtype=dt))
            grad_hy.append(torch.randn(L * D, B, H, dtype=dt))
        if not contig:
            x, grad_out = _noncontiguous(x), _noncontiguous(grad_out)
            hx, grad_hy = [_noncontiguous(h) for h in hx], [_noncontiguous(g) for g in grad_hy]
        if variable_len:
            lengths = [7, 5, 5, 2, 1, 1]
            lengths = torch.tensor(lengths) if lens_as_tensor else lengths
            x = rnn_utils.pack_padded_sequence(x, lengths, batch_first=batch_first)
            grad_out = rnn_utils.pack_padded_sequence(grad_out, lengths, batch_first=batch_first).data
        kwargs = {"proj_size": proj} if proj else {}
        rnn = cls(I, H, L, bias=bias, dropout=dropout, bidirectional=bidir, batch_first=batch_first,
                  dtype=dt, **kwargs)
        _vs_torch(rnn, x, tuple(hx), grad_out, grad_hy)
    for nonlinearity in ("tanh", "relu"):
        rnn = lstmkit.RNN(I, H, L, nonlinearity=nonlinearity, dropout=dropout, dtype=dt)
        _vs_torch(rnn, torch.randn(T, B, I, dtype=dt), (torch.randn(L, B, H, dtype=dt),),
                  torch.randn(T, B, H, dtype=dt), [torch.randn(L, B, H, dtype=dt)])


def test_RNN_vs_torch_no_dropout():
    torch.manual_seed(0)
    _check_vs_torch(0.0)


def test_RNN_vs_torch_with_dropout():
    """dropout=1 is the only non-zero dropout that is deterministic (every inter-layer value zeroed)."""
    torch.manual_seed(0)
    _check_vs_torch(1.0)


@pytest.mark.parametrize("mode, kwargs", [("RNN", {}), ("GRU", {}), ("LSTM", {}), ("LSTM", {"proj_size": 3})])
def test_all_weights(mode, kwargs):
    """torch's test copies weights layer by layer through ``rnn.all_weights``: it must exist and list
    the same parameters, in the same order and shapes, as torch.nn's."""
    rnn = MODES[mode](10, 6, 2, bidirectional=True, **kwargs)
    oracle = twin(rnn)
    ours = [[tuple(w.shape) for w in layer] for layer in rnn.all_weights]
    assert ours == [[tuple(w.shape) for w in layer] for layer in oracle.all_weights]
    names = dict((id(p), n) for n, p in rnn.named_parameters())
    assert [names[id(w)] for layer in rnn.all_weights for w in layer] == [n for n, _ in rnn.named_parameters()]


# ---- dropout ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("p", [0, 0.276, 0.731, 1])
@pytest.mark.parametrize("train", [True, False])
def test_RNN_dropout(p, train):
    """Dropout sits between layers: with all-ones weights the output is 10000 x the kept fraction."""
    rnn = lstmkit.RNN(10, 1000, 2, bias=False, dropout=p, nonlinearity="relu", dtype=torch.float64)
    rnn.train(train)
    with torch.no_grad():
        for w in rnn.parameters():
            w.fill_(1)
    output, hy = rnn(torch.ones(1, 1, 10, dtype=torch.float64), torch.zeros(2, 1, 1000, dtype=torch.float64))
    assert output.min() == output.max()
    value = output[0, 0, 0].item()
    if p == 0 or not train:
        assert value == 10000
    elif p == 1:
        assert value == 0
    else:
        assert 8000 < value < 12000
        denorm = (value * (1 - p)) % 10
        assert min(denorm, 10 - denorm) < 1e-2
    assert hy[0].min() == hy[0].max() and hy[1].min() == hy[1].max()
    assert hy[0, 0, 0].item() == 10 and hy[1, 0, 0].item() == value


def test_error_RNN_seq_len_zero():
    for cls, bidirectional in itertools.product(MODES.values(), (True, False)):
        with pytest.raises(RuntimeError, match="sequence length"):
            cls(5, 6, bidirectional=bidirectional)(torch.ones(0, 10, 5))


@pytest.mark.parametrize("mode", MODES)
def test_RNN_input_size_zero(mode):
    """torch's name; it is batch size 0: an empty output of the right shape, and a backward."""
    out = MODES[mode](input_size=3, hidden_size=4)(torch.zeros(5, 0, 3))
    assert out[0].shape == (5, 0, 4)
    out[0].sum().backward()


@pytest.mark.parametrize("p", [0, 0.1234])
@pytest.mark.parametrize("train", [True, False])
def test_RNN_dropout_state(p, train):
    rnn = lstmkit.RNN(100, 100, 2, bias=False, dropout=p, nonlinearity="relu").train(train)
    x, hx = torch.rand(1, 1, 100), torch.rand(2, 1, 100)
    out1, hy1 = rnn(x, hx)
    out2, hy2 = rnn(x, hx)
    buf = io.BytesIO()
    torch.save(rnn, buf)
    buf.seek(0)
    rnn2 = torch.load(buf, weights_only=False)
    rnn2.flatten_parameters()
    out3, hy3 = rnn2(x, hx)
    if p == 0 or not train:
        for a, b in ((out1, out2), (out1, out3), (hy1, hy2), (hy1, hy3)):
            torch.testing.assert_close(a, b)
    else:
        for a, b in ((out1, out2), (out1, out3), (hy1, hy2), (hy1, hy3)):
            assert not torch.equal(a, b)


@pytest.mark.parametrize("train", [True, False])
def test_RNN_change_dropout(train):
    """Setting ``rnn.dropout`` after construction takes effect on the next call."""
    torch.manual_seed(0)
    rnn = lstmkit.RNN(100, 100, 2, dropout=0, nonlinearity="relu", dtype=torch.float64).train(train)
    x = torch.rand(3, 2, 100, dtype=torch.float64)
    previous = None
    for p in (0, 0.5, 0, 0.7, 0.2, 1, 0.2, 0):
        rnn.dropout = p
        out1, hy1 = rnn(x)
        out2, hy2 = rnn(x)
        if p == 0 or p == 1 or not train:
            torch.testing.assert_close(out1, out2)
            torch.testing.assert_close(hy1, hy2)
        else:
            assert not torch.equal(out1, out2) and not torch.equal(hy1, hy2)
        if previous is not None:
            if train:
                assert not torch.equal(out1, previous) and not torch.equal(out2, previous)
            else:
                torch.testing.assert_close(out1, previous)
                torch.testing.assert_close(out2, previous)
        previous = out1.detach()


# ---- weights replaced by the user ------------------------------------------------------------------

@pytest.mark.parametrize("mode, kwargs", [("LSTM", {}), ("LSTM", {"proj_size": 10}), ("GRU", {}), ("RNN", {})])
def test_weight_tying(mode, kwargs):
    """One Parameter used for two weights (torch's cuDNN weight-tying test, on the CPU): the
    forward, the summed gradient and an optimizer step match torch.nn with the same tie."""
    torch.manual_seed(0)
    rnn = MODES[mode](10, 20, batch_first=True, bidirectional=True, dtype=torch.float64, **kwargs)
    oracle = twin(rnn)
    for m in (rnn, oracle):
        m.bias_ih_l0_reverse = m.bias_ih_l0
    x = torch.randn(5, 4, 10, dtype=torch.float64)
    results = []
    for m in (rnn, oracle):
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        flat(m(x))[0].sum().backward()
        opt.step()
        results.append([*flat(m(x)), m.bias_ih_l0.detach().clone()])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, **F64)


def test_partial_flat_weights():
    """Delete a weight, then set it again: the module is usable and computes as before."""
    m = lstmkit.LSTM(10, 6, 2)
    x = torch.randn(3, 2, 10)
    expected = m(x)[0]
    weight = m.weight_hh_l0
    del m.weight_hh_l0
    assert not hasattr(m, "weight_hh_l0")
    m.weight_hh_l0 = weight
    torch.testing.assert_close(m(x)[0], expected)


# ---- gradients -------------------------------------------------------------------------------------

def test_rnn_retain_variables():
    """Backward through one graph five times (retain_graph) gives the same gradients each time."""
    for cls in MODES.values():
        rnn = cls(10, 20, num_layers=2, dtype=torch.float64)
        x = torch.randn(5, 6, 10, dtype=torch.float64, requires_grad=True)
        output = rnn(x)
        output[0].sum().backward(retain_graph=True)
        grads = [x.grad.clone()] + [p.grad.clone() for p in rnn.parameters()]
        for _ in range(4):
            rnn.zero_grad()
            x.grad.zero_()
            output[0].sum().backward(retain_graph=True)
            for a, b in zip(grads, [x.grad] + [p.grad for p in rnn.parameters()], strict=True):
                torch.testing.assert_close(a, b, rtol=0, atol=0)


def _grad_and_gradgrad(module, x):
    def outputs(x):
        return tuple(flat(module(x)))
    assert gradcheck(outputs, (x,), check_batched_grad=False)
    assert gradgradcheck(outputs, (x,), check_batched_grad=False)


@pytest.mark.parametrize("bias", [True, False])
def test_LSTM_grad_and_gradgrad(bias):
    x = torch.rand(1, 3, 4, dtype=torch.float64, requires_grad=True)
    _grad_and_gradgrad(lstmkit.LSTM(4, 4, bias=bias, dtype=torch.float64), x)


@pytest.mark.parametrize("bias", [True, False])
def test_GRU_grad_and_gradgrad(bias):
    x = torch.rand(1, 3, 4, dtype=torch.float64, requires_grad=True)
    _grad_and_gradgrad(lstmkit.GRU(4, 4, bias=bias, dtype=torch.float64), x)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, {"rtol": 1.3e-6, "atol": 1e-5}),
                                        (torch.bfloat16, {"rtol": 1.6e-2, "atol": 1e-2})])
def test_LSTM_differentiable_backward(dtype, tol):
    """torch compares its oneDNN and native paths; here lstmkit against torch.nn: the input gradient
    taken with create_graph=True, then a backward through it (a gradient penalty)."""
    torch.manual_seed(0)
    net = lstmkit.LSTM(3, 3, 20, batch_first=True).to(dtype)
    x = torch.rand(10, 12, 3, dtype=dtype)
    results = []
    for m in (net, twin(net)):
        x_leaf = x.clone().requires_grad_()
        out, _ = m(x_leaf)
        dx = torch.autograd.grad(out, x_leaf, torch.ones_like(out), create_graph=True)[0]
        dx.sum().backward()
        results.append((dx.detach(), x_leaf.grad))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, **tol)


def test_lstmcell_backward_only_one_output_grad():
    """Backward from h alone, or from c alone (the other gradient undefined) reaches the input."""
    cell = lstmkit.LSTMCell(2, 3, dtype=torch.float64)
    s = torch.randn(1, 2, dtype=torch.float64, requires_grad=True)
    for i in range(2):
        cell(s)[i].sum().backward()
        assert s.grad is not None and s.grad.abs().sum().item() != 0


# ---- packed sequences ------------------------------------------------------------------------------

@pytest.mark.parametrize("enforce_sorted, lengths", [
    (True, [5]), (False, [5]), (True, [10, 10, 6, 2, 2, 1, 1]), (False, [10, 10, 6, 2, 2, 1, 1]),
    (False, [2, 1, 3, 2, 10, 5, 3])])
@pytest.mark.parametrize("default_hiddens", [True, False])
@pytest.mark.parametrize("proj_size", [0, 2])
def test_variable_sequence(enforce_sorted, lengths, default_hiddens, proj_size):
    """A packed batch equals each sequence run alone (outputs, states, input and weight gradients);
    float32 within torch's 1e-5."""
    I, H, L, D, T = 3, 4, 2, 2, max(lengths)
    x_leaf = torch.randn(T, len(lengths), I, requires_grad=True)
    lstm = lstmkit.LSTM(I, H, num_layers=L, bidirectional=True, proj_size=proj_size)
    lstm2 = copy.deepcopy(lstm)
    hidden0 = None
    if not default_hiddens:
        hidden0 = (torch.randn(D * L, len(lengths), proj_size or H), torch.randn(D * L, len(lengths), H))

    seq_outs, seq_hiddens = [], []
    for i, n in enumerate(lengths):
        h_i = None if hidden0 is None else tuple(h[:, i:i + 1].contiguous() for h in hidden0)
        out, hid = lstm2(x_leaf[:n, i:i + 1], h_i)
        seq_outs.append(torch.cat([out, out.new_zeros(T - n, *out.shape[1:])]))
        seq_hiddens.append(hid)
    seq_out = torch.cat(seq_outs, 1)
    seq_hidden = tuple(torch.cat(h, 1) for h in zip(*seq_hiddens, strict=True))

    packed = rnn_utils.pack_padded_sequence(x_leaf, lengths, enforce_sorted=enforce_sorted)
    packed_out, packed_hidden = lstm(packed, hidden0)
    unpacked, unpacked_len = rnn_utils.pad_packed_sequence(packed_out)
    for a, b in zip(packed_hidden, seq_hidden, strict=True):
        torch.testing.assert_close(a, b, **F32)
    torch.testing.assert_close(unpacked, seq_out, **F32)
    assert unpacked_len.tolist() == lengths

    seq_out.sum().backward()
    grad_x = x_leaf.grad.clone()
    x_leaf.grad.zero_()
    unpacked.sum().backward()
    torch.testing.assert_close(x_leaf.grad, grad_x, **F32)
    for p1, p2 in zip(lstm.parameters(), lstm2.parameters(), strict=True):
        torch.testing.assert_close(p1.grad, p2.grad, **F32)
