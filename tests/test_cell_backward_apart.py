"""A cell's backward takes its small products at once, one thread each (kernels/gemm.h's
gemm_new_each: an RNNCell's dx, dh, dW_ih, dW_hh; an LSTMCell's and a GRUCell's dx, dW_ih, dW_hh),
where each is at most 2 M multiply-adds and together at least 0.5 M. At sizes where it does, every
gradient of a 20-step loop matches torch.nn's cell, and the same backward with the products one
after the other (the cores marked busy, which keeps every product on the calling thread)."""

from __future__ import annotations

import pytest
import torch

import lstmkit
from lstmkit import kernels

pytestmark = pytest.mark.skipif(not kernels.cpp_available(),
                                reason=f"C++ CPU kernel unavailable: {kernels._build_error}")

# (B, I, H): products of 0.8-0.9 M multiply-adds each (the apart path), and one of 27 M (each product
# on both threads)
SIZES = {"rnn": [(20, 200, 200), (64, 650, 650)], "lstm": [(20, 100, 100)], "gru": [(20, 120, 120)]}
CELLS = {"rnn": (lstmkit.RNNCell, torch.nn.RNNCell), "lstm": (lstmkit.LSTMCell, torch.nn.LSTMCell),
         "gru": (lstmkit.GRUCell, torch.nn.GRUCell)}


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)
    kernels.load_extension().set_cores_busy(False)


def _grads(cell, x, busy: bool):
    kernels.load_extension().set_cores_busy(busy)
    x = x.clone().requires_grad_()
    for p in cell.parameters():
        p.grad = None
    state, ys = None, []
    for x_t in x:
        state = cell(x_t, state)
        ys.append(state[0] if isinstance(state, tuple) else state)
    (torch.stack(ys) * torch.linspace(-1, 1, ys[0].shape[-1], dtype=x.dtype)).sum().backward()
    kernels.load_extension().set_cores_busy(False)
    return [x.grad, *(p.grad for p in cell.parameters())]


@pytest.mark.parametrize("kind,size", [(k, s) for k, sizes in SIZES.items() for s in sizes])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradients_match_torch_nn_and_the_products_one_after_the_other(kind, size, dtype, two_threads):
    B, I, H = size
    torch.manual_seed(0)
    mine, ref = CELLS[kind][0](I, H, dtype=dtype), CELLS[kind][1](I, H, dtype=dtype)
    ref.load_state_dict(mine.state_dict())
    x = torch.randn(20, B, I, dtype=dtype)
    got, alone, want = _grads(mine, x, False), _grads(mine, x, True), _grads(ref, x, False)
    rtol, atol = (1e-4, 1e-4) if dtype == torch.float32 else (1e-10, 1e-10)
    for g, a, w in zip(got, alone, want, strict=True):
        torch.testing.assert_close(g, w, rtol=rtol, atol=atol)
        torch.testing.assert_close(g, a, rtol=rtol, atol=atol)
