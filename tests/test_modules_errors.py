"""Bad input meets a clear error at the public edge, naming the argument, what was expected and
what came. One test per message. The exception types are torch.nn's for the same mistake (see
lstmkit/modules/checks.py); the texts are lstmkit's."""

from __future__ import annotations

import pytest
import torch

import lstmkit
from lstmkit.modules import checks


@pytest.mark.parametrize("kwargs, error, words", [
    ({"input_size": 0, "hidden_size": 4}, ValueError, "input_size should be >= 1, got 0"),
    ({"input_size": 3.5, "hidden_size": 4}, TypeError, "input_size should be an int, got float"),
    ({"input_size": 3, "hidden_size": True}, TypeError, "hidden_size should be an int, got bool"),
    ({"input_size": 3, "hidden_size": 4, "num_layers": 0}, ValueError, "num_layers should be >= 1"),
    ({"input_size": 3, "hidden_size": 4, "dropout": 1.5}, ValueError, "dropout should be a number in [0, 1]"),
    ({"input_size": 3, "hidden_size": 4, "dropout": "x"}, TypeError, "dropout should be a number"),
    ({"input_size": 3, "hidden_size": 4, "proj_size": 4}, ValueError, "proj_size has to be smaller than hidden_size"),
    ({"input_size": 3, "hidden_size": 4, "proj_size": -1}, ValueError, "proj_size should be >= 0"),
    ({"input_size": 3, "hidden_size": 4, "forget_bias": "1"}, TypeError, "forget_bias should be a number"),
    ({"input_size": 3, "hidden_size": 4, "forget_bias": 1.0, "bias": False}, ValueError, "needs bias=True"),
])
def test_lstm_constructor_errors(kwargs, error, words):
    with pytest.raises(error, match=_re(words)):
        lstmkit.LSTM(**kwargs)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("kwargs, error, words", [
    ({"chrono": 10.0}, TypeError, "chrono should be an int (T_max) or None, got float"),
    ({"chrono": True}, TypeError, "chrono should be an int (T_max) or None, got bool"),
    ({"chrono": 1}, ValueError, "chrono should be >= 2 (T_max, the longest dependency expected) or 0 (off), got 1"),
    ({"chrono": -5}, ValueError, "chrono should be >= 2"),
    ({"chrono": 10, "bias": False}, ValueError, "chrono=10 needs bias=True"),
    ({"chrono": 10, "KEEP": 1.0}, ValueError, "chrono=10 and KEEP=1.0 both set the keep gate's bias"),
    ({"KEEP": "1"}, TypeError, "KEEP should be a number, got str"),
    ({"KEEP": 1.0, "bias": False}, ValueError, "KEEP=1.0 needs bias=True"),
])
def test_keep_gate_init_errors(kind, kwargs, error, words):
    """forget_bias (LSTM) / update_bias (GRU) and chrono: each mistake, in torch.nn's exception type."""
    keep = {"LSTM": "forget_bias", "GRU": "update_bias"}[kind]
    kwargs = {keep if k == "KEEP" else k: v for k, v in kwargs.items()}
    with pytest.raises(error, match=_re(words.replace("KEEP", keep))):
        getattr(lstmkit, kind)(3, 4, **kwargs)
    for off in (0, None):
        assert getattr(lstmkit, kind)(3, 4, chrono=off).chrono == 0


def test_rnn_nonlinearity_error():
    with pytest.raises(ValueError, match="nonlinearity should be 'tanh' or 'relu', got 'sigmoid'"):
        lstmkit.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="nonlinearity should be 'tanh' or 'relu'"):
        lstmkit.RNNCell(3, 4, nonlinearity="gelu")


def test_dropout_on_one_layer_warns():
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        lstmkit.LSTM(3, 4, dropout=0.2)


