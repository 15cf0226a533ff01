"""The kernels' path limits measured on the machine (kernels/tuning.h, kernels/tuning.py).

Checked: the decision rules on given ratios (a limit moves only where the other path is clearly
faster; ascending and descending scans stop at the first loss); a real measurement gives every limit
a value from its candidates and writes nothing of the user's; a limit set from Python decides the
path a call takes (observed through results that differ between the two paths in the last bits);
tables are per thread count; the cache beside the kernel is written whole (a failed write leaves the
old file and no temporary), read back instead of measuring again, and a corrupt or foreign file is
measured over; LSTMKIT_TUNING=defaults measures and reads nothing; the first kernel call at a thread
count applies the cached limits by itself; ``lstmkit bench --tune`` shows the table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import lstmkit
from lstmkit import kernels
from lstmkit.kernels import tuning

pytestmark = pytest.mark.skipif(not kernels.cpp_available(),
                                reason=f"C++ CPU kernel unavailable: {kernels._build_error}")


def ext():
    return kernels.load_extension()


@pytest.fixture
def restore_limits():
    """Every thread count's table and the set of tuned counts as they were."""
    saved = {n: ext().get_tuning(n) for n in range(1, 9)}
    tuned = set(kernels._tuned)
    yield
    for n, limits in saved.items():
        tuning.apply(ext(), n, limits)
    kernels._tuned.clear()
    kernels._tuned.update(tuned)


# ---- the rules ------------------------------------------------------------------------------------

def scan(rule, ratios: dict[int, float], default: int, edge: int):
    log, asked = {}, []

    def wins(n):
        asked.append(n)
        return ratios[n]
    return rule(sorted(ratios), wins, edge, default, log), asked, log


def test_an_up_to_limit_is_the_largest_candidate_before_the_first_loss():
    assert scan(tuning._largest_won, {32: 0.7, 64: 0.8, 128: 0.9, 256: 0.9}, 128, 16)[0] == 256
    value, asked, log = scan(tuning._largest_won, {32: 0.7, 64: 1.2, 128: 0.9, 256: 0.9}, 128, 16)
    assert value == 32 and asked == [32, 64] and log == {"32": 0.7, "64": 1.2}
    assert scan(tuning._largest_won, {32: 1.2, 64: 0.5}, 128, 16)[0] == 16


def test_a_from_limit_is_the_smallest_candidate_after_the_last_loss():
    assert scan(tuning._smallest_won, {1: 0.9, 2: 0.9, 4: 0.9, 8: 0.9}, 4, tuning.NEVER)[0] == 1
    value, asked, _ = scan(tuning._smallest_won, {1: 0.5, 2: 1.2, 4: 0.9, 8: 0.9}, 4, tuning.NEVER)
    assert value == 4 and asked == [8, 4, 2]
    assert scan(tuning._smallest_won, {1: 0.5, 8: 1.2}, 4, tuning.NEVER)[0] == tuning.NEVER


@pytest.mark.parametrize("r, admitted_by_default, wins", [
    (1.0 + tuning.TOLERANCE * 0.9, True, True),      # slightly slower: keeps the side it had
    (1.0 + tuning.TOLERANCE * 1.1, True, False),     # clearly slower: loses it
    (1.0 - tuning.TOLERANCE * 0.9, False, False),    # slightly faster: does not take the other's side
    (1.0 - tuning.TOLERANCE * 1.1, False, True),     # clearly faster: takes it
])
def test_a_path_changes_side_only_where_clearly_faster_or_slower(r, admitted_by_default, wins):
    assert tuning._admitted_wins(r, admitted_by_default) is wins


def test_near_ties_keep_the_built_in_limit():
    ties = {32: 1.02, 64: 1.02, 128: 1.02, 256: 0.98}
    assert scan(tuning._largest_won, ties, 128, 16)[0] == 128


# ---- measuring and applying ------------------------------------------------------------------------

def test_a_measurement_gives_every_limit_a_candidate_value(restore_limits):
    threads = torch.get_num_threads()
    before = torch.random.get_rng_state()
    entry = tuning.measure(ext(), threads)
    assert torch.equal(torch.random.get_rng_state(), before)       # the user's random stream untouched
    assert torch.get_num_threads() == threads
    limits = entry["limits"]
    assert set(limits) == set(tuning.LIMITS)
    assert limits["small_forward_rows"] in (16, 32, 64, 128, 256)
    assert limits["small_backward_rows"] in (16, 32, 64, 128, 256)
    assert limits["fuse_min_rows"] in (1, 2, 4, 8, 16, tuning.NEVER)
    one_thread = (ext().default_tuning()["rows_per_member"],)         # not measured: nothing to split
    assert limits["rows_per_member"] in ((2, 3, 4, 5, 6, 8, 16) if threads > 1 else one_thread)
    assert limits["onednn_min_work"] in (1 << 20, 1 << 22, 1 << 24, 1 << 26, tuning.NEVER)
    team_default = (ext().default_tuning()["team_step_work"],)        # not measured at one thread
    team = tuple(4 * H * H for H in tuning.TEAM_SIZES) + (1 << 20,)
    assert limits["team_step_work"] in (team if threads > 1 else team_default)
    for name, ratios in entry["ratios"].items():
        assert name in tuning.LIMITS and ratios and all(r > 0 for r in ratios.values())


