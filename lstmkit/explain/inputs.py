"""The inputs of a report: from a run folder (or the demo's) and a text to what ``explain_model`` needs.

What it is: the thin adapter between ``lstmkit.runs`` (config.json, safetensors weights, vocab)
and the explain code: load a run, turn the user's text into the core's inputs x (T, I) and token
labels with the run's own task, and find (or quickly train) the LSTM that ``lstmkit demo`` trains.
What it is not: a tokenizer of its own (the run's task encodes) or a loader of pickles.

Dimension legend: T tokens, I core input features (embedding size for token tasks).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from lstmkit.demo import DemoSettings, run_demo
from lstmkit.runs import load_run

ARTICLE_SENTENCE = "귀여운 강아지를 출근길에서 만났다. 오늘 하루 종일 기분이"
DEMO_ROOT = Path("runs")


@dataclass
class Encoded:
    """One text through one run's input layer."""

    core: nn.Module  # the recurrent core (``model.rnn``)
    x: Tensor  # (T, I) the core's input: embeddings of the tokens, or the features
    tokens: list[str]  # (T,) labels of the steps
    label: str  # e.g. "trained LSTM (runs/demo/lstm-d5)"


def encode_text(run: str | Path, text: str) -> Encoded:
    """Load ``run`` and pass ``text`` through its task's encoder and its model's input layer."""
    loaded = load_run(Path(run))
    split = loaded.task.encode(text)
    T = int(split.lengths[0])
    with torch.no_grad():
        x = loaded.model.inputs(split.x[:1, :T])[0].float()  # (T, I)
    cell = loaded.model.config.cell.upper()
    if loaded.model.config.variant != "standard":
        cell += f" {loaded.model.config.variant}"
    return Encoded(loaded.model.rnn, x, token_labels(loaded.task, split.x[0, :T], text), f"trained {cell} ({run})")


def token_labels(task, ids: Tensor, text: str) -> list[str]:
    """Each step's label: its vocabulary entry; an unknown token shows the user's word when the
    text splits into as many words (word-level tasks), marked with '?'. Feature input: "t0", ..."""
    if ids.dim() > 1 or not task.vocab:
        return [f"t{k}" for k in range(ids.shape[0])]
    words = text.split()
    labels = [task.vocab[int(i)] for i in ids]
    for k, label in enumerate(labels):
        if label == "<unk>" and k < len(words):
            labels[k] = words[k] + "?"
    return labels


def find_demo_run(root: Path = DEMO_ROOT) -> Path | None:
    """The LSTM run of the newest demo folder under ``root`` (its longest distance, first seed), or None.

    A demo keeps one folder per seed (``demo-TIME/seed0/lstm-d100``); older demos kept the runs at
    the top (``demo-TIME/lstm-d100``)."""
    demos = sorted((p for p in root.glob("demo-*") if (p / "results.json").is_file()),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    for demo in demos:
        lstms = [p for p in [*demo.glob("lstm-d*"), *demo.glob("seed*/lstm-d*")] if (p / "config.json").is_file()]
        if lstms:
            return min(lstms, key=lambda p: (-int(p.name.split("-d")[-1]), str(p)))
    return None


def partner_run(run: Path) -> Path | None:
    """The demo's RNN trained beside an LSTM run (``.../rnn-d5`` for ``.../lstm-d5``), if any."""
    name = Path(run).name
    if not name.startswith("lstm-d"):
        return None
    rnn = Path(run).parent / ("rnn-" + name[len("lstm-"):])
    return rnn if (rnn / "config.json").is_file() else None


def quick_demo() -> DemoSettings:
    """The demo ``explain`` trains when there is none: quick, an RNN and an LSTM, one short distance."""
    return DemoSettings.make(quick=True, models=("rnn", "lstm"), distances=(5,))


def train_demo_run(root: Path = DEMO_ROOT, settings: DemoSettings | None = None) -> Path:
    """Train the demo (default ``quick_demo()``) into ``root/demo-explain``; its LSTM run."""
    out = root / "demo-explain"
    print(f"no demo run under {root}/: training a quick one into {out} (about a minute)")
    run_demo(settings or quick_demo(), out, quiet=True)
    found = find_demo_run(root)
    assert found is not None, "the demo wrote no LSTM run"
    return found
