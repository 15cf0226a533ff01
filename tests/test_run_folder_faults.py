"""Run folders under faults: a full disk (write hooks), killed writes, concurrent writers, tampered
checkpoints, torn metrics, an --out that is a file, and extending a finished run.

Every failure must be one line on stderr and exit code 2, the folder must keep its last good
version of every file, and ``--resume`` must then end where an uninterrupted run ends.
"""

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from lstmkit import runs
from lstmkit.cli import main

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
SMALL = ["--quiet", "--length", "12", "--size", "100", "--eval-every", "10", "--checkpoint-every", "10",
         "--hidden-size", "8", "--batch-size", "16", "--threads", "1", "--patience", "0"]


def train_args(out, *more, steps=30):
    return ["train", "adding", *SMALL, "--steps", str(steps), "--out", str(out), *more]


def resume_args(out, *more):
    return ["train", "adding", "--quiet", "--resume", "--out", str(out), *more]


@pytest.fixture
def fails(capsys):
    """Run the CLI in-process; it must end in one line on stderr and exit code 2, never a traceback."""
    def run(args):
        code = main([str(a) for a in args])
        err = capsys.readouterr().err
        assert code == 2, (code, err)
        assert err.startswith("lstmkit: error: ") and len(err.strip().splitlines()) == 1, err
        return err.strip()
    return run


@pytest.fixture
def ok(capsys):
    def run(args):
        code = main([str(a) for a in args])
        err = capsys.readouterr().err
        assert code == 0, err
    return run


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted runs of 30 and 40 steps: what every recovered run must end with."""
    out = {}
    for steps in (30, 40):
        folder = tmp_path_factory.mktemp("ref") / f"r{steps}"
        assert main(train_args(folder, steps=steps)) == 0
        out[steps] = folder
    return out


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def checkpoint_step(run: Path) -> int:
    with safe_open(str(run / "checkpoint.safetensors"), framework="pt") as f:
        return json.loads(f.metadata()["counters"])["step"]


def metric_steps(run: Path) -> list[int]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines]  # every line whole


def clean(run: Path) -> None:
    """No temporary or lock file left behind."""
    assert not [f.name for f in run.iterdir() if f.name.startswith(".")]


# --- a full disk ---------------------------------------------------------------------------------

@pytest.mark.parametrize("failing_write", [1, 2])  # the first checkpoint write, or the second
def test_full_disk_during_a_checkpoint_write(tmp_path, monkeypatch, fails, ok, reference, failing_write):
    real, calls = runs.save_file, []

    def disk_fills(tensors, path, metadata=None):
        if Path(path).name.startswith(".checkpoint.safetensors."):
            calls.append(path)
            if len(calls) == failing_write:
                Path(path).write_bytes(b"\0" * 100)  # part of the file got out before the disk filled
                raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        real(tensors, path, metadata=metadata)

    monkeypatch.setattr(runs, "save_file", disk_fills)
    run = tmp_path / "run"
    err = fails(train_args(run))
    assert err == (f"lstmkit: error: cannot write {run / 'checkpoint.safetensors'} (no space left on the "
                   "device); it keeps its previous version: free space, then continue with --resume")
    if failing_write == 1:
        assert not (run / "checkpoint.safetensors").exists()
    else:
        assert checkpoint_step(run) == 10  # the last good checkpoint
    clean(run)
    monkeypatch.setattr(runs, "save_file", real)  # space freed
    ok(resume_args(run))
    assert same_weights(run, reference[30]) and metric_steps(run) == metric_steps(reference[30])
    clean(run)


def test_full_disk_while_appending_metrics_leaves_no_torn_line(tmp_path, monkeypatch, fails, ok, reference):
    real = os.write

    def disk_fills(fd, data):
        if bytes(data).startswith(b'{"step": 20'):
            real(fd, bytes(data)[:9])  # half a record got out
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", disk_fills)
    run = tmp_path / "run"
    err = fails(train_args(run))
    monkeypatch.setattr(os, "write", real)
    assert err.endswith(f"cannot write {run / 'metrics.jsonl'} (no space left on the device); it keeps its "
                        "previous version: free space, then continue with --resume")
    assert (run / "metrics.jsonl").read_text().endswith("\n") and metric_steps(run) == [10]
    ok(resume_args(run))
    assert same_weights(run, reference[30]) and metric_steps(run) == metric_steps(reference[30])
    clean(run)


def test_full_disk_on_a_small_tmpfs(tmp_path, fails):
    """The real thing where a small tmpfs can be mounted (root on Linux); skipped elsewhere."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if sys.platform != "linux" or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mnt)],
                                                 capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        run = mnt / "run"
        err = fails(train_args(run, "--hidden-size", "64"))  # a checkpoint too big for 48 KiB
        assert "no space left on the device" in err and "Traceback" not in err
        assert not [f.name for f in run.iterdir() if f.name.endswith(".tmp")]
        rows = (run / "metrics.jsonl").read_text()
        assert rows == "" or rows.endswith("\n")
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


