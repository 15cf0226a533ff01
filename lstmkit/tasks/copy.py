"""The copy memory task (Arjovsky, Shah & Bengio 2016, "Unitary evolution RNNs").

Input: 10 symbols drawn from 1..8, then T-1 blanks (0), the delimiter 9, and 10 more blanks;
T+20 steps in all. Target: blanks for the first T+10 steps, then the 10 symbols in order. A
memoryless model that outputs blanks and then a uniform guess has cross-entropy
10·ln 8 / (T+20) per step: the baseline to beat. Scored per step ("every" head).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import Split, Task, check_fits

K, BLANK, DELIM = 10, 0, 9  # symbols to copy, blank id, delimiter id


def make_copy(n: int, T: int, seed: int) -> Split:
    """x (n, T+20) ids, y (n, T+20) ids: the 10 symbols reappear after the delimiter."""
    g = torch.Generator().manual_seed(seed)
    symbols = torch.randint(1, 9, (n, K), generator=g)
    x = torch.full((n, T + 2 * K), BLANK, dtype=torch.int64)
    x[:, :K] = symbols
    x[:, T + K - 1] = DELIM
    y = torch.full_like(x, BLANK)
    y[:, T + K:] = symbols
    return Split(x, y, torch.full((n,), T + 2 * K, dtype=torch.int64))


class CopyTask(Task):
    name = "copy"
    head, loss = "every", "ce"
    vocab = ["_", "1", "2", "3", "4", "5", "6", "7", "8", ":"]  # blank, symbols, delimiter
    output_size = 10
    metric, higher_is_better = "copy_accuracy", True
    option_names = ("length", "size")
    # T=50: the loss sits at the memoryless baseline and just under it for a few thousand steps
    # before recall takes off; no early stopping (the best val weights are kept anyway)
    defaults = {"steps": 6000, "hidden_size": 128, "lr": 3e-3, "batch_size": 64, "forget_bias": 1.0,
                "patience": 0, "threads": 1}
    quick_options = {"length": 10, "size": 300}

    def __init__(self, options: dict, seed: int) -> None:
        super().__init__(options, seed)
        self.T = self.opt("length", 50, minimum=1)
        self.size = self.opt("size", 10000, minimum=30)
        check_fits(f"--size {self.size} with --length {self.T}", self.size * 13 // 10, self.T + 20, 32)

    def build(self) -> tuple[Split, Split, Split]:
        n = self.size
        return (make_copy(n, self.T, self.seed), make_copy(max(n // 10, 10), self.T, self.seed + 1_000_003),
                make_copy(max(n // 5, 10), self.T, self.seed + 2_000_003))

    def baseline(self) -> float:
        return K * math.log(8) / (self.T + 2 * K)

    def metrics(self, out: Tensor, data: Split) -> dict[str, float]:
        tail = out[:, -K:].argmax(-1) == data.y[:, -K:]  # (N, K) the recalled symbols
        return {"copy_accuracy": float(tail.float().mean())}

    def summary(self, scores: dict[str, float]) -> str:
        return (f"loss {scores['loss']:.4f} per step (memoryless baseline {self.baseline():.4f}); "
                f"{scores['copy_accuracy']:.1%} of symbols recalled (chance 12.5%)")
