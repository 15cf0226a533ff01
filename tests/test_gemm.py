"""The large products of the compiled path (kernels/gemm.h): oneDNN's matmul for float32 where this
PyTorch has it in full precision, ATen's otherwise.

Checked: the product against ``torch.mm`` (float32: max |a - b| <= 1e-5 * max(1, max |b|) * sqrt(K);
float64: equal, since it is ATen's own call); which GEMM is chosen, and that every user setting that
changes float32 products (oneDNN disabled, bf16/tf32 modes, ``set_float32_matmul_precision``) sends
the product back to ATen; bad arguments; and whole LSTM/GRU/RNN layers and cells at sizes whose
products do go to oneDNN, forward and every gradient, against ``torch.nn``.
"""

from __future__ import annotations

import math
import subprocess
import sys
from contextlib import contextmanager

import pytest
import torch

import lstmkit
from lstmkit import kernels

pytestmark = pytest.mark.skipif(not kernels.cpp_available(),
                                reason=f"C++ CPU kernel unavailable: {kernels._build_error}")

BIG = (256, 650, 2600)          # a step of config "B=256, H=650": 433 M multiply-adds


def ext():
    return kernels.load_extension()


def onednn_here() -> bool:
    return ext().gemm_backend("float32", *BIG) == "onednn"


@contextmanager
def restored_precision():
    mkldnn, matmul = torch.backends.mkldnn.matmul.fp32_precision, torch.get_float32_matmul_precision()
    try:
        yield
    finally:
        torch.backends.mkldnn.matmul.fp32_precision = mkldnn
        torch.set_float32_matmul_precision(matmul)


def assert_product(got, a, b):
    want = torch.mm(a.double(), b.double())
    scale = max(1.0, want.abs().max().item())
    tol = (1e-5 * math.sqrt(a.shape[1]) if a.dtype == torch.float32 else 1e-12) * scale
    assert got.dtype == a.dtype and got.shape == want.shape
    assert (got.double() - want).abs().max().item() <= tol


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("M, K, N", [(3, 5, 7), (300, 200, 500), (97, 650, 1030)])
@pytest.mark.parametrize("transposed", ["none", "a", "b", "both"])
def test_gemm_equals_the_product(dtype, M, K, N, transposed):
    g = torch.Generator().manual_seed(M + K + N)
    a = torch.randn(M, K, generator=g, dtype=dtype)
    b = torch.randn(K, N, generator=g, dtype=dtype)
    if transposed in ("a", "both"):
        a = a.t().contiguous().t()                        # the same values as a transposed view
    if transposed in ("b", "both"):
        b = b.t().contiguous().t()
    got = ext().gemm(a, b)
    assert_product(got, a, b)
    if dtype == torch.float64 and ext().gemm_path(a, b) == "aten":   # ATen's own product: bit for bit
        assert torch.equal(got, torch.mm(a, b))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("M", [1, 2])
