"""lstmkit.bench: the side-by-side timing runs every model and writes its table (tiny settings:
this checks the harness, not the speed)."""

from __future__ import annotations

import json

import pytest
import torch

from lstmkit import bench


def test_bench_times_every_model_against_its_twin(tmp_path):
    threads = torch.get_num_threads()
    md, js = tmp_path / "b.md", tmp_path / "b.json"
    try:
        results = bench.run_bench(configs=["A"], modes=["infer"], repeats=1, threads=1, stream=False,
                                  with_cell=True, min_s=1e-4, out_markdown=str(md), out_json=str(js),
                                  verbose=False, models=["lstm", "gru", "rnn"])
    finally:
        torch.set_num_threads(threads)
    assert [r.model for r in results] == ["lstm", "gru", "rnn"]
    for r in results:
        assert set(r.ms) == {"lstmkit", "torch", "cell"} and all(v > 0 for v in r.ms.values())
        assert r.ratio_torch == pytest.approx(r.ms["lstmkit"] / r.ms["torch"])
    table = md.read_text()
    assert "| model |" in table and "| gru | A (100, 1, 64, 128) | infer |" in table
    assert [r["model"] for r in json.loads(js.read_text())["results"]] == ["lstm", "gru", "rnn"]


def test_bench_times_every_models_streaming_step():
    threads = torch.get_num_threads()
    try:
        results = bench.run_bench(configs=[], repeats=1, threads=1, min_s=1e-4, verbose=False,
                                  models=["lstm", "gru", "rnn"])
    finally:
        torch.set_num_threads(threads)
    assert [(r.model, r.config, r.mode) for r in results] == [(m, "stream", "step") for m in ("lstm", "gru", "rnn")]
    for r in results:
        assert set(r.ms) == {"lstmkit", "torch", "cell"} and all(v > 0 for v in r.ms.values())
        assert r.ratio_cell == pytest.approx(r.ms["lstmkit"] / r.ms["cell"])


def test_bench_cell_loops_compute_what_the_twins_compute():
    """The cell-loop baselines are the same model as the torch.nn twin (same weights, same outputs)."""
    for model in bench.MODELS:
        mine, ref, cell = bench._models(5, 7, model=model)
        x = torch.randn(4, 3, 5)
        with torch.no_grad():
            want = ref(x)[0]
            torch.testing.assert_close(bench._cell_loop(cell, x), want)
            torch.testing.assert_close(mine(x)[0], want, rtol=1e-5, atol=1e-6)


def test_bench_rejects_unknown_models():
    with pytest.raises(ValueError, match="models must be among lstm, gru, rnn"):
        bench.run_bench(models=["transformer"], verbose=False)


def test_grid_checks_and_times_every_kind_of_case(tmp_path):
    """The grid's harness on tiny cases of every model (sequence and cell), both modes: each is
    checked against its torch.nn twin, timed, summarised, and written (not a speed test)."""
    from lstmkit import bench_grid as g

    cases = [g.Case("lstm", 3, 2, 5, 7, layers=2, bidirectional=True), g.Case("lstm", 3, 2, 5, 7, proj=3),
             g.Case("gru", 3, 1, 4, 6, dtype="float64"), g.Case("rnn", 2, 3, 4, 6)]
    cases += [g.Case(m, 3, 2, 4, 6) for m in g.CELL_MODELS]
    threads = torch.get_num_threads()
    js = tmp_path / "grid.json"
    try:
        results = g.run_grid(cases, repeats=1, threads=1, min_s=1e-4, onnxruntime=False, out_json=str(js),
                             verbose=False)
    finally:
        torch.set_num_threads(threads)
    assert [(r.case, r.mode) for r in results] == [(c, m) for c in cases for m in ("infer", "train")]
    for r in results:
        assert r.ms["lstmkit"] > 0 and r.ms["torch"] > 0 and r.max_abs_diff <= 1e-4
    summary = g.summary(results)
    assert set(summary) == {(m, mode) for m in ("lstm", "gru", "rnn", *g.CELL_MODELS) for mode in ("infer", "train")}
    assert summary[("lstm", "train")]["cases"] == 2
    saved = json.loads(js.read_text())
    assert len(saved["results"]) == len(results) and "lstm train" in saved["summary"]


