"""The cells' compiled step (``kernels/cell_cpu.cpp``, taken by ``_CellBase._compiled_step``; with a
gradient through the C++ autograd nodes of ``kernels/cell_autograd.cpp``): where it runs it gives
exactly what the general path gives without a gradient (bit for bit; where a step has a kernel of
its own, one row or the RNN cell's batches, within float rounding, and bit for bit at any thread
count), and torch.nn's outputs and
every gradient within the stated tolerances; gradcheck, double backward and a retained graph; it
runs only where nothing could tell it apart, and wrong arguments still get torch.nn's errors; the
C++ entries check every tensor.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch_oracle import TOLERANCE, require_cpp

import lstmkit
from lstmkit import kernels
from lstmkit.modules.cells import _CellBase

KINDS = ("lstm", "gru", "rnn")


def make(kind: str, I: int = 7, H: int = 13, **kw):
    torch.manual_seed(0)
    ours = getattr(lstmkit, kind.upper() + "Cell")(I, H, **kw)
    theirs = getattr(nn, kind.upper() + "Cell")(I, H, **kw)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def state(kind: str, B: int, H: int, dtype=torch.float32):
    h = torch.randn(B, H, dtype=dtype)
    return (h, torch.randn(B, H, dtype=dtype)) if kind == "lstm" else h


def as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


@pytest.fixture
def one_thread():
    """One thread: bit for bit comparisons (a threaded BLAS may split a product differently from one
    call to the next when the machine is busy)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def calls(monkeypatch):
    """How many steps went through the compiled entry."""
    require_cpp()
    counted = {"n": 0}
    original = _CellBase._compiled_step

    def counting(self, input, hx):
        out = original(self, input, hx)
        counted["n"] += out is not None
        return out

    monkeypatch.setattr(_CellBase, "_compiled_step", counting)
    return counted


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("B,I,H", [(1, 7, 13), (5, 100, 100), (8, 33, 37), (20, 200, 200), (3, 16, 650)])
def test_compiled_step_is_the_general_path_bit_for_bit_and_torch_nn_within_tolerance(kind, dtype, bias, B, I, H,
                                                                                     calls, monkeypatch, one_thread):
    ours, theirs = make(kind, I, H, bias=bias, dtype=dtype)
    x, hx = torch.randn(B, I, dtype=dtype), state(kind, B, H, dtype)
    with torch.no_grad():
        fast = [as_tuple(ours(x, hx)), as_tuple(ours(x))]
        assert calls["n"] == 2
        reference = [as_tuple(theirs(x, hx)), as_tuple(theirs(x))]
        monkeypatch.setattr(_CellBase, "_compiled_step", lambda self, input, hx: None)
        general = [as_tuple(ours(x, hx)), as_tuple(ours(x))]
    for f, g, r in zip(fast, general, reference, strict=True):  # (a one-step layer without a gradient is
        for a, b, c in zip(f, g, r, strict=True):                # the cell's call: functional.*_op._inference)
            assert torch.equal(a, b)
            torch.testing.assert_close(a, c, **TOLERANCE[dtype])



@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind,B,I,H,kw", [
    ("rnn", 20, 200, 200, {}), ("rnn", 16, 300, 650, {"nonlinearity": "relu"}), ("rnn", 64, 50, 129, {}),
    ("rnn", 17, 700, 700, {}), ("rnn", 1, 900, 1000, {"nonlinearity": "relu"}), ("rnn", 1, 5, 3, {}),
    ("lstm", 1, 300, 650, {}), ("lstm", 1, 7, 13, {}), ("gru", 1, 500, 700, {}), ("gru", 1, 7, 13, {})])
