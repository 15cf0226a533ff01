"""``lstmkit ablate``: which piece of the LSTM matters? Each variant trained on the same tasks with
the same budget and seeds, as Greff et al. did in "LSTM: A Search Space Odyssey" (2017).

What it trains: the standard LSTM and its variants (``lstmkit.variants``: no input, forget or output
gate, no input or output activation, coupled input and forget gate, peepholes, full gate
recurrence; layer norm and the regularisers on request), and the plain RNN as the floor, on three
tasks that need memory: the article's sentence task at a distance where the standard LSTM
remembers and the RNN forgets (``lstmkit demo`` shows where), the adding problem and the embedded
Reber grammar. Every (model, task, seed) is an ordinary run folder (``seed0/cifg-adding/``), which
``lstmkit evaluate`` / ``explain`` accept; the run folder gets ``results.json`` (every run's test
score), ``table.md`` (mean and lowest–highest over seeds) and ``ablate.png``.

Settings, and why:
- One budget per task for every model: the same steps, size, learning rate, batch and seeds. A run
  stops early only once its validation score reaches the target (99%), which saves time and cannot
  favour a model.
- Every model with a forget gate starts it open (``forget_bias``, as the demo's LSTM); CIFG, whose
  forget gate is 1 − i, starts with its input gate as closed instead; NFG has no gate to open.
- The scores are each task's own: accuracy (sentence, chance 20%) and the fraction of test
  sequences solved (adding: the sum within 0.04; Reber: every predicted next symbol legal, the
  second-to-last one included, which repeats the second symbol of the string).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from lstmkit.demo import effective_backend, ints
from lstmkit.errors import UsageError
from lstmkit.jobs import run_jobs
from lstmkit.kernels import backend, get_backend
from lstmkit.modules.variant_lstm import NOTICE
from lstmkit.runs import atomic_write, write_json
from lstmkit.tasks import task_class
from lstmkit.train import resolve, train
from lstmkit.variants import NAMED

GREFF = ("peephole", "nig", "nfg", "nog", "niaf", "noaf", "cifg", "fgr")  # their eight, less NP (our standard)
MODELS = ("lstm", *GREFF, "layernorm", "vardrop", "zoneout", "rnn")  # "lstm": the standard; "rnn": the floor
DEFAULT_MODELS = ("lstm", *GREFF, "rnn")

# task -> (task options, training settings): the budget every model gets on that task
BUDGETS: dict[str, tuple[dict, dict]] = {
    "sentence": ({"distance": 50, "size": 3000}, {"steps": 1000, "hidden_size": 64, "lr": 3e-3, "eval_every": 25}),
    "adding": ({"length": 50, "size": 5000}, {"steps": 2000, "hidden_size": 64, "lr": 3e-3, "eval_every": 50}),
    "reber": ({"size": 2000}, {"steps": 1500, "hidden_size": 32, "lr": 1e-2, "eval_every": 50}),
}
QUICK_BUDGETS: dict[str, tuple[dict, dict]] = {
    "sentence": ({"distance": 10, "size": 400}, {"steps": 60, "hidden_size": 16, "lr": 1e-2, "eval_every": 20}),
    "adding": ({"length": 10, "size": 300}, {"steps": 60, "hidden_size": 16, "lr": 1e-2, "eval_every": 20}),
    "reber": ({"size": 200}, {"steps": 60, "hidden_size": 16, "lr": 1e-2, "eval_every": 20}),
}


def _opt(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class AblateSettings:
    """What ``lstmkit ablate`` trains; its options are generated from these fields."""

    models: tuple[str, ...] = _opt(DEFAULT_MODELS, "from " + ", ".join(MODELS) + " (lstm: the standard cell)")
    tasks: tuple[str, ...] = _opt(tuple(BUDGETS), "tasks, each with its own budget")
    seeds: tuple[int, ...] = _opt((0, 1, 2), "seeds, each a full set of runs")
    forget_bias: float = _opt(5.0, "added to the forget-gate bias at init (CIFG: taken from the input gate's)")
    patience: int = _opt(12, "stop after this many evaluations without a better val loss (0: never)")
    jobs: int = _opt(0, "training processes in parallel (0: one per CPU core)")
    quick: bool = _opt(False, "tiny tasks, 60 steps, one seed: seconds")

    def check(self) -> None:
        """Raise ``UsageError`` naming the first setting out of range."""
        if bad := [m for m in self.models if m not in MODELS]:
            raise UsageError(f"--models must be from {', '.join(MODELS)}; got {bad}")
        if bad := [t for t in self.tasks if t not in BUDGETS]:
            raise UsageError(f"--tasks must be from {', '.join(BUDGETS)}; got {bad}")
        if any(s < 0 for s in self.seeds):
            raise UsageError(f"--seeds must be >= 0, got {list(self.seeds)}")
        if self.jobs < 0 or self.patience < 0:
            raise UsageError(f"--jobs and --patience must be >= 0, got {self.jobs} and {self.patience}")

    def budget(self, task: str) -> tuple[dict, dict]:
        return (QUICK_BUDGETS if self.quick else BUDGETS)[task]


def title(model: str) -> str:
    """The row name of a model in the table and the plot."""
    return {"lstm": "LSTM (standard)", "rnn": "RNN"}.get(model) or NAMED[model].title


def model_options(model: str, forget_bias: float) -> dict:
    """The training options that choose ``model``: cell, variant and the forget-gate start."""
    if model == "rnn":
        return {"model": "rnn", "forget_bias": 0.0}
    if model == "lstm":
        return {"model": "lstm", "forget_bias": forget_bias}
    return {"model": "lstm", "variant": model, "forget_bias": forget_bias if NAMED[model].spec.forget_gate else 0.0}


def run_config(s: AblateSettings, model: str, task: str, seed: int) -> dict:
    """The training config of one run."""
    options, budget = s.budget(task)
    return resolve(task, options, {**budget, **model_options(model, s.forget_bias), "patience": s.patience,
                                   "target": 0.99, "checkpoint_every": budget["steps"], "threads": 1}, seed=seed)


def train_run(job: dict) -> dict:
    """Train one (model, task, seed) into its run folder; its row for results.json (runs in a worker)."""
    with backend(job["backend"]), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=re.escape(NOTICE))  # said once, by the parent
        r = train(job["config"], Path(job["out"]), progress=job["progress"], desc=job["desc"])
    metric = task_class(job["task"]).metric
    return {"model": job["model"], "task": job["task"], "seed": job["seed"], "metric": metric,
            "score": r["test"][metric], "steps": r["steps"], "stopped": r["stopped"], "run": job["run"]}


def run_ablation(s: AblateSettings, out: str | Path | None = None, quiet: bool = False) -> Path:
    """Train every (model, task, seed) of ``s`` into ``out`` (default runs/ablate-TIME), write
    results.json, table.md and ablate.png there, print the table; returns ``out``."""
    s.check()
    out = Path(out or f"runs/ablate-{time.strftime('%Y%m%d-%H%M%S')}")
    if (out / "results.json").exists():
        raise UsageError(f"{out} already holds an ablation: give another --out")
    out.mkdir(parents=True, exist_ok=True)
    jobs = [{"model": m, "task": t, "seed": seed, "run": f"seed{seed}/{m}-{t}", "desc": f"{m} {t} s={seed}",
             "out": str(out / f"seed{seed}" / f"{m}-{t}"), "backend": get_backend(),
             "config": run_config(s, m, t, seed)}
            for t in s.tasks for m in s.models for seed in s.seeds]
    jobs.sort(key=lambda j: -j["config"]["train"]["steps"])          # the longest budgets first
    processes = min(s.jobs or os.cpu_count() or 1, len(jobs))
    name = effective_backend()  # builds the kernel here, once, before the workers start
    if any(m in NAMED for m in s.models):
        print(f"lstmkit: note: {NOTICE.removeprefix('lstmkit: ').split(' (this notice')[0]}", file=sys.stderr)
    load, t0 = os.getloadavg()[0], time.perf_counter()
    rows = run_jobs(train_run, jobs, processes, quiet, "ablation runs")
    rows.sort(key=lambda r: (s.models.index(r["model"]), s.tasks.index(r["task"]), r["seed"]))
    seconds = time.perf_counter() - t0
    write_json(out / "results.json", {
        "settings": asdict(s), "budgets": {t: s.budget(t) for t in s.tasks}, "backend": name,
        "processes": processes, "cpus": os.cpu_count(), "load_average": round(load, 2),
        "seconds": round(seconds, 1), "date": time.strftime("%Y-%m-%d"), "runs": rows})
    print(report(out))
    print(f"{seconds:.0f} s in {processes} processes.  run folder: {out}")
    return out


def load_scores(out: Path) -> tuple[dict, dict[str, dict[str, list[float]]]]:
    """results.json of ``out`` and its scores gathered as scores[model][task] = [one per seed]."""
    results = json.loads((Path(out) / "results.json").read_text(encoding="utf-8"))
    scores: dict[str, dict[str, list[float]]] = {}
    for r in results["runs"]:
        scores.setdefault(r["model"], {}).setdefault(r["task"], []).append(r["score"])
    return results, scores


def report(out: Path) -> str:
    """Write ``table.md`` and ``ablate.png`` in ``out`` from its results.json; return the table."""
    results, scores = load_scores(out)
    tasks = results["settings"]["tasks"]
    text = format_table(scores, tasks, results["budgets"])
    (Path(out) / "table.md").write_text(text + "\n", encoding="utf-8")
    plot(scores, tasks, Path(out) / "ablate.png")
    return text


def cell(values: list[float]) -> str:
    """Mean over seeds in %, and with several seeds the lowest and highest."""
    mean = f"{statistics.fmean(values):.0%}"
    return mean if len(values) == 1 else f"{mean} ({100 * min(values):.0f}–{100 * max(values):.0f})"


def format_table(scores: dict[str, dict[str, list[float]]], tasks: list[str], budgets: dict) -> str:
    """One row per model, one column per task (its test score in %), and the mean over tasks."""
    def head(t: str) -> str:
        options = budgets[t][0]
        detail = {"sentence": f"N={options.get('distance')}", "adding": f"T={options.get('length')}"}.get(t)
        return f"{t} ({detail})" if detail else t

    lines = ["| model | " + " | ".join(map(head, tasks)) + " | mean |", "|---|" + "---:|" * (len(tasks) + 1)]
    for m, by_task in scores.items():
        means = [statistics.fmean(by_task[t]) for t in tasks]
        lines.append(f"| {title(m)} | " + " | ".join(cell(by_task[t]) for t in tasks)
                     + f" | {statistics.fmean(means):.0%} |")
    return "\n".join(lines)


def plot(scores: dict[str, dict[str, list[float]]], tasks: list[str], path: Path) -> None:
    """One panel per task: a row per model, a dot per seed and a bar at the mean."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(scores)
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks) + 1.4, 0.32 * len(models) + 1.4),
                             sharey=True, squeeze=False)
    for ax, t in zip(axes[0], tasks, strict=True):
        for k, m in enumerate(models):
            v = [100 * a for a in scores[m][t]]
            color = "tab:blue" if m == "lstm" else "tab:red" if m == "rnn" else "tab:gray"
            ax.barh(k, statistics.fmean(v), color=color, alpha=0.35)
            ax.scatter(v, [k] * len(v), s=12, color=color)
        ax.set_xlim(0, 102)
        ax.set_title(t, fontsize=10)
        ax.set_xlabel("test score (%)")
    axes[0][0].set_yticks(range(len(models)), [title(m) for m in models])
    axes[0][0].invert_yaxis()
    seeds = len(scores[models[0]][tasks[0]])
    fig.suptitle(f"Which piece of the LSTM matters?  bar: mean of {seeds} seed(s) · dots: each seed", fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``lstmkit ablate``'s options: one per ``AblateSettings`` field, then where it writes."""
    for f in fields(AblateSettings):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            p.add_argument(flag, action="store_true", help=f.metadata["help"])
            continue
        kind = {"int": int, "float": float}.get(f.type, str)  # lists are comma-separated text
        shown = ",".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
        p.add_argument(flag, type=kind, help=f"{f.metadata['help']} (default {shown})")
    p.add_argument("--out", help="run folder (default runs/ablate-TIME)")
    p.add_argument("--report", metavar="RUN", help="train nothing: rewrite RUN's table.md and ablate.png")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def settings(args: argparse.Namespace) -> AblateSettings:
    """The parsed options as ``AblateSettings`` (comma-separated lists split)."""
    given = {f.name: getattr(args, f.name) for f in fields(AblateSettings) if getattr(args, f.name) is not None}
    for name in ("models", "tasks"):
        if name in given:
            given[name] = tuple(given[name].split(","))
    if "seeds" in given:
        given["seeds"] = ints("seeds", given["seeds"])
    if given.get("quick") and "seeds" not in given:
        given["seeds"] = (0,)
    return AblateSettings(**given)


def run(args: argparse.Namespace) -> int:
    """``lstmkit ablate``: train and report, or (``--report``) report only."""
    if args.report:
        if not (Path(args.report) / "results.json").is_file():
            raise UsageError(f"--report {args.report} has no results.json: give the folder of a finished ablation")
        print(report(Path(args.report)))
        return 0
    run_ablation(settings(args), args.out, args.quiet)
    return 0


HELP = "which gate matters? the LSTM's variants trained side by side (Greff et al. 2017)"
