"""The benchmark grid: lstmkit against torch.nn over the sizes users pick, not only bench's five configs.

What it is: ``lstmkit bench --grid`` (and ``benchmarks/bench_grid.py``). Each case builds an lstmkit
module and its torch.nn twin with the same weights, checks that they compute the same outputs, then
times both side by side in one process (interleaved medians, ``timing.median_ms``) for inference
(forward under no_grad) and training (forward and backward of the outputs' sum). The summary gives,
per model and mode, the geometric mean and the worst of the ratios lstmkit time / torch.nn time.
Where onnxruntime is installed, float32 LSTM inference is also timed against onnxruntime's own LSTM
operator on the model exported from nn.LSTM.
What it is not: a test of speed in CI (far too long); the targets below are checked by reading it.

The grid (T time, B batch, I input, H hidden): every model at hidden sizes 50-1000 (powers of two
and not) times batches 1-256 at T = 50; then one axis at a time for the LSTM: T from 1 to 2000,
input sizes unlike H, 2 and 3 layers, bidirectional, proj_size, float64; and the three cells
called step by step (T steps of a Python loop), with and without grad. Where a case would take more
than ~16 G multiply-adds a call, its T is cut (the case's label says the T it ran).
Targets (issue 10, 2 threads): worst ratio <= 1.0 everywhere; geometric mean <= 0.75 for training
and <= 0.85 for inference.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from lstmkit.registry import NAMES, recurrent
from lstmkit.timing import describe, describe_limits, machine, median_ms

SEQUENCE_MODELS = NAMES                                     # lstmkit.registry's models
CELL_MODELS = tuple(name + "cell" for name in NAMES)       # their cells, called step by step
MAX_MACS = 1.6e10                    # multiply-adds per call above which a case's T is cut
TARGET_WORST, TARGET_GEOMEAN = 1.0, {"train": 0.75, "infer": 0.85}


@dataclass(frozen=True)
class Case:
    model: str                        # among SEQUENCE_MODELS and CELL_MODELS
    T: int
    B: int
    I: int
    H: int
    layers: int = 1
    bidirectional: bool = False
    proj: int = 0
    dtype: str = "float32"

    @property
    def label(self) -> str:
        extra = [f"L{self.layers}"] if self.layers > 1 else []
        extra += ["bidir"] if self.bidirectional else []
        extra += [f"P{self.proj}"] if self.proj else []
        extra += ["f64"] if self.dtype == "float64" else []
        return f"{self.model} T{self.T} B{self.B} I{self.I} H{self.H}" + "".join(" " + e for e in extra)

    def macs(self) -> float:
        """Multiply-adds of one forward call (the recurrent and input products)."""
        gates = recurrent(self.model.removesuffix("cell")).gates
        D = 2 if self.bidirectional else 1
        first = self.I + (self.proj or self.H)
        rest = D * (self.proj or self.H) + (self.proj or self.H)
        return self.T * self.B * gates * self.H * D * (first + rest * (self.layers - 1))


def _capped(case: Case) -> Case:
    """The case with T cut so that one forward call stays under MAX_MACS (never below 10 steps)."""
    if case.macs() <= MAX_MACS:
        return case
    return replace(case, T=max(10, int(case.T * MAX_MACS / case.macs())))


def grid_cases() -> list[Case]:
    """Every case of the grid, in the order it runs."""
    cases = []
    hidden, batches = (50, 100, 200, 300, 512, 650, 1000), (1, 8, 20, 64, 256)
    for H in hidden:                                      # the LSTM over sizes users pick
        for B in batches:
            cases.append(Case("lstm", 50, B, H, H))
    for model in (n for n in NAMES if n != "lstm"):      # the other models, on a coarser grid
        for H in (100, 300, 650):
            for B in (1, 20, 256):
                cases.append(Case(model, 50, B, H, H))
    cases += [Case("lstm", T, 8, 128, 128) for T in (1, 8, 2000)]                  # time
    cases += [Case(model, 1, 8, 128, 128) for model in NAMES if model != "lstm"]   # one step: streaming,
    cases += [Case(model, 1, 1, 200, 200, layers=2) for model in NAMES]            # generating word by word
    cases += [Case("lstm", 50, 20, 32, 256), Case("lstm", 50, 20, 1000, 100),      # input unlike H
              Case("lstm", 50, 20, 300, 650)]
    cases += [Case("lstm", 35, 20, 200, 200, layers=2), Case("lstm", 35, 20, 650, 650, layers=2),
              Case("lstm", 50, 8, 100, 100, layers=3)]                             # layers (word LM)
    cases += [Case("lstm", 50, 20, 100, 100, bidirectional=True),
              Case("lstm", 50, 64, 256, 256, layers=2, bidirectional=True)]
    cases += [Case("lstm", 50, 20, 512, 512, proj=128), Case("lstm", 50, 1, 256, 1024, proj=256)]
    cases += [Case("lstm", 50, 20, 100, 100, dtype="float64"), Case("lstm", 50, 8, 256, 256, dtype="float64"),
              Case("gru", 50, 20, 100, 100, dtype="float64"), Case("rnn", 50, 20, 100, 100, dtype="float64")]
    for model in CELL_MODELS:                             # step by step from Python
        cases += [Case(model, 20, 1, 128, 128), Case(model, 20, 20, 200, 200), Case(model, 20, 64, 650, 650)]
    cases.append(Case("lstmcell", 20, 20, 100, 100, dtype="float64"))
    return [_capped(c) for c in cases]


@dataclass
class GridResult:
    case: Case
    mode: str                         # infer or train
    ms: dict[str, float]              # contender -> median ms per call
    max_abs_diff: float               # |lstmkit - torch.nn| over the outputs

    @property
    def ratio(self) -> float:
        return self.ms["lstmkit"] / self.ms["torch"]

    @property
    def ratio_ort(self) -> float | None:
        return self.ms["lstmkit"] / self.ms["onnxruntime"] if "onnxruntime" in self.ms else None


def _pair(case: Case) -> tuple[nn.Module, nn.Module]:
    """(lstmkit module, torch.nn twin) with the same weights, in the case's dtype."""
    entry = recurrent(case.model.removesuffix("cell"))
    cell = case.model not in SEQUENCE_MODELS
    ours, theirs = (entry.cell, entry.torch_cell) if cell else (entry.module, entry.torch_module)
    kwargs = {}
    if case.model in SEQUENCE_MODELS:
        kwargs = {"num_layers": case.layers, "bidirectional": case.bidirectional}
        if case.proj:
            kwargs["proj_size"] = case.proj
    torch.manual_seed(0)
    dtype = getattr(torch, case.dtype)
    ref = theirs(case.I, case.H, **kwargs).to(dtype)
    mine = ours(case.I, case.H, **kwargs).to(dtype)
    mine.load_state_dict(ref.state_dict())
    return mine, ref


