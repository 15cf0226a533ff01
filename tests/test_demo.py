"""``lstmkit demo``: the quick variant end to end, its table, and its option checks."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lstmkit.cli import main
from lstmkit.demo import format_table

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def test_quick_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "lstmkit", "demo", "--quick", "--quiet", "--out", str(out)],
                       env=ENV, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert time.perf_counter() - t0 < 60 or "compiling" in p.stderr  # the first run may build the kernel
    results = json.loads((out / "results.json").read_text())
    acc = results["test_accuracy"]
    assert set(acc) == {"rnn", "gru", "lstm"} and all(set(v) == {"5", "30"} for v in acc.values())
    assert all(0.0 <= a <= 1.0 for v in acc.values() for a in v.values())
    assert format_table({m: {int(d): a for d, a in v.items()} for m, v in acc.items()}, [5, 30]) in p.stdout
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "table.md").read_text().startswith("| model | N=5 | N=30 |")
    for m in ("rnn", "gru", "lstm"):  # each cell of the table is an ordinary run folder
        assert json.loads((out / f"{m}-d30" / "config.json").read_text())["model"]["cell"] == m
    p = subprocess.run([sys.executable, "-m", "lstmkit", "evaluate", str(out / "lstm-d30")], env=ENV,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and f"{acc['lstm']['30']:.1%}" in p.stdout


def test_format_table():
    table = format_table({"rnn": {5: 0.9, 50: 0.2}, "lstm": {5: 1.0, 50: 0.994}}, [5, 50])
    assert table.splitlines() == ["| model | N=5 | N=50 |", "|---|---:|---:|", "| RNN | 90% | 20% |",
                                  "| LSTM | 100% | 99% |"]


@pytest.mark.parametrize("args,message", [
    (["--distances", "5,x"], "--distances must be comma-separated integers"),
    (["--distances", "-3"], "--distances must be >= 0"),
    (["--models", "lstm,cnn"], "--models must be from rnn, gru, lstm"),
])
def test_demo_options_are_checked(capsys, tmp_path, args, message):
    assert main(["demo", "--out", str(tmp_path / "d"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_the_articles_claim_lstm_remembers_where_the_rnn_forgets(tmp_path):
    """At 40 filler words the LSTM (forget bias 5, as in the demo) learns the task; the RNN stays near chance."""
    from lstmkit.train import resolve, train

    def accuracy(cell, steps, forget_bias):
        config = resolve("sentence", {"distance": 40, "size": 1000}, {
            "model": cell, "steps": steps, "hidden_size": 32, "lr": 3e-3, "forget_bias": forget_bias,
            "eval_every": 25, "target": 0.95, "patience": 0, "threads": 1})
        return train(config, tmp_path / cell, progress=False)["test"]["accuracy"]

    assert accuracy("lstm", 400, 5.0) > 0.9
    assert accuracy("rnn", 150, 0.0) < 0.4
