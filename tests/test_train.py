"""The trainer and the run folder: determinism, resume after SIGKILL, checkpoints, damaged files."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from in_process import run_here
from safetensors import safe_open
from safetensors.torch import load_file

from lstmkit import runs
from lstmkit.models import build_model
from lstmkit.train import Batches, TrainConfig, resolve, train

ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}


def quick_config(task="adding", **over):
    train_over = {"steps": 20, "eval_every": 10, "hidden_size": 8, "batch_size": 16, "threads": 1, **over}
    return resolve(task, {"length": 12, "size": 100}, train_over)


def weights(path):
    return load_file(str(path))


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    a = train(quick_config(dropout=0.3), tmp_path / "a", progress=False)
    b = train(quick_config(dropout=0.3), tmp_path / "b", progress=False)
    assert a == b
    wa, wb = weights(tmp_path / "a/model.safetensors"), weights(tmp_path / "b/model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    train(quick_config(seed=1), tmp_path / "c", progress=False)
    wc = weights(tmp_path / "c/model.safetensors")
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_run_folder_contents(tmp_path):
    config = resolve("sentence", {"distance": 3, "size": 60}, {"steps": 10, "eval_every": 5, "hidden_size": 8})
    results = train(config, tmp_path / "r", progress=False)
    r = tmp_path / "r"
    for name in ("config.json", "vocab.json", "checkpoint.safetensors", "model.safetensors", "best.safetensors",
                 "metrics.jsonl", "loss.png", "results.json"):
        assert (r / name).is_file(), name
    saved = json.loads((r / "config.json").read_text())
    assert saved["train"]["hidden_size"] == 8 and saved["task_options"] == {"distance": 3, "size": 60}
    model = build_model(saved["model"])  # rebuilt from JSON alone
    runs.load_weights(model, r / "model.safetensors")
    assert json.loads((r / "vocab.json").read_text())[:2] == ["<pad>", "<unk>"]
    rows = runs.read_metrics(r / "metrics.jsonl")
    assert [x["step"] for x in rows if "val_loss" in x] == [5, 10]
    assert results["test"]["accuracy"] == json.loads((r / "results.json").read_text())["test"]["accuracy"]
    assert not list(r.glob("*.tmp")) and not list(r.glob(".*"))  # no temporary files left behind


def test_checkpoint_restores_model_optimizer_and_rng(tmp_path):
    model = build_model(quick_config()["model"])
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(2, 5, 2), torch.tensor([5, 3])).sum().backward()
    opt.step()
    torch.manual_seed(7)
    runs.save_checkpoint(tmp_path / "c.safetensors", model, opt, {"step": 1})
    expected = torch.rand(3)
    model2 = build_model(quick_config()["model"])
    opt2 = torch.optim.Adam(model2.parameters(), lr=0.01)
    assert runs.load_checkpoint(tmp_path / "c.safetensors", model2, opt2) == {"step": 1}
    assert torch.equal(torch.rand(3), expected)
    for a, b in zip(opt.state_dict()["state"].values(), opt2.state_dict()["state"].values(), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_early_stopping_by_target(tmp_path):
    config = resolve("sentence", {"distance": 2, "size": 300}, {"steps": 400, "eval_every": 10, "target": 0.9,
                                                               "hidden_size": 16, "lr": 0.01, "threads": 1})
    results = train(config, tmp_path / "r", progress=False)
    assert results["steps"] < 400 and "reached 0.9" in results["stopped"]


def test_batches_cover_each_epoch_once():
    b = Batches(10, 3, seed=0)
    epoch = torch.cat([b.indices(s) for s in range(3)])
    assert len(set(epoch.tolist())) == 9 and torch.equal(b.indices(1), Batches(10, 3, 0).indices(1))


def _checkpoint_step(path: Path) -> int:
    try:
        with safe_open(str(path), framework="pt") as f:
            return json.loads(f.metadata()["counters"])["step"]
    except Exception:
        return -1


def test_resume_after_sigkill_gives_the_uninterrupted_weights(tmp_path):
    args = [sys.executable, "-m", "lstmkit", "train", "copy", "--quick", "--quiet", "--steps", "240",
            "--checkpoint-every", "20", "--patience", "0", "--dropout", "0.2", "--hidden-size", "24"]
    full_run = run_here(*args[3:], "--out", tmp_path / "full", threads=1)        # (as ENV's processes run)
    assert full_run.returncode == 0, full_run.stderr[-2000:]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(args + ["--out", str(killed)], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240  # generous: the first import may compile the C++ kernel
    while _checkpoint_step(killed / "checkpoint.safetensors") < 40 and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = _checkpoint_step(killed / "checkpoint.safetensors")
    assert 40 <= step < 240 and not (killed / "results.json").exists(), "the kill came too late to test resume"
    subprocess.run(args + ["--out", str(killed), "--resume"], env=ENV, check=True, capture_output=True)
    full, resumed = weights(tmp_path / "full/model.safetensors"), weights(killed / "model.safetensors")
    assert all(torch.equal(full[k], resumed[k]) for k in full)
    steps = [r["step"] for r in runs.read_metrics(killed / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == 240  # lost steps' records dropped, no duplicates


def test_damaged_weights_are_refused(tmp_path):
    config = quick_config(steps=5)
    train(config, tmp_path / "r", progress=False)
    model = build_model(config["model"])
    w = tmp_path / "r/model.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[:len(data) // 2])
    with pytest.raises(runs.RunError, match="truncated or corrupt"):
        runs.load_weights(model, w)
    other = build_model({**config["model"], "hidden_size": 9})
    with pytest.raises(runs.RunError, match="another model"):
        runs.load_weights(other, tmp_path / "r/best.safetensors")


@pytest.mark.filterwarnings("ignore:lstmkit. LSTM variants")
def test_a_variant_run_trains_saves_and_loads_its_own_weights(tmp_path):
    """--variant goes into config.json's model; the run's safetensors hold the variant's parameter
    names (peepholes here), and loading the run rebuilds the same model with the same outputs."""
    config = quick_config(variant="peephole", steps=4, layers=2)
    assert config["model"]["variant"] == "peephole" and config["train"]["variant"] == "peephole"
    train(config, tmp_path / "run", progress=False)
    saved = weights(tmp_path / "run" / "best.safetensors")
    assert saved["rnn.weight_ch_l1"].shape == (3 * 8,)
    loaded = runs.load_run(tmp_path / "run")
    model = build_model(config["model"])
    model.load_state_dict(saved)
    x, lengths = torch.randn(2, 12, 2), torch.tensor([12, 5])
    assert torch.equal(loaded.model(x, lengths), model.eval()(x, lengths))
    help_text = TrainConfig.__dataclass_fields__["variant"].metadata["help"]
    assert "cifg: coupled input and forget gate" in help_text and "PyTorch path" in help_text


def test_update_bias_and_chrono_reach_config_json_and_the_model(tmp_path):
    """`train --model gru --update-bias 2` and `--chrono T_MAX` (lstm, gru): saved in both halves of
    config.json and built into the model that config rebuilds; chrono replaces the task's forget bias."""
    from lstmkit.cli import main

    common = ["--steps", "2", "--eval-every", "1", "--hidden-size", "8", "--length", "12", "--size", "60",
              "--quiet", "--threads", "1"]
    cases = [(["--model", "gru", "--update-bias", "2"], {"update_bias": 2.0, "chrono": 0}),
             (["--model", "gru", "--chrono", "30"], {"update_bias": 0.0, "chrono": 30}),
             (["--model", "lstm", "--chrono", "30"], {"forget_bias": 0.0, "chrono": 30})]
    for i, (args, expected) in enumerate(cases):
        assert main(["train", "adding", *args, *common, "--out", str(tmp_path / str(i))]) == 0
        saved = json.loads((tmp_path / str(i) / "config.json").read_text())
        for key, value in expected.items():
            assert saved["model"][key] == value and saved["train"][key] == value, (args, key)
        core = build_model(saved["model"]).rnn
        assert core.chrono == expected["chrono"]
        if "update_bias" in expected:
            assert core.update_bias == expected["update_bias"]
        else:
            assert core.forget_bias == 0.0


