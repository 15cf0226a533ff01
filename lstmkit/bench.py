"""Benchmark: lstmkit.LSTM against torch.nn.LSTM and against a loop over torch.nn.LSTMCell.

What it is: the timing behind ``lstmkit bench`` and ``benchmarks/bench_lstm.py`` on five fixed
configs (``--grid``: the sizes users pick, ``bench_grid.py``). All contenders run in one process on
the same weights and inputs, interleaved (``timing.median_ms``), so a busy machine slows them alike;
each time is the median over repeats, and the table reports ratios (lstmkit time / baseline time:
below 1 means lstmkit is faster).
What it is not: a test. Targets (issue 3, 2 threads): training <= 0.75 on B, C, D and <= 0.5 on A;
inference <= 1.0 on B, C, D and <= 0.5 on A; streaming step <= 0.5; against the cell loop <= 0.2.

Modes: ``infer`` is a forward under no_grad; ``train`` is forward plus backward of the sum of the
outputs (the input projection and weight gradients included); ``stream`` is one step, B=1, of
the module's ``step`` against its torch.nn twin called on a length-1 sequence (and the torch.nn cell).
Models: ``lstm`` (default; the targets are for it), ``gru`` and ``rnn`` (tanh), each against its
torch.nn twin and a loop over the matching torch.nn cell.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from lstmkit import bench_grid, kernels
from lstmkit.errors import UsageError
from lstmkit.registry import NAMES, recurrent
from lstmkit.timing import busy_cores, describe, describe_limits, machine, median_ms

# name: (T, B, I, H)
CONFIGS: dict[str, tuple[int, int, int, int]] = {
    "A": (100, 1, 64, 128),
    "B": (100, 32, 128, 256),
    "C": (500, 32, 256, 256),
    "D": (100, 64, 512, 512),
    "long": (2000, 8, 128, 128),
}
STREAM = (1, 64, 128)              # streaming step: B, I, H
MODES = ("infer", "train")


MODELS = NAMES  # lstmkit.registry's models


@dataclass
class Result:
    config: str
    mode: str
    shape: tuple[int, ...]
    ms: dict[str, float]           # contender -> median milliseconds per call
    ratio_torch: float             # lstmkit / torch.nn.LSTM
    ratio_cell: float | None       # lstmkit / LSTMCell loop (None when not timed)
    model: str = "lstm"


def _models(I: int, H: int, seed: int = 0, model: str = "lstm"):
    """(lstmkit module, its torch.nn twin with the same weights, the matching torch.nn cell)."""
    entry = recurrent(model)
    torch.manual_seed(seed)
    ref = entry.torch_module(I, H)
    mine = entry.module(I, H)
    mine.load_state_dict(ref.state_dict())
    cell = entry.torch_cell(I, H)
    cell.load_state_dict({k[:-3]: v for k, v in ref.state_dict().items()})   # weight_ih_l0 -> weight_ih
    return mine, ref, cell


def _cell_loop(cell: nn.Module, x: torch.Tensor) -> torch.Tensor:
    h = x.new_zeros(x.shape[1], cell.hidden_size)
    state = (h, h) if isinstance(cell, nn.LSTMCell) else h
    ys = []
    for x_t in x:
        state = cell(x_t, state)
        ys.append(state[0] if isinstance(state, tuple) else state)
    return torch.stack(ys)


def _contenders(mode: str, x: torch.Tensor, mine, ref, cell, with_cell: bool) -> dict[str, Callable]:
    params = [*mine.parameters(), *ref.parameters(), *cell.parameters()]

    def infer(f):
        def run():
            with torch.no_grad():
                f(x)
        return run

    def train(f):
        def run():
            for p in params:
                p.grad = None
            f(x).sum().backward()
        return run

    wrap = infer if mode == "infer" else train
    fns = {"lstmkit": wrap(lambda x: mine(x)[0]), "torch": wrap(lambda x: ref(x)[0])}
    if with_cell:
        fns["cell"] = wrap(lambda x: _cell_loop(cell, x))
    return fns


def bench_config(name: str, mode: str, repeats: int, min_s: float, with_cell: bool = True,
                 model: str = "lstm") -> Result:
    T, B, I, H = CONFIGS[name]
    mine, ref, cell = _models(I, H, model=model)
    x = torch.randn(T, B, I)
    ms = median_ms(_contenders(mode, x, mine, ref, cell, with_cell), repeats, min_s)
    return Result(name, mode, (T, B, I, H), ms, ms["lstmkit"] / ms["torch"],
                  ms["lstmkit"] / ms["cell"] if "cell" in ms else None, model)


def bench_stream(repeats: int, min_s: float, steps: int = 50, model: str = "lstm") -> Result:
    """ms per step, B=1: lstmkit's step() against its torch.nn twin on one-step sequences and the
    matching torch.nn cell."""
    B, I, H = STREAM
    mine, ref, cell = _models(I, H, model=model)
    xs = torch.randn(steps, B, I)

    def run_mine():
        state = None
        for x_t in xs:
            _, state = mine.step(x_t, state)

    def run_ref():
        state = None
        for x_t in xs:
            _, state = ref(x_t.unsqueeze(0), state)

    def run_cell():
        state = None
        for x_t in xs:
            state = cell(x_t, state)

    def no_grad(f):
        def run():
            with torch.no_grad():
                f()
        return run

    fns = {"lstmkit": no_grad(run_mine), "torch": no_grad(run_ref), "cell": no_grad(run_cell)}
    ms = {k: v / steps for k, v in median_ms(fns, repeats, min_s).items()}
    return Result("stream", "step", (1, B, I, H), ms, ms["lstmkit"] / ms["torch"], ms["lstmkit"] / ms["cell"], model)


def to_markdown(results: Sequence[Result], info: dict) -> str:
    several = len({r.model for r in results}) > 1
    twin = "torch.nn twin" if several else "nn.LSTM"
    lines = [f"Machine: {describe(info)}, "
             f"lstmkit backend {info['backend']} (C++ kernel: {'yes' if info['cpp_kernel'] else 'no'}).",
             *(["", limits] if (limits := describe_limits(info)) else []),
             "", f"| {'model | ' if several else ''}config (T,B,I,H) | mode | lstmkit ms | {twin} ms | "
             f"{'cell' if several else 'LSTMCell'} loop ms | lstmkit / {twin} | lstmkit / cell loop |",
             "|---|---|---|---|---|---|---|" + ("---|" if several else "")]
    for r in results:
        cell = f"{r.ms['cell']:.3f}" if "cell" in r.ms else "-"
        rc = f"{r.ratio_cell:.2f}" if r.ratio_cell is not None else "-"
        lines.append(f"| {r.model + ' | ' if several else ''}{r.config} {r.shape} | {r.mode} | {r.ms['lstmkit']:.3f} | "
                     f"{r.ms['torch']:.3f} | {cell} | **{r.ratio_torch:.2f}** | {rc} |")
    return "\n".join(lines)


def run_bench(configs: Sequence[str] = tuple(CONFIGS), modes: Sequence[str] = MODES, repeats: int = 7,
              threads: int | None = 2, stream: bool = True, with_cell: bool = True, min_s: float = 0.02,
              out_markdown: str | None = None, out_json: str | None = None, verbose: bool = True,
              models: Sequence[str] = ("lstm",)) -> list[Result]:
    """Time every config and mode (and the streaming step); print and optionally save the table.

    configs: names from CONFIGS; threads: torch.set_num_threads (None: leave as is); min_s: the least
    duration of one timed sample (short calls are repeated inside it); models: among MODELS (each
    also times its streaming step). Returns the Results.
    """
    bad_models = [m for m in models if m not in MODELS]
    if bad_models:
        raise ValueError(f"models must be among {', '.join(MODELS)}; got {', '.join(bad_models)}")
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise ValueError(f"configs must be among {', '.join(CONFIGS)}; got {', '.join(unknown)}")
    bad_modes = [m for m in modes if m not in MODES]
    if bad_modes:
        raise ValueError(f"modes must be among {', '.join(MODES)}; got {', '.join(bad_modes)}")
    if threads is not None:
        torch.set_num_threads(threads)
    results = []
    for model in models:
        for name in configs:
            for mode in modes:
                results.append(bench_config(name, mode, repeats, min_s, with_cell, model))
                if verbose:
                    r = results[-1]
                    print(f"{model:4s} {name:5s} {mode:6s} lstmkit/torch {r.ratio_torch:.2f}  "
                          f"({r.ms['lstmkit']:.3f} vs {r.ms['torch']:.3f} ms)", flush=True)
    for model in models if stream else ():
        results.append(bench_stream(repeats, min_s, model=model))
        if verbose:
            r = results[-1]
            print(f"{model:4s} stream step   lstmkit/torch {r.ratio_torch:.2f}  "
                  f"({r.ms['lstmkit']:.3f} vs {r.ms['torch']:.3f} ms)", flush=True)
    info = machine()
    table = to_markdown(results, info)
    if verbose:
        print(table)
    if out_markdown:
        with open(out_markdown, "w") as f:
            f.write(table + "\n")
    if out_json:
        with open(out_json, "w") as f:
            json.dump({"machine": info, "results": [asdict(r) for r in results]}, f, indent=1)
    return results


HELP = "speed of lstmkit against torch.nn, side by side (--grid: over the sizes users pick)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``lstmkit bench`` (the command line's subcommand and this module's script)."""
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), help="configs to time (default: all)")
    p.add_argument("--modes", nargs="+", default=list(MODES), help="infer and/or train (default: both)")
    p.add_argument("--models", nargs="+", help="lstm, gru and/or rnn (default: lstm; with --grid: all, and the "
                   "cells lstmcell, grucell, rnncell)")
    p.add_argument("--repeats", type=int, default=7, help="timed samples per contender; the median is kept")
    p.add_argument("--threads", type=int, default=2, help="torch threads (the targets are for 2)")
    p.add_argument("--no-stream", action="store_true", help="skip the streaming-step timing")
    p.add_argument("--no-cell", action="store_true", help="skip the LSTMCell loop (slow on long configs)")
    p.add_argument("--min-time", type=float, default=0.02, help="least seconds per timed sample")
    p.add_argument("--markdown", help="write the table to this Markdown file")
    p.add_argument("--json", help="write machine info and results to this JSON file")
    p.add_argument("--grid", action="store_true",
                   help="time the grid of sizes users pick (lstmkit/bench_grid.py; ~10 minutes) instead of the configs")
    p.add_argument("--no-onnxruntime", action="store_true", help="with --grid: skip onnxruntime's LSTM")
    p.add_argument("--busy", type=int, default=0, metavar="N",
                   help="keep N other processes spinning on the cores while timing, as another job would (default 0)")
    p.add_argument("--tune", action="store_true",
                   help="only measure the kernels' path limits anew at --threads (cached beside the built kernel; "
                        "done by itself on first use) and show them")


