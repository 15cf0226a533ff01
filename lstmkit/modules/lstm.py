"""``lstmkit.LSTM``: a drop-in ``torch.nn.LSTM`` computed from the article's equations, with what
``nn.LSTM`` lacks: gate traces, forget-bias and chrono initialisation, ``lengths=`` without packing, and a
streaming step. The math of one layer lives in ``lstmkit.functional.lstm``; the loop over layers,
directions and layouts in ``lstmkit.modules.base``.
"""

from __future__ import annotations

from torch import nn

from lstmkit.functional import lstm_layer
from lstmkit.functional.lstm_op import _inference as lstm_inference
from lstmkit.modules.base import RecurrentBase, padding_mask
from lstmkit.modules.convert import torch_twin
from lstmkit.modules.init import check_chrono, check_keep_bias, init_keep_gate
from lstmkit.modules.trace import LSTMTrace


class LSTM(RecurrentBase, nn.LSTM):
    """Multi-layer LSTM with ``torch.nn.LSTM``'s arguments, parameters and conventions.

    Args (as torch.nn.LSTM): input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None; and
    forget_bias: added to the forget-gate part of ``bias_ih_l*`` at initialisation. 0.0 keeps
    parity with nn.LSTM; 1.0 is the usual advice (Jozefowicz, Zaremba & Sutskever 2015), so the
    cell starts by keeping its memory.
    chrono: T_max (int >= 2; 0 or None: off), chrono initialisation (Tallec & Ollivier 2018): per
    unit b_f ~ log(U[1, T_max − 1]) and b_i = −b_f in ``bias_ih_l*``, with the same blocks of
    ``bias_hh_l*`` zero, so the forget gate's time constant 1/(1 − σ(b_f)) spans 2..T_max, the
    range of dependencies expected. Drawn from torch's global RNG after the standard
    initialisation; instead of forget_bias, not with it (see ``lstmkit.modules.init``).

    forward(input, hx=None, *, lengths=None, return_trace=False):
      input (T,B,I), (B,T,I) with batch_first, (T,I) unbatched, or a PackedSequence;
      hx = (h_0 (L*D,B,P), c_0 (L*D,B,H)), zeros when omitted;
      lengths (B,) ints: padded input, each sequence ends at its length: outputs are zero past it,
      h_n/c_n are each sequence's last real state, and the reverse direction starts at each end;
      return_trace: also return ``trace[layer][direction]``, an ``LSTMTrace`` of every gate and state.
    Returns output (T,B,D*P), (h_n (L*D,B,P), c_n (L*D,B,H)) [, trace].
    """

    gate_count = 4
    state_names = ("h_0", "c_0")
    autocast_devices = ("cpu",)              # aten::lstm is on CPU autocast's lower-precision list

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None, forget_bias: float = 0.0,
                 chrono: int | None = None) -> None:
        self.forget_bias = check_keep_bias("forget_bias", forget_bias, bias)
        self.chrono = check_chrono(chrono, bias, "forget_bias", self.forget_bias)
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, device, dtype)

    def reset_parameters(self) -> None:
        """torch.nn.LSTM's initialisation, then forget_bias added to every b_ih's forget block (f, 1),
        or the chrono draw in its forget and input (i, 0) blocks."""
        super().reset_parameters()
        if self.forget_bias or self.chrono:
            init_keep_gate(self, 1, self.forget_bias, self.chrono, opposite=0)

    def _state_shapes(self, batch: int):
        LD = self.num_layers * self.num_directions
        return ((LD, batch, self.output_size), (LD, batch, self.hidden_size))

    def _hx_description(self) -> str:
        return "a tuple (h_0, c_0) of shapes (L*D, B, P) and (L*D, B, H)"

    def _run_direction(self, x, state, layer, direction, lengths, want_trace):
        h0, c0 = state
        y, h_n, c_n, gates, cs = lstm_layer(x, h0, c0, *self._weights(layer, direction), lengths, want_trace)
        if not want_trace:
            return y, (h_n, c_n), None
        if lengths is not None:                             # the cell is held on padding: show zeros
            cs = cs * padding_mask(lengths, x.shape[0])
        return y, (h_n, c_n), (gates, cs, y)

    _stack_kind = "lstm"                   # kernels.stack_inference runs its layers (base.stack_kind)

    def _infer_direction(self, rec, x, state, weights):
        """What ``_run_direction`` calls where nothing is recorded or watched (``compiled_inference``
        calls it directly; rec: the compiled namespace): y (T,B,P), (h_n (B,P), c_n (B,H)), views."""
        w_ih, w_hh, b_ih, b_hh, w_hr = weights
        y, h_n, c_n = lstm_inference(x, *state, w_ih, w_hh, b_ih, b_hh, w_hr, None, rec)
        return y, (h_n, c_n)

    def _make_trace(self, raw, unbatched: bool) -> LSTMTrace:
        gates, cs, y = (self._output_layout(t, unbatched) for t in raw)
        i, f, g, o = gates.chunk(4, dim=-1)
        return LSTMTrace(input_gate=i, forget_gate=f, candidate=g, output_gate=o, cell=cs, hidden=y)

    @classmethod
    def from_torch(cls, module: nn.LSTM) -> LSTM:
        """An lstmkit.LSTM with the configuration and a copy of the weights of a torch.nn.LSTM."""
        return torch_twin(cls, module, nn.LSTM)

    def to_torch(self) -> nn.LSTM:
        """A torch.nn.LSTM with this configuration and a copy of these weights."""
        return torch_twin(nn.LSTM, self, type(self))

