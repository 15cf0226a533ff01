"""The sequence model the command line trains: input layer, recurrent core, output head.

``SequenceModel`` = an embedding (token input) or nothing (real-valued input), then ``rnn``
(an LSTM, GRU or plain RNN from ``make_core``: any model of ``lstmkit.registry``), then a linear
``head`` applied either to each sequence's last real state ("last") or to every step ("every").
The whole model is rebuilt from its JSON config (``ModelConfig``), so a run folder never needs a pickled module.

The recurrent core is lstmkit's own LSTM/GRU/RNN, which takes padded input with ``lengths=``.
Dimension legend: B batch, T time, I input features, E embedding, H hidden, V/C/K outputs.
"""

from __future__ import annotations

import math
from dataclasses import Field, asdict, dataclass, fields

from torch import Tensor, nn

from lstmkit.errors import ModelError
from lstmkit.registry import NAMES as CELLS
from lstmkit.registry import RECURRENT, model_entry
from lstmkit.variants import STANDARD, variant_spec

TYPES = {"str": str, "int": int, "float": (int, float), "float | None": (int, float, type(None))}


def first_bad_field(config) -> tuple[Field, str] | None:
    """The first field of a config dataclass (``ModelConfig``, ``TrainConfig``) whose value is of the
    wrong type ("type": a bool never counts as a number) or not finite ("finite"); None if none is."""
    for f in fields(config):
        value = getattr(config, f.name)
        if not isinstance(value, TYPES[f.type]) or isinstance(value, bool):
            return f, "type"
        if isinstance(value, float) and not math.isfinite(value):
            return f, "finite"
    return None


