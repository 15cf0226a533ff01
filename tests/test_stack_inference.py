"""Every layer of an LSTM, GRU or RNN's inference in one C++ call (``kernels.stack_inference``,
kernels/stack_cpu.cpp): it runs for this package's classes, gives exactly (bit for bit) what the
loop over layers in Python gives (the same kernel calls), leaves a subclass's own layer call alone,
and refuses a raw call it cannot run with an error, never a crash."""

from __future__ import annotations

import pytest
import torch

import lstmkit
from lstmkit import kernels
from lstmkit.modules import base
from lstmkit.modules.compiled_inference import compiled_inference
from lstmkit.modules.variant_lstm import VariantLSTM

pytestmark = pytest.mark.skipif(not kernels.cpp_available(),
                                reason=f"C++ CPU kernel unavailable: {kernels._build_error}")

KINDS = {"lstm": lstmkit.LSTM, "gru": lstmkit.GRU, "rnn": lstmkit.RNN}
_KW = [{}, {"num_layers": 3}, {"batch_first": True}, {"bias": False}, {"dtype": torch.float64, "num_layers": 2},
       {"bidirectional": True}, {"bidirectional": True, "num_layers": 2, "batch_first": True}]
CASES = ([(k, kw) for k in KINDS for kw in _KW] + [("rnn", {"nonlinearity": "relu", "num_layers": 2})]
         + [("lstm", {"proj_size": 3, "num_layers": 2}), ("lstm", {"proj_size": 4, "bidirectional": True})])


@pytest.fixture
def stack_calls(monkeypatch):
    """Counts the compiled namespace's stack_inference calls."""
    rec = kernels.compiled_cells()
    original, calls = rec.stack_inference, {"n": 0}

    def counting(*args):
        calls["n"] += 1
        return original(*args)

    monkeypatch.setattr(rec, "stack_inference", counting)
    return calls


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