def test_one_step_kernels_do_not_depend_on_thread_count_and_equal_torch_nn(dtype, bias, kind, B, I, H, kw, calls):
    """The cells' one-step kernels at one thread and at two (one_step.h): one row, each thread its
    own units by dot products against the weights as stored, a team of two from 512K multiply-adds
    (the larger ones; 650 and 1000 units leave a ragged vector), one thread below: bit for bit at
    both counts. The RNN cell's rows: at two threads one team on the weights as stored where both
    weights fit the threads' L2 caches (20 x 200 x 200, 64 x 50 x 129), else two GEMM calls, as at
    one thread (16 x 300 x 650, 17 x 700 x 700). torch.nn's within TOLERANCE always."""
    ours, theirs = make(kind, I, H, bias=bias, dtype=dtype, **kw)
    x, hx = torch.randn(B, I, dtype=dtype), state(kind, B, H, dtype)
    threads = torch.get_num_threads()
    try:
        got = []
        for n in (1, 2):
            torch.set_num_threads(n)
            with torch.no_grad():
                got.append(as_tuple(ours(x, hx)))
    finally:
        torch.set_num_threads(threads)
    assert calls["n"] == 2
    with torch.no_grad():
        expected = as_tuple(theirs(x, hx))
    for a, b, e in zip(*got, expected, strict=True):
        assert torch.equal(a, b) or B > 1
        torch.testing.assert_close(a, e, **TOLERANCE[dtype])
        torch.testing.assert_close(b, e, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("B,I,H", [(2, 5, 3), (9, 33, 37), (8, 128, 128), (12, 100, 101), (16, 100, 100),
                                   (3, 0, 20), (20, 200, 200), (130, 20, 24)])
@pytest.mark.parametrize("kind,path", [("lstm", 0), ("lstm", 2), ("gru", None), ("rnn", "tanh"), ("rnn", "relu")])
def test_the_cells_rows_by_team_or_by_gemm_calls_equal_torch_nn(dtype, bias, B, I, H, kind, path):
    """The cells' step of several rows at two threads (kernels/one_step.h's rows_step_by_team): one
    team on the weights as stored where W_ih and W_hh fit the team's L2 caches (one thread below
    512K multiply-adds: 9 x 33 x 37; two from there: 12 x 100 x 101 with a ragged vector, 8 x 128 x
    128, 16 x 100 x 100; float64's 20 x 200 x 200 past them, and 130 rows past the team's 128), else
    two GEMM calls (the GRU: its layer's one step); the LSTM cell's path 2 (BLAS) always the GEMM
    calls. The new state, and with the cache what the backward reads (the activated gates; the
    GRU's W_hn h + b_hn too), equal torch.nn's step and the cell's formula within TOLERANCE (no
    input features too); the RNN cell (path: its nonlinearity) equals torch.nn's step."""
    require_cpp()
    ext = kernels.load_extension()
    g = torch.Generator().manual_seed(B * 1000 + H)
    G = {"lstm": 4, "gru": 3, "rnn": 1}[kind] * H

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype) * 0.5
    x, h, c, w_ih, w_hh = r(B, I), r(B, H), r(B, H), r(G, I), r(G, H)
    b_ih, b_hh = (r(G), r(G)) if bias else (torch.zeros(G, dtype=dtype), torch.zeros(G, dtype=dtype))
    given = (b_ih, b_hh) if bias else (None, None)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        if kind == "lstm":
            bare, cached = (ext.lstm_cell_forward(x, h, c, w_ih, w_hh, *given, path, k) for k in (False, True))
        elif kind == "gru":
            bare, cached = (ext.gru_cell_forward(x, h, w_ih, w_hh, *given, k) for k in (False, True))
        else:
            got = ext.rnn_cell_forward(x, h, w_ih, w_hh, *given, path)
    finally:
        torch.set_num_threads(threads)
    if kind == "rnn":
        step = torch._VF.rnn_tanh_cell if path == "tanh" else torch._VF.rnn_relu_cell
        torch.testing.assert_close(got, step(x, h, w_ih, w_hh, *given), **TOLERANCE[dtype])
        return
    gi, gh = x @ w_ih.T + b_ih, h @ w_hh.T + b_hh                                 # (B,G) each
    if kind == "lstm":
        z = gi + gh                                                               # [i f g o]
        want = torch._VF.lstm_cell(x, (h, c), w_ih, w_hh, *given)
        kept = [torch.cat([z[:, :2 * H].sigmoid(), z[:, 2 * H:3 * H].tanh(), z[:, 3 * H:].sigmoid()], dim=1)]
    else:
        rz = (gi[:, :2 * H] + gh[:, :2 * H]).sigmoid()                            # [r z]
        n = (gi[:, 2 * H:] + rz[:, :H] * gh[:, 2 * H:]).tanh()
        want = [torch._VF.gru_cell(x, h, w_ih, w_hh, *given)]
        kept = [torch.cat([rz, n], dim=1), gh[:, 2 * H:]]
    for got in (bare, cached):
        for a, e in zip(got[:len(want)], want, strict=True):
            torch.testing.assert_close(a, e, **TOLERANCE[dtype])
    assert len(bare) == len(want) and all(torch.equal(a, b) for a, b in zip(bare, cached[:len(want)], strict=True))
    for a, e in zip(cached[len(want):], kept, strict=True):
        torch.testing.assert_close(a, e, **TOLERANCE[dtype])


