"""Every layer of an LSTM, GRU or RNN's inference in one C++ call (``kernels.stack_inference``,
kernels/stack_cpu.cpp): it runs for this package's classes, gives exactly (bit for bit) what the
loop over layers in Python gives (the same kernel calls), leaves a subclass's own layer call alone,
and refuses a raw call it cannot run with an error, never a crash. One step where autograd
records (``kernels.stack_one_step``): the general path's values and every gradient, bit for bit."""

from __future__ import annotations

import pytest
import torch

import lstmkit
from lstmkit import kernels
from lstmkit.modules import base
from lstmkit.modules.base import RecurrentBase
from lstmkit.modules.compiled_inference import compiled_inference
from lstmkit.modules.variant_lstm import VariantLSTM

pytestmark = pytest.mark.skipif(not kernels.cpp_available(),
                                reason=f"C++ CPU kernel unavailable: {kernels._build_error}")

KINDS = {"lstm": lstmkit.LSTM, "gru": lstmkit.GRU, "rnn": lstmkit.RNN}
_KW = [{}, {"num_layers": 3}, {"batch_first": True}, {"bias": False}, {"dtype": torch.float64, "num_layers": 2},
       {"bidirectional": True}, {"bidirectional": True, "num_layers": 2, "batch_first": True}]
CASES = ([(k, kw) for k in KINDS for kw in _KW] + [("rnn", {"nonlinearity": "relu", "num_layers": 2})]
         + [("lstm", {"proj_size": 3, "num_layers": 2}), ("lstm", {"proj_size": 4, "bidirectional": True})])


def _counter(monkeypatch, name):
    """Counts the compiled namespace's calls of name."""
    rec = kernels.compiled_cells()
    original, calls = getattr(rec, name), {"n": 0}

    def counting(*args):
        calls["n"] += 1
        return original(*args)

    monkeypatch.setattr(rec, name, counting)
    return calls


@pytest.fixture
def stack_calls(monkeypatch):
    return _counter(monkeypatch, "stack_inference")


@pytest.fixture
def step_calls(monkeypatch):
    return _counter(monkeypatch, "stack_one_step")


def _state(kind, m, B, dtype):
    L = m.num_layers * (2 if m.bidirectional else 1)
    h = torch.randn(L, B, m.proj_size or m.hidden_size, dtype=dtype)
    return (h, torch.randn(L, B, m.hidden_size, dtype=dtype)) if kind == "lstm" else h


def _flat(out):
    y, state = out
    return (y, *(state if isinstance(state, tuple) else (state,)))


