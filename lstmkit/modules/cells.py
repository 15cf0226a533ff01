"""``LSTMCell``, ``GRUCell``, ``RNNCell``: one time step, drop-in for their ``torch.nn`` twins.

A cell is one step of the same layer Functions the sequence modules use (``lstmkit.functional``,
run over T = 1), so the math and its hand-written backward stay in one place.
Dimensions: B batch, I input, H hidden.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lstmkit.functional import NONLINEARITIES, GRULayerFunction, LSTMLayerFunction, RNNLayerFunction
from lstmkit.modules.checks import check_like, check_sizes, check_state


class _CellBase(nn.Module):
    """Parameters weight_ih (G*H,I), weight_hh (G*H,H), bias_ih, bias_hh (G*H,) as torch.nn."""

    gate_count: int
    state_count = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.input_size = check_sizes("input_size", input_size, 1)
        self.hidden_size = check_sizes("hidden_size", hidden_size, 1)
        self.bias = bool(bias)
        G, H, kw = self.gate_count, self.hidden_size, {"device": device, "dtype": dtype}
        self.weight_ih = nn.Parameter(torch.empty(G * H, self.input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(G * H, H, **kw))
        self.bias_ih = nn.Parameter(torch.empty(G * H, **kw)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(G * H, **kw)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch.nn's initialisation: U(-1/sqrt(H), 1/sqrt(H)) for every parameter, in order."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")

    def _inputs(self, input: Tensor, hx) -> tuple[Tensor, tuple[Tensor, ...], bool]:
        """Checked input as (1,B,I) and state tensors as (B,H); whether the input was unbatched."""
        if not isinstance(input, Tensor):
            raise TypeError(f"input should be a torch.Tensor, got {type(input).__name__}")
        if input.dim() not in (1, 2):
            raise ValueError(f"{type(self).__name__}: Expected input to be 1-D or 2-D but received "
                             f"{input.dim()}-D tensor")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                             f"got {input.shape[-1]}")
        check_like(input, self.weight_ih, "input")
        unbatched = input.dim() == 1
        x = input.reshape(1, 1 if unbatched else input.shape[0], -1)     # (1,B,I)
        B, H = x.shape[1], self.hidden_size
        if hx is None:
            return x, tuple(x.new_zeros(B, H) for _ in range(self.state_count)), unbatched
        given = hx if isinstance(hx, tuple | list) else (hx,)
        if len(given) != self.state_count:
            raise TypeError(f"hx should hold {self.state_count} tensor(s), got {len(given)}")
        names = ("h_0", "c_0")[: self.state_count]
        expected = (H,) if unbatched else (B, H)
        state = tuple(check_state(n, t, expected, self.weight_ih).reshape(B, H).contiguous()
                      for n, t in zip(names, given, strict=True))
        return x, state, unbatched


class LSTMCell(_CellBase):
    """One LSTM step: forward(input (B,I) or (I,), hx=(h (B,H), c (B,H)) or None) -> (h', c')."""

    gate_count, state_count = 4, 2

    def forward(self, input: Tensor, hx=None) -> tuple[Tensor, Tensor]:
        x, (h, c), unbatched = self._inputs(input, hx)
        _, h_new, c_new, _, _ = LSTMLayerFunction.apply(
            x, h, c, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, None, None, False)
        return (h_new[0], c_new[0]) if unbatched else (h_new, c_new)


class GRUCell(_CellBase):
    """One GRU step: forward(input (B,I) or (I,), hx=h (B,H) or None) -> h'."""

    gate_count = 3

    def forward(self, input: Tensor, hx=None) -> Tensor:
        x, (h,), unbatched = self._inputs(input, hx)
        _, h_new, _ = GRULayerFunction.apply(x, h, self.weight_ih, self.weight_hh, self.bias_ih,
                                             self.bias_hh, None)
        return h_new[0] if unbatched else h_new


class RNNCell(_CellBase):
    """One plain RNN step: forward(input (B,I) or (I,), hx=h (B,H) or None) -> h'."""

    gate_count = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None):
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity should be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def forward(self, input: Tensor, hx=None) -> Tensor:
        x, (h,), unbatched = self._inputs(input, hx)
        _, h_new = RNNLayerFunction.apply(x, h, self.weight_ih, self.weight_hh, self.bias_ih,
                                          self.bias_hh, self.nonlinearity, None)
        return h_new[0] if unbatched else h_new
