"""The layer operators of lstmkit.functional (``torch.ops.lstmkit.*``): torch.autograd.gradcheck in
float64 on every input (with and without lengths and projection), the inference operators against
the cached ones, and the compute path never touches torch's own RNNs."""

from __future__ import annotations

import pytest
import torch
from torch_oracle import use_backend

import lstmkit
from lstmkit import kernels
from lstmkit.functional import lstm_layer

ops = torch.ops.lstmkit

T, B, I, H, P = 5, 3, 4, 5, 3


def leaf(*shape):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


LENGTHS = [None, torch.tensor([5, 2, 4])]


@pytest.mark.parametrize("lengths", LENGTHS, ids=["full", "lengths"])
@pytest.mark.parametrize("proj", [False, True], ids=["no-proj", "proj"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_lstm_function_gradcheck(lengths, proj, bias):
    torch.manual_seed(0)
    p = P if proj else H
    args = [leaf(T, B, I), leaf(B, p), leaf(B, H), leaf(4 * H, I), leaf(4 * H, p),
            leaf(4 * H) if bias else None, leaf(4 * H) if bias else None, leaf(P, H) if proj else None]

    def f(*a):
        return ops.lstm_layer(*a, lengths, True)[:3]            # y, h_n, c_n (the trace is not differentiable)
    assert torch.autograd.gradcheck(f, args, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("lengths", LENGTHS, ids=["full", "lengths"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_gru_function_gradcheck(lengths, bias):
    torch.manual_seed(1)
    args = [leaf(T, B, I), leaf(B, H), leaf(3 * H, I), leaf(3 * H, H),
            leaf(3 * H) if bias else None, leaf(3 * H) if bias else None]
    assert torch.autograd.gradcheck(lambda *a: ops.gru_layer(*a, lengths)[:2], args, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("lengths", LENGTHS, ids=["full", "lengths"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_function_gradcheck(lengths, nonlinearity):
    torch.manual_seed(2)
    args = [leaf(T, B, I), leaf(B, H), leaf(H, I), leaf(H, H), leaf(H), leaf(H)]
    assert torch.autograd.gradcheck(lambda *a: ops.rnn_layer(*a, nonlinearity, lengths)[:2], args,
                                    atol=1e-8, rtol=1e-6)


def test_compute_path_never_calls_torch_rnns(monkeypatch):
    """Forward and backward of every module run with torch's own RNN entry points disabled."""
    def forbidden(*args, **kwargs):
        raise AssertionError("lstmkit called a torch.nn RNN implementation")
    for name in ("lstm", "gru", "rnn_tanh", "rnn_relu", "lstm_cell", "gru_cell", "rnn_tanh_cell"):
        monkeypatch.setattr(torch._VF, name, forbidden, raising=False)
    for cls in (torch.nn.LSTM, torch.nn.GRU, torch.nn.RNN, torch.nn.LSTMCell, torch.nn.GRUCell):
        monkeypatch.setattr(cls, "forward", forbidden)
    x = torch.randn(4, 2, 3, requires_grad=True)
    for module in (lstmkit.LSTM(3, 4, 2, bidirectional=True, proj_size=2), lstmkit.GRU(3, 4), lstmkit.RNN(3, 4)):
        module(x, lengths=[4, 2])[0].sum().backward()
    for cell in (lstmkit.LSTMCell(3, 4), lstmkit.GRUCell(3, 4), lstmkit.RNNCell(3, 4)):
        out = cell(x[0])
        (out[0] if isinstance(out, tuple) else out).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


# ---- the inference path: the same forward without the cache backward needs ------------------------

@pytest.mark.parametrize("lengths", LENGTHS, ids=["full", "lengths"])
@pytest.mark.parametrize("proj", [False, True], ids=["no-proj", "proj"])
def test_torch_recurrence_without_cache_equals_cached(lengths, proj):
    """cache=False keeps no gates or cell states, and its outputs are bit-for-bit the cached ones."""
    from lstmkit.functional import lstm_recurrence_forward

    torch.manual_seed(3)
    p = P if proj else H
    args = (torch.randn(T, B, 4 * H, dtype=torch.float64), torch.randn(B, p, dtype=torch.float64),
            torch.randn(B, H, dtype=torch.float64), torch.randn(4 * H, p, dtype=torch.float64),
            torch.randn(P, H, dtype=torch.float64) if proj else None, lengths)
    gates, cs, hs = lstm_recurrence_forward(*args)
    none, c_last, hs_lean = lstm_recurrence_forward(*args, cache=False)
    assert none is None and c_last.shape == (1, B, H)
    assert torch.equal(hs_lean, hs) and torch.equal(c_last[0], cs[-1])


@pytest.mark.parametrize("backend", ["torch", "cpp"])
@pytest.mark.parametrize("lengths", LENGTHS, ids=["full", "lengths"])
@pytest.mark.parametrize("proj", [False, True], ids=["no-proj", "proj"])
def test_lstm_inference_equals_function_forward(backend, lengths, proj):
    """lstmkit::lstm_layer_inference gives lstmkit::lstm_layer's y, h_n, c_n bit-for-bit, on both backends."""
    torch.manual_seed(4)
    p = P if proj else H
    args = [leaf(T, B, I), leaf(B, p), leaf(B, H), leaf(4 * H, I), leaf(4 * H, p), leaf(4 * H), leaf(4 * H),
            leaf(P, H) if proj else None, lengths]
    with use_backend(backend):
        want = ops.lstm_layer(*args, True)[:3]
        with torch.no_grad():
            got = ops.lstm_layer_inference(*args)
    for name, a, b in zip(("y", "h_n", "c_n"), got, want, strict=True):
        assert torch.equal(a, b.detach()), name


@pytest.mark.parametrize("backend", ["torch", "cpp"])
@pytest.mark.parametrize("lengths", LENGTHS, ids=["full", "lengths"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_lstm_inference_in_chunks_equals_one_chunk(backend, lengths, bias, monkeypatch):
    """The input projection taken 2 steps at a time (a ragged last chunk, lengths ending inside,
    before and after a chunk) gives the one-chunk results within 1e-12 (float64)."""

    torch.manual_seed(6)
    args = [leaf(T, B, I), leaf(B, H), leaf(B, H), leaf(4 * H, I), leaf(4 * H, H),
            leaf(4 * H) if bias else None, leaf(4 * H) if bias else None, None, lengths]
    with use_backend(backend), torch.no_grad():
        want = ops.lstm_layer_inference(*args)
        monkeypatch.setattr(kernels, "ZX_CHUNK_ELEMENTS", 2 * B * 4 * H)    # both paths
        monkeypatch.setattr(kernels, "ZX_CHUNK_MIN_ROWS", 0)
        got = ops.lstm_layer_inference(*args)
    for name, a, b in zip(("y", "h_n", "c_n"), got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12, msg=name)


@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_lstm_function_without_trace_reuses_its_gates_buffer_and_keeps_gradients(backend):
    """keep_trace=False: no trace comes back, backward writes dz over the saved gates and gives
    that buffer to the workspace, and the next forward of the same shape takes it (no new pages);
    the gradients equal keep_trace=True's bit for bit."""
    from lstmkit.functional import workspace

    torch.manual_seed(7)
    T_, B_, I_, H_ = 40, 16, 8, 128                         # gates of 40*16*512 float64: 2.6 MB
    args = [leaf(T_, B_, I_), leaf(B_, H_), leaf(B_, H_), leaf(4 * H_, I_), leaf(4 * H_, H_), leaf(4 * H_),
            leaf(4 * H_), None, None]
    workspace.empty_cache()
    with use_backend(backend):
        grads = []
        for keep in (True, False, False):
            out = lstm_layer(*args, keep)
            assert (out[3] is not None) == keep
            seen = out[0].sum() + out[1].sum() + 2 * out[2].sum()
            grads.append(torch.autograd.grad(seen, [a for a in args if a is not None]))
            if not keep:
                assert workspace.held_bytes() == T_ * B_ * 4 * H_ * 8        # given back after backward
        kept = workspace.take((T_, B_, 4 * H_), args[0])
        assert kept is not None and workspace.held_bytes() == 0
    workspace.empty_cache()
    for a, b in zip(grads[0], grads[1], strict=True):
        assert torch.equal(a, b)
    for a, b in zip(grads[0], grads[2], strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_lstm_function_second_backward_through_retained_graph_is_the_same(backend):
    """retain_graph=True: the first backward wrote dz over the saved gates; the second recomputes
    them and gets the first's gradients exactly."""
    torch.manual_seed(8)
    args = [leaf(T, B, I), leaf(B, P), leaf(B, H), leaf(4 * H, I), leaf(4 * H, P), leaf(4 * H), leaf(4 * H),
            leaf(P, H), torch.tensor([5, 2, 4])]
    inputs = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    with use_backend(backend):
        y, h_n, c_n, _, _, _ = ops.lstm_layer(*args, False)
        seen = (y * y).sum() + h_n.sum() + c_n.sum()
        first = torch.autograd.grad(seen, inputs, retain_graph=True)
        second = torch.autograd.grad(seen, inputs)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_lstm_trace_is_unchanged_by_backward(backend):
    """With the trace asked for, backward leaves the gates the caller holds as they were."""
    torch.manual_seed(9)
    model = lstmkit.LSTM(I, H).double()
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    with use_backend(backend):
        y, _, trace = model(x, return_trace=True)
        before = trace[0][0].forget_gate.clone()
        y.sum().backward()
    assert torch.equal(trace[0][0].forget_gate, before)


@pytest.mark.parametrize("backend", ["torch", "cpp"])
@pytest.mark.parametrize("lengths", LENGTHS, ids=["full", "lengths"])
@pytest.mark.parametrize("shape", [(T, B, I, H), (12, 8, 16, 128)], ids=["small", "team"])
def test_gru_inference_equals_function_forward(backend, lengths, shape):
    """lstmkit::gru_layer_inference (no gates or gh_n kept) gives lstmkit::gru_layer's y and h_n bit for bit,
    on both backends; the larger shape runs the compiled loop on a two-thread team."""
    T_, B_, I_, H_ = shape
    lengths = None if lengths is None else torch.randint(1, T_ + 1, (B_,), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(5)
    args = [leaf(T_, B_, I_), leaf(B_, H_), leaf(3 * H_, I_) * 0.2, leaf(3 * H_, H_) * 0.1, leaf(3 * H_),
            leaf(3 * H_), lengths]
    with use_backend(backend):
        want = ops.gru_layer(*args)[:2]
        with torch.no_grad():
            got = ops.gru_layer_inference(*args)
    for name, a, b in zip(("y", "h_n"), got, want, strict=True):
        assert torch.equal(a, b.detach()), name


@pytest.mark.parametrize("backend", ["torch", "cpp"])
@pytest.mark.parametrize("lengths", LENGTHS, ids=["full", "lengths"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_inference_equals_function_forward(backend, lengths, nonlinearity):
    """lstmkit::rnn_layer_inference (no copy of the states kept) gives lstmkit::rnn_layer's y and h_n
    bit for bit, on both backends, and h_n is not a view of y (changing y leaves it)."""
    from lstmkit import kernels

    if backend == "cpp" and not kernels.cpp_available():
        pytest.skip("the C++ CPU kernel could not be built on this machine")
    lengths = None if lengths is None else torch.randint(1, T + 1, (B,), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(6)
    args = [leaf(T, B, I), leaf(B, H), leaf(H, I) * 0.3, leaf(H, H) * 0.2, leaf(H), leaf(H), nonlinearity, lengths]
    with kernels.backend(backend):
        want = ops.rnn_layer(*args)[:2]
        with torch.no_grad():
            got = ops.rnn_layer_inference(*args)
    for name, a, b in zip(("y", "h_n"), got, want, strict=True):
        assert torch.equal(a, b.detach()), name
    before = got[1].clone()
    got[0].add_(1.0)
    assert torch.equal(got[1], before)


class _OpsSeen(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the name of every operator dispatched while active."""

    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("make", [lambda: lstmkit.LSTM(4, 6, num_layers=2), lambda: lstmkit.GRU(4, 6, num_layers=2),
                                  lambda: lstmkit.RNN(4, 6, num_layers=2)], ids=["lstm", "gru", "rnn"])
def test_modules_run_the_inference_operator_without_grad_and_the_cached_one_with(make):
    """Under no_grad a module runs lstmkit::*_layer_inference (no cache kept) and never the cached
    operator; with grad the reverse. Every recurrence is a dispatched operator (a dispatch mode sees it)."""
    model = make()
    x = torch.randn(5, 3, 4)
    name = type(model).__name__.lower()
    with torch.no_grad(), _OpsSeen() as seen:
        model(x)
    assert f"lstmkit.{name}_layer_inference.default" in seen.names
    assert f"lstmkit.{name}_layer.default" not in seen.names
    with _OpsSeen() as seen:
        model(x)[0].sum().backward()
    assert {f"lstmkit.{name}_layer.default", f"lstmkit.{name}_layer_backward.default"} <= seen.names
    assert f"lstmkit.{name}_layer_inference.default" not in seen.names


@pytest.mark.parametrize("make", [lambda: lstmkit.LSTM(4, 6, num_layers=2, proj_size=3), lambda: lstmkit.GRU(4, 6),
                                  lambda: lstmkit.RNN(4, 6)], ids=["lstm", "gru", "rnn"])
def test_direct_eager_call_equals_the_dispatched_operator(make):
    """In plain eager mode an entry calls the operator's implementation and autograd formula
    directly; under a dispatch mode it dispatches the operator. Outputs and gradients are the same
    bit for bit, with and without grad."""
    model = make().double()
    x = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    results = []
    for observed in (False, True):
        with (_OpsSeen() if observed else torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t)):
            y = model(x, lengths=[5, 2, 4])[0]
            grads = torch.autograd.grad(y.square().sum(), [x, *model.parameters()])
            with torch.no_grad():
                y_infer = model(x)[0]
        results.append((y, *grads, y_infer))
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)
