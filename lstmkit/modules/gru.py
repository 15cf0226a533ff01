"""``lstmkit.GRU``: a drop-in ``torch.nn.GRU`` (the article's announced next step), with gate
traces, ``lengths=`` and a streaming step. One layer's math: ``lstmkit.functional.gru``."""

from __future__ import annotations

from torch import nn

from lstmkit.functional import gru_layer
from lstmkit.modules.base import RecurrentBase, refuse_unknown_arguments
from lstmkit.modules.convert import torch_twin
from lstmkit.modules.trace import GRUTrace


class GRU(RecurrentBase, nn.GRU):
    """Multi-layer GRU with ``torch.nn.GRU``'s arguments, parameters and conventions.

    Args as torch.nn.GRU. forward(input, hx=None, *, lengths=None, return_trace=False) with the
    conventions of ``lstmkit.LSTM``; hx = h_0 (L*D,B,H). Returns output (T,B,D*H), h_n [, trace of
    ``GRUTrace``].
    """

    gate_count = 3

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None, **kwargs) -> None:
        refuse_unknown_arguments(kwargs)
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, device, dtype)

    def _run_direction(self, x, state, layer, direction, lengths, want_trace):
        w_ih, w_hh, b_ih, b_hh, _ = self._weights(layer, direction)
        y, h_n, gates = gru_layer(x, state[0], w_ih, w_hh, b_ih, b_hh, lengths, want_trace)
        return y, (h_n,), ((gates, y) if want_trace else None)

    def _make_trace(self, raw, unbatched: bool) -> GRUTrace:
        gates, y = (self._output_layout(t, unbatched) for t in raw)
        r, z, n = gates.chunk(3, dim=-1)
        return GRUTrace(reset_gate=r, update_gate=z, candidate=n, hidden=y)

    @classmethod
    def from_torch(cls, module: nn.GRU) -> GRU:
        """An lstmkit.GRU with the configuration and a copy of the weights of a torch.nn.GRU."""
        return torch_twin(cls, module, nn.GRU)

    def to_torch(self) -> nn.GRU:
        """A torch.nn.GRU with this configuration and a copy of these weights."""
        return torch_twin(nn.GRU, self, type(self))
