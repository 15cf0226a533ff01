"""The compiled CPU recurrences (lstmkit.kernels) against oracles, tensor by tensor.

Oracles, each with a stated tolerance (max |a - b| <= tol * max(1, max |b|): 1e-10 in float64,
1e-5 in float32):
- ``oracle_lstm``: the contract of ``lstm_recurrence_forward/backward`` written as a plain loop,
  differentiated by autograd (gradients of L = sum(hs * dhs) + sum(c_{T-1} * dc_last));
- ``lstmkit.functional``'s pure-PyTorch recurrences (the fallback path), same grid;
- ``torch.nn.LSTM`` through ``lstmkit.LSTM`` on the C++ backend, and ``gradcheck`` in float64.
Both product paths of the kernel (hand-written small-batch, BLAS per step) are checked, and results
are checked not to depend on the thread count. Skips, with the reason, where the kernel cannot build.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lstmkit import kernels
from lstmkit.functional.backend import recurrence_for

pytestmark = pytest.mark.skipif(not kernels.cpp_available(),
                                reason=f"C++ CPU kernel unavailable: {kernels._build_error}")

TOL = {torch.float64: 1e-10, torch.float32: 1e-5}
PATHS = (kernels.PATH_SMALL, kernels.PATH_BLAS)


def assert_near(actual, expected, dtype, what=""):
    """Normwise-relative closeness: max |a - b| <= tol * max(1, max |b|)."""
    if expected is None:
        assert actual is None, what
        return
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    err = (actual - expected).abs().max().item() if expected.numel() else 0.0
    scale = max(1.0, expected.abs().max().item() if expected.numel() else 0.0)
    assert err <= TOL[dtype] * scale, f"{what}: max error {err:.3g} > {TOL[dtype]:g} * {scale:.3g}"


@contextmanager
def product_path(path: int):
    previous, kernels._path = kernels._path, path
    try:
        yield
    finally:
        kernels._path = previous


@contextmanager
def split(by: str):
    """A two-thread team split as the limits say ("limits": by rows from 2 rows a member by default)
    or by units (rows_per_member out of reach; the L2 rule of team.h's split_by_rows still applies)."""
    ext = kernels.load_extension()
    previous = ext.get_tuning(2)["rows_per_member"]
    if by == "units":
        ext.set_tuning(2, "rows_per_member", 1 << 40)
    try:
        yield
    finally:
        ext.set_tuning(2, "rows_per_member", previous)


def make_case(T, B, H, P, proj, with_lengths, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    P = P if proj else H

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)

    lengths = torch.randint(1, T + 1, (B,), generator=g) if with_lengths else None
    return dict(zx=r(T, B, 4 * H), h0=r(B, P), c0=r(B, H), w_hh=r(4 * H, P, scale=0.5),
                w_hr=r(P, H, scale=0.5) if proj else None, lengths=lengths,
                dhs=r(T, B, P), dc_last=r(B, H))


# ---- oracle: the contract, step by step, differentiated by autograd -----------------------------

def oracle_lstm(zx, h0, c0, w_hh, w_hr, lengths, dhs, dc_last):
    """-> (gates, cs, hs), (dz, dh0, dc0, dhtot or None), by autograd through a plain loop."""
    T, B, G = zx.shape
    H = G // 4
    zx, h0, c0 = (t.detach().clone().requires_grad_() for t in (zx, h0, c0))
    h, c, gates, cs, hs = h0, c0, [], [], []
    for t in range(T):
        z = zx[t] + h @ w_hh.t()                                    # (B,4H)
        i, f, g, o = z[:, :H].sigmoid(), z[:, H:2 * H].sigmoid(), z[:, 2 * H:3 * H].tanh(), z[:, 3 * H:].sigmoid()
        c_new = f * c + i * g
        r = o * c_new.tanh()
        h_new = r if w_hr is None else r @ w_hr.t()
        run = torch.ones(B, 1, dtype=torch.bool) if lengths is None else (lengths > t).unsqueeze(1)
        h, c = torch.where(run, h_new, h), torch.where(run, c_new, c)
        h.retain_grad()
        gates.append(torch.cat((i, f, g, o), 1) * run)
        cs.append(c)
        hs.append(h)
    loss = sum((h_t * dhs[t]).sum() for t, h_t in enumerate(hs)) + (cs[-1] * dc_last).sum()
    loss.backward()
    dhtot = None
    if w_hr is not None:
        run_all = torch.ones(T, B, 1) if lengths is None else (torch.arange(T)[:, None] < lengths[None]).unsqueeze(2)
        dhtot = torch.stack([h_t.grad for h_t in hs]) * run_all
    fwd = tuple(torch.stack(a).detach() for a in (gates, cs, hs))
    return fwd, (zx.grad, h0.grad, c0.grad, dhtot)


def run_kernel(case):
    fwd = kernels.lstm_recurrence_forward(case["zx"], case["h0"], case["c0"], case["w_hh"], case["w_hr"],
                                          case["lengths"])
    bwd = kernels.lstm_recurrence_backward(case["dhs"], case["dc_last"], *fwd, case["h0"], case["c0"],
                                           case["w_hh"], case["w_hr"], case["lengths"])
    return fwd, bwd


def compare(got, want, dtype):
    for name, a, b in zip(("gates", "cs", "hs"), got[0], want[0], strict=True):
        assert_near(a, b, dtype, name)
    for name, a, b in zip(("dz", "dh0", "dc0", "dhtot"), got[1], want[1], strict=True):
        assert_near(a, b, dtype, name)


grid = dict(T=st.integers(1, 7), B=st.integers(1, 5), H=st.integers(1, 9), P=st.integers(1, 8),
            proj=st.booleans(), with_lengths=st.booleans(), dtype=st.sampled_from([torch.float64, torch.float32]),
            path=st.sampled_from(PATHS), seed=st.integers(0, 2**16))


@settings(max_examples=80, deadline=None)
@given(**grid)
def test_lstm_kernel_matches_autograd_oracle(T, B, H, P, proj, with_lengths, dtype, path, seed):
    proj = proj and H > 1
    P = min(P, H - 1) if proj else H
    case = make_case(T, B, H, P, proj, with_lengths, dtype, seed)
    want = oracle_lstm(**case)
    with product_path(path):
        compare(run_kernel(case), want, dtype)


@settings(max_examples=60, deadline=None)
@given(**grid)
def test_lstm_kernel_matches_functional(T, B, H, P, proj, with_lengths, dtype, path, seed):
    from lstmkit.functional import lstm as F

    proj = proj and H > 1
    P = min(P, H - 1) if proj else H
    case = make_case(T, B, H, P, proj, with_lengths, dtype, seed)
    fwd = F.lstm_recurrence_forward(case["zx"], case["h0"], case["c0"], case["w_hh"], case["w_hr"],
                                    case["lengths"])
    bwd = F.lstm_recurrence_backward(case["dhs"], case["dc_last"], *fwd, case["h0"], case["c0"], case["w_hh"],
                                     case["w_hr"], case["lengths"])
    with product_path(path):
        compare(run_kernel(case), (fwd, bwd), dtype)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("proj", [False, True])
@pytest.mark.parametrize("B", [1, 3, 7])
def test_lstm_kernel_wide_layers_match_oracle(path, proj, B):
    """Sizes past one vector block and the parallel threshold (several unit blocks, a ragged last one);
    B=1 takes the dot-product form against W_hh as stored, B>1 the packed W_hh^T."""
    case = make_case(4, B, 70, 40, proj, True, torch.float64, seed=1)
    with product_path(path):
        compare(run_kernel(case), oracle_lstm(**case), torch.float64)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("proj", [False, True])
@pytest.mark.parametrize("B,H,by", [(8, 128, "limits"), (4, 256, "units"), (8, 100, "limits"), (4, 200, "units"),
                                    (3, 200, "units"), (4, 208, "units"), (4, 300, "limits"), (3, 200, "limits"),
                                    (1, 200, "limits"), (1, 300, "limits")],
                         ids=["team-by-rows", "team-by-units", "team-by-rows-ragged", "team-by-units-ragged",
                              "team-by-units-tail-uneven-rows", "team-by-units-tail-whole-vector",
                              "team-by-rows-two-a-member", "team-by-rows-uneven",
                              "one-row-dot-ragged", "one-row-dot-uneven"])
def test_lstm_kernel_does_not_depend_on_thread_count(path, dtype, proj, B, H, by):
    """The two-thread team against the one-thread loop (work above both parallel thresholds), and
    bit for bit on the hand-written path: by rows each member has its own rows (the default from 2
    a member), by units a slice of the units of every row (forced here; the default below 2 rows a
    member, and where a machine measures it so); either way every output element is the same sum
    in the same order. H = 100 and 200 end each gate in a part-vector (the masked ragged end), at a
    different place per member; H = 200 and 208 have an odd number of vectors, the last shared by
    rows (team.h's tail), and each gate packed from a panel of its own (H not a multiple of it).
    One row (B = 1) is taken by a team as dot products against W_hh's rows, at one thread from packed
    panels (a different order of the same sums: cpu_math.h's pack_one_row), so there two teams are
    compared, of two and three threads, whose members cut the gates at other units (H = 200: gates
    end mid-vector; H = 300: slices of 160 and 140 units, or 112, 112 and 76)."""
    case = make_case(10 if B > 1 else 30, B, H, H // 2, proj, True, dtype, seed=2)   # (one row: work for a team)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2) if B > 1 else (2, 3):
            torch.set_num_threads(n)
            with product_path(path), split(by):
                results.append(run_kernel(case))
    finally:
        torch.set_num_threads(threads)
    compare(results[1], results[0], dtype)
    if path == kernels.PATH_SMALL:                  # (BLAS splits its own sums by thread count)
        for a, b in zip([*results[1][0], *results[1][1]], [*results[0][0], *results[0][1]], strict=True):
            assert (a is None and b is None) or torch.equal(a, b)


def units_split_with_the_input_part_in_the_step(dtype: torch.dtype) -> int:
    """The smallest H whose team of two splits by units with an odd number of vectors (the last shared
    by rows) and still takes the input part in the step, on this machine: W_hh (4H x H) past 3/4 of
    one core's L2 (else by rows), W_ih (4H x H/2) and W_hh within two L2s (else the input part is one
    BLAS product, which rounds by thread count). H = 232 in float32 and 164 in float64 with a 1 MB L2."""
    ext = kernels.load_extension()
    size = torch.empty((), dtype=dtype).element_size()
    lanes, l2 = ext.vector_bytes() // size, ext.cache_size(2)
    H = lanes
    while not (4 * H * H * size > l2 * 3 // 4 and (H // lanes) % 2 == 1):
        H += lanes
    assert 6 * H * H * size <= 2 * l2, (H, l2)
    return H


@pytest.mark.parametrize("dtype,B,layout", [(torch.float32, 8, "tail"), (torch.float32, 9, "tail"),
                                            (torch.float32, 16, "by-rows"), (torch.float64, 8, "tail"),
                                            (torch.float64, 9, "tail"), (torch.float64, 16, "by-rows")],
                         ids=["tail-f32", "tail-uneven-rows-f32", "by-rows-f32",
                              "tail-f64", "tail-uneven-rows-f64", "by-rows-f64"])
def test_lstm_layer_forward_with_the_input_part_in_the_step_does_not_depend_on_thread_count(dtype, B, layout):
    """Inference's layer forward, where each step also takes its input part x_t W_ih^T (the weights
    fit in the caches, a full register block of rows a thread): two threads against one, bit for
    bit, with lengths (held rows in the tail). "tail": split by units with a vector shared by rows,
    H from this machine's L2 (units_split_with_the_input_part_in_the_step); "by-rows": H = 128."""
    H = units_split_with_the_input_part_in_the_step(dtype) if layout == "tail" else 128
    g = torch.Generator().manual_seed(3)
    T, I = 12, H // 2

    def r(*shape):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * 0.5).to(dtype)

    args = (r(T, B, I), r(B, H), r(B, H), r(4 * H, I), r(4 * H, H), r(4 * H), None,
            torch.randint(1, T + 1, (B,), generator=g))
    threads, runs = torch.get_num_threads(), []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            with split("units" if layout == "tail" else "limits"):
                runs.append(kernels.lstm_layer_forward(*args, cache=False))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(runs[1][1:], runs[0][1:], strict=True):                    # c_T, hs (no gates kept)
        assert torch.equal(a, b)


def test_lstm_module_on_cpp_backend_matches_torch_lstm():
    import lstmkit

    torch.manual_seed(0)
    ref = torch.nn.LSTM(5, 7, num_layers=2, proj_size=3, bidirectional=True).double()
    mine = lstmkit.LSTM.from_torch(ref)
    x = torch.randn(6, 4, 5, dtype=torch.float64)
    with kernels.backend("cpp"):
        y, (h, c) = mine(x)
        (y.sum() + h.sum() + c.sum()).backward()
    y_ref, (h_ref, c_ref) = ref(x)
    (y_ref.sum() + h_ref.sum() + c_ref.sum()).backward()
    for a, b, name in ((y, y_ref, "output"), (h, h_ref, "h_n"), (c, c_ref, "c_n")):
        assert_near(a.detach(), b.detach(), torch.float64, name)
    for (name, p), q in zip(mine.named_parameters(), ref.parameters(), strict=True):
        assert_near(p.grad, q.grad, torch.float64, f"d{name}")


def test_lstm_module_on_cpp_backend_passes_gradcheck():
    import lstmkit

    torch.manual_seed(0)
    m = lstmkit.LSTM(3, 4, proj_size=2).double()
    x = torch.randn(5, 3, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, 3, 2, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([5, 2, 4])
    with kernels.backend("cpp"):
        assert torch.autograd.gradcheck(
            lambda x, h0, c0: m(x, (h0, c0), lengths=lengths)[0], (x, h0, c0), eps=1e-6, atol=1e-7)


# ---- backend selection ----------------------------------------------------------------------------

def test_backend_context_selects_and_restores():
    x = torch.zeros(1)
    before = kernels.get_backend()
    with kernels.backend("torch"):
        assert kernels.get_backend() == "torch"
        assert kernels.recurrence_for(x) is None
        assert recurrence_for(x).lstm_recurrence_forward.__module__ == "lstmkit.functional.lstm"
    with kernels.backend("cpp"):
        assert recurrence_for(x).lstm_recurrence_forward is kernels.lstm_recurrence_forward
        for other in (x.half(), x.bfloat16(), torch.zeros(0)):     # no kernel for these: the PyTorch path
            assert kernels.recurrence_for(other) is None
    assert kernels.get_backend() == before


def test_backend_rejects_unknown_names(monkeypatch):
    with pytest.raises(ValueError, match="backend must be one of auto, cpp, torch; got 'fast'"):
        kernels.set_backend("fast")
    monkeypatch.setattr(kernels, "_backend", None)
    monkeypatch.setenv("LSTMKIT_BACKEND", "gpu")
    with pytest.raises(ValueError, match="LSTMKIT_BACKEND must be one of"):
        kernels.get_backend()


def test_env_variable_selects_torch(monkeypatch):
    monkeypatch.setattr(kernels, "_backend", None)
    monkeypatch.setenv("LSTMKIT_BACKEND", "torch")
    assert kernels.recurrence_for(torch.zeros(1)) is None


def test_missing_compiler_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setattr(kernels, "_ext", None)
    monkeypatch.setattr(kernels, "_build_error", "RuntimeError: no compiler")
    monkeypatch.setattr(kernels, "_warned", False)
    monkeypatch.setattr(kernels, "_backend", "auto")
    with pytest.warns(UserWarning, match="unavailable .*no compiler.*pure-PyTorch"):
        assert kernels.recurrence_for(torch.zeros(1)) is None
    assert recurrence_for(torch.zeros(1)).lstm_recurrence_forward.__module__ == "lstmkit.functional.lstm"
    monkeypatch.setattr(kernels, "_backend", "cpp")
    with pytest.raises(RuntimeError, match="LSTMKIT_BACKEND=cpp but the CPU kernel could not be built"):
        kernels.recurrence_for(torch.zeros(1))


def test_build_cache_location_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("LSTMKIT_CACHE", str(tmp_path))
    assert kernels._build_dir().parent == tmp_path
    assert os.path.basename(kernels._build_dir()).startswith("torch")


# ---- GRU and RNN: against lstmkit.functional's recurrences ----------------------------------------

small_grid = dict(T=st.integers(1, 7), B=st.integers(1, 5), H=st.integers(1, 9), with_lengths=st.booleans(),
                  dtype=st.sampled_from([torch.float64, torch.float32]), seed=st.integers(0, 2**16))


def _gru_case(T, B, H, with_lengths, dtype, seed, bias=True):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)

    lengths = torch.randint(1, T + 1, (B,), generator=g) if with_lengths else None
    return r(T, B, 3 * H), r(B, H), r(3 * H, H, scale=0.5), r(3 * H) if bias else None, lengths, r(T, B, H)


@settings(max_examples=50, deadline=None)
@given(bias=st.booleans(), **small_grid)
def test_gru_kernel_matches_functional(T, B, H, with_lengths, dtype, seed, bias):
    from lstmkit.functional import gru as F

    zx, h0, w_hh, b_hh, lengths, dhs = _gru_case(T, B, H, with_lengths, dtype, seed, bias)
    want = F.gru_recurrence_forward(zx, h0, w_hh, b_hh, lengths)
    got = kernels.gru_recurrence_forward(zx, h0, w_hh, b_hh, lengths)
    for name, a, b in zip(("gates", "ghn", "hs"), got, want, strict=True):
        assert_near(a, b, dtype, name)
    want_b = F.gru_recurrence_backward(dhs, *want, h0, w_hh, lengths)
    got_b = kernels.gru_recurrence_backward(dhs, *want, h0, w_hh, lengths)
    for name, a, b in zip(("dzx", "dgh", "dh0"), got_b, want_b, strict=True):
        assert_near(a, b, dtype, name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("B,H", [(8, 128), (4, 256)], ids=["team-by-rows", "team-by-units"])
def test_gru_kernel_team_matches_functional_and_one_thread(dtype, B, H):
    """The GRU's thread team (work above both parallel thresholds) against the PyTorch recurrence,
    and bit for bit against its own one-thread run, splitting by rows (B=8) and by units (B=4, forced)."""
    from lstmkit.functional import gru as F

    zx, h0, w_hh, b_hh, lengths, dhs = _gru_case(10, B, H, True, dtype, seed=B)
    w_hh = w_hh * (4 / H) ** 0.5                              # keep the states away from saturation
    want = F.gru_recurrence_forward(zx, h0, w_hh, b_hh, lengths)
    want_b = F.gru_recurrence_backward(dhs, *want, h0, w_hh, lengths)
    threads, runs = torch.get_num_threads(), []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            with split("units" if B == 4 else "limits"):
                fwd = kernels.gru_recurrence_forward(zx, h0, w_hh, b_hh, lengths)
                runs.append((*fwd, *kernels.gru_recurrence_backward(dhs, *fwd, h0, w_hh, lengths)))
    finally:
        torch.set_num_threads(threads)
    for name, a, b in zip(("gates", "ghn", "hs", "dzx", "dgh", "dh0"), runs[1], (*want, *want_b), strict=True):
        assert_near(a, b, dtype, name)
    for a, b in zip(runs[0], runs[1], strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("B,H", [(8, 256), (4, 512)], ids=["team-by-rows", "team-by-units"])
def test_rnn_kernel_team_matches_functional_and_one_thread(nonlinearity, B, H):
    """The RNN's thread team against the PyTorch recurrence, and bit for bit against one thread."""
    from lstmkit.functional import rnn as F

    g = torch.Generator().manual_seed(B)
    T_ = 12
    zx, h0, dhs = (torch.randn(*s, generator=g) for s in ((T_, B, H), (B, H), (T_, B, H)))
    w_hh = torch.randn(H, H, generator=g) * (1 / H) ** 0.5
    lengths = torch.randint(1, T_ + 1, (B,), generator=g)
    want = F.rnn_recurrence_forward(zx, h0, w_hh, nonlinearity, lengths)
    want_b = F.rnn_recurrence_backward(dhs, want, h0, w_hh, nonlinearity, lengths)
    threads, runs = torch.get_num_threads(), []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            with split("units" if B == 4 else "limits"):
                hs = kernels.rnn_recurrence_forward(zx, h0, w_hh, nonlinearity, lengths)
                runs.append((hs, *kernels.rnn_recurrence_backward(dhs, hs, h0, w_hh, nonlinearity, lengths)))
    finally:
        torch.set_num_threads(threads)
    for name, a, b in zip(("hs", "dz", "dh0"), runs[1], (want, *want_b), strict=True):
        assert_near(a, b, torch.float32, name)
    for a, b in zip(runs[0], runs[1], strict=True):
        assert torch.equal(a, b)


@settings(max_examples=50, deadline=None)
@given(nonlinearity=st.sampled_from(["tanh", "relu"]), **small_grid)
def test_rnn_kernel_matches_functional(T, B, H, with_lengths, dtype, seed, nonlinearity):
    from lstmkit.functional import rnn as F

    g = torch.Generator().manual_seed(seed)
    zx, h0, dhs = (torch.randn(*s, generator=g, dtype=torch.float64).to(dtype) for s in ((T, B, H), (B, H), (T, B, H)))
    w_hh = (torch.randn(H, H, generator=g, dtype=torch.float64) * 0.5).to(dtype)
    lengths = torch.randint(1, T + 1, (B,), generator=g) if with_lengths else None
    want = F.rnn_recurrence_forward(zx, h0, w_hh, nonlinearity, lengths)
    assert_near(kernels.rnn_recurrence_forward(zx, h0, w_hh, nonlinearity, lengths), want, dtype, "hs")
    want_b = F.rnn_recurrence_backward(dhs, want, h0, w_hh, nonlinearity, lengths)
    got_b = kernels.rnn_recurrence_backward(dhs, want, h0, w_hh, nonlinearity, lengths)
    for name, a, b in zip(("dz", "dh0"), got_b, want_b, strict=True):
        assert_near(a, b, dtype, name)


@pytest.mark.parametrize("cls", ["GRU", "RNN"])
@pytest.mark.parametrize("B", [1, 3])
def test_gru_rnn_modules_on_cpp_backend_match_torch(cls, B):
    import lstmkit

    torch.manual_seed(0)
    ref = getattr(torch.nn, cls)(5, 40, num_layers=2).double()                 # 40: several unit blocks
    mine = getattr(lstmkit, cls).from_torch(ref)
    x = torch.randn(6, B, 5, dtype=torch.float64)
    with kernels.backend("cpp"):
        y, h = mine(x)
        (y.sum() + h.sum()).backward()
    y_ref, h_ref = ref(x)
    (y_ref.sum() + h_ref.sum()).backward()
    assert_near(y.detach(), y_ref.detach(), torch.float64, "output")
    for (name, p), q in zip(mine.named_parameters(), ref.parameters(), strict=True):
        assert_near(p.grad, q.grad, torch.float64, f"d{name}")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("proj", [False, True])
@pytest.mark.parametrize("T", [1, 2, 5])
def test_lstm_kernel_without_cache_returns_outputs_and_last_cell(path, proj, T):
    case = make_case(T, 3, 20, 12, proj, True, torch.float64, seed=3)
    args = [case[k] for k in ("zx", "h0", "c0", "w_hh", "w_hr", "lengths")]
    with product_path(path):
        gates, cs, hs = kernels.lstm_recurrence_forward(*args)
        none, c_last, hs2 = kernels.lstm_recurrence_forward(*args, cache=False)
    assert none is None and c_last.shape == (1, 3, 20)
    assert_near(hs2, hs, torch.float64, "hs")
    assert_near(c_last[0], cs[-1], torch.float64, "c_n")


# ---- the whole layer in one call: projection, bias and recurrence ------------------------------

def layer_case(T, B, I, H, P, proj, bias, with_lengths, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    P = P if proj else H

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)

    return dict(x=r(T, B, I), h0=r(B, P), c0=r(B, H), w_ih=r(4 * H, I, scale=0.3), w_hh=r(4 * H, P, scale=0.3),
                bias=r(4 * H) if bias else None, w_hr=r(P, H, scale=0.5) if proj else None,
                lengths=torch.randint(1, T + 1, (B,), generator=g) if with_lengths else None)


# (B, I, H): B < 4 takes the projection as one BLAS product; B >= 4 with small weights computes
# x_t W_ih^T inside each step; I = H = 160 in float64 (1.6 MB... 2.6 MB of weights) is past the
# fusing limit, so B = 5 there takes chunked BLAS products again.
LAYER_SHAPES = [(1, 3, 5), (3, 7, 20), (5, 6, 33), (6, 160, 160)]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("B,I,H", LAYER_SHAPES)
@pytest.mark.parametrize("cache", [True, False], ids=["cache", "no-cache"])
@pytest.mark.parametrize("proj,bias,with_lengths", [(False, True, False), (True, False, True), (False, True, True)])
def test_lstm_layer_forward_matches_functional(path, B, I, H, cache, proj, bias, with_lengths, monkeypatch):
    """kernels.lstm_layer_forward (one C++ call) against lstmkit.functional's PyTorch version, float64
    within 1e-10: every gate, cell state and output with the cache; outputs and c_n without it,
    where the projection is also forced into 2-step chunks (a ragged last one)."""
    from lstmkit.functional import lstm as F

    case = layer_case(5, B, I, H, max(1, H // 2), proj, bias, with_lengths, torch.float64, seed=B * H)
    args = [case[k] for k in ("x", "h0", "c0", "w_ih", "w_hh", "bias", "w_hr", "lengths")]
    want = F.lstm_layer_forward(*args, cache=cache)
    monkeypatch.setattr(kernels, "ZX_CHUNK_ELEMENTS", 2 * B * 4 * H)
    monkeypatch.setattr(kernels, "ZX_CHUNK_MIN_ROWS", 0)
    with product_path(path):
        got = kernels.lstm_layer_forward(*args, cache=cache)
    names = ("gates", "cs", "hs") if cache else ("none", "c_last", "hs")
    for name, a, b in zip(names, got, want, strict=True):
        assert_near(a, b, torch.float64, name)


def test_lstm_layer_forward_writes_into_gates_out():
    case = layer_case(4, 5, 6, 8, 8, False, True, False, torch.float64, seed=9)
    args = [case[k] for k in ("x", "h0", "c0", "w_ih", "w_hh", "bias", "w_hr", "lengths")]
    buf = torch.full((4, 5, 32), float("nan"), dtype=torch.float64)
    gates, cs, hs = kernels.lstm_layer_forward(*args, gates_out=buf)
    want = kernels.lstm_layer_forward(*args)
    assert gates.data_ptr() == buf.data_ptr()
    for name, a, b in zip(("gates", "cs", "hs"), (gates, cs, hs), want, strict=True):
        assert_near(a, b, torch.float64, name)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("proj", [False, True])
def test_lstm_backward_overwrite_gives_the_same_gradients_in_place(path, proj):
    """overwrite=True writes dz over the gates tensor itself, with the same values as a separate dz."""
    case = make_case(6, 5, 24, 12, proj, True, torch.float64, seed=5)
    with product_path(path):
        fwd, want = run_kernel(case)
        gates = fwd[0].clone()
        got = kernels.lstm_recurrence_backward(case["dhs"], case["dc_last"], gates, fwd[1], fwd[2], case["h0"],
                                               case["c0"], case["w_hh"], case["w_hr"], case["lengths"],
                                               overwrite=True)
    assert got[0].data_ptr() == gates.data_ptr()
    for name, a, b in zip(("dz", "dh0", "dc0", "dhtot"), got, want, strict=True):
        assert_near(a, b, torch.float64, name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("path", PATHS)
def test_lstm_kernel_saturates_cleanly_at_extreme_preactivations(dtype, path):
    """Pre-activations far past exp's range (|z| up to 1e4, and around float's overflow at 88.4)
    give gates at 0 and 1 and finite states, equal to the autograd oracle, with no NaN or inf."""
    case = make_case(6, 16, 40, 40, False, False, dtype, seed=11)
    edge = torch.tensor([1e4, -1e4, 88.3, -88.3, 88.5, -88.5, 89.0, -89.0, 100.0, -100.0, 45.0, -45.0],
                        dtype=torch.float64)
    case["zx"] = (torch.randn(case["zx"].shape, dtype=torch.float64) * 60).clamp(-1e4, 1e4)
    case["zx"].view(-1)[:edge.numel() * 20] = edge.repeat(20)
    case["zx"] = case["zx"].to(dtype)
    with product_path(path):
        got = run_kernel(case)
    for t in [*got[0], *got[1][:3]]:
        assert torch.isfinite(t).all()
    compare(got, oracle_lstm(**case), dtype)