def test_measuring_leaves_the_table_as_it_was(restore_limits):
    threads = torch.get_num_threads()
    odd = {name: 7 + i for i, name in enumerate(tuning.LIMITS)}
    tuning.apply(ext(), threads, odd)
    tuning.measure(ext(), threads)
    assert ext().get_tuning(threads) == odd


def differing_paths_case():
    """An LSTM recurrence whose two paths give different last bits (else the test could not tell)."""
    g = torch.Generator().manual_seed(3)
    T, B, H = 6, 8, 96
    zx, h0, c0 = torch.randn(T, B, 4 * H, generator=g), torch.randn(B, H, generator=g), torch.randn(B, H, generator=g)
    w_hh = torch.randn(4 * H, H, generator=g) * 0.3
    run = lambda path: ext().lstm_forward(zx, h0, c0, w_hh, None, None, path, False)[2]  # noqa: E731
    small, blas = run(1), run(2)
    assert not torch.equal(small, blas)
    torch.testing.assert_close(small, blas, rtol=1e-5, atol=1e-5)
    return B, run, small, blas


def test_a_limit_set_from_python_decides_the_path(restore_limits):
    B, run, small, blas = differing_paths_case()
    threads = torch.get_num_threads()
    ext().set_tuning(threads, "small_forward_rows", B)
    assert torch.equal(run(0), small)
    ext().set_tuning(threads, "small_forward_rows", B - 1)
    assert torch.equal(run(0), blas)


def test_each_thread_count_has_its_own_table(restore_limits):
    ext().set_tuning(3, "fuse_min_rows", 11)
    assert ext().get_tuning(3)["fuse_min_rows"] == 11
    assert ext().get_tuning(2)["fuse_min_rows"] != 11 or ext().get_tuning(4)["fuse_min_rows"] != 11
    assert ext().get_tuning(200) == ext().get_tuning(64)          # past the last table: the last one


@pytest.mark.parametrize("call, message", [
    (lambda e: e.set_tuning(2, "no_such_limit", 1), "should be one of"),
    (lambda e: e.set_tuning(2, "fuse_min_rows", -1), "should be >= 0"),
    (lambda e: e.set_tuning(0, "fuse_min_rows", 1), "threads should be >= 1"),
    (lambda e: e.get_tuning(0), "threads should be >= 1"),
])
def test_bad_limits_are_refused_by_name(call, message):
    with pytest.raises(ValueError, match=message):
        call(ext())


# ---- the cache beside the kernel -------------------------------------------------------------------

def fake_measure(calls):
    def measure(ext_, threads):
        calls.append(threads)
        return {"limits": {**ext_.default_tuning(), "fuse_min_rows": 9}, "ratios": {}, "seconds": 0.0}
    return measure


def test_the_cache_is_measured_once_then_read(tmp_path, monkeypatch, restore_limits):
    monkeypatch.setenv("LSTMKIT_TUNING", "measure")
    calls = []
    monkeypatch.setattr(tuning, "measure", fake_measure(calls))
    first = tuning.ensure(ext(), tmp_path, 3)
    second = tuning.ensure(ext(), tmp_path, 3)
    assert calls == [3] and first == second
    assert ext().get_tuning(3)["fuse_min_rows"] == 9
    data = json.loads((tmp_path / tuning.FILE).read_text())
    assert data["format"] == tuning.FORMAT and data["threads"]["3"]["limits"]["fuse_min_rows"] == 9
    tuning.ensure(ext(), tmp_path, 5)                               # another count joins the same file
    assert set(json.loads((tmp_path / tuning.FILE).read_text())["threads"]) == {"3", "5"}
    tuning.ensure(ext(), tmp_path, 3, again=True)
    assert calls == [3, 5, 3]
    assert [p.name for p in tmp_path.iterdir()] == [tuning.FILE]   # no temporary left


@pytest.mark.parametrize("content", [
    "not json {", "[]", '{"format": 99, "threads": {}}', '{"format": 2, "threads": []}',
    '{"format": 1, "threads": {"3": {"limits": {"fuse_min_rows": 1, "small_forward_rows": 1, '   # an older
    '"small_backward_rows": 1, "rows_per_member": 1, "onednn_min_work": 1, "team_step_work": 1}}}}',  # format
    '{"format": 2, "threads": {"3": {"limits": {"fuse_min_rows": 1}}}}',
    '{"format": 2, "threads": {"3": {"limits": {"fuse_min_rows": -1, "small_forward_rows": 1, '
    '"small_backward_rows": 1, "rows_per_member": 1, "onednn_min_work": 1, "team_step_work": 1}}}}',
    '{"format": 2, "threads": {"3": {"limits": {"fuse_min_rows": true, "small_forward_rows": 1, '
    '"small_backward_rows": 1, "rows_per_member": 1, "onednn_min_work": 1, "team_step_work": 1}}}}',
])
def test_a_corrupt_or_foreign_cache_is_measured_over(tmp_path, monkeypatch, restore_limits, content):
    monkeypatch.setenv("LSTMKIT_TUNING", "measure")
    (tmp_path / tuning.FILE).write_text(content)
    calls = []
    monkeypatch.setattr(tuning, "measure", fake_measure(calls))
    tuning.ensure(ext(), tmp_path, 3)
    assert calls == [3] and ext().get_tuning(3)["fuse_min_rows"] == 9
    assert tuning.read(tmp_path)[3]["limits"]["fuse_min_rows"] == 9


