"""The loop around the cells: layers, directions, lengths, layouts and PackedSequence.

``RecurrentBase`` is what LSTM, GRU and RNN add to ``torch.nn.RNNBase``, whose subclasses they are
(``isinstance(m, nn.LSTM)`` holds, and torch.nn's constructor creates and initialises the
parameters: same names, shapes, order and values for one seed): the input conventions
(batch_first, unbatched 2-D input, PackedSequence, optional initial state), ``lengths=`` for
padded input, traces and a streaming ``step``. Each subclass says how one layer and direction
runs (``_run_direction``, through an entry of ``lstmkit.functional``) and what its trace holds.
No cell math lives here. Weights are read as attributes, as ``nn.Module`` users expect
(parametrizations, pruning, weight drop and ``torch.func.functional_call`` all work).

Under ``torch.onnx.export`` the forward is torch.nn's own, whose operators both exporters map to
ONNX's LSTM, GRU and RNN (dynamic batch and sequence length), with these same weights.

Dimensions: T time, B batch, I input, H hidden, P output of a direction (proj_size or H),
L layers, D directions. Inside, everything is time-major (T,B,·).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from lstmkit.functional.ops import needs_grad
from lstmkit.modules.checks import (
    check_dropout,
    check_flag,
    check_input,
    check_lengths,
    check_sizes,
    check_state,
)
from lstmkit.modules.compiled_inference import compiled_inference, compiled_step


def padding_mask(lengths: Tensor, T: int) -> Tensor:
    """(T,B,1) bool: True at real steps t < lengths[b]."""
    return (torch.arange(T, device=lengths.device).unsqueeze(1) < lengths).unsqueeze(2)


class RecurrentBase(nn.RNNBase):
    """Shared machinery; see LSTM, GRU and RNN for the documented public classes."""

    gate_count: int          # 4 LSTM (i,f,g,o), 3 GRU (r,z,n), 1 RNN
    state_names: tuple[str, ...] = ("h_0",)
    autocast_devices: tuple[str, ...] = ()   # where torch's autocast casts this module's operator

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None) -> None:
        check_sizes("input_size", input_size, 1)
        check_sizes("hidden_size", hidden_size, 1)
        check_sizes("num_layers", num_layers, 1)
        check_sizes("proj_size", proj_size, 0)
        if proj_size >= hidden_size:
            raise ValueError(f"proj_size has to be smaller than hidden_size, got proj_size={proj_size} "
                             f"and hidden_size={hidden_size}")
        check_dropout(dropout)
        check_flag("bias", bias)
        check_flag("batch_first", batch_first)
        nn.RNNBase.__init__(self, mode, input_size, hidden_size, num_layers, bias, batch_first, float(dropout),
                            bool(bidirectional), proj_size, device, dtype)

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """P: the size of h_t of one direction (proj_size when set, else hidden_size)."""
        return self.proj_size or self.hidden_size

    @staticmethod
    def _suffix(layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "")

    def _layer_weight_names(self) -> tuple[tuple[str, ...], ...]:
        """The names of (w_ih, w_hh, b_ih, b_hh, w_hr) of every layer and direction, layer k // D,
        direction k % D (built once per shape: a streaming step reads them on every call)."""
        return _layer_weight_names(self.num_layers, self.num_directions)

    def _stack_kind_of(self) -> str | None:
        """What ``kernels.stack_inference`` runs this module's layers as ('lstm', 'gru', 'rnn'), or
        None where its class changes a layer's inference call (``stack_kind``)."""
        return stack_kind(type(self))

    def _weights(self, layer: int, direction: int) -> tuple[Tensor | None, ...]:
        """(w_ih, w_hh, b_ih, b_hh, w_hr) of one layer and direction; None where absent. A plain
        parameter is read from ``_parameters`` (``nn.Module.__getattr__`` costs ~1 us a name, and a
        short sequence lasts ~300 us); anything else (a parametrization, a pruned or dropped weight
        set as an attribute) by attribute, as torch.nn reads it."""
        params = self._parameters
        return tuple(params[name] if name in params else getattr(self, name, None)
                     for name in _weight_names(self._suffix(layer, direction)))

    # ---- forward: layouts in and out, then the loop over layers and directions ----------------------

    def forward(self, input, hx=None, lengths=None, return_trace: bool = False):
        """output, h_n (an LSTM: (h_n, c_n)) [, trace]; the subclass docstrings give the shapes.
        (lengths and return_trace are not keyword-only: torch.onnx's TorchScript exporter passes
        every parameter's default positionally.) A call with nothing to record first tries the
        compiled inference path (``modules/compiled_inference.py``: the same kernel calls, less
        Python), then the general one."""
        if lengths is None and not return_trace and runs_plain_layers(type(self)):
            out = compiled_inference(self, input, hx)
            if out is not None:
                return out
        return self.general_forward(input, hx, lengths, return_trace)

    def general_forward(self, input, hx=None, lengths=None, return_trace: bool = False):
        """forward's general path: checks, layouts, the operators of every layer and direction."""
        if torch.onnx.is_in_onnx_export():
            return self._onnx_forward(input, hx, lengths, return_trace)
        y, state_n, trace = self._forward(input, hx, lengths, return_trace)
        state_n = state_n if len(state_n) > 1 else state_n[0]
        return (y, state_n, trace) if return_trace else (y, state_n)

    def _onnx_forward(self, input, hx, lengths, return_trace):
        """torch.nn's forward (aten::lstm/gru/rnn_*), which the ONNX exporters map to ONNX's operators."""
        if lengths is not None or return_trace:
            raise RuntimeError("ONNX export covers forward(input, hx) as torch.nn has it; lengths= and "
                               "return_trace have no ONNX operator (pack the input instead of lengths=)")
        twin = next(c for c in type(self).__mro__ if c.__module__ == "torch.nn.modules.rnn")
        return twin.forward(self, input, hx)

    def _forward(self, input, hx, lengths, return_trace):
        """Normalise the input to time-major (T,B,I), run, and restore the caller's layout."""
        weight = self.weight_ih_l0
        packed = isinstance(input, PackedSequence)
        if packed:
            if lengths is not None:
                raise ValueError("lengths= is for padded tensors; a PackedSequence carries its own lengths")
            check_input(input.data, self.input_size, weight)
            sequences, lengths = pad_packed_sequence(input)           # (T,B,I), original order
            x, unbatched = sequences, False
        else:
            x = check_input(input, self.input_size, weight, self.batch_first)
            unbatched = x.dim() == 2
            x = x.unsqueeze(1) if unbatched else (x.transpose(0, 1) if self.batch_first else x)
        T, B, _ = x.shape
        if lengths is not None:
            lengths = check_lengths(lengths, B, T, x.device)
            x = x.masked_fill(~padding_mask(lengths, T), 0)  # padding, whatever it holds (NaN, Inf), never
        state = self._initial_state(hx, B, unbatched, x)      # reaches an output or a gradient
        if x.device.type in self.autocast_devices and torch.is_autocast_enabled(x.device.type):
            dtype = torch.get_autocast_dtype(x.device.type)            # as torch.nn's operator is cast
            x, state = x.to(dtype), tuple(s.to(dtype) for s in state)
        y, state_n, trace = self._run_layers(x, state, lengths, return_trace)
        if packed:
            y = _pack_like(y, lengths, input)
        else:
            y = self._output_layout(y, unbatched)
        if unbatched:
            state_n = tuple(s.squeeze(1) for s in state_n)
        if trace is not None:
            trace = tuple(tuple(self._make_trace(raw, unbatched) for raw in layer) for layer in trace)
        return y, state_n, trace

    def _output_layout(self, t: Tensor, unbatched: bool) -> Tensor:
        """(T,B,·) -> the caller's layout: (T,·) unbatched, (B,T,·) batch_first."""
        if unbatched:
            return t.squeeze(1)
        return t.transpose(0, 1) if self.batch_first else t

    def step(self, x_t: Tensor, state=None):
        """Advance every layer by one time step (streaming); unidirectional modules only.

        x_t (B,I) or (I,); state as ``hx`` of forward ((L,B,·) tensors, (L,·) unbatched), zeros if
        None. Returns (y_t (B,P), new state); T calls equal one T-step forward (tested).
        """
        if self.bidirectional:
            raise ValueError("step() needs a unidirectional module: the reverse direction of a "
                             "bidirectional one needs the whole sequence")
        if not isinstance(x_t, Tensor) or x_t.dim() not in (1, 2):
            got = f"shape {tuple(x_t.shape)}" if isinstance(x_t, Tensor) else type(x_t).__name__
            raise TypeError(f"x_t should be a tensor of shape (B, input_size) or (input_size,), got {got}")
        if runs_plain_layers(type(self)):
            out = compiled_step(self, x_t, state)                               # nothing to record
            if out is not None:
                return out
        check_input(x_t.unsqueeze(0), self.input_size, self.weight_ih_l0)
        unbatched = x_t.dim() == 1
        x = x_t.unsqueeze(0) if unbatched else x_t                              # (B,I)
        state = self._initial_state(state, x.shape[0], unbatched, x)            # (L,B,·) each
        # the parameters are only listed when autograd records (most streaming runs under no_grad)
        if torch.is_grad_enabled() and needs_grad(x, *state, *self.parameters()):
            y, state_n, _ = self._run_layers(x.unsqueeze(0), state, None, False)
            y = y[0]                                                            # (B,P)
        else:
            y, state_n = self._step_layers(x, state)
        if unbatched:
            y, state_n = y.squeeze(0), tuple(s.squeeze(1) for s in state_n)
        return y, (state_n if len(state_n) > 1 else state_n[0])

    def _step_layers(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        """step() where no gradient is needed: each layer's ``_run_direction`` (its inference path)
        on a one-step sequence, without ``_run_layers``' directions and traces.
        x (B,I); state (L,B,·) each. Returns y (B,P) and the new state, (L,B,·) each."""
        finals = []
        for layer in range(self.num_layers):
            y, state_k, _ = self._run_direction(x.unsqueeze(0), tuple(s[layer] for s in state), layer, 0,
                                                None, False)
            x = y[0]                                                            # (B,P)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = nn.functional.dropout(x, self.dropout, training=True)
            finals.append(state_k)
        state_n = tuple(torch.stack(parts) for parts in zip(*finals, strict=True))  # (L,B,·) each, copies
        return x, state_n

    def _state_shapes(self, batch: int) -> tuple[tuple[int, ...], ...]:
        """Shapes of the initial state tensors, (L*D,B,P) for h (and (L*D,B,H) for an LSTM's c)."""
        return ((self.num_layers * self.num_directions, batch, self.output_size),)

    def _initial_state(self, hx, batch: int, unbatched: bool, x: Tensor) -> tuple[Tensor, ...]:
        """hx as a tuple of (L*D,B,·) tensors; zeros where not given."""
        shapes = self._state_shapes(batch)
        if hx is None:
            return tuple(x.new_zeros(shape) for shape in shapes)
        given = hx if isinstance(hx, tuple | list) else (hx,)
        if len(given) != len(shapes):
            raise TypeError(f"hx should be {self._hx_description()}, got {type(hx).__name__} "
                            f"of {len(given)} tensors")
        state = []
        for name, t, shape in zip(self.state_names, given, shapes, strict=True):
            expected = (shape[0], shape[2]) if unbatched else shape
            t = check_state(name, t, expected, self.weight_ih_l0)
            state.append(t.unsqueeze(1) if unbatched else t)
        return tuple(state)

    def _hx_description(self) -> str:
        return "a tensor h_0 of shape (L*D, B, H)"

    def _run_layers(self, x: Tensor, state: tuple[Tensor, ...], lengths: Tensor | None, return_trace: bool):
        """Every layer and direction in turn; dropout between layers while training.
        x (T,B,I); state tensors (L*D,B,·). Returns y (T,B,D*P), final states, raw traces."""
        D = self.num_directions
        finals, traces = [], []
        for layer in range(self.num_layers):
            outputs, layer_traces = [], []
            for direction in range(D):
                k = layer * D + direction
                y, state_k, raw = self._run_one(x, tuple(s[k] for s in state), layer, direction,
                                                lengths, return_trace)
                outputs.append(y)
                finals.append(state_k)
                layer_traces.append(raw)
            x = outputs[0] if D == 1 else torch.cat(outputs, dim=2)        # (T,B,D*P)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = nn.functional.dropout(x, self.dropout, training=True)
            traces.append(layer_traces)
        state_n = tuple(torch.stack(parts) for parts in zip(*finals, strict=True))  # (L*D,B,·) each
        return x, state_n, (traces if return_trace else None)

    def _run_one(self, x, state, layer, direction, lengths, want_trace):
        """One layer and direction; the reverse direction reads each sequence backwards within its
        own length, and its outputs and trace come back in forward time order."""
        if direction == 0:
            return self._run_direction(x, state, layer, direction, lengths, want_trace)
        x = _reverse(x, lengths)
        y, state_n, raw = self._run_direction(x, state, layer, direction, lengths, want_trace)
        raw = None if raw is None else tuple(_reverse(t, lengths) for t in raw)
        return _reverse(y, lengths), state_n, raw

    # ---- what a subclass provides ------------------------------------------------------------------

    def _run_direction(self, x, state, layer, direction, lengths, want_trace):
        """Run one layer and direction over x (T,B,I) from state; return y (T,B,P), the final
        state and, if want_trace, the raw trace tensors (T,B,·) with zeros at padded steps."""
        raise NotImplementedError

    def _make_trace(self, raw: tuple[Tensor, ...], unbatched: bool):
        raise NotImplementedError


@functools.cache
def runs_plain_layers(cls: type) -> bool:
    """Whether instances of cls run their layers as the class whose inference call is
    ``_infer_direction`` (what ``compiled_inference`` calls): the class that gives cls its
    ``_run_direction`` gives that too, and the loop over layers is RecurrentBase's. A subclass
    that changes either keeps its own way."""
    owner = _direction_owner(cls)
    return "_infer_direction" in vars(owner) and cls._run_layers is RecurrentBase._run_layers


def _direction_owner(cls: type) -> type:
    """The class in cls's MRO that defines ``_run_direction``."""
    return next(k for k in cls.__mro__ if "_run_direction" in vars(k))


@functools.cache
def stack_kind(cls: type) -> str | None:
    """'lstm', 'gru' or 'rnn' where instances of cls run every layer as this package's LSTM, GRU or
    RNN does in inference (``runs_plain_layers``, and ``_infer_direction`` is that class's own), so
    the compiled stack (``kernels.stack_inference``: the same calls in C++) may run them all in one
    call; None otherwise (a subclass that changes a layer's call keeps its own way)."""
    if not runs_plain_layers(cls):
        return None
    owner = _direction_owner(cls)
    kind = vars(owner).get("_stack_kind")
    return kind if kind is not None and cls._infer_direction is owner._infer_direction else None


@functools.cache
def _layer_weight_names(num_layers: int, D: int) -> tuple[tuple[str, ...], ...]:
    return tuple(_weight_names(RecurrentBase._suffix(k // D, k % D)) for k in range(num_layers * D))


@functools.cache
def _weight_names(suffix: str) -> tuple[str, ...]:
    """The names of (w_ih, w_hh, b_ih, b_hh, w_hr) with one suffix, built once (a streaming step
    reads them on every call)."""
    return tuple(name + suffix for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"))


def refuse_unknown_arguments(kwargs: dict) -> None:
    """GRU and RNN: torch.nn's ValueError for proj_size, a TypeError for any other unknown argument."""
    if "proj_size" in kwargs:
        raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
    if kwargs:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(kwargs)}")


def _reverse(x: Tensor, lengths: Tensor | None) -> Tensor:
    """x (T,B,·) with each sequence reversed within its own length, padding left in place.
    The map is its own inverse, so the same call restores forward order."""
    if lengths is None:
        return x.flip(0)
    T = x.shape[0]
    t = torch.arange(T, device=x.device).unsqueeze(1)               # (T,1)
    idx = torch.where(t < lengths, lengths - 1 - t, t)              # (T,B)
    return x.gather(0, idx.unsqueeze(2).expand_as(x))


def _pack_like(y: Tensor, lengths: Tensor, like: PackedSequence) -> PackedSequence:
    """y (T,B,·) in the original batch order -> a PackedSequence with like's batch_sizes and
    sorting, in one indexing operation (not one slice per step, whose backward is O(T^2))."""
    sorted_idx = like.sorted_indices
    y_sorted = y if sorted_idx is None else y.index_select(1, sorted_idx)           # (T,B,·)
    lengths_sorted = lengths if sorted_idx is None else lengths[sorted_idx]
    valid = torch.arange(y.shape[0], device=y.device).unsqueeze(1) < lengths_sorted  # (T,B)
    return PackedSequence(y_sorted[valid], like.batch_sizes, like.sorted_indices, like.unsorted_indices)
