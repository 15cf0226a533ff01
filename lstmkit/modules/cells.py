"""``LSTMCell``, ``GRUCell``, ``RNNCell``: one time step, drop-in for their ``torch.nn`` twins.

Each is a subclass of its torch.nn twin (torch.nn's constructor creates and initialises the
parameters) whose forward is one step of the same layer entries the sequence modules use
(``lstmkit.functional``, run over T = 1), so the math and its hand-written backward stay in one
place. Weights are read as attributes (parametrizations, pruning and weight drop work).
Dimensions: B batch, I input, H hidden.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lstmkit.functional import NONLINEARITIES, gru_layer, lstm_layer, rnn_layer
from lstmkit.functional.ops import compiled_unobserved, needs_grad
from lstmkit.modules.checks import check_cell_input, check_flag, check_sizes, check_state


class _CellBase:
    """What the three cells share: argument checks, then torch.nn's constructor; input handling."""

    state_count = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None, **kw):
        check_sizes("input_size", input_size, 1)
        check_sizes("hidden_size", hidden_size, 0)                  # torch.nn's cells allow 0
        check_flag("bias", bias)
        super().__init__(input_size, hidden_size, bias, device=device, dtype=dtype, **kw)

    def forward(self, input: Tensor, hx=None):
        out = self._compiled_step(input, hx)
        if out is not None:
            return out
        if torch.onnx.is_in_onnx_export():                  # torch.nn's operators, which ONNX maps
            twin = next(c for c in type(self).__mro__ if c.__module__ == "torch.nn.modules.rnn")
            return twin.forward(self, input, hx)
        x, state, unbatched = self._inputs(input, hx)
        out = self._step(x, state)                          # (B,H) each
        out = tuple(t[0] if unbatched else t for t in out)
        return out if self.state_count == 2 else out[0]

    def _compiled_step(self, input: Tensor, hx):
        """The step as one compiled call (``kernels/cell_cpu.cpp``: the same recurrence as the layer
        path, without its operator machinery; with a gradient, the C++ autograd nodes of
        ``kernels/cell_autograd.cpp``, whose backward is one call too), where nothing could tell the
        two apart: batched CPU float input, plain tensors and parameters, the C++ kernels selected
        and built, and no transform, tracer, compiler, exporter, autocast or mode watching. The C++
        entry checks every tensor (shapes, dtypes, devices, layout) before it computes anything;
        where it refuses one, or anywhere else, this returns None and the general path runs (and
        raises torch.nn's error for what is wrong). A cell called step by step pays these checks on
        every call: they are ordered cheapest first."""
        if type(input) is not Tensor or input.dim() != 2 or not input.is_cpu \
                or (input.dtype is not torch.float32 and input.dtype is not torch.float64):
            return None
        p = self._parameters
        w_ih, w_hh, b_ih, b_hh = p.get("weight_ih"), p.get("weight_hh"), p.get("bias_ih"), p.get("bias_hh")
        if w_ih is None or w_hh is None or (self.bias and (b_ih is None or b_hh is None)):
            return None                                     # parametrized, pruned or dropped: read as attributes
        if hx is None:
            state = ()
        elif type(hx) is Tensor and self.state_count == 1:
            state = (hx,)
        elif type(hx) is tuple and len(hx) == self.state_count and all(type(t) is Tensor for t in hx):
            state = hx
        else:
            return None
        rec = compiled_unobserved(input, w_ih, w_hh, b_ih, b_hh, *state)
        if rec is None:
            return None
        state = state or tuple(input.new_zeros(input.shape[0], self.hidden_size) for _ in range(self.state_count))
        try:
            return self._step_compiled(rec, input, state, w_ih, w_hh, b_ih, b_hh,
                                       needs_grad(input, w_ih, w_hh, b_ih, b_hh, *state))
        except RuntimeError:
            return None                                     # refused by the C++ checks: the general path says why

    def _inputs(self, input: Tensor, hx) -> tuple[Tensor, tuple[Tensor, ...], bool]:
        """Checked input as (1,B,I) and state tensors as (B,H); whether the input was unbatched."""
        x, unbatched = check_cell_input(self, input)                                  # (1,B,I)
        B, H = x.shape[1], self.hidden_size
        if hx is None:
            return x, tuple(x.new_zeros(B, H) for _ in range(self.state_count)), unbatched
        given = hx if isinstance(hx, tuple | list) else (hx,)
        if len(given) != self.state_count:
            raise TypeError(f"hx should hold {self.state_count} tensor(s), got {len(given)}")
        for t in given:
            if isinstance(t, Tensor) and t.dim() not in (1, 2):
                raise ValueError(f"{type(self).__name__}: Expected hidden to be 1-D or 2-D but received "
                                 f"{t.dim()}-D tensor")
        names = ("h_0", "c_0")[: self.state_count]
        expected = (H,) if unbatched else (B, H)
        state = tuple(check_state(n, t, expected, self.weight_ih).reshape(B, H).contiguous()
                      for n, t in zip(names, given, strict=True))
        return x, state, unbatched


class LSTMCell(_CellBase, nn.LSTMCell):
    """One LSTM step: forward(input (B,I) or (I,), hx=(h (B,H), c (B,H)) or None) -> (h', c')."""

    state_count = 2

    def _step(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        _, h_new, c_new, _, _ = lstm_layer(x, *state, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh,
                                           None, None)
        return h_new, c_new

    def _step_compiled(self, rec, x, state, w_ih, w_hh, b_ih, b_hh, grad: bool):
        if grad:
            return rec.lstm_cell_step(x, *state, w_ih, w_hh, b_ih, b_hh)          # its autograd node is C++'s
        return tuple(rec.lstm_cell_forward(x, *state, w_ih, w_hh, b_ih, b_hh))


class GRUCell(_CellBase, nn.GRUCell):
    """One GRU step: forward(input (B,I) or (I,), hx=h (B,H) or None) -> h'."""

    def _step(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        _, h_new, _ = gru_layer(x, *state, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, None)
        return (h_new,)

    def _step_compiled(self, rec, x, state, w_ih, w_hh, b_ih, b_hh, grad: bool):
        if grad:
            return rec.gru_cell_step(x, *state, w_ih, w_hh, b_ih, b_hh)           # its autograd node is C++'s
        return rec.gru_cell_forward(x, *state, w_ih, w_hh, b_ih, b_hh)[0]


class RNNCell(_CellBase, nn.RNNCell):
    """One plain RNN step: forward(input (B,I) or (I,), hx=h (B,H) or None) -> h'."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None):
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity should be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias, device, dtype, nonlinearity=nonlinearity)

    def _step(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        _, h_new = rnn_layer(x, *state, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh,
                             self.nonlinearity, None)
        return (h_new,)

    def _step_compiled(self, rec, x, state, w_ih, w_hh, b_ih, b_hh, grad: bool):
        if grad:                                            # its autograd node is C++'s (kernels.rnn_cell_step)
            return rec.rnn_cell_step(x, *state, w_ih, w_hh, b_ih, b_hh, self.nonlinearity)
        return rec.rnn_cell_forward(x, *state, w_ih, w_hh, b_ih, b_hh, self.nonlinearity)
