"""Sequence classification from the user's CSV or JSONL file; default: scikit-learn's digits.

File formats (one example per row / line):
  CSV:   a ``sequence`` column of numbers separated by spaces (one per step), or steps separated
         by ``;`` with features separated by spaces or commas; and a label column (``--column``,
         default ``label``).
  JSONL: {"sequence": [[...features...], ...] or [numbers], "label": ...}
Labels may be any strings; they are sorted into classes. Values are standardised with the mean
and standard deviation of the training part. The default data set, scikit-learn's bundled
8x8 digit images, is read as 8 steps (rows) of 8 features (pixels): 10 classes.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import torch
from torch import Tensor

from .base import Split, Task, TaskError, split_three


def parse_sequence(text: str, where: str) -> list[list[float]]:
    """'1 2 3' -> [[1],[2],[3]];  '1,2;3,4' -> [[1,2],[3,4]]."""
    steps = [s for s in text.strip().split(";")] if ";" in text else text.replace(",", " ").split()
    try:
        rows = [[float(v) for v in s.replace(",", " ").split()] for s in steps] if ";" in text else [
            [float(v)] for v in steps]
    except ValueError:
        raise TaskError(f"{where}: {text[:40]!r} is not a sequence of numbers") from None
    if not rows or any(len(r) != len(rows[0]) or not r for r in rows):
        raise TaskError(f"{where}: the steps of {text[:40]!r} need the same number of values, at least one")
    if any(not math.isfinite(v) for r in rows for v in r):
        raise TaskError(f"{where}: {text[:40]!r} holds NaN or infinite values: clean the data")
    return rows


def read_examples(path: str, label_column: str) -> list[tuple[list[list[float]], str]]:
    p = Path(path)
    if not p.is_file():
        raise TaskError(f"--data {path}: no such file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise TaskError(f"--data {path} is not UTF-8 text") from None
    if not text.strip():
        raise TaskError(f"--data {path} is empty")
    if p.suffix.lower() in (".jsonl", ".json"):
        out = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                    seq, label = row["sequence"], row["label"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise TaskError(f"--data {path} line {n}: expected "
                                    '{"sequence": [...], "label": ...}') from None
                seq_text = ";".join(" ".join(map(str, s)) if isinstance(s, list) else str(s) for s in seq)
                out.append((parse_sequence(seq_text, f"{path} line {n}"), str(label)))
        return out
    reader = csv.DictReader(text.splitlines())
    for col in ("sequence", label_column):
        if col not in (reader.fieldnames or []):
            raise TaskError(f"--data {path} has no column {col!r} (columns: {reader.fieldnames}); "
                            "name the label column with --column")
    out = []
    for n, r in enumerate(reader, 2):
        if r.get(None):
            raise TaskError(f"--data {path} row {n} has more values than the header's "
                            f"{len(reader.fieldnames)} columns (quote a sequence that holds commas)")
        for col in ("sequence", label_column):
            if r[col] is None or not r[col].strip():
                raise TaskError(f"--data {path} row {n} has no {col!r} value: every row needs a "
                                f"sequence and a label")
        out.append((parse_sequence(r["sequence"], f"{path} row {n}"), r[label_column]))
    return out


def digits() -> list[tuple[list[list[float]], str]]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise TaskError("the default classify data needs scikit-learn (`pip install scikit-learn`), "
                        "or give your own file with --data") from None
    d = load_digits()
    return [(img.tolist(), str(label)) for img, label in zip(d.images, d.target, strict=True)]


class ClassifyTask(Task):
    name = "classify"
    head, loss = "last", "ce"
    option_names = ("data", "column", "size")
    defaults = {"steps": 1500, "hidden_size": 64, "lr": 3e-3, "batch_size": 64}
    quick_options = {}

    def __init__(self, options: dict, seed: int) -> None:
        super().__init__(options, seed)
        self.path = self.opt("data", None)
        self.column = self.opt("column", "label")
        self.size = self.opt("size", None, minimum=30)
        examples = digits() if self.path is None else read_examples(self.path, self.column)
        self.examples = examples[:self.size] if self.size else examples
        widths = {len(seq[0]) for seq, _ in self.examples}
        if len(widths) != 1:
            raise TaskError(f"--data: sequences have different numbers of features per step: {sorted(widths)}")
        self.input_size = widths.pop()
        self.classes = sorted({label for _, label in self.examples})
        if len(self.classes) < 2:
            raise TaskError(f"--data: need at least 2 classes, found {self.classes}")
        self.output_size = len(self.classes)
        self.mean, self.std = 0.0, 1.0

    def build(self) -> tuple[Split, Split, Split]:
        index = {c: i for i, c in enumerate(self.classes)}
        lengths = torch.tensor([len(s) for s, _ in self.examples])
        x = torch.zeros(len(self.examples), int(lengths.max()), self.input_size)
        for n, (seq, _) in enumerate(self.examples):
            x[n, :len(seq)] = torch.tensor(seq)
        y = torch.tensor([index[label] for _, label in self.examples])
        train, val, test = split_three(Split(x, y, lengths), 0.15, 0.15, self.seed)
        real = torch.arange(train.x.shape[1]) < train.lengths[:, None]  # (N, T) real steps
        values = train.x[real]
        self.mean, self.std = float(values.mean()), float(values.std()) or 1.0
        return tuple(Split((s.x - self.mean) / self.std * (torch.arange(s.x.shape[1]) < s.lengths[:, None])
                           [..., None], s.y, s.lengths) for s in (train, val, test))

    def state(self) -> dict:
        return {"classes": self.classes, "mean": self.mean, "std": self.std}

    def load_state(self, state: dict) -> None:
        self.classes, self.mean, self.std = state["classes"], state["mean"], state["std"]

    def summary(self, scores: dict[str, float]) -> str:
        return f"accuracy {scores['accuracy']:.1%} ({len(self.classes)} classes)"

    def encode(self, text: str) -> Split:
        rows = parse_sequence(text, "--input")
        if len(rows[0]) == 1 and self.input_size > 1 and len(rows) % self.input_size == 0:
            rows = [[r[0] for r in rows[i:i + self.input_size]] for i in range(0, len(rows), self.input_size)]
        if len(rows[0]) != self.input_size:
            raise TaskError(f"--input: each step needs {self.input_size} values, got {len(rows[0])} "
                            "(separate steps with ';')")
        x = (torch.tensor(rows)[None] - self.mean) / self.std
        return Split(x, torch.zeros(1, dtype=torch.int64), torch.tensor([len(rows)]))

    def decode(self, out: Tensor) -> str:
        probs = out.softmax(-1)[0]
        top = probs.argsort(descending=True)[:3].tolist()
        return f"{self.classes[top[0]]}  (" + ", ".join(f"{self.classes[i]} {probs[i]:.0%}" for i in top) + ")"