def grads_of(cell, kind, x, hx, weights):
    """Outputs and the gradients of a fixed weighting of them w.r.t. x, the state and every parameter."""
    x = x.clone().requires_grad_()
    hx = tuple(t.clone().requires_grad_() for t in as_tuple(hx))
    out = as_tuple(cell(x, hx if kind == "lstm" else hx[0]))
    loss = sum((o * w).sum() for o, w in zip(out, weights, strict=True))
    return [*out, *torch.autograd.grad(loss, [x, *hx, *cell.parameters()])]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("B,I,H", [(1, 7, 13), (20, 200, 200), (3, 16, 650)])
def test_with_a_gradient_outputs_and_every_gradient_are_torch_nns(kind, dtype, bias, B, I, H, calls):
    ours, theirs = make(kind, I, H, bias=bias, dtype=dtype)
    x, hx = torch.randn(B, I, dtype=dtype), state(kind, B, H, dtype)
    weights = [torch.randn(B, H, dtype=dtype) for _ in as_tuple(hx)]
    got, expected = grads_of(ours, kind, x, hx, weights), grads_of(theirs, kind, x, hx, weights)
    assert calls["n"] == 1
    tolerance = TOLERANCE[dtype] if dtype is torch.float64 else {"rtol": 1e-4, "atol": 1e-5}  # sums over B
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, **tolerance)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("B", [1, 5, 20])
def test_rnn_cell_backward_dz_in_one_loop_equals_torch_nn(nonlinearity, dtype, B, calls):
    """The RNN cell's backward without create_graph takes dz = dh act'(h') in one loop: every
    gradient equals torch.nn's, for a dense dh and for the expanded one a sum() hands back."""
    ours, theirs = make("rnn", 30, 40, nonlinearity=nonlinearity, dtype=dtype)
    x, h = torch.randn(B, 30, dtype=dtype), torch.randn(B, 40, dtype=dtype)
    weights = [torch.randn(B, 40, dtype=dtype)]
    torch.testing.assert_close(grads_of(ours, "rnn", x, h, weights), grads_of(theirs, "rnn", x, h, weights),
                               **TOLERANCE[dtype])
    got, expected = [], []
    for cell, out in ((ours, got), (theirs, expected)):
        params = list(cell.parameters())
        xg = x.clone().requires_grad_()
        out.extend(torch.autograd.grad(cell(xg, h).sum(), [xg, *params]))
    torch.testing.assert_close(got, expected, **TOLERANCE[dtype])
    assert calls["n"] == 2


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_double_backward_and_a_retained_graph(kind, calls):
    ours, _ = make(kind, 3, 4, dtype=torch.float64)
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    hx = tuple(t.requires_grad_() for t in as_tuple(state(kind, 2, 4, torch.float64)))
    params = tuple(ours.parameters())

    def step(x, *rest):
        state = rest[:len(hx)]
        return as_tuple(torch.func.functional_call(ours, dict(zip(dict(ours.named_parameters()), rest[len(hx):],
                                                                  strict=True)),
                                                   (x, state if kind == "lstm" else state[0])))

    def plain(x, *state):
        return as_tuple(ours(x, state if kind == "lstm" else state[0]))

    assert torch.autograd.gradcheck(plain, (x, *hx))
    assert calls["n"] > 0
    assert torch.autograd.gradgradcheck(plain, (x, *hx))
    out = plain(x, *hx)[0].sum()
    first = torch.autograd.grad(out, (x, *params), retain_graph=True)
    again = torch.autograd.grad(out, (x, *params))                  # the forward's cache is read, not spent
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    del step


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bias", [True, False])
def test_second_derivatives_of_every_parameter_equal_torch_nn(kind, bias, calls):
    """create_graph through the C++ nodes: the gradient of a function of the first gradients (of the
    input, the state and every weight and bias) equals torch.nn's, float64, two chained steps."""
    ours, theirs = make(kind, 3, 4, bias=bias, dtype=torch.float64)
    x = [torch.randn(2, 3, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    hx = tuple(t.requires_grad_() for t in as_tuple(state(kind, 2, 4, torch.float64)))

    def second(cell):
        s = hx if kind == "lstm" else hx[0]
        for x_t in x:
            s = cell(x_t, s)
        out = as_tuple(s)[0].square().sum()
        wrt = (*x, *hx, *cell.parameters())
        first = torch.autograd.grad(out, wrt, create_graph=True)
        return torch.autograd.grad(sum(g.square().sum() for g in first), wrt)

    got, expected = second(ours), second(theirs)
    assert calls["n"] == 2
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, **TOLERANCE[torch.float64])


@pytest.mark.parametrize("kind", KINDS)
def test_a_step_by_step_loop_equals_the_sequence_module(kind, calls):
    """T compiled steps from Python equal one call of the sequence module over T steps."""
    cell, _ = make(kind, 6, 10)
    seq = getattr(lstmkit, kind.upper())(6, 10)
    seq.load_state_dict({k + "_l0": v for k, v in cell.state_dict().items()})
    x, hx = torch.randn(9, 4, 6), state(kind, 4, 10)
    with torch.no_grad():
        y, s = [], hx
        for t in range(9):
            s = cell(x[t], s)
            y.append(s[0] if kind == "lstm" else s)
        whole, _ = seq(x, tuple(t.unsqueeze(0) for t in as_tuple(hx)) if kind == "lstm" else hx.unsqueeze(0))
    assert calls["n"] == 9
    torch.testing.assert_close(torch.stack(y), whole, rtol=1e-5, atol=1e-6)


WATCHED = {  # name -> (context to run in, how the input and state are passed)
    "unbatched": (torch.no_grad, "unbatched"),
    "autocast": (lambda: torch.autocast("cpu"), "batched"),
    "a transposed input": (torch.no_grad, "transposed"),
    "the torch backend": (lambda: kernels.backend("torch"), "batched"),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("watched", WATCHED)
def test_the_general_path_runs_wherever_something_could_tell(kind, watched, calls):
    context, form = WATCHED[watched]
    ours, theirs = make(kind, 5, 6)
    x, hx = torch.randn(4, 5), state(kind, 4, 6)
    if form == "unbatched":
        x, hx = x[0], tuple(t[0] for t in hx) if kind == "lstm" else hx[0]
    if form == "transposed":
        x = x.t().contiguous().t()
    with context():
        out = ours(x, hx)
    assert calls["n"] == 0
    for a, b in zip(as_tuple(out), as_tuple(theirs(x, hx)), strict=True):
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-2 if watched == "autocast" else 1e-5,
                                   atol=1e-2 if watched == "autocast" else 1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_forward_mode_ad_takes_the_general_path(kind, calls):
    ours, theirs = make(kind, 5, 6)
    x, hx, dx = torch.randn(4, 5), state(kind, 4, 6), torch.randn(4, 5)
    with torch.no_grad():
        out, tangent = torch.func.jvp(lambda v: as_tuple(ours(v, hx))[0], (x,), (dx,))
        expected, expected_tangent = torch.func.jvp(lambda v: as_tuple(theirs(v, hx))[0], (x,), (dx,))
    assert calls["n"] == 0
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(tangent, expected_tangent)


@pytest.mark.parametrize("kind", KINDS)
def test_a_parametrized_weight_takes_the_general_path_and_is_read(kind, calls):
    ours, theirs = make(kind, 5, 6)
    torch.nn.utils.parametrizations.weight_norm(ours, "weight_hh")
    torch.nn.utils.parametrizations.weight_norm(theirs, "weight_hh")
    theirs.load_state_dict(ours.state_dict())
    x, hx = torch.randn(4, 5), state(kind, 4, 6)
    with torch.no_grad():
        for a, b in zip(as_tuple(ours(x, hx)), as_tuple(theirs(x, hx)), strict=True):
            torch.testing.assert_close(a, b)
    assert calls["n"] == 0


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_arguments_get_torch_nn_errors_not_the_kernels(kind, calls):
    ours, theirs = make(kind, 5, 6)
    bad = [(torch.randn(4, 3), state(kind, 4, 6)), (torch.randn(4, 5), state(kind, 3, 6)),
           (torch.randn(4, 5, dtype=torch.float64), state(kind, 4, 6))]
    for x, hx in bad:
        with torch.no_grad():
            with pytest.raises((RuntimeError, ValueError)) as ours_error:
                ours(x, hx)
            with pytest.raises((RuntimeError, ValueError)) as theirs_error:
                theirs(x, hx)
        assert type(ours_error.value) is type(theirs_error.value)
        assert "cell_forward" not in str(ours_error.value)
    assert calls["n"] == 0


@pytest.mark.parametrize("fn,args", [
    ("lstm_cell_forward", lambda x, h, w, u, b: (x, h, h, w(4), u(4), b(4), b(4), 0, True)),
    ("gru_cell_forward", lambda x, h, w, u, b: (x, h, w(3), u(3), b(3), b(3), True)),
    ("rnn_cell_forward", lambda x, h, w, u, b: (x, h, w(1), u(1), b(1), b(1), "tanh")),
])
def test_the_compiled_entry_checks_every_tensor(fn, args):
    require_cpp()
    ext = kernels.load_extension()
    B, I, H = 3, 4, 5
    good = dict(x=torch.randn(B, I), h=torch.randn(B, H), w=lambda g: torch.randn(g * H, I),
                u=lambda g: torch.randn(g * H, H), b=lambda g: torch.randn(g * H))
    getattr(ext, fn)(*args(**good))                                   # the good call runs
    for name, value, message in [("x", torch.randn(B, I + 1), "w_ih should have shape"),
                                 ("x", torch.randn(B, I, 2), "x should have 2 dimensions"),
                                 ("x", torch.randn(I, B).t(), "x should be contiguous"),
                                 ("h", torch.randn(B + 1, H), "h0? should have shape"),
                                 ("h", torch.randn(B, H, dtype=torch.float64), "should have dtype"),
                                 ("b", lambda g: torch.randn(g * H + 1), "b_ih should have shape")]:
        with pytest.raises(RuntimeError, match=message):
            getattr(ext, fn)(*args(**{**good, name: value}))


@pytest.mark.parametrize("fn,args", [
    ("lstm_cell_backward", lambda x, h, w, u, g: (h, h, x, h, h, w(4), u(4), g(4), h, 63, 0)),
    ("gru_cell_backward", lambda x, h, w, u, g: (h, x, h, w(3), u(3), g(3), h, h, 63)),
])
def test_the_compiled_backward_checks_every_tensor(fn, args):
    require_cpp()
    ext = kernels.load_extension()
    B, I, H = 3, 4, 5
    good = dict(x=torch.randn(B, I), h=torch.rand(B, H), w=lambda g: torch.randn(g * H, I),
                u=lambda g: torch.randn(g * H, H), g=lambda g: torch.rand(B, g * H))
    assert all(t is not None for t in getattr(ext, fn)(*args(**good)))     # every gradient asked for comes
    for name, value, message in [("x", torch.randn(B, I + 1), "w_ih should have shape|x should have shape"),
                                 ("h", torch.rand(B + 1, H), "should have shape"),
                                 ("g", lambda g: torch.rand(B, g * H + 1), "should have shape|should be [34]H"),
                                 ("u", lambda g: torch.randn(g * H, H, dtype=torch.float64), "should have dtype")]:
        with pytest.raises(RuntimeError, match=message):
            getattr(ext, fn)(*args(**{**good, name: value}))


@pytest.mark.parametrize("kind", KINDS)
def test_one_row_through_large_weights_equals_torch_nn_and_leaves_the_parameters(kind):
    """Regression (B = 1, H = 1200: weights past one core's L2, a projection past oneDNN's work
    floor): the GRUCell's step once wrote its result into bias_ih and corrupted the heap (see
    tests/test_gemm.py). Inference twice and a training step: outputs and every gradient equal
    torch.nn's, and no parameter changes."""
    ours, theirs = make(kind, 1200, 1200)
    before = {n: p.detach().clone() for n, p in ours.named_parameters()}
    x, hx = torch.randn(1, 1200), state(kind, 1, 1200)
    with torch.no_grad():
        for _ in range(2):
            for a, b in zip(as_tuple(ours(x, hx)), as_tuple(theirs(x, hx)), strict=True):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    weights = [torch.randn(1, 1200) for _ in as_tuple(hx)]
    got, expected = grads_of(ours, kind, x, hx, weights), grads_of(theirs, kind, x, hx, weights)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    for n, p in ours.named_parameters():
        assert torch.equal(p.detach(), before[n]), n
