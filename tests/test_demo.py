"""``lstmkit demo``: the quick variant end to end over two seeds, its table and verdict, its option
checks, and a guard of the article's claim per seed on both backends and thread counts."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from in_process import run_here
from torch_oracle import require_cpp, use_backend

from lstmkit.cli import main
from lstmkit.demo import DemoSettings, cell, describe_init, format_table, init_of, run_config, verdict

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def test_quick_demo_end_to_end_over_two_seeds(tmp_path):
    out = tmp_path / "demo"
    t0 = time.perf_counter()
    p = run_here("demo", "--quick", "--seeds", "0,1", "--jobs", "2", "--quiet", "--out", out)  # (workers: processes)
    assert p.returncode == 0, p.stderr[-2000:]
    assert time.perf_counter() - t0 < 90 or "compiling" in p.stderr  # the first run may build the kernel
    results = json.loads((out / "results.json").read_text())
    rows = results["runs"]
    assert sorted((r["model"], r["distance"], r["seed"]) for r in rows) == sorted(
        (m, d, s) for m in ("rnn", "gru", "lstm") for d in (5, 30) for s in (0, 1))
    assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in rows) and results["processes"] == 2
    inits = {"rnn": None, "gru": "gru:chrono=100", "lstm": "lstm:chrono=100"}  # each model's own
    assert results["settings"]["init"] == ["lstm:chrono=100", "gru:chrono=100"]
    assert all(r["init"] == inits[r["model"]] for r in rows)
    table = (out / "table.md").read_text()
    assert table.startswith("| model | N=5 | N=30 |") and table.strip() in p.stdout
    assert [line.split(" | ")[0] for line in table.splitlines()[2:5]] == [
        "| RNN (PyTorch default)", "| GRU (chrono T_max=100)", "| LSTM (chrono T_max=100)"]
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for r in rows:  # each row is an ordinary run folder, and its score is that run's own
        run = out / r["run"]
        model = json.loads((run / "config.json").read_text())["model"]
        assert model["cell"] == r["model"]
        assert (model["forget_bias"], model["update_bias"], model["chrono"]) == {
            "rnn": (0, 0, 0), "gru": (0, 0, 100), "lstm": (0, 0, 100)}[r["model"]]
        assert json.loads((run / "results.json").read_text())["test"]["accuracy"] == r["test_accuracy"]
    lstm = next(r for r in rows if r["model"] == "lstm" and r["distance"] == 30 and r["seed"] == 1)
    p = run_here("evaluate", out / lstm["run"], threads=1)  # (the runs ran at one thread)
    assert p.returncode == 0 and f"{lstm['test_accuracy']:.1%}" in p.stdout
    (out / "table.md").unlink()  # --report writes the same table again from results.json alone
    assert main(["demo", "--report", str(out)]) == 0
    assert (out / "table.md").read_text() == table


def test_a_seed_sweep_gives_the_same_rows_in_parallel_as_one_by_one(tmp_path):
    """A run's numbers do not depend on the process it ran in or on its neighbours."""
    args = ["demo", "--quick", "--models", "rnn,lstm", "--distances", "4", "--seeds", "0,1", "--steps", "6",
            "--size", "80", "--hidden-size", "8", "--quiet"]
    assert main([*args, "--jobs", "1", "--out", str(tmp_path / "serial")]) == 0
    assert main([*args, "--jobs", "2", "--out", str(tmp_path / "parallel")]) == 0
    rows = [json.loads((tmp_path / k / "results.json").read_text())["runs"] for k in ("serial", "parallel")]
    assert rows[0] == rows[1] and len(rows[0]) == 4


def test_each_model_runs_with_its_own_init_and_only_that():
    s = DemoSettings.make(init=("lstm:chrono=100", "gru:update_bias=2"))
    opts = {m: {k: run_config(s, m, 5, 0, 1)["model"][k] for k in ("forget_bias", "update_bias", "chrono")}
            for m in ("lstm", "gru", "rnn")}
    assert opts == {"lstm": {"forget_bias": 0.0, "update_bias": 0.0, "chrono": 100},
                    "gru": {"forget_bias": 0.0, "update_bias": 2.0, "chrono": 0},
                    "rnn": {"forget_bias": 0.0, "update_bias": 0.0, "chrono": 0}}
    assert [describe_init(init_of(s, m)) for m in ("lstm", "gru", "rnn")] == [
        "chrono T_max=100", "update bias 2", "PyTorch default"]


def test_table_cells_show_mean_and_spread():
    assert cell([0.2]) == "20%"
    assert cell([1.0, 0.994, 0.2]) == "73% (20–100)"
    table = format_table({"rnn": {5: [0.9, 0.9], 50: [0.2, 0.22]}, "lstm": {5: [1.0, 1.0], 50: [0.994, 0.99]}},
                         [5, 50])
    assert table.splitlines() == ["| model | N=5 | N=50 |", "|---|---:|---:|", "| RNN | 90% (90–90) | 21% (20–22) |",
                                  "| LSTM | 100% (100–100) | 99% (99–99) |"]