@pytest.mark.parametrize("K, N", [(7, 13), (128, 512), (100, 300)])
@pytest.mark.parametrize("layout", ["row-major", "transposed"])
@pytest.mark.parametrize("init", [None, "bias", "full"])
def test_one_or_two_rows_by_hand_equal_the_product_and_never_write_init(dtype, M, K, N, layout, init):
    """A cell's step from Python (gemm.h's few_rows): rows of a apart in memory (a slice), b
    row-major or the transpose of a row-major W, init a bias (N,) or (M,N), which stays as it was."""
    g = torch.Generator().manual_seed(M * K + N)
    a = torch.randn(M, K + 3, generator=g, dtype=dtype)[:, :K]                 # rows K + 3 apart
    b = torch.randn(K, N, generator=g, dtype=dtype) if layout == "row-major" else \
        torch.randn(N, K, generator=g, dtype=dtype).t()
    c = None if init is None else torch.randn((N,) if init == "bias" else (M, N), generator=g, dtype=dtype)
    before = None if c is None else c.clone()
    got = ext().gemm(a, b, c)
    want = torch.mm(a.double(), b.double()) + (0 if c is None else c.double())
    tol = (1e-5 * math.sqrt(K) if dtype == torch.float32 else 1e-12) * max(1.0, want.abs().max().item())
    assert got.dtype == dtype and got.shape == (M, N)
    assert (got.double() - want).abs().max().item() <= tol
    if c is not None:
        assert torch.equal(c, before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("K", [7, 100, 300])
def test_one_row_by_dot_products_gives_each_output_the_same_sum_wherever_the_rows_start(dtype, K):
    """One row times a transposed W takes W's rows eight at a time and the rest one by one
    (cpu_math.h's gemv_dot); a team member starts at another row than one thread does. The outputs
    of W's rows from n0 on must equal those of the whole product bit for bit, for every n0 (the
    groups of eight fall elsewhere), K within one vector, ragged past whole vectors, or both."""
    g = torch.Generator().manual_seed(K)
    x = torch.randn(1, K, generator=g, dtype=dtype)
    W = torch.randn(100, K, generator=g, dtype=dtype)       # (N, K) row-major, within any L2 (few_rows' bound)
    whole = ext().gemm(x, W.t())
    assert (whole.double() - x.double() @ W.double().t()).abs().max().item() <= 1e-4
    for n0 in (1, 3, 4, 7, 8, 13, 93, 99):
        assert torch.equal(ext().gemm(x, W[n0:].t()), whole[:, n0:]), n0


def test_one_row_times_a_transposed_matrix_plus_a_bias_is_right_at_sizes_past_onednns_floor():
    """Regression: oneDNN's matmul (torch 2.13) corrupted the heap for one row times a transposed
    view, accumulated (a GRUCell at B = 1, H = 1200: glibc aborted), and gemm_new once wrote the
    result into the bias itself (expand().contiguous() of one row is the tensor). Run apart: a heap
    corruption ends the process."""
    script = (
        "import torch\n"
        "from lstmkit import kernels\n"
        "e = kernels.load_extension()\n"
        "for M in (1, 2, 3, 8):\n"
        "    for K, N in ((1200, 3600), (2048, 2048), (4096, 1024)):\n"
        "        for _ in range(3):\n"
        "            a, w, b = torch.randn(M, K), torch.randn(N, K), torch.randn(N)\n"
        "            b0 = b.clone()\n"
        "            got = e.gemm(a, w.t(), b)\n"
        "            want = torch.addmm(b.double(), a.double(), w.t().double())\n"
        "            assert (got.double() - want).abs().max().item() < 1e-3, (M, K, N)\n"
        "            assert torch.equal(b, b0), (M, K, N)\n"
        "print('ok')\n")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-2000:]
    assert ext().gemm_backend("float32", 1, 1200, 3600) == "aten"
    assert ext().gemm_backend("float32", 7, 1200, 3600) == "aten"


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return set()


def test_gemm_chooses_onednn_only_for_large_float32():
    if not torch.backends.mkldnn.is_available():
        pytest.skip("this PyTorch has no oneDNN")
    flags = cpu_flags()
    if not ({"avx512bw", "avx512vl", "avx512dq"} <= flags or "avx_ne_convert" in flags):
        # torch 2.13's mkldnn_matmul refuses float32 on such a CPU ("needs the cpu support avx_ne_convert
        # or avx512bw, avx512vl and avx512dq"): gemm's first-call test sees that and keeps ATen's
        assert not onednn_here()
        pytest.skip("oneDNN's matmul takes float32 only on CPUs with AVX-512 BW/VL/DQ or AVX-NE-CONVERT")
    assert onednn_here(), "a large float32 product should take oneDNN on this PyTorch"
    assert ext().gemm_backend("float64", *BIG) == "aten"
    assert ext().gemm_backend("float32", 8, 8, 8) == "aten"                  # the call would cost more


