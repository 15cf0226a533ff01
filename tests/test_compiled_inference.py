"""The compiled inference path and streaming step of LSTM, GRU and RNN (``modules/compiled_inference.py``):
where it runs it returns exactly (bit for bit) what the general path returns, and it steps aside
(returns None, the general path runs and raises torch.nn's errors) wherever anything could tell the
two apart."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils import parametrize
from torch.nn.utils.rnn import pack_padded_sequence

import lstmkit
from lstmkit import kernels
from lstmkit.modules import base
from lstmkit.modules.base import RecurrentBase
from lstmkit.modules.compiled_inference import compiled_inference, compiled_step

pytestmark = pytest.mark.skipif(not kernels.cpp_available(),
                                reason=f"C++ CPU kernel unavailable: {kernels._build_error}")


def general(module, x, hx=None):
    """The general path (operators, checks, layouts), which forward takes when this one steps aside."""
    return RecurrentBase.general_forward(module, x, hx)


def make(**kw):
    torch.manual_seed(0)
    return lstmkit.LSTM(5, 7, **kw).eval()


@pytest.mark.parametrize("kw", [{}, {"num_layers": 3}, {"proj_size": 3}, {"batch_first": True}, {"bias": False},
                                {"num_layers": 2, "proj_size": 4, "dropout": 0.5},
                                {"dtype": torch.float64, "num_layers": 2}, {"bidirectional": True},
                                {"bidirectional": True, "num_layers": 2, "proj_size": 4, "batch_first": True},
                                {"bidirectional": True, "num_layers": 3, "dtype": torch.float64}])
@pytest.mark.parametrize("with_hx", [False, True])
@pytest.mark.parametrize("grad_mode", ["no_grad", "frozen"])
def test_equals_the_general_path_bit_for_bit(kw, with_hx, grad_mode):
    m = make(**kw)
    dtype = kw.get("dtype", torch.float32)
    x = torch.randn(6, 3, 5, dtype=dtype)                       # (B,T,I) with batch_first: B=6, T=3
    B = 3 if not kw.get("batch_first") else 6
    L, P = kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1), kw.get("proj_size") or 7
    hx = (torch.randn(L, B, P, dtype=dtype), torch.randn(L, B, 7, dtype=dtype)) if with_hx else None
    if grad_mode == "frozen":                                   # grad enabled, nothing requires it
        m.requires_grad_(False)
        fast = compiled_inference(m, x, hx)
        want = general(m, x, hx)
    else:
        with torch.no_grad():
            fast = compiled_inference(m, x, hx)
            want = general(m, x, hx)
    assert fast is not None, "the compiled inference path should run here"
    y, (h, c) = fast
    if kw.get("bidirectional"):     # the two directions at once, one thread each: BLAS's input projection on
        tol = {"rtol": 0, "atol": 1e-14 if dtype == torch.float64 else 1e-6}  # one thread may round differently
        for got, ref in ((y, want[0]), (h, want[1][0]), (c, want[1][1])):
            torch.testing.assert_close(got, ref, **tol)
    else:
        assert torch.equal(y, want[0]) and torch.equal(h, want[1][0]) and torch.equal(c, want[1][1])
    assert h.data_ptr() != y.data_ptr()                         # h_n is its own tensor, as torch.nn's
    with torch.no_grad():
        out = m(x, hx)                                           # forward takes it
    assert torch.equal(out[0], y)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_matches_torch_nn_lstm(bidirectional):
    ref = torch.nn.LSTM(5, 7, num_layers=2, proj_size=3, bidirectional=bidirectional).double().eval()
    m = lstmkit.LSTM.from_torch(ref)
    x = torch.randn(4, 2, 5, dtype=torch.float64)
    with torch.no_grad():
        assert compiled_inference(m, x, None) is not None
        y, (h, c) = m(x)
        y_ref, (h_ref, c_ref) = ref(x)
    for a, b in ((y, y_ref), (h, h_ref), (c, c_ref)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_both_directions_at_once_match_torch_nn_where_threads_split_the_work(threads, dtype):
    """At two threads each direction of a layer runs on its own thread (kernels/bidir_cpu.cpp); at
    other counts one after the other. Sizes where a lone direction would split its units at a
    barrier (B=8) or its rows (B=64), with a projection, several layers and a given state."""
    torch.manual_seed(1)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for T, B, H, kw in ((30, 8, 96, {}), (12, 64, 80, {"proj_size": 40, "num_layers": 2}),
                            (5, 1, 33, {"num_layers": 3, "batch_first": True})):
            ref = torch.nn.LSTM(H + 3, H, bidirectional=True, dtype=dtype, **kw).eval()
            m = lstmkit.LSTM.from_torch(ref)
            P, L = kw.get("proj_size") or H, kw.get("num_layers", 1) * 2
            x = torch.randn(*((B, T) if kw.get("batch_first") else (T, B)), H + 3, dtype=dtype)
            hx = (torch.randn(L, B, P, dtype=dtype), torch.randn(L, B, H, dtype=dtype))
            with torch.no_grad():
                assert compiled_inference(m, x, hx) is not None
                got, want = m(x, hx), ref(x, hx)
            tol = {"rtol": 0, "atol": 1e-12 if dtype == torch.float64 else 2e-5}
            torch.testing.assert_close(got[0], want[0], **tol)
            torch.testing.assert_close(got[1][0], want[1][0], **tol)
            torch.testing.assert_close(got[1][1], want[1][1], **tol)
    finally:
        torch.set_num_threads(old)


def test_a_refused_argument_of_the_pair_is_an_error_not_a_crash():
    """An error raised on a thread of the pair's region comes back as the caller's RuntimeError."""
    torch.manual_seed(0)
    T, B, I, H = 4, 3, 5, 7
    x = torch.randn(T, B, I)
    w = (torch.randn(4 * H, I), torch.randn(4 * H, H), None, None)
    good, bad = torch.zeros(B, H), torch.zeros(B + 1, H)
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError, match="h0"):
            kernels.lstm_layer_forward_pair(x, x.flip(0), good, good, bad, good, w, w)
    finally:
        torch.set_num_threads(old)


def _parametrized():
    m = make()

    class Double(torch.nn.Module):
        def forward(self, w):
            return 2 * w
    parametrize.register_parametrization(m, "weight_hh_l0", Double())
    return m


class _OwnLayers(lstmkit.LSTM):
    def _run_direction(self, x, state, layer, direction, lengths, want_trace):
        y, s, t = super()._run_direction(x, state, layer, direction, lengths, want_trace)
        return y + 1, s, t


@pytest.mark.parametrize("case", ["grad", "dropout_training", "unbatched", "packed", "hx_list",
                                  "hx_shape", "hx_grad", "parametrized", "float16", "torch_backend", "input_size",
                                  "empty_batch", "autocast", "tracing"])
def test_steps_aside_where_anything_could_tell(case):
    m, x, hx = make(), torch.randn(4, 3, 5), None
    grad = case == "grad"
    if case == "dropout_training":
        m = make(num_layers=2, dropout=0.5).train()
    elif case == "unbatched":
        x = torch.randn(4, 5)
    elif case == "packed":
        x = pack_padded_sequence(x, [4, 3, 2])
    elif case == "hx_list":
        hx = [torch.zeros(1, 3, 7), torch.zeros(1, 3, 7)]
    elif case == "hx_shape":
        hx = (torch.zeros(1, 2, 7), torch.zeros(1, 3, 7))
    elif case == "hx_grad":
        hx = (torch.zeros(1, 3, 7, requires_grad=True), torch.zeros(1, 3, 7))
    elif case == "parametrized":
        m = _parametrized()
    elif case == "float16":
        x = x.half()
    elif case == "input_size":
        x = torch.randn(4, 3, 6)
    elif case == "empty_batch":
        x = torch.randn(4, 0, 5)
    with torch.set_grad_enabled(grad):
        if case == "torch_backend":
            with kernels.backend("torch"):
                assert compiled_inference(m, x, hx) is None
        elif case == "autocast":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                assert compiled_inference(m, x, hx) is None
        elif case == "tracing":
            seen = []
            torch.jit.trace(lambda t: seen.append(compiled_inference(m, t, None)) or t.sum(), (x,), check_trace=False)
            assert seen == [None]
        else:
            assert compiled_inference(m, x, hx) is None


def test_wrong_arguments_still_get_torch_nn_errors():
    m = make()
    with torch.no_grad():
        with pytest.raises(RuntimeError, match="input.size\\(-1\\) must be equal to input_size"):
            m(torch.randn(4, 3, 6))
        with pytest.raises(RuntimeError, match="Expected hidden"):
            m(torch.randn(4, 3, 5), (torch.zeros(1, 2, 7), torch.zeros(1, 3, 7)))


def test_a_subclass_that_changes_a_layer_keeps_its_way():
    torch.manual_seed(0)
    m = _OwnLayers(5, 7).eval()
    x = torch.randn(4, 3, 5)
    with torch.no_grad():
        assert torch.equal(m(x)[0], general(m, x)[0])
        assert torch.equal(m(x)[0], RecurrentBase.general_forward(lstmkit.LSTM.from_torch(m.to_torch()), x)[0] + 1)


KINDS = {"lstm": lstmkit.LSTM, "gru": lstmkit.GRU, "rnn": lstmkit.RNN}


def _finals(state):
    return state if isinstance(state, tuple) else (state,)


_GRU_RNN_KW = [{}, {"num_layers": 3}, {"batch_first": True}, {"bias": False}, {"dtype": torch.float64, "num_layers": 2},
               {"bidirectional": True}, {"bidirectional": True, "num_layers": 2, "batch_first": True},
               {"num_layers": 2, "dropout": 0.5}]


@pytest.mark.parametrize("kind,kw", [(k, kw) for k in ("gru", "rnn") for kw in _GRU_RNN_KW]
                         + [("rnn", {"nonlinearity": "relu"})])
@pytest.mark.parametrize("T", [1, 4])
@pytest.mark.parametrize("with_hx", [False, True])
def test_gru_and_rnn_equal_the_general_path_bit_for_bit(kind, kw, T, with_hx):
    torch.manual_seed(0)
    m = KINDS[kind](5, 7, **kw).eval()
    dtype = kw.get("dtype", torch.float32)
    B = 3
    x = torch.randn(*((B, T) if kw.get("batch_first") else (T, B)), 5, dtype=dtype)
    L = kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)
    hx = torch.randn(L, B, 7, dtype=dtype) if with_hx else None
    with torch.no_grad():
        fast = compiled_inference(m, x, hx)
        want = general(m, x, hx)
        assert fast is not None, "the compiled inference path should run here"
        assert torch.equal(fast[0], want[0]) and torch.equal(fast[1], want[1])
        assert fast[1].data_ptr() != fast[0].data_ptr()          # h_n is its own tensor, as torch.nn's
        assert torch.equal(m(x, hx)[0], fast[0])                 # forward takes it
    ref = m.to_torch().eval()
    with torch.no_grad():
        y_ref, h_ref = ref(x, hx)
    tol = {"rtol": 0, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 2e-6}
    torch.testing.assert_close(fast[0], y_ref, **tol)
    torch.testing.assert_close(fast[1], h_ref, **tol)


_STEP_KW = [{}, {"num_layers": 2}, {"dtype": torch.float64, "num_layers": 3}, {"bias": False}]


@pytest.mark.parametrize("kind,kw", [(k, kw) for k in KINDS for kw in _STEP_KW] + [("lstm", {"proj_size": 3})])
@pytest.mark.parametrize("B", [0, 1, 2, 20])
@pytest.mark.parametrize("threads", [1, 2])
def test_a_streaming_step_is_the_general_step_bit_for_bit_and_steps_equal_one_call(kind, kw, B, threads, monkeypatch):
    """B=0 is unbatched input ((I,), state (L,·)); 20 rows take the RNN cell's own kernel."""
    torch.manual_seed(1)
    m = KINDS[kind](5, 7, **kw).eval()
    dtype = kw.get("dtype", torch.float32)
    xs = torch.randn(4, *((B,) if B else ()), 5, dtype=dtype)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            state, ys, states = None, [], []
            for x_t in xs:
                assert compiled_step(m, x_t, state) is not None, "the compiled step should run here"
                y_t, state = m.step(x_t, state)
                for a in _finals(state):
                    assert a.data_ptr() != y_t.data_ptr()            # the state is not the output
                ys.append(y_t)
                states.append(state)
            y, final = m(xs if B else xs.unsqueeze(1))             # one call over the whole sequence
            monkeypatch.setattr(base, "compiled_step", lambda *args: None)
            want_state = None
            for x_t, y_t, got_state in zip(xs, ys, states, strict=True):
                want_y, want_state = m.step(x_t, want_state)       # the general step
                assert torch.equal(y_t, want_y)
                for a, b in zip(_finals(got_state), _finals(want_state), strict=True):
                    assert torch.equal(a, b)
    finally:
        torch.set_num_threads(old)
    tol = {"rtol": 0, "atol": 1e-13} if dtype == torch.float64 else {"rtol": 0, "atol": 1e-6}
    torch.testing.assert_close(torch.stack(ys), y if B else y.squeeze(1), **tol)
    for a, b in zip(_finals(state), _finals(final), strict=True):
        torch.testing.assert_close(a, b if B else b.squeeze(1), **tol)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", ["dropout_training", "bidirectional", "state_list", "state_shape",
                                  "parametrized", "float16", "torch_backend", "three_dims", "input_size"])
