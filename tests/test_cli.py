"""Every subcommand end to end through a subprocess, and every bad-input message (exit code 2).
Where one command is run for many inputs (evaluate over every task, predict over three), one runs as
its own ``python -m lstmkit`` process and the rest by the command line's main() in this process
(tests/in_process.py: the same code, without a ~3 s start-up of Python and torch each)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from in_process import run_here

from lstmkit.cli import main

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}  # 1 thread: CI boxes are shared
QUICK = ["--quick", "--quiet"]


def lstmkit(*args, check=True):
    p = subprocess.run([sys.executable, "-m", "lstmkit", *map(str, args)], env=ENV, capture_output=True,
                       text=True, timeout=300)
    if check:
        assert p.returncode == 0, p.stderr[-2000:]
    return p


TASKS = ("sentence", "adding", "copy", "reber", "temporal-order", "text", "classify", "forecast")


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """One quick run per task, shared by the tests below."""
    d = tmp_path_factory.mktemp("runs")
    trains = [arg for task in TASKS for arg in (";", "train", task, *QUICK, "--out", str(d / task))]
    p = subprocess.run([sys.executable, str(ROOT / "tests/commands_in_one_process.py"), *trains], env=ENV,
                       capture_output=True, text=True, timeout=600)  # one start-up of Python and torch, not eight
    assert p.returncode == 0, p.stderr[-2000:]
    for task in TASKS:
        assert f"run folder: {d / task}" in p.stdout
    return d


@pytest.mark.parametrize("task,word", [("sentence", "chance 20%"), ("adding", "|error| < 0.04"),
                                       ("copy", "memoryless baseline"), ("reber", "legal"),
                                       ("temporal-order", "chance 25%"), ("text", "bits per character"),
                                       ("classify", "10 classes"), ("forecast", "naive last-value")])
def test_train_then_evaluate_every_task(runs_dir, task, word):
    p = lstmkit("evaluate", runs_dir / task) if task == "sentence" else run_here("evaluate", runs_dir / task, threads=1)
    assert p.returncode == 0, p.stderr[-2000:]
    assert word in p.stdout and "test set" in p.stdout
    saved = json.loads((runs_dir / task / "results.json").read_text())
    assert saved["summary"] in p.stdout  # evaluate reproduces the score the training run reported


def test_generate_text(runs_dir):
    p = lstmkit("generate", runs_dir / "text", "--prompt", "def ", "--length", 30, "--temperature", 0.5)
    assert p.stdout.startswith("def ") and len(p.stdout.rstrip("\n")) >= 4 + 20


def test_predict_sentence_classify_forecast(runs_dir):
    p = lstmkit("predict", runs_dir / "sentence", "--input", "귀여운 강아지를 출근길에서 만났다 오늘 하루 종일 기분이")
    assert p.stdout.split()[0] in {"좋았다", "나빴다", "슬펐다", "설렜다", "피곤했다"}
    p = run_here("predict", runs_dir / "classify", "--input", " ".join(["3"] * 64), threads=1)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split()[0] in {str(i) for i in range(10)}
    p = run_here("predict", runs_dir / "forecast", "--input", "10 20 30 40 50", threads=1)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.startswith("next value: ") and float(p.stdout.split()[-1]) == float(p.stdout.split()[-1])


def test_bench_is_a_command_like_the_others():
    """bench's options come through the main parser; a bad one is one line and exit code 2."""
    p = run_here("bench", "--help")
    assert p.returncode == 0 and "--grid" in p.stdout and "--no-onnxruntime" in p.stdout and "Traceback" not in p.stderr
    p = subprocess.run([sys.executable, "-m", "lstmkit", "bench", "--repeats", "0"], capture_output=True, text=True,
                       env=ENV, timeout=120)
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        "lstmkit: error: --repeats and --threads must be >= 1, --min-time > 0 and --busy >= 0"]


def test_explain_writes_a_report_of_a_run(runs_dir, tmp_path):
    out = tmp_path / "report.html"
    lstmkit("explain", runs_dir / "sentence", "--text", "귀여운 강아지를 만났다 오늘 하루 종일 기분이",
            "-o", out, "--no-memory")
    html = out.read_text(encoding="utf-8")
    assert "강아지를" in html and "<script" in html and "http://" not in html.replace("http://www.w3.org", "")


def test_a_mistake_in_a_subprocess_is_one_line_and_exit_code_2():
    p = lstmkit("train", "nope", check=False)
    assert p.returncode == 2 and p.stderr == "lstmkit: error: unknown task 'nope': choose one of " \
        "sentence, adding, copy, reber, temporal-order, text, classify, forecast\n"


@pytest.fixture
def bad(capsys):
    """Run a command in-process that must fail like a user's mistake: one line on stderr, exit 2."""
    def run(*args):
        code = main([str(a) for a in args])
        err = capsys.readouterr().err
        assert code == 2, (code, err)
        assert err.startswith("lstmkit: error: ") and len(err.strip().splitlines()) == 1, err
        return err
    return run