# --- torn metrics, killed writes, stray temporaries -------------------------------------------------

def test_resume_recovers_from_a_torn_last_metrics_line(tmp_path, fails, ok, reference):
    run = tmp_path / "run"
    ok(train_args(run, steps=20))
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 30, "train_lo')  # a crash or a full disk mid-append (an older lstmkit)
    assert [r["step"] for r in runs.read_metrics(run / "metrics.jsonl")] == [10, 20]
    ok(resume_args(run, "--steps", "30"))
    assert metric_steps(run) == [10, 20, 30]
    (run / "metrics.jsonl").write_text('{"step": 10}\n{"ste\n{"step": 20}\n')  # damage before the end
    assert "metrics.jsonl line 2 is not a metrics record" in fails(resume_args(run, "--steps", "40"))


KILLED_WRITE = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from lstmkit import runs
    real = runs.save_file
    def killed(tensors, path, metadata=None):
        Path(path).write_bytes(b"\\0" * 64)   # part of the new checkpoint is out...
        os.kill(os.getpid(), signal.SIGKILL)  # ...when the process is killed
    runs.save_file = killed
    runs.write_tensors(Path(sys.argv[1]) / "checkpoint.safetensors", {"x": __import__("torch").ones(3)})
""")


def test_a_killed_write_keeps_the_old_file_and_its_temporary_is_removed(tmp_path, ok, reference):
    run = tmp_path / "run"
    ok(train_args(run, steps=20))
    before = (run / "checkpoint.safetensors").read_bytes()
    p = subprocess.run([sys.executable, "-c", KILLED_WRITE, str(run)], env=ENV, capture_output=True)
    assert p.returncode == -9
    strays = [f.name for f in run.iterdir() if f.name.endswith(".tmp")]
    assert len(strays) == 1 and strays[0].startswith(".checkpoint.safetensors.")
    assert (run / "checkpoint.safetensors").read_bytes() == before  # the old version, whole
    (run / "notes.tmp").write_text("the user's own file")  # not ours: must stay
    ok(resume_args(run, "--steps", "30"))
    assert not [f for f in strays if (run / f).exists()] and (run / "notes.tmp").exists()
    assert same_weights(run, reference[30])
    clean(run)


# --- one writer at a time --------------------------------------------------------------------------

def test_a_held_run_folder_refuses_a_second_train_and_resume(tmp_path, fails, ok):
    run = tmp_path / "run"
    ok(train_args(run, steps=10))
    before = {f.name: f.read_bytes() for f in run.iterdir()}
    with runs.lock_run(run):  # this process writes the run: another process must be refused
        for args in (resume_args(run, "--steps", "20"), train_args(run)):
            p = subprocess.run([sys.executable, "-m", "lstmkit", *args], env=ENV, capture_output=True, text=True)
            assert p.returncode == 2 and p.stderr == (
                f"lstmkit: error: {run} is being written by process {os.getpid()} (another lstmkit train?): "
                "wait for it to end, or give another --out\n"), p.stderr
    assert before == {f.name: f.read_bytes() for f in run.iterdir()}


def test_two_trains_on_one_out_started_together_never_mix(tmp_path):
    run = tmp_path / "run"
    procs = [subprocess.Popen([sys.executable, "-m", "lstmkit", *train_args(run, "--seed", str(seed), steps=60)],
                              env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for seed in (0, 1)]
    outcomes = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, 2], outcomes
    winner = [seed for seed, (code, _) in zip((0, 1), outcomes, strict=True) if code == 0][0]
    loser = [err for code, err in outcomes if code == 2][0]
    assert ("is being written by process" in loser or "already holds a run" in loser) and \
        len(loser.strip().splitlines()) == 1, loser
    assert json.loads((run / "config.json").read_text())["train"]["seed"] == winner
    assert metric_steps(run) == list(range(10, 61, 10))
    clean(run)


def test_a_stale_lock_is_taken_over(tmp_path, ok):
    run = tmp_path / "run"
    ok(train_args(run, steps=10))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (run / ".lock").write_text(gone.stdout)  # its owner was killed
    ok(resume_args(run, "--steps", "20"))
    assert checkpoint_step(run) == 20
    clean(run)


def test_a_stale_lock_is_taken_over_without_flock(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "fcntl", None)  # `import fcntl` fails, as off POSIX
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text(f"{os.getpid()}\n")  # alive: refused
    with pytest.raises(runs.RunError, match=f"being written by process {os.getpid()}"):
        with runs.lock_run(run):
            pass
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (run / ".lock").write_text(gone.stdout)  # dead: taken over
    with runs.lock_run(run):
        assert (run / ".lock").read_text().strip() == str(os.getpid())
        with pytest.raises(runs.RunError, match="being written"):
            with runs.lock_run(run):
                pass
    assert not (run / ".lock").exists()


# --- tampered checkpoints ---------------------------------------------------------------------------

def _tamper(tensors: dict, meta: dict, case: str) -> None:
    weight = next(k for k in tensors if k.startswith("model.") and k.endswith("weight_ih_l0"))
    if case == "wrong shape":
        tensors[weight] = torch.zeros(tensors[weight].shape[0] + 1, tensors[weight].shape[1])
    elif case == "extra key":
        tensors["model.extra.weight"] = torch.zeros(2)
    elif case == "missing key":
        del tensors[weight]
    elif case == "optimizer moment of the wrong shape":
        tensors["optim.0.exp_avg"] = torch.zeros(3)
    elif case == "optimizer state missing a key":
        del tensors["optim.1.exp_avg_sq"]
    elif case == "optimizer groups damaged":
        meta["param_groups"] = json.dumps([{**json.loads(meta["param_groups"])[0], "lr": "fast"}])
    elif case == "RNG state damaged":
        tensors["rng.torch"] = torch.zeros(10, dtype=torch.uint8)
    elif case == "counters damaged":
        meta["counters"] = '{"step": "ten"'


CASES = ["wrong shape", "extra key", "missing key", "optimizer moment of the wrong shape",
         "optimizer state missing a key", "optimizer groups damaged", "RNG state damaged", "counters damaged"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 20-step run killed after its checkpoint at step 10 (its config.json says 20 steps)."""
    run = tmp_path_factory.mktemp("tampered") / "good"
    assert main(train_args(run, steps=10)) == 0
    config = json.loads((run / "config.json").read_text())
    config["train"]["steps"] = 20
    (run / "config.json").write_text(json.dumps(config))
    return run