def test_a_step_steps_aside_where_anything_could_tell(kind, case):
    """(A step with a gradient runs every layer's autograd step in one call:
    tests/test_stack_inference.py.)"""
    torch.manual_seed(0)
    m = KINDS[kind](5, 7, num_layers=2).eval()
    x, state = torch.randn(3, 5), None
    if case == "dropout_training":
        m = KINDS[kind](5, 7, num_layers=2, dropout=0.5).train()
    elif case == "bidirectional":
        m = KINDS[kind](5, 7, bidirectional=True)
    elif case == "state_list":
        state = [torch.zeros(2, 3, 7)] * (2 if kind == "lstm" else 1)
    elif case == "state_shape":
        state = (torch.zeros(2, 4, 7),) * 2 if kind == "lstm" else torch.zeros(2, 4, 7)
    elif case == "parametrized":
        class Double(torch.nn.Module):
            def forward(self, w):
                return 2 * w
        parametrize.register_parametrization(m, "weight_hh_l1", Double())
    elif case == "float16":
        x = x.half()
    elif case == "three_dims":
        x = torch.randn(1, 3, 5)
    elif case == "input_size":
        x = torch.randn(3, 6)
    with torch.no_grad():
        if case == "torch_backend":
            with kernels.backend("torch"):
                assert compiled_step(m, x, state) is None
        else:
            assert compiled_step(m, x, state) is None


def test_a_subclass_that_changes_a_layer_keeps_its_way_in_a_step_too():
    torch.manual_seed(0)
    m = _OwnLayers(5, 7).eval()
    x = torch.randn(3, 5)
    with torch.no_grad():
        y, _ = m.step(x)
        plain = lstmkit.LSTM.from_torch(m.to_torch()).eval()
        assert torch.equal(y, plain.step(x)[0] + 1)
