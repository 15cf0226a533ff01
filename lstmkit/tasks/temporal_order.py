"""The temporal order problem (Hochreiter & Schmidhuber 1997, experiment 6a).

A sequence of T symbols starts with E and ends with B; in between are distractors a, b, c, d,
except at two random positions, one in [0.1T, 0.2T] and one in [0.5T, 0.6T] (10..20 and 50..60
for T = 100), which hold X or Y. The class is the order of those two: XX -> Q, XY -> R,
YX -> S, YY -> U. Chance is 25%.
"""

from __future__ import annotations

import torch

from .base import Split, Task, check_fits

SYMBOLS = ["a", "b", "c", "d", "X", "Y", "E", "B"]
CLASSES = ["Q", "R", "S", "U"]  # XX, XY, YX, YY


def make_temporal_order(n: int, T: int, seed: int) -> Split:
    """x (n, T) ids of SYMBOLS, y (n,) = 2·[first is Y] + [second is Y]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 4, (n, T), generator=g)  # distractors a..d
    x[:, 0], x[:, -1] = SYMBOLS.index("E"), SYMBOLS.index("B")
    lo1, hi1, lo2, hi2 = max(T // 10, 1), max(T // 5, 1), T // 2, max(T * 6 // 10, T // 2)
    t1 = torch.randint(lo1, hi1 + 1, (n,), generator=g)
    t2 = torch.randint(lo2, hi2 + 1, (n,), generator=g)
    first, second = torch.randint(0, 2, (n,), generator=g), torch.randint(0, 2, (n,), generator=g)
    rows = torch.arange(n)
    x[rows, t1] = 4 + first  # X or Y
    x[rows, t2] = 4 + second
    return Split(x, 2 * first + second, torch.full((n,), T, dtype=torch.int64))


class TemporalOrderTask(Task):
    name = "temporal-order"
    head, loss = "last", "ce"
    vocab = SYMBOLS
    output_size = len(CLASSES)
    option_names = ("length", "size")
    defaults = {"steps": 3000, "hidden_size": 64, "lr": 3e-3, "batch_size": 64, "forget_bias": 5.0,
                "patience": 20}
    quick_options = {"length": 20, "size": 300}

    def __init__(self, options: dict, seed: int) -> None:
        super().__init__(options, seed)
        self.T = self.opt("length", 100, minimum=10)
        self.size = self.opt("size", 10000, minimum=30)
        check_fits(f"--size {self.size} with --length {self.T}", self.size * 13 // 10, self.T, 24)

    def build(self) -> tuple[Split, Split, Split]:
        n = self.size
        return (make_temporal_order(n, self.T, self.seed),
                make_temporal_order(max(n // 10, 10), self.T, self.seed + 1_000_003),
                make_temporal_order(max(n // 5, 10), self.T, self.seed + 2_000_003))

    def summary(self, scores: dict[str, float]) -> str:
        return f"accuracy {scores['accuracy']:.1%} (chance 25%)"