def test_grid_targets_report_what_is_missed():
    from lstmkit import bench_grid as g

    case = g.Case("lstm", 50, 8, 100, 100)
    fast = g.GridResult(case, "infer", {"lstmkit": 0.5, "torch": 1.0}, 0.0)
    slow = g.GridResult(case, "train", {"lstmkit": 1.2, "torch": 1.0}, 0.0)
    assert g.meets_targets([fast]) == []
    missed = g.meets_targets([fast, slow])
    assert len(missed) == 2 and "worst 1.20" in missed[0] and "geometric mean 1.20" in missed[1]


def test_grid_cuts_long_cases_and_refuses_a_wrong_answer(monkeypatch):
    from lstmkit import bench_grid as g

    big = g.Case("lstm", 2000, 256, 1000, 1000)
    assert g._capped(big).T == 10                        # the floor: T never below 10 steps
    long = g.Case("lstm", 2000, 64, 256, 256)
    assert g._capped(long).macs() <= g.MAX_MACS < long.macs()
    assert all(c.macs() <= g.MAX_MACS or c.T == 10 for c in g.grid_cases())
    real_pair = g._pair

    def broken(case):                    # lstmkit's twin with other weights: must not be timed
        mine, ref = real_pair(case)
        with torch.no_grad():
            next(mine.parameters()).add_(1.0)
        return mine, ref

    monkeypatch.setattr(g, "_pair", broken)
    with pytest.raises(AssertionError, match="differ by"):
        g.bench_case(g.Case("lstm", 3, 2, 4, 5), "infer", 1, 1e-4, onnxruntime=False)


def test_bench_command_line_runs_the_grid_and_refuses_unknown_models(capsys, monkeypatch):
    from lstmkit import bench_grid as g

    seen = {}
    monkeypatch.setattr(g, "run_grid", lambda cases, *a, **k: seen.setdefault("cases", cases) or [1])
    assert bench.main(["--grid", "--models", "grucell"]) == 0
    assert seen["cases"] and {c.model for c in seen["cases"]} == {"grucell"}
    with pytest.raises(SystemExit):
        bench.main(["--grid", "--models", "transformer"])
    assert "--models must be among" in capsys.readouterr().err


def test_busy_cores_spin_while_the_block_runs_and_stop_after(monkeypatch):
    """--busy N: N processes spin during the timing, the tables say so, and none outlives it."""
    import subprocess

    from lstmkit import timing

    started = []
    real = subprocess.Popen
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(real(*a, **k)) or started[-1])
    with timing.busy_cores(2):
        assert len(started) == 2 and all(p.poll() is None for p in started)
        info = timing.machine()
        assert info["busy"] == 2 and "2 other processes spinning" in timing.describe(info)
    assert all(p.poll() is not None for p in started)
    assert timing.machine()["busy"] == 0 and "spinning" not in timing.describe(timing.machine())
    with pytest.raises(KeyboardInterrupt), timing.busy_cores(1):
        raise KeyboardInterrupt
    assert started[-1].poll() is not None


def test_the_machine_line_names_the_vector_width_the_kernel_was_built_for():
    from lstmkit import timing

    info = timing.machine()
    if not info["cpp_kernel"]:
        assert info["vector_bytes"] is None and "vectors" not in timing.describe(info)
        return
    assert info["vector_bytes"] in (16, 32, 64)
    assert f"kernel built for {info['vector_bytes']}-byte vectors" in timing.describe(info)


def test_bench_refuses_a_negative_busy(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--busy", "-1"])
    assert "--busy >= 0" in capsys.readouterr().err
