"""``lstmkit.GRU``: a drop-in ``torch.nn.GRU`` (the article's announced next step), with gate
traces, ``lengths=``, a streaming step, and update-gate or chrono initialisation (the counterparts
of the LSTM's forget bias). One layer's math: ``lstmkit.functional.gru``."""

from __future__ import annotations

from torch import nn

from lstmkit.functional import gru_layer
from lstmkit.functional.gru_op import _inference as gru_inference
from lstmkit.modules.base import RecurrentBase, refuse_unknown_arguments
from lstmkit.modules.convert import torch_twin
from lstmkit.modules.init import check_chrono, check_keep_bias, init_keep_gate
from lstmkit.modules.trace import GRUTrace


class GRU(RecurrentBase, nn.GRU):
    """Multi-layer GRU with ``torch.nn.GRU``'s arguments, parameters and conventions.

    Args as torch.nn.GRU, and
    update_bias: added to the update-gate (z, rows H:2H) part of ``bias_ih_l*`` at initialisation.
    As h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}, a positive value makes the GRU start by keeping its
    state: the counterpart of the LSTM's forget_bias. 0.0 keeps parity with nn.GRU.
    chrono: T_max (int >= 2; 0 or None: off), chrono initialisation (Tallec & Ollivier 2018): per
    unit b_z ~ log(U[1, T_max − 1]) in ``bias_ih_l*``'s z block, ``bias_hh_l*``'s z block zero, so
    the state's time constant 1/(1 − σ(b_z)) spans 2..T_max, the range of dependencies expected.
    Drawn from torch's global RNG after the standard initialisation; instead of update_bias.

    forward(input, hx=None, *, lengths=None, return_trace=False) with the
    conventions of ``lstmkit.LSTM``; hx = h_0 (L*D,B,H). Returns output (T,B,D*H), h_n [, trace of
    ``GRUTrace``].
    """

    gate_count = 3

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None, update_bias: float = 0.0, chrono: int | None = None,
                 **kwargs) -> None:
        refuse_unknown_arguments(kwargs)
        self.update_bias = check_keep_bias("update_bias", update_bias, bias)
        self.chrono = check_chrono(chrono, bias, "update_bias", self.update_bias)
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, device, dtype)

    def reset_parameters(self) -> None:
        """torch.nn.GRU's initialisation, then update_bias added to every b_ih's z block (r, z, n: 1),
        or the chrono draw there."""
        super().reset_parameters()
        if self.update_bias or self.chrono:
            init_keep_gate(self, 1, self.update_bias, self.chrono)

    def _run_direction(self, x, state, layer, direction, lengths, want_trace):
        w_ih, w_hh, b_ih, b_hh, _ = self._weights(layer, direction)
        y, h_n, gates = gru_layer(x, state[0], w_ih, w_hh, b_ih, b_hh, lengths, want_trace)
        return y, (h_n,), ((gates, y) if want_trace else None)

    _stack_kind = "gru"                   # kernels.stack_inference runs its layers (base.stack_kind)

    def _infer_direction(self, rec, x, state, weights):
        """What ``_run_direction`` calls where nothing is recorded or watched (``compiled_inference``
        calls it directly; rec: the compiled namespace): y (T,B,H), (h_n (B,H),), a view."""
        w_ih, w_hh, b_ih, b_hh, _ = weights
        y, h_n = gru_inference(x, state[0], w_ih, w_hh, b_ih, b_hh, None, rec)
        return y, (h_n,)

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