@dataclass
class ModelConfig:
    """Everything needed to rebuild a ``SequenceModel``; saved in a run's config.json."""

    cell: str = "lstm"
    vocab_size: int = 0  # > 0: token ids in, through an embedding; 0: real-valued features in
    input_size: int = 1  # features per step when vocab_size == 0
    embed_size: int = 32
    hidden_size: int = 64
    num_layers: int = 1
    dropout: float = 0.0
    forget_bias: float = 1.0  # LSTM: added to the forget gate's bias at init
    update_bias: float = 0.0  # GRU: added to the update gate's bias at init
    chrono: int = 0  # LSTM, GRU: chrono initialisation with this T_max instead (0: off)
    output_size: int = 1
    head: str = "last"  # "last": one output per sequence; "every": one per step
    variant: str = STANDARD  # LSTM only: a name of lstmkit.variants.NAMED (cifg, peephole, ...); VariantLSTM

    def to_dict(self) -> dict:
        return asdict(self)

    def check(self) -> None:
        """Raise ``ModelError`` naming the first field of the wrong type or out of range."""
        if bad := first_bad_field(self):
            f, problem = bad
            value = getattr(self, f.name)
            raise ModelError(f"model {f.name} must be {f.type}, got {value!r}" if problem == "type"
                             else f"model {f.name} must be finite, got {value}")
        if self.cell not in CELLS:
            raise ModelError(f"model cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        if self.variant != STANDARD:
            try:
                model_entry(self.cell, self.variant)
            except ValueError as e:
                raise ModelError(f"model {e}") from None
        if self.head not in ("last", "every"):
            raise ModelError(f"model head must be last or every, got {self.head!r}")
        if self.vocab_size == 0 and self.input_size < 1:
            raise ModelError(f"model input_size must be >= 1 without a vocabulary, got {self.input_size}")
        for name in ("embed_size", "hidden_size", "num_layers", "output_size"):
            if getattr(self, name) < 1:
                raise ModelError(f"model {name} must be >= 1, got {getattr(self, name)}")
        self._check_init()
        if self.vocab_size < 0 or not 0 <= self.dropout < 1:
            raise ModelError(f"model vocab_size must be >= 0 and dropout in [0, 1), got {self.vocab_size}, "
                             f"{self.dropout}")

    def _check_init(self) -> None:
        """chrono: 0 or >= 2, taken by the cell, not together with the cell's keep-gate bias."""
        r = model_entry(self.cell, self.variant)
        if self.chrono and not r.chrono:
            which = f"cell {self.cell}" + (f" variant {self.variant}" if self.variant != STANDARD else "")
            raise ModelError(f"model chrono does not apply to {which}, got {self.chrono}")
        if self.chrono < 0 or self.chrono == 1:
            raise ModelError(f"model chrono must be 0 (off) or >= 2, got {self.chrono}")
        if self.chrono and r.keep_bias and getattr(self, r.keep_bias):
            raise ModelError(f"model chrono ({self.chrono}) and {r.keep_bias} ({getattr(self, r.keep_bias)}) "
                             "both set the keep gate's bias: one of them must be 0")

    def parameter_count(self) -> int:
        """Weights of the model this config builds (embedding, core, head)."""
        G, H = RECURRENT[self.cell].gates * self.hidden_size, self.hidden_size
        n = self.vocab_size * self.embed_size + H * self.output_size + self.output_size
        first = self.embed_size if self.vocab_size > 0 else self.input_size
        if self.variant != STANDARD:  # the variant's own parameters, layer by layer
            shapes = variant_spec(self.variant).parameter_shapes
            return n + sum(math.prod(s) for size in [first] + [H] * (self.num_layers - 1)
                           for s in shapes(size, H).values())
        return n + G * (first + H + 2) + (self.num_layers - 1) * G * (2 * H + 2)


def make_core(cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
              dropout: float = 0.0, forget_bias: float = 1.0, update_bias: float = 0.0,
              chrono: int = 0, variant: str = STANDARD) -> nn.Module:
    """The one place that builds a recurrent core: lstmkit's own, batch_first, unidirectional
    (a ``VariantLSTM`` for a variant other than the standard one). Each initialisation argument
    reaches only the cells whose registry entry takes it."""
    r = model_entry(cell, variant)
    dropout = dropout if num_layers > 1 else 0.0  # dropout acts between layers only
    kwargs = dict(num_layers=num_layers, batch_first=True, dropout=dropout)
    if r.keep_bias:
        kwargs[r.keep_bias] = {"forget_bias": forget_bias, "update_bias": update_bias}[r.keep_bias]
    if r.chrono:
        kwargs["chrono"] = chrono
    return r.module(input_size, hidden_size, **kwargs)


def run_core(core: nn.Module, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """Run the core on padded ``x`` (B, T, E): outputs (B, T, H), zero past each length, and
    the last layer's state after each sequence's last real step (B, H)."""
    out, h_n = core(x, lengths=lengths)
    h_n = h_n[0] if isinstance(h_n, tuple) else h_n  # LSTM: (h_n, c_n)
    return out, h_n[-1]  # h_n (L, B, H) -> last layer (B, H)


class SequenceModel(nn.Module):
    """Embedding or features -> ``rnn`` -> ``head``; see the module docstring."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        if config.vocab_size > 0:
            self.embed = nn.Embedding(config.vocab_size, config.embed_size)
            core_in = config.embed_size
        else:
            self.embed = None
            core_in = config.input_size
        self.rnn = make_core(config.cell, core_in, config.hidden_size, config.num_layers,
                             config.dropout, config.forget_bias, config.update_bias, config.chrono,
                             config.variant)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, config.output_size)

    def inputs(self, x: Tensor) -> Tensor:
        """Token ids (B, T) -> embeddings (B, T, E); features (B, T, I) pass through."""
        return self.embed(x) if self.embed is not None else x

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """(B, T) ids or (B, T, I) features, lengths (B,) -> (B, K) for "last", (B, T, K) for "every"."""
        out, last = run_core(self.rnn, self.inputs(x), lengths)
        if self.config.head == "every":
            return self.head(self.drop(out))  # (B, T, K)
        return self.head(self.drop(last))  # (B, K)

    def stream(self, x: Tensor, state=None) -> tuple[Tensor, object]:
        """Continue from ``state`` (None: zeros) over (B, T) ids or (B, T, I) features, no padding:
        per-step outputs (B, T, K) and the state to pass next time (for sampling step by step)."""
        out, state = self.rnn(self.inputs(x), state)  # (B, T, H)
        return self.head(out), state


def build_model(config: ModelConfig | dict) -> SequenceModel:
    """A fresh model from a ``ModelConfig`` or its dict (as read from config.json)."""
    if isinstance(config, dict):
        unknown = set(config) - set(ModelConfig.__dataclass_fields__)
        if unknown:
            raise ModelError(f"model config has unknown keys {sorted(unknown)}")
        config = ModelConfig(**config)
    if not isinstance(config, ModelConfig):
        got = "null" if config is None else type(config).__name__
        raise ModelError(f"the model config must be a JSON object, got {got}")
    config.check()
    try:
        return SequenceModel(config)
    except (RuntimeError, MemoryError) as e:  # an allocation that does not fit
        raise ModelError(f"the model ({config.cell}, hidden size {config.hidden_size}, {config.num_layers} layer(s), "
                         f"{config.parameter_count():.3g} parameters) does not fit in memory "
                         f"({str(e).splitlines()[0][:120]})") from None