def test_every_reduced_precision_setting_sends_float32_to_aten():
    if not onednn_here():
        pytest.skip("oneDNN's matmul is not used on this PyTorch")
    with torch.backends.mkldnn.flags(enabled=False):
        assert ext().gemm_backend("float32", *BIG) == "aten"
    assert onednn_here()
    with restored_precision():
        for mode in ("bf16", "tf32"):
            torch.backends.mkldnn.matmul.fp32_precision = mode
            assert ext().gemm_backend("float32", *BIG) == "aten", mode
            torch.backends.mkldnn.matmul.fp32_precision = "none"
        for mode in ("high", "medium"):
            torch.set_float32_matmul_precision(mode)
            assert ext().gemm_backend("float32", *BIG) == "aten", mode
        torch.set_float32_matmul_precision("highest")
        assert onednn_here()


@pytest.mark.parametrize("a, b, message", [
    (torch.ones(2, 3), torch.ones(4, 5), r"gemm: b should have shape \(K, N\) with K = 3"),
    (torch.ones(2, 3), torch.ones(3, 5, dtype=torch.float64), "gemm: b should have dtype Float"),
    (torch.ones(2, 3, 1), torch.ones(3, 5), r"gemm: a should have 2 dimensions \(M, K\)"),
    (torch.ones(2, 3, dtype=torch.int64), torch.ones(3, 5, dtype=torch.int64), "gemm: a should be float32 or float64"),
])
def test_gemm_refuses_bad_arguments_by_name(a, b, message):
    with pytest.raises(RuntimeError, match=message):
        ext().gemm(a, b)


def assert_near(got, want, what, tol):
    scale = max(1.0, want.abs().max().item())
    err = (got - want).abs().max().item()
    assert err <= tol * scale, f"{what}: max error {err:.3g} > {tol:g} * {scale:.3g}"


@pytest.mark.parametrize("cls", ["LSTM", "GRU", "RNN"])
def test_layers_whose_products_take_onednn_match_torch(cls):
    """B = 272 (> 256: the LSTM's per-step BLAS path, forward and backward), H = 96: the products
    that go through gemm.h (the LSTM's projection and per-step products, forward and backward;
    every model's input and weight gradients) are each above oneDNN's size floor (asserted)."""
    T, B, I, H = 4, 272, 64, 96
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[cls] * H
    if onednn_here():
        lstm_only = ((T * B, I, G), (B, H, G), (B, G, H)) if cls == "LSTM" else ()
        for sizes in (*lstm_only, (G, T * B, I), (T * B, G, I)):
            assert ext().gemm_backend("float32", *sizes) == "onednn", sizes
    torch.manual_seed(0)
    ref = getattr(torch.nn, cls)(I, H, num_layers=2)
    mine = getattr(lstmkit, cls).from_torch(ref)
    x = torch.randn(T, B, I)
    with kernels.backend("cpp"):
        y, state = mine(x)
        y.square().sum().backward()
    y_ref, _ = ref(x)
    y_ref.square().sum().backward()
    assert_near(y.detach(), y_ref.detach(), "output", 1e-5)
    for (name, p), q in zip(mine.named_parameters(), ref.parameters(), strict=True):
        assert_near(p.grad, q.grad, f"d{name}", 1e-4)


@pytest.mark.parametrize("cls", ["LSTMCell", "GRUCell", "RNNCell"])
def test_cells_whose_products_take_onednn_match_torch(cls):
    B, I, H = 64, 650, 650
    torch.manual_seed(0)
    ref = getattr(torch.nn, cls)(I, H)
    mine = getattr(lstmkit, cls)(I, H)
    mine.load_state_dict(ref.state_dict())
    x = torch.randn(B, I)
    out, out_ref = mine(x), ref(x)
    out, out_ref = (out[0], out_ref[0]) if cls == "LSTMCell" else (out, out_ref)
    out.square().sum().backward()
    out_ref.square().sum().backward()
    assert_near(out.detach(), out_ref.detach(), "output", 1e-5)
    for (name, p), q in zip(mine.named_parameters(), ref.parameters(), strict=True):
        assert_near(p.grad, q.grad, f"d{name}", 1e-4)


