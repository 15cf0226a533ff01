"""``lstmkit.RNN``: a drop-in ``torch.nn.RNN`` (the article's plain RNN, the one that forgets),
with traces, ``lengths=`` and a streaming step. One layer's math: ``lstmkit.functional.rnn``."""

from __future__ import annotations

from torch import nn

from lstmkit.functional import NONLINEARITIES, rnn_layer
from lstmkit.functional.rnn_op import _inference as rnn_inference
from lstmkit.modules.base import RecurrentBase, refuse_unknown_arguments
from lstmkit.modules.convert import torch_twin
from lstmkit.modules.trace import RNNTrace


class RNN(RecurrentBase, nn.RNN):
    """Multi-layer Elman RNN with ``torch.nn.RNN``'s arguments, parameters and conventions:
    h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), act = tanh or relu (``nonlinearity``).
    forward(input, hx=None, *, lengths=None, return_trace=False) as ``lstmkit.GRU``.
    """

    gate_count = 1

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device=None, dtype=None, **kwargs) -> None:
        refuse_unknown_arguments(kwargs)
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity should be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        super().__init__(mode, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, device, dtype)

    def _run_direction(self, x, state, layer, direction, lengths, want_trace):
        w_ih, w_hh, b_ih, b_hh, _ = self._weights(layer, direction)
        y, h_n = rnn_layer(x, state[0], w_ih, w_hh, b_ih, b_hh, self.nonlinearity, lengths)
        return y, (h_n,), ((y,) if want_trace else None)

    _stack_kind = "rnn"                   # kernels.stack_inference runs its layers (base.stack_kind)

    def _infer_direction(self, rec, x, state, weights):
        """What ``_run_direction`` calls where nothing is recorded or watched (``compiled_inference``
        calls it directly; rec: the compiled namespace): y (T,B,H), (h_n (B,H),)."""
        w_ih, w_hh, b_ih, b_hh, _ = weights
        y, h_n = rnn_inference(x, state[0], w_ih, w_hh, b_ih, b_hh, self.nonlinearity, None, rec)
        return y, (h_n,)

    def _make_trace(self, raw, unbatched: bool) -> RNNTrace:
        return RNNTrace(hidden=self._output_layout(raw[0], unbatched))

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s if self.nonlinearity == "tanh" else s + f", nonlinearity={self.nonlinearity!r}"

    @classmethod
    def from_torch(cls, module: nn.RNN) -> RNN:
        """An lstmkit.RNN with the configuration and a copy of the weights of a torch.nn.RNN."""
        return torch_twin(cls, module, nn.RNN)

    def to_torch(self) -> nn.RNN:
        """A torch.nn.RNN with this configuration and a copy of these weights."""
        return torch_twin(nn.RNN, self, type(self))
