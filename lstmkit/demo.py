"""``lstmkit demo``: the article's claim, measured over seeds — an RNN forgets the opening clause, an LSTM keeps it.

Trains an RNN, a GRU and an LSTM on the sentence task (``lstmkit.tasks.sentence``) at several
distances between the deciding clause and the cue, each with several seeds (a seed draws the
training data, the initial weights and the batch order), and reports held-out test accuracy as
mean and spread over the seeds. The run folder gets ``results.json`` (every seed's row),
``table.md`` and ``accuracy.png`` (mean line, min–max band, one dot per seed), both written from
``results.json`` by ``report`` (``lstmkit demo --report RUN`` rewrites them), beside one ordinary
training run folder per seed, model and distance (``seed0/lstm-d100/`` ...), which ``lstmkit
evaluate`` / ``predict`` / ``explain`` accept.

From Python: ``run_demo(DemoSettings(...), out)`` (``DemoSettings.make(quick=True, ...)`` for the
quick variant). ``lstmkit demo``'s options are generated from ``DemoSettings`` (``add_arguments``,
``run``); the help and defaults it shares with training come from ``lstmkit.train.TrainConfig``.

Settings, and why:
- Every model gets the same steps, learning rate and size, and each its own best-known
  initialisation of the gate that keeps its state (``init``; each row of the table says which).
  The LSTM and the GRU both start with chrono initialisation, T_max = 100, the longest distance
  (``lstmkit.modules.init``): the keep gate's bias (LSTM f, GRU z) is drawn from log(U[1, 99]),
  so the units' time constants spread over 2..100 steps and the gradient from the answer reaches
  the first words. Measured against the alternatives (3 seeds at N = 5, 20, 50, 100, and N=200
  with T_max = 200): the LSTM's former forget bias 5 (σ(5) ≈ 0.993) also remembers up to N=100,
  but needed more steps (one seed 95% at N=100) and fails at N=200 (18%, 64%, 19%) where chrono
  remembers in every seed; the GRU with update bias 3 or 5 also remembers up to N=100, update
  bias 2 fails at N=100 in 2 of 3 seeds, and PyTorch's default at N=50. The plain RNN has no
  gate to open and keeps PyTorch's default.
- Three seeds: one seed is no evidence — a change in the last bit of a float once flipped the
  LSTM at N=200 from 99% to chance. The verdict under the table counts seeds, not averages.
- Distances 5, 20, 50, 100: 5 shows every cell can learn the task; 20 is where the plain RNN is
  on a knife edge (it learns late: 89-100% over the seeds); from 50 the RNN and GRU stay at chance
  and the LSTM does not. N=200 is left out: with this budget the LSTM does not learn it either
  (18%, 64%, 19% for seeds 0-2, ``benchmarks/demo_claim.py --models lstm --distances 200``), and
  its runs would cost about as much as the rest of the demo.
- Runs go to ``--jobs`` processes in parallel (one per core, one thread each, the longest first):
  on a shared 2-core machine the default demo took 128 s (load average 2.4) to 235 s (6.5). A run
  stops once its validation accuracy reaches 99%, or after ``patience`` evaluations without a
  better validation loss. That rule only saves time: with ``--patience 0`` (every run gets all 1000
  steps) all 36 test accuracies came out the same, in 244 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from lstmkit.errors import UsageError
from lstmkit.jobs import run_jobs
from lstmkit.kernels import backend, cpp_available, get_backend
from lstmkit.registry import RECURRENT
from lstmkit.runs import atomic_write, write_json
from lstmkit.train import TrainConfig, resolve, train

MODELS = tuple(reversed(RECURRENT))  # the demo's order: the plain RNN first, the LSTM last
SOLVED = 0.9  # test accuracy that counts as "remembers the clause"
NEAR_CHANCE = 0.3  # and below this, "forgot it" (chance is 1/5)
CHANCE = 0.2


def _opt(default, help: str):
    return field(default=default, metadata={"help": help})


def _train_opt(name: str, default=None):
    """A setting that is also a training option: its help (and, unless the demo differs, its default)
    come from ``TrainConfig``."""
    f = TrainConfig.__dataclass_fields__[name]
    return _opt(f.default if default is None else default, f.metadata["help"])


@dataclass(frozen=True)
class DemoSettings:
    """What the demo trains; ``lstmkit demo``'s options are generated from these fields."""

    distances: tuple[int, ...] = _opt((5, 20, 50, 100), "filler words between clause and cue")
    models: tuple[str, ...] = _opt(MODELS, "cells to compare")
    seeds: tuple[int, ...] = _opt((0, 1, 2), "seeds, each a full set of runs")
    steps: int = _train_opt("steps")
    size: int = _opt(3000, "training sentences per distance")
    hidden_size: int = _train_opt("hidden_size")
    lr: float = _train_opt("lr")
    init: tuple[str, ...] = _opt(("lstm:chrono=100", "gru:chrono=100"),
                                 "each model's keep-gate initialisation, MODEL:forget_bias=X (lstm), "
                                 "MODEL:update_bias=X (gru) or MODEL:chrono=T_MAX (lstm, gru); a model not "
                                 "named keeps PyTorch's default")
    patience: int = _train_opt("patience", 12)  # evaluations are every 25 steps here
    jobs: int = _opt(0, "training processes in parallel (0: one per CPU core)")

    @classmethod
    def make(cls, quick: bool = False, **given) -> DemoSettings:
        """Defaults < QUICK (with ``quick``) < ``given`` (None: not given), checked."""
        s = cls(**{**(QUICK if quick else {}), **{k: v for k, v in given.items() if v is not None}})
        s.check()
        return s

    def check(self) -> None:
        """Raise ``UsageError`` naming the first setting out of range (the training options are
        checked by ``TrainConfig`` when each run's config is resolved)."""
        for name in ("distances", "seeds"):
            if any(v < 0 for v in getattr(self, name)):
                raise UsageError(f"--{name} must be >= 0, got {list(getattr(self, name))}")
        if bad := [m for m in self.models if m not in MODELS]:
            raise UsageError(f"--models must be from {', '.join(MODELS)}; got {bad}")
        if self.jobs < 0:
            raise UsageError(f"--jobs must be >= 0, got {self.jobs}")
        parse_init(self.init)


