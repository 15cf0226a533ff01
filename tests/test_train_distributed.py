"""Distributed training: 2 CPU processes (torchrun, gloo) end with the weights of 1 process on the
same global batch (up to float rounding: the gradient is averaged in another order)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
ARGS = ["train", "adding", "--quick", "--quiet", "--steps", "12", "--batch-size", "16", "--hidden-size", "8",
        "--patience", "0"]


def test_two_processes_match_one_on_the_same_global_batch(tmp_path):
    one = subprocess.run([sys.executable, "-m", "lstmkit", *ARGS, "--out", str(tmp_path / "one")], env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "lstmkit", *ARGS, "--out", str(tmp_path / "two")], env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = load_file(str(tmp_path / "one/model.safetensors")), load_file(str(tmp_path / "two/model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    results = json.loads((tmp_path / "two/results.json").read_text())
    assert results["processes"] == 2 and results["steps"] == 12