@pytest.mark.parametrize("x, error, words", [
    ([[1.0, 2.0, 3.0]], TypeError, "input should be a torch.Tensor or PackedSequence, got list"),
    (torch.randn(2, 3, 4, 3), ValueError, "input should be 3-D (batched) or 2-D (unbatched), got 4-D"),
    (torch.randn(5, 2, 7), RuntimeError, "input.size(-1) must be equal to input_size. Expected 3, got 7"),
    (torch.randn(5, 2, 3, dtype=torch.float64), ValueError,
     "input dtype torch.float64 does not match the weights' dtype torch.float32: convert input"),
])
def test_input_errors(x, error, words):
    with pytest.raises(error, match=_re(words)):
        lstmkit.LSTM(3, 4)(x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device to mismatch devices")
def test_device_mismatch_error():
    with pytest.raises(RuntimeError, match="input is on cuda:0 but the weights are on cpu"):
        lstmkit.LSTM(3, 4)(torch.randn(5, 2, 3, device="cuda"))


def test_meta_device_mismatch_error():
    """A device mismatch without a GPU: weights on the meta device, input on the CPU."""
    with pytest.raises(RuntimeError, match="input is on cpu but the weights are on meta: move input"):
        lstmkit.LSTM(3, 4, device="meta")(torch.randn(5, 2, 3))


@pytest.mark.parametrize("hx, error, words", [
    (torch.zeros(1, 2, 4), TypeError, "hx should be a tuple (h_0, c_0)"),
    ((torch.zeros(1, 3, 4), torch.zeros(1, 2, 4)), RuntimeError, "Expected hidden h_0 size (1, 2, 4), got (1, 3, 4)"),
    ((torch.zeros(1, 2, 4), torch.zeros(2, 2, 4)), RuntimeError, "Expected hidden c_0 size (1, 2, 4), got (2, 2, 4)"),
    ((torch.zeros(1, 2, 4), "c"), TypeError, "c_0 should be a torch.Tensor, got str"),
    ((torch.zeros(1, 2, 4, dtype=torch.float64), torch.zeros(1, 2, 4)), RuntimeError, "h_0 dtype torch.float64"),
    ((torch.zeros(1, 2, 4, device="meta"), torch.zeros(1, 2, 4)), RuntimeError,
     "h_0 is on meta but the weights are on cpu: move h_0"),
])
def test_lstm_state_errors(hx, error, words):
    with pytest.raises(error, match=_re(words)):
        lstmkit.LSTM(3, 4)(torch.randn(5, 2, 3), hx)


def test_gru_state_shape_error():
    with pytest.raises(RuntimeError, match=_re("Expected hidden h_0 size (2, 2, 4), got (1, 2, 4)")):
        lstmkit.GRU(3, 4, 2)(torch.randn(5, 2, 3), torch.zeros(1, 2, 4))


@pytest.mark.parametrize("lengths, error, words", [
    (torch.tensor([5, 6]), ValueError,
     "lengths should lie in [1, 5] (the padded input has 5 steps), got values from 5 to 6"),
    (torch.tensor([0, 3]), ValueError, "lengths should lie in [1, 5]"),
    (torch.tensor([5, 3, 2]), ValueError,
     "lengths should have one entry per sequence in the batch, shape (2,), got shape (3,)"),
    (torch.tensor([5.0, 3.0]), TypeError, "lengths should hold integers, got a tensor of torch.float32"),
    ("5,3", TypeError, "lengths should be a 1-D integer tensor or a list of ints, got str"),
])
def test_lengths_errors(lengths, error, words):
    with pytest.raises(error, match=_re(words)):
        lstmkit.LSTM(3, 4)(torch.randn(5, 2, 3), lengths=lengths)


def test_lengths_as_list_works_and_packed_with_lengths_fails():
    lstm = lstmkit.LSTM(3, 4)
    y, _ = lstm(torch.randn(5, 2, 3), lengths=[5, 2])
    assert y[2:, 1].abs().max() == 0 and y[:2, 1].abs().min() > 0
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.randn(5, 2, 3), [5, 2])
    with pytest.raises(ValueError, match="a PackedSequence carries its own lengths"):
        lstm(packed, lengths=[5, 2])


def test_step_errors():
    with pytest.raises(ValueError, match="step\\(\\) needs a unidirectional module"):
        lstmkit.LSTM(3, 4, bidirectional=True).step(torch.randn(2, 3))
    expected = "x_t should be a tensor of shape (B, input_size) or (input_size,), got shape (1, 2, 3)"
    with pytest.raises(TypeError, match=_re(expected)):
        lstmkit.LSTM(3, 4).step(torch.randn(1, 2, 3))
    with pytest.raises(RuntimeError, match="Expected 3, got 2"):
        lstmkit.GRU(3, 4).step(torch.randn(2))


def test_cell_errors():
    with pytest.raises(ValueError, match="Expected input to be 1-D or 2-D but received 3-D"):
        lstmkit.LSTMCell(3, 4)(torch.randn(1, 2, 3))
    with pytest.raises(RuntimeError, match="Expected 3, got 5"):
        lstmkit.GRUCell(3, 4)(torch.randn(2, 5))
    with pytest.raises(RuntimeError, match=_re("Expected hidden c_0 size (2, 4), got (2, 5)")):
        lstmkit.LSTMCell(3, 4)(torch.randn(2, 3), (torch.zeros(2, 4), torch.zeros(2, 5)))
    with pytest.raises(TypeError, match="hx should hold 2 tensor"):
        lstmkit.LSTMCell(3, 4)(torch.randn(2, 3), torch.zeros(2, 4))


def test_unbatched_empty_sequence_error():
    with pytest.raises(RuntimeError, match="Expected sequence length to be larger than 0 in RNN"):
        lstmkit.GRU(3, 4)(torch.randn(0, 3))


@pytest.mark.parametrize("batch_first, shape", [(False, (0, 2, 3)), (True, (2, 0, 3))])
def test_check_input_empty_sequence(batch_first, shape):
    """With the layout known, a batched input of 0 steps is refused; 0 sequences are not."""
    weight = torch.zeros(4, 3)
    with pytest.raises(RuntimeError, match="the input has 0 time steps"):
        checks.check_input(torch.zeros(shape), 3, weight, batch_first=batch_first)
    empty_batch = (0, 2, 3) if batch_first else (2, 0, 3)
    checks.check_input(torch.zeros(empty_batch), 3, weight, batch_first=batch_first)


@pytest.mark.parametrize("value", [0, 1, "False", None])
def test_check_flag_error(value):
    with pytest.raises(TypeError, match=_re(f"bias should be a bool (True or False), got {type(value).__name__}")):
        checks.check_flag("bias", value)
    assert checks.check_flag("bias", False) is False


def test_conversion_errors():
    with pytest.raises(TypeError, match="expected a torch.nn.modules.rnn.LSTM, got GRU"):
        lstmkit.LSTM.from_torch(torch.nn.GRU(3, 4))


def _re(text: str) -> str:
    import re
    return re.escape(text)
