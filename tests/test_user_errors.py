"""Every mistake a user can make ends in one line on stderr and exit code 2, never a traceback
(issue 11). Some cases run as their own `python -m lstmkit` process, as a user would meet them;
the others run the command line's own main() in this process: the same code from the arguments to
the exit code and the one line, without a ~3 s start-up of Python and torch each."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from in_process import run_here
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
ENV.pop("LSTMKIT_DEBUG", None)
QUICK = ["--quick", "--quiet", "--threads", "1"]


def lstmkit(*args):
    """Run ``python -m lstmkit ARGS``; returns the finished process."""
    return subprocess.run([sys.executable, "-m", "lstmkit", *map(str, args)], env=ENV, capture_output=True, text=True,
                          timeout=300)


def fails(p, *expected):
    """Exit 2, exactly one line on stderr, no traceback, each expected text in that line."""
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lstmkit: error: "), p.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One tiny text run and one tiny sentence run, trained once for the module."""
    root = tmp_path_factory.mktemp("runs")
    text = ["train", "text", *QUICK, "--steps", "4", "--hidden-size", "8", "--out", root / "text"]
    sentence = ["train", "sentence", *QUICK, "--steps", "4", "--out", root / "sentence"]
    for args in (text, sentence):
        p = run_here(*args)
        assert p.returncode == 0, p.stderr[-2000:]
    assert (root / "text" / "model.safetensors").exists() and (root / "sentence" / "model.safetensors").exists()
    return root


OPTIONS = [  # (arguments after `train`, text the one line must hold)
    (["sentence", "--forget-bias", "nan"], "--forget-bias must be a finite number, got nan"),
    (["sentence", "--clip", "nan"], "--clip must be a finite number, got nan"),
    (["adding", "--lr", "nan"], "--lr must be a finite number"),
    (["adding", "--lr", "1e6"], "--lr must be a positive number no larger than 1"),
    (["adding", "--dropout", "inf"], "--dropout must be a finite number"),
    (["adding", "--target", "inf"], "--target must be a finite number"),
    (["adding", "--forget-bias", "1e30"], "--forget-bias must be in [-100, 100]"),
    (["adding", "--update-bias", "1e30", "--model", "gru"], "--update-bias must be in [-100, 100]"),
    (["adding", "--update-bias", "2"], "--update-bias does not apply to --model lstm: it is for gru (this model's "
                                       "is --forget-bias)"),
    (["adding", "--forget-bias", "2", "--model", "gru"], "--forget-bias does not apply to --model gru: it is for lstm"),
    (["adding", "--chrono", "50", "--model", "rnn"], "--chrono does not apply to --model rnn: it is for lstm or gru"),
    (["adding", "--chrono", "1", "--model", "gru"], "--chrono must be 0 (off) or a T_MAX in [2, 1e9], got 1"),
    (["adding", "--chrono", "50", "--forget-bias", "2"], "--chrono and --forget-bias both set the keep gate's bias"),
    (["adding", "--seed", "-1"], "--seed must be in [0, 2**32)"),
    (["adding", "--threads", "100000"], "--threads 100000 is far more than"),
    (["adding", "--device", "cuda:x"], "--device must be cpu, cuda or cuda:N"),
    (["sentence", "--hidden-size", "10000000"], "does not fit"),
    (["adding", "--layers", "100000000"], "make it smaller"),
    (["sentence", "--size", "1000000000"], "--size 1000000000 with --distance 20 makes"),
    (["adding", "--length", "1000000000"], "give a smaller value"),
    (["copy", "--size", "1000000000"], "give a smaller value"),
]


@pytest.mark.parametrize("args,expected", OPTIONS, ids=[" ".join(a) for a, _ in OPTIONS])
def test_bad_option_is_one_line(tmp_path, args, expected):
    fails(run_here("train", *args, "--quiet", "--out", tmp_path / "r"), expected)
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_a_bad_option_in_its_own_process_is_one_line(tmp_path):
    args, expected = OPTIONS[0]
    fails(lstmkit("train", *args, "--quiet", "--out", tmp_path / "r"), expected)
    assert not (tmp_path / "r").exists()


def test_csv_row_without_its_label(tmp_path):
    data = tmp_path / "c.csv"
    data.write_text("sequence,label\n" + "".join(f"{i} {i + 1},{'ab'[i % 2]}\n" for i in range(40)) + "1 2\n")
    fails(run_here("train", "classify", "--data", data, *QUICK, "--out", tmp_path / "r"),
          "row 42 has no 'label' value")