def parse_init(items: tuple[str, ...]) -> dict[str, tuple[str, float | int]]:
    """``("lstm:forget_bias=5", "gru:chrono=100")`` as {model: (option, value)}; ``UsageError`` naming
    the first entry that is malformed, names an unknown model, or an option its model does not take."""
    chosen: dict[str, tuple[str, float | int]] = {}
    for item in items:
        model, _, option = item.partition(":")
        key, _, text = option.partition("=")
        r = RECURRENT.get(model)
        takes = (r.keep_bias, "chrono") if r and r.chrono else ((r.keep_bias,) if r and r.keep_bias else ())
        if r is None or key not in takes or model in chosen:
            raise UsageError(f"--init takes MODEL:OPTION=VALUE, one per model: lstm:forget_bias=X, "
                             f"gru:update_bias=X, lstm|gru:chrono=T_MAX; got {item!r}")
        try:
            chosen[model] = (key, int(text) if key == "chrono" else float(text))
        except ValueError:
            raise UsageError(f"--init {item}: {text!r} is not a number") from None
    return chosen


def describe_init(item: str | None) -> str:
    """'forget bias 5', 'chrono T_max=100', 'PyTorch default': one model's init for a table or legend."""
    if item is None:
        return "PyTorch default"
    key, _, value = item.partition(":")[2].partition("=")
    return f"chrono T_max={value}" if key == "chrono" else f"{key.replace('_', ' ')} {value}"


def init_of(s: DemoSettings, model: str) -> str | None:
    """``model``'s entry of ``s.init`` ("gru:update_bias=3"), or None: PyTorch's default."""
    return next((item for item in s.init if item.partition(":")[0] == model), None)


QUICK = {"distances": (5, 30), "seeds": (0,), "steps": 40, "size": 400, "hidden_size": 32, "patience": 12}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``lstmkit demo``'s options: one per ``DemoSettings`` field, then how and where the demo runs."""
    for f in fields(DemoSettings):
        kind = {"int": int, "float": float}.get(f.type, str)  # lists are comma-separated text
        shown = ",".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, help=f"{f.metadata['help']} (default {shown})")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per process (default 1: layers this small "
                   "gain little from more, and one thread stays fast on a busy machine; 0: torch's default)")
    p.add_argument("--out", help="run folder (default runs/demo-TIME)")
    p.add_argument("--report", metavar="RUN", help="train nothing: rewrite RUN's table.md and accuracy.png "
                   "from its results.json")
    p.add_argument("--quick", action="store_true", help="two short distances, one seed, few steps: under a minute")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """``lstmkit demo``: the parsed options to ``report`` or ``run_demo``."""
    if args.report:
        if not (Path(args.report) / "results.json").is_file():
            raise UsageError(f"--report {args.report} has no results.json: give the folder of a finished demo")
        print(report(Path(args.report)))
        return 0
    run_demo(settings(args), args.out, args.threads, args.quiet)
    return 0


