"""The embedded Reber grammar (Reber 1967; Hochreiter & Schmidhuber 1997, experiment 1).

A Reber string walks the graph below from B to E. The embedded form is B, then T or P, then a
Reber string, then the same T or P again, then E: the second-to-last symbol depends on the
second one, arbitrarily far back. The model reads a string and predicts each next symbol; the
task is solved when, on every test string, every predicted next symbol (the argmax) is legal.

    0 -B-> 1;  1 -T-> 2 | -P-> 3;  2 -S-> 2 | -X-> 4;  3 -T-> 3 | -V-> 5;
    4 -X-> 3 | -S-> 6;  5 -P-> 4 | -V-> 6;  6 -E-> end
"""

from __future__ import annotations

import random

import torch
from torch import Tensor

from .base import IGNORE, Split, Task, check_fits, pad_tokens

SYMBOLS = ["B", "T", "P", "S", "X", "V", "E"]
GRAPH: dict[int, list[tuple[str, int]]] = {  # state -> [(symbol, next state)], 7 = done
    0: [("B", 1)], 1: [("T", 2), ("P", 3)], 2: [("S", 2), ("X", 4)], 3: [("T", 3), ("V", 5)],
    4: [("X", 3), ("S", 6)], 5: [("P", 4), ("V", 6)], 6: [("E", 7)],
}


def reber_string(rng: random.Random) -> str:
    state, out = 0, []
    while state != 7:
        symbol, state = rng.choice(GRAPH[state])
        out.append(symbol)
    return "".join(out)


def embedded_reber(rng: random.Random) -> str:
    branch = rng.choice("TP")
    return "B" + branch + reber_string(rng) + branch + "E"


def legal_next(s: str) -> list[set[str]]:
    """For each prefix s[:t+1] of an embedded Reber string, the set of symbols that may follow."""
    out = [{"T", "P"}]  # after B
    branch, state = s[1], 0
    out.append({"B"})  # after T/P comes the inner string's B
    for symbol in s[2:-2]:
        state = dict(GRAPH[state])[symbol]
        out.append({sym for sym, _ in GRAPH[state]} if state != 7 else {branch})
    out.append({"E"})  # after the repeated branch symbol
    return out


def accepts(s: str) -> bool:
    """Whether ``s`` is an embedded Reber string (walks the grammar)."""
    if len(s) < 9 or s[0] != "B" or s[-1] != "E" or s[1] not in "TP" or s[-2] != s[1]:
        return False
    state = 0
    for symbol in s[2:-2]:
        moves = dict(GRAPH.get(state, []))
        if symbol not in moves:
            return False
        state = moves[symbol]
    return state == 7


class ReberTask(Task):
    name = "reber"
    head, loss = "every", "ce"
    vocab = SYMBOLS
    output_size = len(SYMBOLS)
    metric, higher_is_better = "solved", True
    option_names = ("size",)
    defaults = {"steps": 1500, "hidden_size": 32, "lr": 1e-2, "batch_size": 32}
    quick_options = {"size": 200}

    def __init__(self, options: dict, seed: int) -> None:
        super().__init__(options, seed)
        self.size = self.opt("size", 4000, minimum=30)
        check_fits(f"--size {self.size}", self.size * 13 // 10, 40, 120)

    def generate(self, n: int, seed: int) -> Split:
        rng = random.Random(seed)
        strings = [embedded_reber(rng) for _ in range(n)]
        index = {c: i for i, c in enumerate(SYMBOLS)}
        x, lengths = pad_tokens([[index[c] for c in s[:-1]] for s in strings])  # read all but E
        y, _ = pad_tokens([[index[c] for c in s[1:]] for s in strings], pad=IGNORE)
        legal = torch.zeros(n, x.shape[1], len(SYMBOLS), dtype=torch.bool)
        for i, s in enumerate(strings):
            for t, allowed in enumerate(legal_next(s)):
                legal[i, t, [index[c] for c in allowed]] = True
        return Split(x, y, lengths, {"legal": legal})

    def build(self) -> tuple[Split, Split, Split]:
        n = self.size
        return (self.generate(n, self.seed), self.generate(max(n // 10, 10), self.seed + 1_000_003),
                self.generate(max(n // 5, 10), self.seed + 2_000_003))

    def metrics(self, out: Tensor, data: Split) -> dict[str, float]:
        legal = data.extra["legal"]  # (N, T, V)
        pred = out.argmax(-1, keepdim=True)  # (N, T, 1)
        ok = legal.gather(-1, pred).squeeze(-1) | (data.y == IGNORE)  # padding never counts against
        T = data.lengths - 2  # the step whose answer depends on the branch: predict the final T/P
        rows = torch.arange(len(data))
        return {"solved": float(ok.all(1).float().mean()),
                "branch_accuracy": float(ok[rows, T].float().mean())}

    def summary(self, scores: dict[str, float]) -> str:
        return (f"all predictions legal on {scores['solved']:.1%} of test strings (solved when 100%); "
                f"second-to-last symbol right on {scores['branch_accuracy']:.1%} (chance 50%)")
