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