def run(a: argparse.Namespace) -> int:
    """Run ``lstmkit bench`` on parsed options; a bad option is a UsageError (one line from the CLI)."""
    if a.repeats < 1 or a.threads < 1 or a.min_time <= 0 or a.busy < 0:
        raise UsageError("--repeats and --threads must be >= 1, --min-time > 0 and --busy >= 0")
    if a.tune:
        return _tune(a.threads)
    kernels.tune(a.threads)                # limits measured (once) before any process spins beside them
    with busy_cores(a.busy):
        if a.grid:
            return _grid(a)
        try:
            run_bench(a.configs, a.modes, a.repeats, a.threads, not a.no_stream, not a.no_cell, a.min_time,
                      a.markdown, a.json, models=a.models or ["lstm"])
        except ValueError as e:
            raise UsageError(str(e)) from None
    return 0


def _tune(threads: int) -> int:
    if not kernels.cpp_available():
        raise UsageError(f"--tune needs the C++ kernel, which is unavailable: {kernels._build_error}")
    entry = kernels.tune(threads, again=True)
    print(f"Path limits at {threads} thread{'s' if threads > 1 else ''}, measured in {entry['seconds']} s "
          f"(cached in {kernels.tuning_file()}; each ratio: time of the path the limit admits / the other's, "
          f"a path keeps its built-in side unless {kernels.tuning.TOLERANCE:.0%} faster or slower):")
    defaults = kernels.default_limits()
    for name, value in sorted(entry["limits"].items()):
        ratios = entry["ratios"].get(name)
        measured = ", ".join(f"{k}: {v}" for k, v in ratios.items()) if ratios else "not measured here"
        print(f"  {name:20s} {value:>20d}  (built-in {defaults[name]}; {measured})")
    return 0


def _grid(a: argparse.Namespace) -> int:
    known = bench_grid.SEQUENCE_MODELS + bench_grid.CELL_MODELS
    models = a.models or list(known)
    bad = [m for m in [*models] if m not in known] + [m for m in a.modes if m not in MODES]
    if bad:
        raise UsageError(f"--models must be among {', '.join(known)} and --modes among {', '.join(MODES)}; "
                         f"got {', '.join(bad)}")
    cases = [c for c in bench_grid.grid_cases() if c.model in models]
    results = bench_grid.run_grid(cases, a.modes, a.repeats, a.threads, a.min_time, not a.no_onnxruntime,
                                  a.markdown, a.json)
    return 0 if results else 1


def main(argv: Sequence[str] | None = None) -> int:
    """The script form (benchmarks/): its own parser, the same options and run."""
    p = argparse.ArgumentParser(prog="lstmkit bench", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    try:
        return run(p.parse_args(argv))
    except UsageError as e:
        p.error(str(e))


if __name__ == "__main__":
    raise SystemExit(main())
