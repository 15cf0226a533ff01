"""Distributed training: 2 CPU processes (torchrun, gloo) end with the weights of 1 process on the
same global batch (up to float rounding: the gradient is averaged in another order)."""

import json
import os
import re
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
# the steps last (a shorter run replaces them)
RUN = ["train", "adding", "--quick", "--quiet", "--batch-size", "16", "--hidden-size", "8", "--patience", "0",
       "--checkpoint-every", "5", "--steps", "30"]


def _torchrun(args, env=ENV, script=("-m", "lstmkit")):
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           *script, *args], env=env, capture_output=True, text=True, timeout=300)


def _failure(run: subprocess.CompletedProcess) -> str:
    """What a failed torchrun said: the processes' own lines (a rank's error, an abort's reason) come
    before torchrun's summary, which alone fills the last 2000 characters."""
    own = [line for line in run.stderr.splitlines() if not line.startswith(("  ", "W", "I")) or "[rank" in line]
    return "\n".join(own)[:3000] + "\n...\n" + run.stderr[-1500:]


def _rank_tracebacks(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("[rank") and "Traceback" in line]


# The module's two long two-process runs, each started once and read by several tests (a torchrun
# start-up is ~9 s here): RUN to its end (under tests/distributed_threads.py, which then lists each
# rank's threads), and RUN with rank 1 crashing at step 17 (tests/distributed_crash.py).
@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("distributed")


@pytest.fixture(scope="module")
def finished_run(runs_root) -> subprocess.CompletedProcess:
    run = _torchrun([*RUN, "--out", str(runs_root / "finished")], script=(str(ROOT / "tests/distributed_threads.py"),))
    assert run.returncode == 0, _failure(run)
    return run


@pytest.fixture(scope="module")
def finished(runs_root, finished_run) -> Path:
    """The folder of the finished two-process run."""
    return runs_root / "finished"


@pytest.fixture(scope="module")
def crashed_run(runs_root) -> subprocess.CompletedProcess:
    return _torchrun([*RUN, "--out", str(runs_root / "crashed")], {**ENV, "CRASH_RANK": "1", "CRASH_STEP": "17"},
                     (str(ROOT / "tests/distributed_crash.py"),))


@pytest.fixture(scope="module")
def crashed(runs_root, crashed_run) -> Path:
    """The folder of the crashed two-process run, as the crash left it."""
    assert crashed_run.returncode != 0, "the injected crash did not end the run"
    return runs_root / "crashed"


def test_two_processes_match_one_on_the_same_global_batch(tmp_path, finished):
    one = run_here(*RUN, "--out", tmp_path / "one", threads=1)                 # (one process: this one)
    assert one.returncode == 0, one.stderr[-2000:]
    a, b = load_file(str(tmp_path / "one/model.safetensors")), load_file(str(finished / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    results = json.loads((finished / "results.json").read_text())
    assert results["processes"] == 2 and results["steps"] == 30


def test_a_finished_run_joins_the_groups_threads_on_every_rank(finished_run):
    """The end of a run destroys the process group for real, joining gloo's worker threads: a worker
    still alive when the interpreter shuts down can abort the process after a run that succeeded
    (SIGABRT, "terminate called without an active exception"; 1 run in 20-50 on 2 busy cores)."""
    # (the two ranks share stdout: one's line may land in the middle of the other's, so found anywhere)
    left = sorted(re.findall(r"rank (\d+) threads left: ([^\n]*)", finished_run.stdout))
    assert [rank for rank, _ in left] == ["0", "1"], finished_run.stdout[-2000:]
    for rank, names in left:
        assert "gloo" not in names, (rank, names)


def test_an_error_on_rank_0_alone_ends_every_rank_with_one_line(tmp_path):
    """Only rank 0 touches the run folder: its refusal (here --out names a file) must end rank 1 too,
    not leave it waiting in DistributedDataParallel's first collective (a gloo traceback, or a hang)."""
    (tmp_path / "afile").write_text("not a run folder")
    run = _torchrun([*RUN, "--out", str(tmp_path / "afile")])
    assert run.returncode != 0
    errors = [line for line in run.stderr.splitlines() if line.startswith("lstmkit: error:")]
    assert len(errors) == 1 and "is a file, not a folder" in errors[0], run.stderr[-2000:]
    assert _rank_tracebacks(run.stderr) == [], run.stderr[-3000:]


def test_a_crash_on_one_rank_ends_the_others_with_one_line(crashed_run):
    """A bug on rank 1 (its traceback is its own output); rank 0, blocked in a collective, says in one
    line that another process ended instead of printing gloo's traceback."""
    run = crashed_run
    assert run.returncode != 0
    assert "[rank1]: ZeroDivisionError: injected crash" in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("lstmkit: error:")]
    assert len(errors) == 1 and "another process of this torchrun run ended" in errors[0], run.stderr[-2000:]
    assert not any(line.startswith("[rank0]") for line in _rank_tracebacks(run.stderr)), run.stderr[-3000:]


def test_resume_after_a_crash_gives_the_weights_of_an_uninterrupted_distributed_run(tmp_path, finished, crashed):
    """Rank 1 crashed at step 17 (checkpoints every 5 steps); --resume goes on from step 15 and ends
    bit for bit where an uninterrupted two-process run of 30 steps ends; so does extending a finished
    run of 15 steps to 30."""
    shutil.copytree(crashed, tmp_path / "crashed")                # (the fixture's folder stays as the crash left it)
    resumed = _torchrun([*RUN, "--out", str(tmp_path / "crashed"), "--resume"])
    assert resumed.returncode == 0, _failure(resumed)
    short = [*RUN[:-1], "15"]
    first = _torchrun([*short, "--out", str(tmp_path / "extended")])
    assert first.returncode == 0, _failure(first)
    extended = _torchrun([*RUN, "--out", str(tmp_path / "extended"), "--resume"])
    assert extended.returncode == 0, _failure(extended)
    want = load_file(str(finished / "model.safetensors"))
    for name in ("crashed", "extended"):
        got = load_file(str(tmp_path / name / "model.safetensors"))
        assert got.keys() == want.keys()
        for k in want:
            assert torch.equal(got[k], want[k]), (name, k)
        assert json.loads((tmp_path / name / "results.json").read_text())["steps"] == 30