@contextmanager
def threads(n):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def two_threads():
    """Two threads: gemm takes x W^T by hand whatever W's size (one thread: only past two L2 caches)."""
    with threads(2):
        yield


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("M", [3, 7, 20, 64, 128])
@pytest.mark.parametrize("K, N", [(1, 9), (5, 7), (200, 50), (1100, 130)])
@pytest.mark.parametrize("init", [None, "bias", "full"])
def test_rows_times_w_as_stored_by_hand_equal_the_product_and_never_write_init(dtype, M, K, N, init, two_threads):
    # b = W^T for W (N, K) as stored, its rows 3 apart from the next (a column slice of a wider W):
    # gemm takes it by hand (nt_gemm.h) where oneDNN does not; K = 1100 crosses blocks of k (512),
    # N = 130 blocks of W's rows (48) and a ragged end of each.
    g = torch.Generator().manual_seed(M * K + N)
    a = torch.randn(M, K, generator=g, dtype=dtype)
    W = torch.randn(N, K + 3, generator=g, dtype=dtype)[:, :K]
    b = W.t()
    c = {None: None, "bias": torch.randn(N, generator=g, dtype=dtype),
         "full": torch.randn(M, N, generator=g, dtype=dtype)}[init]
    kept = None if c is None else c.clone()
    path = ext().gemm_path(a, b)
    assert path == ("onednn" if ext().gemm_backend(str(dtype).removeprefix("torch."), M, K, N) == "onednn"
                    else "W as stored")
    got = ext().gemm(a, b, c)
    assert_product(got - (0 if c is None else c), a, b)
    if c is not None:
        assert torch.equal(c, kept)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rows_times_w_as_stored_do_not_depend_on_the_thread_count(dtype):
    g = torch.Generator().manual_seed(5)
    a = torch.randn(37, 650, generator=g, dtype=dtype)
    W = torch.randn(2600, 650, generator=g, dtype=dtype)        # 6.8 / 13.5 MB: by hand on one thread too
    outs, paths = [], []
    for n in (1, 2, 3):
        with threads(n):
            outs.append(ext().gemm(a, W.t()))
            paths.append(ext().gemm_path(a, W.t()))
    if paths == ["W as stored"] * 3:
        assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])
    else:                                                             # oneDNN took it
        assert dtype == torch.float32 and "onednn" in paths
    assert_product(outs[0], a, W.t())


def test_gemm_path_names_each_way(two_threads):
    a3, W = torch.randn(3, 40, dtype=torch.float64), torch.randn(30, 40, dtype=torch.float64)
    assert ext().gemm_path(a3[:1], W.t()) == "few rows"
    assert ext().gemm_path(a3, W.t()) == "W as stored"
    assert ext().gemm_path(a3, W.t().contiguous()) == "aten"             # row-major b: not W as stored
    assert ext().gemm_path(torch.randn(129, 40, dtype=torch.float64), W.t()) == "aten"   # past kNtMaxRows
    assert ext().gemm_path(a3.half(), W.t().half()) == "aten"
    with pytest.raises(RuntimeError, match="2-D"):
        ext().gemm_path(a3[0], W.t())
    with threads(1):                       # one thread: by hand only where W passes two L2 caches
        assert ext().gemm_path(a3, W.t()) == "aten"
        big = torch.randn(4 * ext().cache_size(2) // 8 // 40 + 1, 40, dtype=torch.float64)
        assert ext().gemm_path(a3, big.t()) == "W as stored"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("K, N", [(7, 13), (100, 300), (128, 512)])
def test_rows_times_w_as_stored_are_the_step_products_sums_bit_for_bit(dtype, K, N, two_threads):
    # nt_gemm starts each output at init and adds k in order by FMAs, as the step product does:
    # the first two of 20 rows equal those two rows alone through the panel product (few rows,
    # row-major b), bit for bit
    g = torch.Generator().manual_seed(K + N)
    a, W = torch.randn(20, K, generator=g, dtype=dtype), torch.randn(N, K, generator=g, dtype=dtype)
    bias = torch.randn(N, generator=g, dtype=dtype)
    assert ext().gemm_path(a, W.t()) == "W as stored" and ext().gemm_path(a[:2], W.t().contiguous()) == "few rows"
    assert torch.equal(ext().gemm(a, W.t(), bias)[:2], ext().gemm(a[:2], W.t().contiguous(), bias))
