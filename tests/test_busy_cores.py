"""While another process holds a core, the kernels run their teams on the calling thread alone
(kernels/cpu_math.h's cores_busy; team.h marks it when a thread comes into a team's region late).
Checked here: the mark and its clearing, and that every team path gives the same bits on the calling
thread alone as with its threads, at two threads: the layer by rows and by units, one row, the
cells' one row and rows, a bidirectional layer (the pair of directions); and a training call's
outputs and gradients within rounding (its weight gradients are BLAS products, which may split
their sums by how many threads they get)."""

from __future__ import annotations

import pytest
import torch
from torch_oracle import require_cpp

import lstmkit
from lstmkit import kernels


@pytest.fixture
def ext():
    require_cpp()
    return kernels.load_extension()


@pytest.fixture
def two_threads(ext):
    """Two threads, the cores not marked busy before or after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    ext.set_cores_busy(False)
    yield ext
    ext.set_cores_busy(False)
    torch.set_num_threads(threads)


def test_the_busy_mark_is_set_and_cleared(two_threads):
    ext = two_threads
    assert not ext.cores_busy()
    ext.set_cores_busy(True)
    assert ext.cores_busy()                      # (for 100 ms: far longer than these two calls)
    ext.set_cores_busy(False)
    assert not ext.cores_busy()


def _tensors(out) -> list[torch.Tensor]:
    """The tensors of a module's or a cell's result: y, (y, h), (y, (h, c)), h or (h, c)."""
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for part in out for t in _tensors(part)]


def _run(module, x, train):
    """(outputs, gradients) of one call: inference under no_grad, or forward and backward of a sum."""
    if not train:
        with torch.no_grad():
            return _tensors(module(x)), []
    for p in module.parameters():
        p.grad = None
    leaves = _tensors(module(x))
    sum(t.sum() for t in leaves).backward()
    return [t.detach() for t in leaves], [p.grad for p in module.parameters()]


# (module, input shape (T or none for a cell, B, I), training): team paths at two threads
CASES = {
    "lstm-by-rows": (lambda: lstmkit.LSTM(64, 128), (12, 16, 64), False),
    "lstm-by-units": (lambda: lstmkit.LSTM(116, 232), (12, 5, 116), False),
    "lstm-one-row": (lambda: lstmkit.LSTM(200, 200), (20, 1, 200), False),
    "lstm-bidirectional": (lambda: lstmkit.LSTM(32, 64, bidirectional=True), (10, 4, 32), False),
    "gru-by-rows": (lambda: lstmkit.GRU(64, 128), (12, 16, 64), False),
    "rnn-by-rows": (lambda: lstmkit.RNN(64, 128), (12, 16, 64), False),
    "lstm-training": (lambda: lstmkit.LSTM(64, 128), (12, 16, 64), True),
    "lstmcell-rows": (lambda: lstmkit.LSTMCell(128, 128), (None, 8, 128), False),
    "grucell-rows": (lambda: lstmkit.GRUCell(128, 128), (None, 8, 128), False),
    "rnncell-rows": (lambda: lstmkit.RNNCell(200, 200), (None, 20, 200), False),
    "lstmcell-one-row": (lambda: lstmkit.LSTMCell(256, 256), (None, 1, 256), False),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_busy_call_gives_the_same_bits_as_with_its_threads(two_threads, name, dtype):
    ext = two_threads
    make, (T, B, I), train = CASES[name]
    torch.manual_seed(0)
    module = make().to(dtype)
    x = torch.randn(*((T,) if T else ()), B, I, dtype=dtype)
    free = _run(module, x, train)
    ext.set_cores_busy(True)
    busy = _run(module, x, train)
    assert ext.cores_busy()                      # still marked: the call above ran alone
    ext.set_cores_busy(False)
    for a, b in zip([*busy[0], *busy[1]], [*free[0], *free[1]], strict=True):
        if train:
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12 if dtype == torch.float64 else 1e-5)
        else:
            assert torch.equal(a, b), name
