"""What an inference call returns is an ordinary tensor afterwards. The compiled inference entries
(``kernels/bindings.cpp``'s ``below_autograd``: the module stack, the layers without a cache, the
cells' steps) dispatch their own ATen operations below the autograd and view-tracking layers; their
outputs must still behave as torch.nn's do: no history, usable in a later recorded computation,
writable in place without changing another output, and the dispatcher's state restored after the
call, also after an error."""

from __future__ import annotations

import pytest
import torch

import lstmkit
from lstmkit import kernels

pytestmark = pytest.mark.skipif(not kernels.cpp_available(),
                                reason=f"C++ CPU kernel unavailable: {kernels._build_error}")

MODULES = {"lstm": lstmkit.LSTM, "gru": lstmkit.GRU, "rnn": lstmkit.RNN}
CELLS = {"lstm": lstmkit.LSTMCell, "gru": lstmkit.GRUCell, "rnn": lstmkit.RNNCell}
LAYOUTS = [{}, {"num_layers": 2}, {"bidirectional": True}]


def _autograd_excluded() -> bool:
    return torch._C._dispatch_tls_is_dispatch_key_excluded(torch._C.DispatchKey.AutogradCPU)


def _states(out):
    y, state = out
    return y, (state if isinstance(state, tuple) else (state,))


@pytest.mark.parametrize("kind", MODULES)
@pytest.mark.parametrize("kw", LAYOUTS)
@pytest.mark.parametrize("T", [1, 5])
def test_module_outputs_are_plain_tensors_afterwards(kind, kw, T):
    torch.manual_seed(0)
    m = MODULES[kind](6, 5, **kw).eval()
    x = torch.randn(T, 3, 6)
    with torch.no_grad():
        y, states = _states(m(x))
    assert not _autograd_excluded()
    for t in (y, *states):
        assert not t.requires_grad and t.grad_fn is None
    kept = [s.clone() for s in states]
    y.add_(1.0)                                       # y (a view of the last h where T = 1) is y's alone
    for s, k in zip(states, kept, strict=True):
        torch.testing.assert_close(s, k, rtol=0, atol=0)
    w = torch.ones_like(y, requires_grad=True)        # a later recorded computation reads y
    (w * y).sum().backward()
    torch.testing.assert_close(w.grad, y, rtol=0, atol=0)


@pytest.mark.parametrize("kind", CELLS)
@pytest.mark.parametrize("B", [1, 4])
def test_cell_outputs_are_plain_tensors_afterwards(kind, B):
    torch.manual_seed(0)
    cell = CELLS[kind](6, 5)
    x = torch.randn(B, 6)
    with torch.no_grad():
        out = cell(x)
    outs = out if isinstance(out, tuple) else (out,)
    assert not _autograd_excluded()
    for t in outs:
        assert not t.requires_grad and t.grad_fn is None
    kept = [t.clone() for t in outs[1:]]
    outs[0].mul_(2.0)                                 # h' is h''s alone (an LSTM's c' unchanged)
    for t, k in zip(outs[1:], kept, strict=True):
        torch.testing.assert_close(t, k, rtol=0, atol=0)
    nxt = cell(x, out)                                # the next step with autograd records as usual
    h = nxt[0] if isinstance(nxt, tuple) else nxt
    assert h.grad_fn is not None
    h.sum().backward()
    assert cell.weight_hh.grad is not None and cell.weight_hh.grad.abs().sum() > 0


def test_a_refused_raw_call_leaves_autograd_on():
    ext = kernels.load_extension()
    m = lstmkit.LSTM(4, 3).eval()
    weights = [m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0, None]
    with pytest.raises(RuntimeError):
        ext.stack_inference("lstm", torch.randn(2, 3, 5), [], weights, 1, "tanh", 0, 1 << 20)  # I = 5, not 4
    assert not _autograd_excluded()
    y, _ = m(torch.randn(2, 3, 4))
    assert y.grad_fn is not None


def test_training_after_inference_matches_torch_nn():
    torch.manual_seed(0)
    m = lstmkit.LSTM(6, 5, num_layers=2)
    ref = torch.nn.LSTM(6, 5, num_layers=2)
    ref.load_state_dict(m.state_dict())
    x = torch.randn(4, 3, 6, dtype=torch.float32)
    with torch.no_grad():
        m(x)
    m(x)[0].square().sum().backward()
    ref(x)[0].square().sum().backward()
    for (name, p), q in zip(m.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=name)
