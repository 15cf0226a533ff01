"""The sequence model the command line trains: input layer, recurrent core, output head.

``SequenceModel`` = an embedding (token input) or nothing (real-valued input), then ``rnn``
(an LSTM, GRU or plain RNN from ``make_core``), then a linear ``head`` applied either to each
sequence's last real state ("last") or to every step ("every"). The whole model is rebuilt from
its JSON config (``ModelConfig``), so a run folder never needs a pickled module.

The recurrent core is lstmkit's own LSTM/GRU/RNN, which takes padded input with ``lengths=``.
Dimension legend: B batch, T time, I input features, E embedding, H hidden, V/C/K outputs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import Tensor, nn

from lstmkit.modules import GRU, LSTM, RNN

CELLS = ("lstm", "gru", "rnn")


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
    forget_bias: float = 1.0
    output_size: int = 1
    head: str = "last"  # "last": one output per sequence; "every": one per step

    def to_dict(self) -> dict:
        return asdict(self)


def make_core(cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
              dropout: float = 0.0, forget_bias: float = 1.0) -> nn.Module:
    """The one place that builds a recurrent core: lstmkit's own, batch_first, unidirectional."""
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {cell!r}")
    dropout = dropout if num_layers > 1 else 0.0  # dropout acts between layers only
    kwargs = dict(num_layers=num_layers, batch_first=True, dropout=dropout)
    if cell == "lstm":
        return LSTM(input_size, hidden_size, forget_bias=forget_bias, **kwargs)
    return {"gru": GRU, "rnn": RNN}[cell](input_size, hidden_size, **kwargs)


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
                             config.dropout, config.forget_bias)
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
            raise ValueError(f"model config has unknown keys {sorted(unknown)}")
        config = ModelConfig(**config)
    return SequenceModel(config)