@pytest.mark.parametrize("kind,kw", CASES)
@pytest.mark.parametrize("T", [1, 5])
@pytest.mark.parametrize("with_hx", [False, True])
def test_one_call_equals_the_loop_over_layers_bit_for_bit(kind, kw, T, with_hx, stack_calls):
    torch.manual_seed(0)
    m = KINDS[kind](6, 9, **kw).eval()
    dtype, B = kw.get("dtype", torch.float32), 4
    x = torch.randn(*((B, T) if kw.get("batch_first") else (T, B)), 6, dtype=dtype)
    hx = _state(kind, m, B, dtype) if with_hx else None
    with torch.no_grad():
        fast = compiled_inference(m, x, hx)
        assert stack_calls["n"] == 1 and fast is not None
        m._stack_kind_of = lambda: None                        # the loop over layers in Python
        loop = compiled_inference(m, x, hx)
        assert stack_calls["n"] == 1 and loop is not None
    for got, want in zip(_flat(fast), _flat(loop), strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape and torch.equal(got, want)
    y, *finals = _flat(fast)
    assert all(f.untyped_storage().data_ptr() != y.untyped_storage().data_ptr() for f in finals)  # h_n is not y


def test_the_stack_runs_only_the_classes_whose_layer_calls_it_mirrors():
    assert [base.stack_kind(k) for k in KINDS.values()] == ["lstm", "gru", "rnn"]

    class Renamed(lstmkit.GRU):                                 # keeps GRU's layers: still the stack
        pass

    assert base.stack_kind(Renamed) == "gru"
    assert base.stack_kind(VariantLSTM) is None                # its own cell: never the plain LSTM's kernels
    assert base.stack_kind(_ShiftedGRU) is None


class _ShiftedGRU(lstmkit.GRU):
    """A subclass that changes only a layer's inference call (adds 1 to every output)."""

    def _infer_direction(self, rec, x, state, weights):
        y, (h_n,) = super()._infer_direction(rec, x, state, weights)
        return y + 1, (h_n + 1,)


def test_a_subclass_with_its_own_layer_call_keeps_it(stack_calls):
    torch.manual_seed(0)
    m = _ShiftedGRU(5, 7).eval()
    plain = lstmkit.GRU(5, 7).eval()
    plain.load_state_dict(m.state_dict())
    x = torch.randn(4, 3, 5)
    with torch.no_grad():
        y, h = m(x)
        assert stack_calls["n"] == 0
        y_plain, h_plain = plain(x)
    assert torch.equal(y, y_plain + 1) and torch.equal(h, h_plain + 1)


def _weights(kind, I=6, H=9, layers=1, D=1):
    G = {"lstm": 4, "gru": 3, "rnn": 1}[kind] * H
    out = []
    for layer in range(layers):
        for _ in range(D):
            n_in = I if layer == 0 else D * H
            out += [torch.randn(G, n_in), torch.randn(G, H), torch.randn(G), torch.randn(G), None]
    return out


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("T", [1, 3])
def test_the_raw_entry_refuses_what_it_cannot_run(kind, T):
    ext = kernels.load_extension()
    x, w = torch.randn(T, 2, 6), _weights(kind)
    call = lambda *a: ext.stack_inference(*a, 0, 1 << 20)   # noqa: E731 (path, chunk)
    y, *finals = call(kind, x, [], w, 1, "tanh")           # a valid call first
    assert y.shape == (T, 2, 9) and all(f.shape == (1, 2, 9) for f in finals)
    bad = [
        (("tree", x, [], w, 1, "tanh"), "kind should be"),
        ((kind, x, [], w, 3, "tanh"), "directions should be 1 or 2"),
        ((kind, x, [], w[:4], 1, "tanh"), "weights should be 5 tensors"),
        ((kind, x, [], [w[0], None, *w[2:]], 1, "tanh"), "has no w_ih or w_hh"),
        ((kind, x, [torch.zeros(1, 2, 9)] * 3, w, 1, "tanh"), "state should be empty or"),
        ((kind, x, [torch.zeros(2, 2, 9)] * (2 if kind == "lstm" else 1), w, 1, "tanh"), "L\\*D = 1"),
        ((kind, x[0], [], w, 1, "tanh"), "x should have 3 dimensions"),
        ((kind, torch.randn(T, 2, 5), [], w, 1, "tanh"), "should have shape"),         # I != w_ih's
        ((kind, x, [], [w[0].double(), *w[1:]], 1, "tanh"), "dtype"),
    ]
    if kind == "rnn":
        bad.append(((kind, x, [], w, 1, "sigmoid"), "nonlinearity should be"))
    for args, message in bad:
        with pytest.raises((RuntimeError, ValueError, IndexError), match=message):
            call(*args)


_STEP_KW = [{}, {"num_layers": 3}, {"bias": False}, {"batch_first": True, "num_layers": 2},
            {"dtype": torch.float64, "num_layers": 2}]


@pytest.mark.parametrize("kind,kw", [(k, kw) for k in KINDS for kw in _STEP_KW]
                         + [("rnn", {"nonlinearity": "relu", "num_layers": 2})])
@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("wants", ["params", "x_and_hx", "hx_only"])
def test_one_step_with_a_gradient_equals_the_general_path_in_values_and_every_gradient(kind, kw, B, wants,
                                                                                      step_calls):
    torch.manual_seed(0)
    m = KINDS[kind](6, 9, **kw)                                 # training mode, as a training loop has it
    dtype = kw.get("dtype", torch.float32)
    if wants == "hx_only":
        m.requires_grad_(False)

    def inputs():
        torch.manual_seed(1)
        x = torch.randn(B, 1, 6, dtype=dtype) if kw.get("batch_first") else torch.randn(1, B, 6, dtype=dtype)
        hx = _state(kind, m, B, dtype) if wants != "params" else None
        if wants != "params":
            x.requires_grad_(wants == "x_and_hx")
            hx = tuple(t.requires_grad_() for t in hx) if kind == "lstm" else hx.requires_grad_()
        return x, hx

    def run(forward):
        x, hx = inputs()
        out = _flat(forward(m, x, hx))
        loss = sum((o * torch.linspace(-1, 1, o.numel(), dtype=dtype).view_as(o)).sum() for o in out)
        leaves = [t for t in (x, *(_flat((x, hx))[1:] if hx is not None else ())) if t.requires_grad]
        leaves += [p for p in m.parameters() if p.requires_grad]
        return out, torch.autograd.grad(loss, leaves)

    fast_out, fast_grads = run(lambda mod, x, hx: mod(x, hx))
    assert step_calls["n"] == 1
    general_out, general_grads = run(lambda mod, x, hx: RecurrentBase.general_forward(mod, x, hx))
    assert step_calls["n"] == 1
    for got, want in zip((*fast_out, *fast_grads), (*general_out, *general_grads), strict=True):
        assert got.shape == want.shape and torch.equal(got, want)


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_streaming_step_with_a_gradient_takes_it_too(kind, step_calls):
    torch.manual_seed(0)
    m = KINDS[kind](4, 5, num_layers=2).double()
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    y, state = m.step(x)
    assert step_calls["n"] == 1
    y2, _ = m.step(x, state)                                    # the graph runs through both steps
    assert step_calls["n"] == 2
    with torch.no_grad():
        want = RecurrentBase.general_forward(m, torch.stack([x, x]))[0]
    torch.testing.assert_close(torch.stack([y, y2]), want, rtol=0, atol=1e-12)
    g = torch.autograd.grad(y2.sum(), x)[0]
    x_ref = x.detach().requires_grad_()
    g_ref = torch.autograd.grad(RecurrentBase.general_forward(m, torch.stack([x_ref, x_ref]))[0][1].sum(), x_ref)[0]
    torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", list(KINDS))
def test_second_derivatives_through_one_recorded_step(kind, step_calls):
    torch.manual_seed(0)
    m = KINDS[kind](3, 4, num_layers=2).double()
    x = torch.randn(1, 2, 3, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 2, 4, dtype=torch.float64, requires_grad=True)
    hx = (h, torch.randn(2, 2, 4, dtype=torch.float64)) if kind == "lstm" else h

    def f(x, h):
        state = (h, hx[1]) if kind == "lstm" else h
        return m(x, state)[0]

    assert torch.autograd.gradgradcheck(f, (x, h))
    assert step_calls["n"] > 0


@pytest.mark.parametrize("case", ["bidirectional", "projection", "dropout_training", "two_steps"])
def test_a_recorded_call_steps_aside_where_the_one_step_does_not_apply(case, step_calls):
    kw = {"bidirectional": {"bidirectional": True}, "projection": {"proj_size": 3},
          "dropout_training": {"num_layers": 2, "dropout": 0.5}, "two_steps": {}}[case]
    m = lstmkit.LSTM(6, 9, **kw)
    x = torch.randn(2 if case == "two_steps" else 1, 3, 6)
    assert compiled_inference(m, x, None) is None and step_calls["n"] == 0
