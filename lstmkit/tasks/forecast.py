"""One-step time-series forecasting from a CSV column; default: statsmodels' yearly sunspots.

The series is standardised with its training part's mean and deviation and cut into windows of
``--window`` past values, each followed by the value to predict. Windows are split in time order:
the first 70% train, the next 15% validate, the last 15% test. The score is the RMSE in the
series' own units, next to that of the naive forecast "the next value equals the last one".
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import torch
from torch import Tensor

from .base import Split, Task, TaskError


def read_series(path: str, column: str | None) -> list[float]:
    p = Path(path)
    if not p.is_file():
        raise TaskError(f"--data {path}: no such file")
    try:
        rows = list(csv.DictReader(p.read_text(encoding="utf-8").splitlines()))
    except UnicodeDecodeError:
        raise TaskError(f"--data {path} is not UTF-8 text") from None
    if not rows:
        raise TaskError(f"--data {path} has no data rows (it needs a header line and values)")
    names = list(rows[0])
    if column is None:
        raise TaskError(f"--data {path}: name the series with --column (columns: {names})")
    if column not in names:
        raise TaskError(f"--data {path} has no column {column!r}; its columns are {names}")
    values = []
    for n, r in enumerate(rows, 2):
        try:
            v = float(r[column])
        except (TypeError, ValueError):
            raise TaskError(f"--data {path} row {n}: {column} = {r[column]!r} is not a number") from None
        if not math.isfinite(v):
            raise TaskError(f"--data {path} row {n}: {column} is {v}: fill or drop missing values first")
        values.append(v)
    return values


def sunspots() -> list[float]:
    try:
        import statsmodels.api as sm
    except ImportError:
        raise TaskError("the default forecast data needs statsmodels (`pip install statsmodels`), "
                        "or give your own CSV with --data and --column") from None
    return [float(v) for v in sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"]]


class ForecastTask(Task):
    name = "forecast"
    head, loss = "last", "mse"
    input_size, output_size = 1, 1
    metric, higher_is_better = "rmse", False
    option_names = ("data", "column", "window")
    defaults = {"steps": 1500, "hidden_size": 32, "lr": 3e-3, "batch_size": 32}
    quick_options = {}

    def __init__(self, options: dict, seed: int) -> None:
        super().__init__(options, seed)
        self.path = self.opt("data", None)
        self.column = self.opt("column", None)
        self.window = self.opt("window", 24, minimum=1)
        self.series = sunspots() if self.path is None else read_series(self.path, self.column)
        if len(self.series) < self.window + 20:
            raise TaskError(f"the series has {len(self.series)} values: too few for --window {self.window} "
                            "(need window + 20); give a smaller --window")
        n_train = int((len(self.series) - self.window) * 0.7) + self.window
        part = torch.tensor(self.series[:n_train])
        self.mean, self.std = float(part.mean()), float(part.std()) or 1.0

    def build(self) -> tuple[Split, Split, Split]:
        z = (torch.tensor(self.series) - self.mean) / self.std
        W = self.window
        x = z.unfold(0, W, 1)[:-1]  # (N, W) windows, each followed by a value
        y = z[W:, None]  # (N, 1)
        n = len(x)
        cut1, cut2 = int(n * 0.7), int(n * 0.85)
        full = torch.full((n,), W, dtype=torch.int64)
        return tuple(Split(x[a:b, :, None], y[a:b], full[a:b]) for a, b in ((0, cut1), (cut1, cut2), (cut2, n)))

    def metrics(self, out: Tensor, data: Split) -> dict[str, float]:
        last = data.x[torch.arange(len(data)), data.lengths - 1]  # (N, 1) naive forecast
        rmse = float((out - data.y).pow(2).mean().sqrt()) * self.std
        naive = float((last - data.y).pow(2).mean().sqrt()) * self.std
        return {"rmse": rmse, "naive_rmse": naive}

    def state(self) -> dict:
        return {"mean": self.mean, "std": self.std}

    def load_state(self, state: dict) -> None:
        self.mean, self.std = state["mean"], state["std"]

    def summary(self, scores: dict[str, float]) -> str:
        return (f"RMSE {scores['rmse']:.4g} against {scores['naive_rmse']:.4g} for the naive last-value "
                f"forecast ({scores['rmse'] / scores['naive_rmse']:.0%} of it)")

    def encode(self, text: str) -> Split:
        values = [v[0] for v in _numbers(text)]
        x = (torch.tensor(values[-self.window:]) - self.mean) / self.std
        return Split(x[None, :, None], torch.zeros(1, 1), torch.tensor([len(x)]))

    def decode(self, out: Tensor) -> str:
        return f"next value: {float(out[0, 0]) * self.std + self.mean:.6g}"


def _numbers(text: str) -> list[list[float]]:
    from .classify import parse_sequence
    return parse_sequence(text, "--input")