def settings(args: argparse.Namespace) -> DemoSettings:
    """The parsed options as ``DemoSettings`` (comma-separated lists split, checked)."""
    given = {f.name: getattr(args, f.name, None) for f in fields(DemoSettings)}
    for name in ("distances", "seeds"):
        if given[name] is not None:
            given[name] = ints(name, given[name])
    for name in ("models", "init"):
        if given[name] is not None:
            given[name] = tuple(v for v in given[name].split(",") if v)
    return DemoSettings.make(args.quick, **given)


def ints(name: str, text: str) -> tuple[int, ...]:
    """--NAME's comma-separated integers; UsageError naming the option otherwise."""
    try:
        return tuple(int(v) for v in str(text).split(","))
    except ValueError:
        raise UsageError(f"--{name} must be comma-separated integers, got {text!r}") from None


def run_config(s: DemoSettings, model: str, distance: int, seed: int, threads: int) -> dict:
    """The training config of one run of the demo: ``model``'s own init from ``s.init``, every other
    initialisation option 0 (the sentence task's forget bias 5 reaches the LSTM only through ``s.init``)."""
    init = {"forget_bias": 0.0, "update_bias": 0.0, "chrono": 0}
    key, value = parse_init(s.init).get(model, (None, None))
    if key:
        init[key] = value
    return resolve("sentence", {"distance": distance, "size": s.size}, {
        "model": model, "steps": s.steps, "hidden_size": s.hidden_size, "lr": s.lr, **init, "eval_every": 25,
        "patience": s.patience, "target": 0.99, "checkpoint_every": s.steps, "threads": threads},
        seed=seed)


def train_run(job: dict) -> dict:
    """Train one (model, distance, seed) into its run folder; returns its row for results.json.

    Runs in a worker process too: the backend travels in ``job`` because ``kernels.backend(...)``
    set in the parent does not reach a spawned process."""
    with backend(job["backend"]):
        r = train(job["config"], Path(job["out"]), progress=job["progress"], desc=job["desc"])
    return {"model": job["model"], "distance": job["distance"], "seed": job["seed"],
            "init": job["init"], "test_accuracy": r["test"]["accuracy"], "steps": r["steps"],
            "stopped": r["stopped"], "run": job["run"]}


def run_all(jobs: list[dict], processes: int, quiet: bool) -> list[dict]:
    """Every job, in ``processes`` spawned workers (1: here, one after the other), sorted as the table reads."""
    rows = run_jobs(train_run, jobs, processes, quiet, "demo runs")
    return sorted(rows, key=lambda r: (MODELS.index(r["model"]), r["distance"], r["seed"]))


def effective_backend() -> str:
    """'cpp' or 'torch': what the CPU runs will use (LSTMKIT_BACKEND=auto resolved)."""
    return "torch" if get_backend() == "torch" or not cpp_available() else "cpp"


def run_demo(s: DemoSettings, out: str | Path | None = None, threads: int = 1, quiet: bool = False) -> Path:
    """Train every (model, distance, seed) of ``s`` into ``out`` (default runs/demo-TIME), write
    results.json, table.md and accuracy.png there, print the table; returns ``out``.
    ``threads``: CPU threads per run (0: torch's default); ``quiet``: no progress bars."""
    out = Path(out or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}")
    if (out / "results.json").exists():
        raise UsageError(f"{out} already holds a demo: give another --out")
    out.mkdir(parents=True, exist_ok=True)
    jobs = [{"model": m, "distance": d, "seed": seed, "run": f"seed{seed}/{m}-d{d}", "desc": f"{m} d={d} s={seed}",
             "out": str(out / f"seed{seed}" / f"{m}-d{d}"), "backend": get_backend(), "init": init_of(s, m),
             "config": run_config(s, m, d, seed, threads)}
            for d in sorted(s.distances, reverse=True) for m in s.models for seed in s.seeds]
    processes = min(s.jobs or os.cpu_count() or 1, len(jobs))
    name = effective_backend()  # builds the kernel here, once, before the workers start
    load, t0 = os.getloadavg()[0], time.perf_counter()
    rows = run_all(jobs, processes, quiet)
    seconds = time.perf_counter() - t0
    write_json(out / "results.json", {
        "settings": asdict(s), "backend": name, "threads": threads, "processes": processes,
        "cpus": os.cpu_count(), "load_average": round(load, 2), "seconds": round(seconds, 1),
        "date": time.strftime("%Y-%m-%d"), "runs": rows})
    print(report(out))
    print(f"{seconds:.0f} s in {processes} processes.  run folder: {out}")
    return out