def _run(case: Case, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The outputs of a whole sequence: one call, or T calls of a cell from Python."""
    if case.model in SEQUENCE_MODELS:
        return module(x)[0]
    state, ys = None, []
    for x_t in x:                                                                  # (B, I)
        state = module(x_t, state)
        ys.append(state[0] if isinstance(state, tuple) else state)
    return torch.stack(ys)


def _onnxruntime_call(case: Case, ref: nn.Module, x: torch.Tensor, threads: int) -> Callable[[], object] | None:
    """A call of onnxruntime's LSTM on ref exported to ONNX (None where onnxruntime is missing)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    f = io.BytesIO()
    with warnings.catch_warnings():                  # the exporter's note on batch sizes: x's is fixed here
        warnings.simplefilter("ignore")
        torch.onnx.export(ref, (x,), f, dynamo=False, input_names=["x"])
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    # onnxruntime's threads spin after each call by default, taking the cores from the next contender
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(f.getvalue(), options, providers=["CPUExecutionProvider"])
    feed = {"x": x.numpy()}
    return lambda: session.run(None, feed)


def bench_case(case: Case, mode: str, repeats: int, min_s: float, onnxruntime: bool = True) -> GridResult:
    """Check that lstmkit and torch.nn agree on the case, then time both in the mode."""
    mine, ref = _pair(case)
    x = torch.randn(case.T, case.B, case.I, dtype=getattr(torch, case.dtype))
    with torch.no_grad():
        diff = (_run(case, mine, x) - _run(case, ref, x)).abs().max().item()
    tol = 1e-9 if case.dtype == "float64" else 1e-4
    if not diff <= tol:
        raise AssertionError(f"{case.label}: lstmkit and torch.nn differ by {diff:.3g} (more than {tol:g})")
    params = [*mine.parameters(), *ref.parameters()]

    def timed(module: nn.Module) -> Callable[[], None]:
        if mode == "infer":
            def infer():
                with torch.no_grad():
                    _run(case, module, x)
            return infer

        def train():
            for p in params:
                p.grad = None
            _run(case, module, x).sum().backward()
        return train

    fns = {"lstmkit": timed(mine), "torch": timed(ref)}
    # (ONNX's LSTM operator has no projection: proj_size cases have no onnxruntime twin)
    if onnxruntime and mode == "infer" and case.model == "lstm" and case.dtype == "float32" and not case.proj:
        ort_call = _onnxruntime_call(case, ref, x, torch.get_num_threads())
        if ort_call is not None:
            fns["onnxruntime"] = ort_call
    return GridResult(case, mode, median_ms(fns, repeats, min_s), diff)


def summary(results: Sequence[GridResult]) -> dict[tuple[str, str], dict]:
    """Per (model, mode): how many cases, the geometric mean and the worst ratio (and its case)."""
    out = {}
    for key in sorted({(r.case.model, r.mode) for r in results}):
        rs = [r for r in results if (r.case.model, r.mode) == key]
        worst = max(rs, key=lambda r: r.ratio)
        out[key] = {"cases": len(rs), "geomean": math.exp(sum(math.log(r.ratio) for r in rs) / len(rs)),
                    "worst": worst.ratio, "worst_case": worst.case.label}
    return out


def meets_targets(results: Sequence[GridResult]) -> list[str]:
    """The targets the results miss, in words (empty: all met)."""
    missed = []
    for (model, mode), s in summary(results).items():
        if s["worst"] > TARGET_WORST:
            missed.append(f"{model} {mode}: worst {s['worst']:.2f} > {TARGET_WORST} ({s['worst_case']})")
        if s["geomean"] > TARGET_GEOMEAN[mode]:
            missed.append(f"{model} {mode}: geometric mean {s['geomean']:.2f} > {TARGET_GEOMEAN[mode]}")
    return missed


def to_markdown(results: Sequence[GridResult], info: dict) -> str:
    lines = [f"Machine: {describe(info)}, lstmkit backend {info['backend']}.", "",
             *([limits, ""] if (limits := describe_limits(info)) else []),
             "| model | mode | cases | geometric mean | worst | worst case |", "|---|---|---|---|---|---|"]
    for (model, mode), s in summary(results).items():
        lines.append(f"| {model} | {mode} | {s['cases']} | **{s['geomean']:.2f}** | {s['worst']:.2f} | "
                     f"{s['worst_case']} |")
    ort = [r.ratio_ort for r in results if r.ratio_ort is not None]
    if ort:
        geo = math.exp(sum(map(math.log, ort)) / len(ort))
        lines += ["", f"LSTM float32 inference against onnxruntime's LSTM: geometric mean {geo:.2f}, "
                  f"worst {max(ort):.2f} over {len(ort)} cases."]
    lines += ["", "| case | mode | lstmkit ms | torch.nn ms | lstmkit / torch.nn | lstmkit / onnxruntime |",
              "|---|---|---|---|---|---|"]
    for r in results:
        ro = f"{r.ratio_ort:.2f}" if r.ratio_ort is not None else "-"
        lines.append(f"| {r.case.label} | {r.mode} | {r.ms['lstmkit']:.3f} | {r.ms['torch']:.3f} | "
                     f"**{r.ratio:.2f}** | {ro} |")
    return "\n".join(lines)


def run_grid(cases: Iterable[Case] | None = None, modes: Sequence[str] = ("infer", "train"), repeats: int = 5,
             threads: int | None = 2, min_s: float = 0.02, onnxruntime: bool = True,
             out_markdown: str | None = None, out_json: str | None = None,
             verbose: bool = True) -> list[GridResult]:
    """Time every case of the grid (default: grid_cases()) in every mode; print and save the summary."""
    from tqdm import tqdm

    if threads is not None:
        torch.set_num_threads(threads)
    cases = list(grid_cases() if cases is None else cases)
    if cases:       # warm-up, discarded: a fresh process timed its first case up to 3x slow (LSTM T=50 B=1
        # H=50: 0.36 ms against 0.12 in every rerun, torch.nn's 0.20 alike both times)
        bench_case(cases[0], modes[0], 1, min_s, onnxruntime=False)
    results = []
    with tqdm(total=len(cases) * len(modes), disable=not verbose, unit="case") as bar:
        for case in cases:
            for mode in modes:
                r = bench_case(case, mode, repeats, min_s, onnxruntime)
                results.append(r)
                bar.update()
                if verbose:
                    ort = f"  vs onnxruntime {r.ratio_ort:.2f}" if r.ratio_ort is not None else ""
                    bar.write(f"{case.label:38s} {mode:5s} lstmkit/torch.nn {r.ratio:.2f}{ort}")
    info = machine()
    table = to_markdown(results, info)
    missed = meets_targets(results)
    if verbose:
        print(table)
        print("targets met" if not missed else "targets missed:\n  " + "\n  ".join(missed))
    if out_markdown:
        with open(out_markdown, "w") as f:
            f.write(table + "\n")
    if out_json:
        with open(out_json, "w") as f:
            json.dump({"machine": info, "summary": {f"{m} {mode}": s for (m, mode), s in summary(results).items()},
                       "results": [{**asdict(r), "ratio": r.ratio} for r in results]}, f, indent=1)
    return results