def test_a_failed_write_leaves_the_old_cache_whole(tmp_path, monkeypatch):
    tuning.write(tmp_path, {2: {"limits": {name: 1 for name in tuning.LIMITS}}})
    before = (tmp_path / tuning.FILE).read_text()

    def broken(*args):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        tuning.write(tmp_path, {2: {"limits": {name: 2 for name in tuning.LIMITS}}})
    assert (tmp_path / tuning.FILE).read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == [tuning.FILE]


def test_an_unwritable_cache_only_means_measuring_again(tmp_path, monkeypatch, restore_limits):
    monkeypatch.setenv("LSTMKIT_TUNING", "measure")
    calls = []
    monkeypatch.setattr(tuning, "measure", fake_measure(calls))
    missing = tmp_path / "gone"                                     # no such folder: the write fails
    assert tuning.ensure(ext(), missing, 3)["limits"]["fuse_min_rows"] == 9
    assert ext().get_tuning(3)["fuse_min_rows"] == 9 and not missing.exists()


def test_defaults_measure_and_read_nothing(tmp_path, monkeypatch, restore_limits):
    monkeypatch.setenv("LSTMKIT_TUNING", "defaults")
    monkeypatch.setattr(tuning, "measure", fake_measure(calls := []))
    tuning.write(tmp_path, {3: {"limits": {name: 5 for name in tuning.LIMITS}}})
    before = ext().get_tuning(3)
    assert tuning.ensure(ext(), tmp_path, 3) is None
    assert calls == [] and ext().get_tuning(3) == before


def test_a_bad_tuning_mode_is_named(monkeypatch):
    monkeypatch.setenv("LSTMKIT_TUNING", "fast")
    with pytest.raises(ValueError, match="LSTMKIT_TUNING must be one of measure, defaults; got 'fast'"):
        tuning.mode()


def test_the_first_call_at_a_thread_count_applies_the_cached_limits(tmp_path, monkeypatch, restore_limits):
    monkeypatch.setenv("LSTMKIT_TUNING", "measure")
    monkeypatch.setattr(kernels, "_ext_dir", tmp_path)
    calls = []
    monkeypatch.setattr(tuning, "measure", fake_measure(calls))
    kernels._tuned.clear()
    threads = torch.get_num_threads()
    m = lstmkit.LSTM(8, 16)
    with torch.no_grad():
        m(torch.randn(5, 3, 8))
        m(torch.randn(5, 3, 8))
    assert calls == [threads]                                      # once, at the first call
    assert kernels.limits()["fuse_min_rows"] == 9
    assert tuning.read(tmp_path)[threads]["limits"]["fuse_min_rows"] == 9


def test_a_dispatch_mode_never_sees_the_measurement(tmp_path, monkeypatch, restore_limits):
    """The first call at a thread count measures (really, here) where nothing records it: a mode
    watching the call sees the same operations as on a call after it."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Log(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    monkeypatch.setenv("LSTMKIT_TUNING", "measure")
    monkeypatch.setattr(kernels, "_ext_dir", tmp_path)
    kernels._tuned.clear()
    m, x = lstmkit.LSTM(8, 16), torch.randn(5, 3, 8)

    def logged():
        with torch.no_grad(), Log() as log:
            m(x)
        return log.ops
    first = logged()
    assert torch.get_num_threads() in kernels._tuned and tuning.read(tmp_path)   # it did measure
    assert first == logged() and first                                         # and the mode never saw it


def test_bench_tune_shows_the_measured_table():
    p = subprocess.run([sys.executable, "-m", "lstmkit", "bench", "--tune", "--threads", "1"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "Path limits at 1 thread, measured in" in out
    for name in tuning.LIMITS:
        assert name in out
    assert "rows_per_member" in out and "not measured here" in out   # nothing to split at one thread


def test_parallel_jobs_measure_once_in_the_parent_before_their_workers_start(monkeypatch):
    """lstmkit demo/ablate run jobs in spawned one-thread workers: the limits at one thread are measured
    (or read) once, before any worker starts, so the workers read them rather than measure at once."""
    from lstmkit import jobs

    asked = []
    monkeypatch.setattr(kernels, "tune", lambda threads=None, again=False: asked.append(threads))
    rows = jobs.run_jobs(abs_of_value, [{"value": -2}, {"value": 3}], processes=2, quiet=True, desc="t")
    assert asked == [1] and rows == [{"abs": 2}, {"abs": 3}]


def abs_of_value(job: dict) -> dict:
    return {"abs": abs(job["value"])}
