"""What every task gives the trainer: tensors, sizes, a loss and its metrics.

A task turns a source (a generator with a seed, or a user's file) into three ``Split``s
(train, validation, test) of padded tensors, and says how the model's outputs are scored.
It is not a training loop (see ``lstmkit.train``) and not a model (see ``lstmkit.models``).

Dimension legend: N examples, T time steps, I input features, V vocabulary, C classes, K outputs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from lstmkit.errors import TaskError

IGNORE = -100  # target id that the per-step cross-entropy skips (padding, unscored steps)


def physical_memory() -> int | None:
    """This machine's memory in bytes (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(what: str, examples: int, steps: int, bytes_per_step: int) -> None:
    """Refuse a generated data set (``examples`` x ``steps``) that cannot fit in memory, before
    spending minutes generating it; ``bytes_per_step`` counts the tensors and the Python lists
    they are built from."""
    need, have = examples * steps * bytes_per_step, physical_memory()
    if have and need > have // 2:
        raise TaskError(f"{what} makes {examples:,} examples of {steps:,} steps: about {need / 1e9:.3g} GB, "
                        f"more than half of this machine's {have / 1e9:.3g} GB: give a smaller value")


@dataclass
class Split:
    """One set of padded examples; ``extra`` holds what a metric needs beyond the targets."""

    x: Tensor  # (N, T) int64 token ids, or (N, T, I) float32 features
    y: Tensor  # (N,) int64 class | (N, K) float32 values | (N, T) int64 per-step ids
    lengths: Tensor  # (N,) int64, real steps of each example (the rest is padding)
    extra: dict[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.x.shape[0]

    def take(self, index: Tensor) -> Split:
        """The examples at ``index``, padding trimmed to the longest one kept."""
        T = int(self.lengths[index].max())
        return Split(self.x[index, :T], _trim(self.y[index], T), self.lengths[index],
                     {k: _trim(v[index], T) for k, v in self.extra.items()})


def _trim(t: Tensor, T: int) -> Tensor:
    """Per-step tensors (N, T_max, ...) cut to T steps; per-example tensors unchanged."""
    return t[:, :T] if t.dim() >= 2 and t.dtype in (torch.int64, torch.bool) else t


def split_three(data: Split, val_fraction: float, test_fraction: float, seed: int) -> tuple[Split, ...]:
    """Shuffle with ``seed`` and cut into train, validation, test."""
    n = len(data)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
    if n - n_test - n_val < 1 or n_val < 1 or n_test < 1:
        raise TaskError(f"only {n} examples: too few to split into train, validation and test")
    return (data.take(perm[n_test + n_val:]), data.take(perm[n_test:n_test + n_val]),
            data.take(perm[:n_test]))


class Task:
    """Base of all tasks. Subclasses set the class attributes and implement ``build``.

    ``head``: "last" scores the state after each sequence's last real step, "every" scores all steps.
    ``loss``: "ce" (cross-entropy on class or token ids) or "mse" (regression).
    """

    name: str = ""
    head: str = "last"
    loss: str = "ce"
    vocab: list[str] | None = None  # token ids -> strings when the input is tokens
    input_size: int = 0  # features per step when the input is real-valued
    output_size: int = 0  # classes, vocabulary or regression outputs
    metric: str = "accuracy"  # the score named in progress bars, --target and summaries
    higher_is_better: bool = True
    defaults: dict = {}  # training defaults this task prefers (steps, hidden, lr, ...)
    option_names: tuple[str, ...] = ()  # task options (--distance, --length, ...) this task reads
    quick_train: dict = {"steps": 30, "eval_every": 10, "hidden_size": 16, "batch_size": 16}  # --quick
    quick_options: dict = {"size": 200}  # --quick: task options

    def __init__(self, options: dict, seed: int) -> None:
        unknown = sorted(k for k, v in options.items() if v is not None and k not in self.option_names)
        if unknown:
            flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
            usable = ", ".join("--" + k.replace("_", "-") for k in self.option_names) or "none"
            raise TaskError(f"task {self.name!r} does not use {flags} (its options: {usable})")
        self.options, self.seed = {}, seed
        self.notes: list[str] = []  # notices about the last ``encode``d input (unknown words, ...)
        self._given = {k: v for k, v in options.items() if v is not None}

    def opt(self, key: str, default, minimum=None):
        """Task option ``key`` (the user's value or ``default``), recorded in ``self.options``."""
        value = self._given.get(key, default)
        if value is not None and minimum is not None and value < minimum:
            raise TaskError(f"--{key.replace('_', '-')} must be >= {minimum} for task {self.name!r}, "
                            f"got {value}")
        self.options[key] = value
        return value

    def build(self) -> tuple[Split, Split, Split]:
        raise NotImplementedError

    def state(self) -> dict:
        """What ``from_state`` needs besides the options (e.g. normalisation): saved in config.json."""
        return {}

    def load_state(self, state: dict) -> None:
        pass

    def restore_vocab(self, vocab: list[str]) -> None:
        """Take a run's saved vocabulary (tasks whose vocabulary comes from data override this);
        a fixed vocabulary must equal the saved one."""
        if self.vocab is not None and list(vocab) != list(self.vocab):
            raise TaskError(f"vocab.json ({len(vocab)} entries) is not task {self.name!r}'s vocabulary "
                            f"({len(self.vocab)} entries): the run folder's files do not belong together")

    def loss_fn(self, out: Tensor, batch: Split) -> Tensor:
        """Mean loss of one batch; ``out`` is (N, C) or (N, K) for "last", (N, T, V) for "every"."""
        if self.loss == "mse":
            return F.mse_loss(out, batch.y)
        if self.head == "every":
            return F.cross_entropy(out.flatten(0, 1), batch.y.flatten(), ignore_index=IGNORE)
        return F.cross_entropy(out, batch.y)

    def metrics(self, out: Tensor, data: Split) -> dict[str, float]:
        """Scores of a whole split; the default is accuracy for classes, RMSE for values."""
        if self.loss == "mse":
            return {"rmse": float((out - data.y).pow(2).mean().sqrt())}
        if self.head == "every":
            keep = data.y != IGNORE
            return {"accuracy": float((out.argmax(-1) == data.y)[keep].float().mean())}
        return {"accuracy": float((out.argmax(-1) == data.y).float().mean())}

    def summary(self, scores: dict[str, float]) -> str:
        """One line that says how good the scores are, e.g. against chance or a baseline."""
        return ", ".join(f"{k} {v:.4g}" for k, v in scores.items())

    def encode(self, text: str) -> Split:
        """A user's input for ``lstmkit predict`` as one example."""
        raise TaskError(f"task {self.name!r} has no predict input; use `lstmkit evaluate`")

    def decode(self, out: Tensor) -> str:
        """The model's output for one ``encode``d example, as text."""
        raise NotImplementedError


def pad_tokens(seqs: list[list[int]], pad: int = 0) -> tuple[Tensor, Tensor]:
    """Right-pad lists of ids: returns ids (N, T) and lengths (N,)."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.int64)
    x = torch.full((len(seqs), int(lengths.max())), pad, dtype=torch.int64)
    for n, s in enumerate(seqs):
        x[n, :len(s)] = torch.tensor(s, dtype=torch.int64)
    return x, lengths