def test_a_config_json_from_before_update_bias_and_chrono_still_loads(tmp_path):
    """Old run folders have neither field: they load, evaluate and resume with the defaults (off)."""
    from lstmkit.cli import main

    train(quick_config(model="gru"), tmp_path / "r", progress=False)
    path = tmp_path / "r" / "config.json"
    saved = json.loads(path.read_text())
    for half in ("model", "train"):
        del saved[half]["update_bias"], saved[half]["chrono"]
    path.write_text(json.dumps(saved))
    assert main(["evaluate", str(tmp_path / "r")]) == 0
    assert build_model(saved["model"]).rnn.update_bias == 0.0
    resumed = train({**saved, "train": {**saved["train"], "steps": 30}}, tmp_path / "r", resume=True, progress=False)
    assert resumed["steps"] == 30


def test_a_config_json_with_chrono_and_a_keep_bias_or_a_cell_without_a_gate_is_refused():
    from lstmkit.errors import ModelError

    with pytest.raises(ModelError, match=r"model chrono \(30\) and forget_bias \(1.0\) both set the keep gate's bias"):
        build_model({"cell": "lstm", "chrono": 30, "forget_bias": 1.0})
    with pytest.raises(ModelError, match="model chrono does not apply to cell rnn, got 30"):
        build_model({"cell": "rnn", "chrono": 30})
    with pytest.raises(ModelError, match=r"model chrono must be 0 \(off\) or >= 2, got 1"):
        build_model({"cell": "gru", "chrono": 1})
    assert build_model({"cell": "gru", "chrono": 30, "forget_bias": 1.0}).rnn.chrono == 30  # not the GRU's bias