@pytest.mark.parametrize("case", CASES)
def test_a_tampered_checkpoint_is_one_line(trained, tmp_path, fails, case):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    ckpt = run / "checkpoint.safetensors"
    with safe_open(str(ckpt), framework="pt") as f:
        meta = dict(f.metadata())
    tensors = load_file(str(ckpt))
    _tamper(tensors, meta, case)
    save_file(tensors, str(ckpt), metadata=meta)
    before = {f.name: f.read_bytes() for f in run.iterdir()}
    err = fails(resume_args(run))
    assert f"{ckpt} cannot be resumed from: " in err and "damaged or belongs to another run" in err
    assert before == {f.name: f.read_bytes() for f in run.iterdir()}  # nothing touched


def test_a_truncated_checkpoint_is_one_line(trained, tmp_path, fails):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    data = (run / "checkpoint.safetensors").read_bytes()
    (run / "checkpoint.safetensors").write_bytes(data[:len(data) // 2])
    assert "truncated or corrupt" in fails(resume_args(run))


# --- --out, extending a finished run ----------------------------------------------------------------

def test_out_naming_a_file_is_one_line(tmp_path, fails):
    f = tmp_path / "file.txt"
    f.write_text("mine")
    assert fails(train_args(f)) == f"lstmkit: error: --out {f} is a file, not a folder: give a folder for the run"
    assert "is a file, not a run folder" in fails(resume_args(f))
    assert "a part of its path is a file" in fails(train_args(f / "run"))
    assert f.read_text() == "mine"


def test_a_finished_run_can_be_extended(tmp_path, fails, ok, reference):
    run = tmp_path / "run"
    ok(train_args(run, steps=30))
    ok(resume_args(run))  # finished: resuming again changes nothing
    assert same_weights(run, reference[30]) and checkpoint_step(run) == 30
    ok(resume_args(run, "--steps", "40"))
    assert same_weights(run, reference[40]) and metric_steps(run) == metric_steps(reference[40])
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == 40
    assert json.loads((run / "results.json").read_text())["steps"] == 40
    err = fails(resume_args(run, "--steps", "35"))
    assert err.endswith(f"--steps 35 is fewer than the 40 steps {run} has done: give more to extend it")
    assert "--steps must be >= 1" in fails(resume_args(run, "--steps", "0"))
    clean(run)
