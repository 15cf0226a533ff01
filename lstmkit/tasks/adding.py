"""The adding problem (Hochreiter & Schmidhuber 1997, experiment 4, in its common modern form).

Each step carries two numbers: a value drawn uniformly from [0, 1] and a marker. Exactly two steps
are marked, one in the first tenth of the sequence and one in its first half; the target, given
after the last step, is the sum of the two marked values. The 1997 criterion: solved when the
absolute error is below 0.04 on every test sequence. A model that ignores the input and always
answers 1.0 has a mean squared error of 1/6.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Split, Task, check_fits

SOLVED = 0.04  # absolute error below which a sequence counts as solved (1997)


def make_adding(n: int, T: int, seed: int) -> Split:
    """``n`` sequences of length ``T``: x (n, T, 2) = (value, marker), y (n, 1) = sum of marked values."""
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(n, T, generator=g)
    first = torch.randint(0, max(T // 10, 1), (n,), generator=g)
    second = torch.randint(0, max(T // 2, 2) - 1, (n,), generator=g)
    second = second + (second >= first).long()  # a second, different position in the first half
    marker = torch.zeros(n, T)
    rows = torch.arange(n)
    marker[rows, first] = 1.0
    marker[rows, second] = 1.0
    x = torch.stack([values, marker], dim=-1)  # (n, T, 2)
    y = (values * marker).sum(1, keepdim=True)  # (n, 1)
    return Split(x, y, torch.full((n,), T, dtype=torch.int64))


class AddingTask(Task):
    name = "adding"
    head, loss = "last", "mse"
    input_size, output_size = 2, 1
    metric, higher_is_better = "solved", True
    option_names = ("length", "size")
    # T=50: a plateau near the always-1.0 loss for ~300-2000 steps, then the sum is found and every
    # test sequence is under 0.04 by ~2500-5000 steps (about 1-2.5 min on one CPU thread)
    defaults = {"steps": 6000, "hidden_size": 64, "lr": 3e-3, "batch_size": 64, "forget_bias": 5.0,
                "patience": 20, "threads": 1}
    quick_options = {"length": 20, "size": 300}

    def __init__(self, options: dict, seed: int) -> None:
        super().__init__(options, seed)
        self.T = self.opt("length", 50, minimum=4)
        self.size = self.opt("size", 10000, minimum=30)
        check_fits(f"--size {self.size} with --length {self.T}", self.size * 13 // 10, self.T, 40)

    def build(self) -> tuple[Split, Split, Split]:
        n = self.size
        return (make_adding(n, self.T, self.seed), make_adding(max(n // 10, 10), self.T, self.seed + 1_000_003),
                make_adding(max(n // 5, 10), self.T, self.seed + 2_000_003))

    def metrics(self, out: Tensor, data: Split) -> dict[str, float]:
        err = (out - data.y).abs()
        return {"mse": float(err.pow(2).mean()), "solved": float((err < SOLVED).float().mean())}

    def summary(self, scores: dict[str, float]) -> str:
        return (f"mse {scores['mse']:.4f} (always-1.0 baseline 0.167); |error| < {SOLVED} on "
                f"{scores['solved']:.1%} of test sequences (solved when 100%)")