def load_results(out: Path) -> dict:
    """``out/results.json`` with its rows gathered as accuracy[model][distance] = [one per seed], and
    labels[model] = "GRU (update bias 3)": the model and its initialisation (the title alone for a
    demo from before rows said their initialisation)."""
    results = json.loads((Path(out) / "results.json").read_text(encoding="utf-8"))
    accuracy: dict[str, dict[int, list[float]]] = {}
    labels: dict[str, str] = {}
    for r in results["runs"]:
        accuracy.setdefault(r["model"], {}).setdefault(r["distance"], []).append(r["test_accuracy"])
        labels[r["model"]] = r["model"].upper() + (f" ({describe_init(r['init'])})" if "init" in r else "")
    results["accuracy"], results["labels"] = accuracy, labels
    return results


def report(out: Path) -> str:
    """Write ``table.md`` and ``accuracy.png`` of the demo in ``out`` from its results.json; return the text."""
    results = load_results(out)
    accuracy, distances, labels = results["accuracy"], results["settings"]["distances"], results["labels"]
    text = format_table(accuracy, distances, labels) + "\n\n" + "\n".join(verdict(accuracy, distances))
    (Path(out) / "table.md").write_text(text + "\n", encoding="utf-8")
    plot(accuracy, distances, Path(out) / "accuracy.png", labels)
    return text


def cell(values: list[float]) -> str:
    """One table cell: the mean over seeds, and (with several seeds) the lowest and highest."""
    mean = f"{statistics.fmean(values):.0%}"
    if len(values) == 1:
        return mean
    return f"{mean} ({100 * min(values):.0f}–{100 * max(values):.0f})"


def format_table(accuracy: dict[str, dict[int, list[float]]], distances: list[int],
                 labels: dict[str, str] | None = None) -> str:
    """A Markdown table: one row per model (``labels[model]``, e.g. with its initialisation, or its
    name), one column per distance; test accuracy in %, mean (min–max)."""
    labels = labels or {}
    head = "| model | " + " | ".join(f"N={d}" for d in distances) + " |"
    rule = "|---|" + "---:|" * len(distances)
    rows = [f"| {labels.get(m, m.upper())} | " + " | ".join(cell(acc[d]) for d in distances) + " |"
            for m, acc in accuracy.items()]
    return "\n".join([head, rule, *rows])


def verdict(accuracy: dict[str, dict[int, list[float]]], distances: list[int]) -> list[str]:
    """One line per model: at which distances every seed remembered (>= SOLVED), forgot (< NEAR_CHANCE),
    or the seeds disagree — counted per seed, so one lucky seed cannot carry a mean."""
    lines = [f"Per seed: remembered = test accuracy >= {SOLVED:.0%}, forgot = below {NEAR_CHANCE:.0%} "
             f"(chance {CHANCE:.0%})."]
    for m, acc in accuracy.items():
        parts = []
        for d in distances:
            v = acc[d]
            solved, forgot = sum(a >= SOLVED for a in v), sum(a < NEAR_CHANCE for a in v)
            word = ("remembered" if solved == len(v) else "forgot" if forgot == len(v)
                    else f"mixed ({solved}/{len(v)} remembered, {forgot}/{len(v)} forgot)")
            parts.append(f"N={d}: {word}")
        lines.append(f"- {m.upper()} ({len(acc[distances[0]])} seeds): " + "; ".join(parts))
    return lines


def plot(accuracy: dict[str, dict[int, list[float]]], distances: list[int], path: Path,
         labels: dict[str, str] | None = None) -> None:
    """Mean test accuracy against distance, one line per model (legend: ``labels[model]`` or its name),
    the min–max band and a dot per seed."""
    labels = labels or {}
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for m, acc in accuracy.items():
        pct = [[100 * a for a in acc[d]] for d in distances]
        line, = ax.plot(distances, [statistics.fmean(p) for p in pct], marker="o", label=labels.get(m, m.upper()))
        ax.fill_between(distances, [min(p) for p in pct], [max(p) for p in pct], color=line.get_color(), alpha=0.15)
        for d, p in zip(distances, pct, strict=True):
            ax.scatter([d] * len(p), p, s=10, color=line.get_color(), alpha=0.6)
    ax.axhline(100 * CHANCE, color="grey", linestyle=":", label="chance (5 moods)")
    log = min(distances) > 0  # distances span 5..100: a log axis spaces them evenly
    if log:
        ax.set_xscale("log")
        ax.minorticks_off()
    ax.set_xticks(distances, [str(d) for d in distances])
    ax.set_xlabel("filler words between the opening clause and the cue" + (" (log scale)" if log else ""))
    seeds = len(next(iter(accuracy.values()))[distances[0]])
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title("Sentence task: who remembers the opening clause?\n"
                 f"line: mean of {seeds} seeds · band: lowest–highest · dots: each seed", fontsize=10)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
