"""``lstmkit ablate``: a quick ablation end to end (rows, run folders, table, plot, --report), the
same budget for every model, and its option checks."""

import json

import pytest
from in_process import run_here

from lstmkit.ablate import DEFAULT_MODELS, MODELS, AblateSettings, format_table, run_config, title
from lstmkit.cli import main
from lstmkit.variants import NAMED


def test_quick_ablation_end_to_end(tmp_path):
    out = tmp_path / "ablate"
    p = run_here("ablate", "--quick", "--models", "lstm,cifg,nfg,rnn", "--tasks", "adding,reber", "--seeds", "0,1",
                 "--jobs", "2", "--quiet", "--out", out)                      # (its runs: worker processes)
    assert p.returncode == 0, p.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    rows = results["runs"]
    assert [(r["model"], r["task"], r["seed"]) for r in rows] == [
        (m, t, s) for m in ("lstm", "cifg", "nfg", "rnn") for t in ("adding", "reber") for s in (0, 1)]
    assert all(0.0 <= r["score"] <= 1.0 and r["metric"] == "solved" for r in rows)
    for r in rows:  # each row is an ordinary run folder of that model, and its score is the run's own
        config = json.loads((out / r["run"] / "config.json").read_text())["model"]
        assert config["cell"] == ("rnn" if r["model"] == "rnn" else "lstm")
        assert config.get("variant", "standard") == (r["model"] if r["model"] in NAMED else "standard")
        assert json.loads((out / r["run"] / "results.json").read_text())["test"]["solved"] == r["score"]
    table = (out / "table.md").read_text()
    assert table.startswith("| model | adding (T=10) | reber | mean |") and table.strip() in p.stdout
    assert [line.split(" | ")[0] for line in table.splitlines()[2:]] == [
        "| LSTM (standard)", "| CIFG", "| NFG", "| RNN"]
    assert (out / "ablate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (out / "table.md").unlink()  # --report writes the same table again from results.json alone
    assert main(["ablate", "--report", str(out)]) == 0
    assert (out / "table.md").read_text() == table


@pytest.mark.parametrize("task", ["sentence", "adding", "reber"])
def test_every_model_gets_the_same_budget(task):
    """Only the model, its variant and its forget-gate start differ between the runs of one task and seed."""
    s = AblateSettings()
    configs = {m: run_config(s, m, task, seed=3) for m in MODELS}
    def budget(c):
        return {k: v for k, v in c["train"].items() if k not in ("model", "forget_bias", "variant")}
    assert all(budget(c) == budget(configs["lstm"]) for c in configs.values())
    assert all(c["task_options"] == configs["lstm"]["task_options"] for c in configs.values())
    assert configs["lstm"]["train"]["forget_bias"] == configs["cifg"]["train"]["forget_bias"] == 5.0
    assert configs["nfg"]["train"]["forget_bias"] == 0.0  # it has no forget gate to open


def test_the_default_models_are_greffs_eight_the_standard_and_the_floor():
    assert DEFAULT_MODELS[0] == "lstm" and DEFAULT_MODELS[-1] == "rnn"
    assert {title(m) for m in DEFAULT_MODELS[1:-1]} == {"peepholes", "NIG", "NFG", "NOG", "NIAF", "NOAF", "CIFG", "FGR"}


def test_the_table_shows_mean_and_spread_per_task_and_the_mean_over_tasks():
    scores = {"lstm": {"adding": [1.0, 0.9], "reber": [1.0, 1.0]}, "rnn": {"adding": [0.1, 0.3], "reber": [1.0, 0.8]}}
    table = format_table(scores, ["adding", "reber"], {"adding": ({"length": 50}, {}), "reber": ({}, {})})
    assert table.splitlines()[2] == "| LSTM (standard) | 95% (90–100) | 100% (100–100) | 98% |"
    assert table.splitlines()[3] == "| RNN | 20% (10–30) | 90% (80–100) | 55% |"


@pytest.mark.parametrize("args, message", [
    (["--models", "lstm,transformer"], "--models must be from"),
    (["--tasks", "copy"], "--tasks must be from"),
    (["--seeds", "0,x"], "--seeds must be comma-separated integers"),
    (["--jobs", "-1"], "--jobs and --patience must be >= 0"),
])
def test_bad_options_are_one_line(args, message, tmp_path):
    p = run_here("ablate", "--quick", *args, "--out", tmp_path / "a")
    assert p.returncode == 2 and message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "a").exists()