def test_model_null_and_model_too_large_in_config(runs, tmp_path):
    for name, model in (("null", None), ("huge", "huge")):
        run = tmp_path / name
        shutil.copytree(runs / "sentence", run)
        config = json.loads((run / "config.json").read_text())
        config["model"] = model if model is None else {**config["model"], "hidden_size": 10_000_000}
        (run / "config.json").write_text(json.dumps(config))
        for command in ("evaluate", "predict"):
            extra = ["--input", "만났다"] if command == "predict" else []
            line = fails(run_here(command, run, *extra), "config.json cannot be used")
            assert ("JSON object, got null" if model is None else "does not fit in memory") in line


def test_vocab_that_does_not_match_the_model(runs, tmp_path):
    run = tmp_path / "text"
    shutil.copytree(runs / "text", run)
    vocab = json.loads((run / "vocab.json").read_text())
    for tampered in (vocab[:-3], vocab + ["\u2603", "\u2604"]):
        (run / "vocab.json").write_text(json.dumps(tampered))
        fails(run_here("evaluate", run), "do not belong together")
        fails(run_here("generate", run, "--length", "5"), "do not belong together")
    (run / "vocab.json").write_text(json.dumps({"a": 1}))
    fails(run_here("generate", run, "--length", "5"), "vocab.json is not a list of single characters")
    run = tmp_path / "sentence"
    shutil.copytree(runs / "sentence", run)
    (run / "vocab.json").write_text(json.dumps(["<pad>", "<unk>", "x"]))
    fails(run_here("predict", run, "--input", "만났다"), "do not belong together")


def test_generate_options(runs):
    fails(run_here("generate", runs / "text", "--temperature", "inf"), "--temperature must be > 0 and finite")
    fails(run_here("generate", runs / "text", "--temperature", "nan"), "--temperature must be > 0 and finite")
    fails(run_here("generate", runs / "text", "--length", "1000000000"), "--length must be in 1..")
    fails(run_here("generate", runs / "text", "--seed", "-5"), "--seed must be in [0, 2**63)")


def test_out_naming_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    fails(run_here("train", "adding", *QUICK, "--out", tmp_path / "f"))


def test_unknown_words_are_named(runs):
    p = run_here("predict", runs / "sentence", "--input", "귀여운 외계인을 만났다 xyz 오늘 하루 종일 기분이")
    assert p.returncode == 0, p.stderr
    assert p.stderr.strip() == "lstmkit: note: 2 word(s) not in the task's vocabulary, read as <unk>: 외계인을, xyz"
    p = run_here("predict", runs / "sentence", "--input", "귀여운 강아지를 만났다")
    assert p.returncode == 0 and p.stderr == ""


@pytest.fixture
def loss_turns(monkeypatch):
    """loss_turns(step, factor): the adding task's training loss times factor (nan, inf) at that
    step's call, in this process (the run itself goes through the command line's main())."""
    from lstmkit.tasks.adding import AddingTask

    plain, calls = AddingTask.loss_fn, [0]

    def turn(step: int, factor: float):
        def loss_fn(self, out, batch):
            loss = plain(self, out, batch)
            if torch.is_grad_enabled():
                calls[0] += 1
                if calls[0] == step:
                    loss = loss * factor
            return loss
        monkeypatch.setattr(AddingTask, "loss_fn", loss_fn)
    return turn


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, bad, loss_turns):
    out = tmp_path / "r"
    args = ["train", "adding", *QUICK, "--steps", "30", "--checkpoint-every", "10", "--eval-every", "5",
            "--hidden-size", "8", "--out", out]
    loss_turns(14, float(bad))
    line = fails(run_here(*args), "training stopped at step 14", "checkpoint.safetensors keeps the last good state")
    assert "not finite" in line
    assert not (out / "results.json").exists()
    for name in ("checkpoint.safetensors", "model.safetensors", "best.safetensors"):
        tensors = load_file(str(out / name))
        assert all(t.isfinite().all() for t in tensors.values()), name
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in rows) == 10  # nothing logged for the bad step
    p = lstmkit("evaluate", out)  # the run is still usable, by a process of its own
    assert p.returncode == 0, p.stderr


def test_non_finite_before_any_checkpoint(tmp_path, loss_turns):
    loss_turns(1, float("nan"))
    line = fails(run_here("train", "adding", *QUICK, "--steps", "5", "--out", tmp_path / "r"),
                 "training stopped at step 1", "no checkpoint was written yet")
    assert line
    assert not (tmp_path / "r" / "model.safetensors").exists()