def test_bad_task_and_options(bad, tmp_path):
    assert "unknown task 'nope'" in bad("train", "nope")
    assert "unrecognized arguments: --bogus" in bad("train", "adding", "--bogus", "1")
    assert "--model must be lstm, gru or rnn" in bad("train", "adding", "--model", "transformer")
    assert "--lr must be a positive number" in bad("train", "adding", "--lr", "-1")
    assert "--hidden-size must be >= 1" in bad("train", "adding", "--hidden-size", "0")
    assert "does not use --distance" in bad("train", "copy", "--distance", "4")
    assert "--resume needs --out" in bad("train", "adding", "--resume")
    assert "not a run folder" in bad("train", "adding", "--resume", "--out", tmp_path)
    assert "--temperature must be > 0" in bad("generate", tmp_path, "--temperature", "0")
    if not torch.cuda.is_available():
        assert "torch sees no CUDA GPU: use --device cpu" in bad("train", "adding", "--device", "cuda")


def test_bad_files(bad, tmp_path):
    assert "no such file" in bad("train", "text", "--data", tmp_path / "missing.txt", "--out", tmp_path / "r1")
    (tmp_path / "empty.txt").write_text("")
    assert "is empty" in bad("train", "text", "--data", tmp_path / "empty.txt", "--out", tmp_path / "r2")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 ".encode("latin-1") * 100)
    assert "is not UTF-8" in bad("train", "text", "--data", tmp_path / "latin1.txt", "--out", tmp_path / "r3")
    csv = tmp_path / "s.csv"
    csv.write_text("year,value\n" + "".join(f"{i},{i}\n" for i in range(60)))
    assert "has no column 'sales'; its columns are ['year', 'value']" in bad(
        "train", "forecast", "--data", csv, "--column", "sales")
    (tmp_path / "nan.csv").write_text("v\n" + "1\n" * 30 + "nan\n" + "2\n" * 30)
    assert "row 32: v is nan" in bad("train", "forecast", "--data", tmp_path / "nan.csv", "--column", "v")
    (tmp_path / "word.csv").write_text("v\n" + "1\n" * 30 + "abc\n")
    assert "row 32: v = 'abc' is not a number" in bad("train", "forecast", "--data", tmp_path / "word.csv",
                                                       "--column", "v")
    (tmp_path / "c.csv").write_text("seq,label\n1 2,a\n")
    assert "has no column 'sequence'" in bad("train", "classify", "--data", tmp_path / "c.csv")
    assert not any((tmp_path / r).exists() for r in ("r1", "r2", "r3"))  # nothing half-made is left


def test_bad_run_folders(bad, runs_dir, tmp_path):
    assert "does not exist" in bad("evaluate", tmp_path / "nowhere")
    assert "is not a run folder (no config.json)" in bad("evaluate", tmp_path)
    assert "generate needs a run of task text" in bad("generate", runs_dir / "adding")
    assert "has no predict input" in bad("predict", runs_dir / "copy", "--input", "1 2")
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in (runs_dir / "sentence").iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    data = (broken / "best.safetensors").read_bytes()
    (broken / "best.safetensors").write_bytes(data[:len(data) // 3])
    assert "truncated or corrupt" in bad("evaluate", broken)
    (broken / "best.safetensors").write_bytes((runs_dir / "adding" / "best.safetensors").read_bytes())
    assert "weights of another model" in bad("evaluate", broken)
    (broken / "config.json").write_text("{not json")
    assert "is not valid JSON" in bad("evaluate", broken)


def test_a_finished_run_is_never_overwritten(bad, runs_dir):
    before = {f.name: f.read_bytes() for f in (runs_dir / "adding").iterdir()}
    assert "already holds a run" in bad("train", "adding", *QUICK, "--out", runs_dir / "adding")
    assert "--lr is 0.003 there, not 0.1" in bad("train", "adding", "--resume", "--lr", "0.1", "--out",
                                                 runs_dir / "adding")
    assert "is a run of task 'adding', not 'copy'" in bad("train", "copy", "--resume", "--out", runs_dir / "adding")
    assert before == {f.name: f.read_bytes() for f in (runs_dir / "adding").iterdir()}


def test_generate_needs_only_the_run_folder_not_the_corpus(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat. " * 400, encoding="utf-8")
    trained = run_here("train", "text", *QUICK, "--data", corpus, "--out", tmp_path / "run", threads=1)
    assert trained.returncode == 0, trained.stderr[-2000:]
    corpus.unlink()                                           # the user's file moved away
    p = lstmkit("generate", tmp_path / "run", "--prompt", "the ", "--length", 10)
    assert p.stdout.startswith("the ") and set(p.stdout.strip()) <= set("the cat sat on mat.")