def test_the_verdict_counts_seeds_not_means():
    lines = verdict({"rnn": {20: [0.95, 0.2, 0.21], 50: [0.2, 0.19, 0.25]},
                     "lstm": {20: [1.0, 1.0, 0.99], 50: [1.0, 0.98, 0.5]}}, [20, 50])
    assert lines[1] == "- RNN (3 seeds): N=20: mixed (1/3 remembered, 2/3 forgot); N=50: forgot"
    assert lines[2] == "- LSTM (3 seeds): N=20: remembered; N=50: mixed (2/3 remembered, 0/3 forgot)"


@pytest.mark.parametrize("args,message", [
    (["--distances", "5,x"], "--distances must be comma-separated integers"),
    (["--distances", "-3"], "--distances must be >= 0"),
    (["--seeds", "0,one"], "--seeds must be comma-separated integers"),
    (["--models", "lstm,cnn"], "--models must be from rnn, gru, lstm"),
    (["--jobs", "-1"], "--jobs must be >= 0"),
    (["--init", "gru:forget_bias=5"], "--init takes MODEL:OPTION=VALUE, one per model"),
    (["--init", "rnn:chrono=50"], "got 'rnn:chrono=50'"),
    (["--init", "lstm:chrono=x"], "--init lstm:chrono=x: 'x' is not a number"),
    (["--report", "nowhere"], "--report nowhere has no results.json: give the folder of a finished demo"),
])
def test_demo_options_are_checked(capsys, tmp_path, args, message):
    assert main(["demo", "--out", str(tmp_path / "d"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


# The guard: the demo itself at a moderate distance, the same 600 steps for both cells, two seeds.
# On the PyTorch backend (~7 s a run) its four runs go to two worker processes of one thread each (a
# run's numbers do not depend on the process it ran in: test_a_seed_sweep_gives_the_same_rows_in_
# parallel_as_one_by_one); on the compiled one (~2 s a run, less than a worker's start-up) and with
# two threads a run, one process.
GUARD = ["--models", "rnn,lstm", "--distances", "40", "--seeds", "0,1", "--steps", "600", "--size", "1000",
         "--hidden-size", "32", "--patience", "0", "--quiet"]


def assert_the_claim(out: Path) -> None:
    """Every seed: the LSTM (chrono T_max=100, the demo's default) learned, the RNN stayed near chance."""
    rows = json.loads((out / "results.json").read_text())["runs"]
    assert sorted((r["model"], r["seed"]) for r in rows) == [("lstm", 0), ("lstm", 1), ("rnn", 0), ("rnn", 1)]
    for r in rows:
        if r["model"] == "lstm":
            assert r["test_accuracy"] > 0.9, r
        else:
            assert r["test_accuracy"] < 0.35, r  # it predicts about one mood of five


@pytest.mark.parametrize("name", ["torch", "cpp"])
def test_the_articles_claim_holds_for_each_seed_on_each_backend(tmp_path, name):
    """At 40 filler words the LSTM remembers and the RNN forgets, in each of two seeds, on the PyTorch
    and on the compiled recurrences (whose sums round differently: the numbers may move, not the verdict)."""
    with use_backend(name):  # the demo hands the backend on to its runs
        jobs = "2" if name == "torch" else "1"
        assert main(["demo", *GUARD, "--jobs", jobs, "--out", str(tmp_path / "d")]) == 0
    assert_the_claim(tmp_path / "d")


def test_the_articles_claim_holds_with_two_threads(tmp_path):
    """The same verdict with two threads per run: torch's products and the kernel's thread team then
    split the work differently and the numbers move (seed 0's LSTM: 100.0% at one thread, 98.0% at two,
    once measured). OMP_WAIT_POLICY=PASSIVE: on a busy 2-core machine spinning threads made this test
    take minutes instead of seconds; it changes the waiting, not the arithmetic."""
    require_cpp()
    env = {**ENV, "LSTMKIT_BACKEND": "cpp", "OMP_WAIT_POLICY": "PASSIVE"}
    env.pop("OMP_NUM_THREADS")
    command = [sys.executable, "-m", "lstmkit", "demo", *GUARD, "--jobs", "1", "--threads", "2", "--out",
               str(tmp_path / "d")]
    p = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads((tmp_path / "d" / "results.json").read_text())["threads"] == 2
    assert_the_claim(tmp_path / "d")


def test_the_benchmark_names_each_seed_that_breaks_the_claim():
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo_claim", ROOT / "benchmarks" / "demo_claim.py")
    demo_claim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo_claim)

    def row(model, distance, seed, accuracy):
        return {"model": model, "distance": distance, "seed": seed, "test_accuracy": accuracy}

    good = [row("rnn", 5, 0, 0.99), row("lstm", 5, 0, 1.0), row("rnn", 50, 0, 0.21), row("lstm", 50, 0, 0.97),
            row("gru", 50, 0, 0.6)]  # the claim says nothing about the GRU
    assert demo_claim.failures(good, long=50) == []
    bad = [*good, row("rnn", 5, 1, 0.5), row("rnn", 100, 1, 0.31), row("lstm", 100, 1, 0.89)]
    assert demo_claim.failures(bad, long=50) == [
        "RNN N=5 seed 1: 50.0% (every model should learn the task at the shortest distance)",
        "RNN N=100 seed 1: 31.0% (the RNN should forget: < 30%)",
        "LSTM N=100 seed 1: 89.0% (the LSTM should remember: >= 90%)"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.count(demo_claim.BEGIN) == 1 and readme.count(demo_claim.END) == 1
