"""``lstmkit demo``: the article's claim, measured over seeds — an RNN forgets the opening clause, an LSTM keeps it.

Trains an RNN, a GRU and an LSTM on the sentence task (``lstmkit.tasks.sentence``) at several
distances between the deciding clause and the cue, each with several seeds (a seed draws the
training data, the initial weights and the batch order), and reports held-out test accuracy as
mean and spread over the seeds. The run folder gets ``results.json`` (every seed's row),
``table.md`` and ``accuracy.png`` (mean line, min–max band, one dot per seed), both written from
``results.json`` by ``report`` (``lstmkit demo --report RUN`` rewrites them), beside one ordinary
training run folder per seed, model and distance (``seed0/lstm-d100/`` ...), which ``lstmkit
evaluate`` / ``predict`` / ``explain`` accept.

Settings, and why:
- Every model gets the same steps, learning rate and size. The LSTM's forget-gate bias starts at 5
  (``forget_bias``): σ(5) ≈ 0.993, so at initialisation the cell keeps ~50% of what it held 100
  steps ago (σ(1)^100 ≈ 1e-14), and the gradient from the answer reaches the first words.
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
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

DEFAULTS = {  # the demo's settings; --quick replaces some of them
    "distances": "5,20,50,100",
    "models": "rnn,gru,lstm",
    "seeds": "0,1,2",
    "steps": 1000, "size": 3000, "hidden_size": 64, "lr": 3e-3, "forget_bias": 5.0,
    "patience": 12,  # evaluations (every 25 steps) without a better val loss before a run gives up
    "jobs": 0,  # 0: one process per CPU core
}
QUICK = {"distances": "5,30", "seeds": "0", "steps": 40, "size": 400, "hidden_size": 32, "patience": 12}
MODELS = ("rnn", "gru", "lstm")
SOLVED = 0.9  # test accuracy that counts as "remembers the clause"
NEAR_CHANCE = 0.3  # and below this, "forgot it" (chance is 1/5)
CHANCE = 0.2


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--distances", help=f"filler words between clause and cue (default {DEFAULTS['distances']})")
    p.add_argument("--models", help=f"cells to compare (default {DEFAULTS['models']})")
    p.add_argument("--seeds", help=f"seeds, each a full set of runs (default {DEFAULTS['seeds']})")
    p.add_argument("--steps", type=int, help=f"max optimizer steps per run (default {DEFAULTS['steps']})")
    p.add_argument("--size", type=int, help=f"training sentences per distance (default {DEFAULTS['size']})")
    p.add_argument("--hidden-size", type=int, help=f"hidden units (default {DEFAULTS['hidden_size']})")
    p.add_argument("--lr", type=float, help=f"Adam learning rate (default {DEFAULTS['lr']})")
    p.add_argument("--forget-bias", type=float, help=f"LSTM forget-gate bias at init (default "
                   f"{DEFAULTS['forget_bias']})")
    p.add_argument("--patience", type=int, help=f"evaluations without a better val loss before a run stops "
                   f"(0: never; default {DEFAULTS['patience']})")
    p.add_argument("--jobs", type=int, help="training processes in parallel (default 0: one per CPU core)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per process (default 1: layers this small "
                   "gain little from more, and one thread stays fast on a busy machine; 0: torch's default)")
    p.add_argument("--out", help="run folder (default runs/demo-TIME)")
    p.add_argument("--report", metavar="RUN", help="train nothing: rewrite RUN's table.md and accuracy.png "
                   "from its results.json")
    p.add_argument("--quick", action="store_true", help="two short distances, one seed, few steps: under a minute")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _ints(name: str, text: str) -> list[int]:
    from lstmkit.cli import UsageError

    try:
        values = [int(v) for v in str(text).split(",")]
    except ValueError:
        raise UsageError(f"--{name} must be comma-separated integers, got {text!r}") from None
    if any(v < 0 for v in values):
        raise UsageError(f"--{name} must be >= 0, got {values}")
    return values


def settings(args: argparse.Namespace) -> dict:
    """DEFAULTS < QUICK (with --quick) < the user's options, checked."""
    from lstmkit.cli import UsageError

    s = {**DEFAULTS, **(QUICK if args.quick else {})}
    s.update({k: getattr(args, k) for k in DEFAULTS if getattr(args, k, None) is not None})
    s["distances"], s["seeds"] = _ints("distances", s["distances"]), _ints("seeds", s["seeds"])
    s["models"] = str(s["models"]).split(",")
    if bad := [m for m in s["models"] if m not in MODELS]:
        raise UsageError(f"--models must be from {', '.join(MODELS)}; got {bad}")
    if s["jobs"] < 0:
        raise UsageError(f"--jobs must be >= 0, got {s['jobs']}")
    return s


def run_config(s: dict, model: str, distance: int, seed: int, threads: int) -> dict:
    """The training config of one run of the demo."""
    from lstmkit.train import resolve

    return resolve("sentence", {"distance": distance, "size": s["size"]}, {
        "model": model, "steps": s["steps"], "hidden_size": s["hidden_size"], "lr": s["lr"],
        "forget_bias": s["forget_bias"] if model == "lstm" else 0.0, "eval_every": 25,
        "patience": s["patience"], "target": 0.99, "checkpoint_every": s["steps"], "threads": threads},
        seed=seed)


def train_run(job: dict) -> dict:
    """Train one (model, distance, seed) into its run folder; returns its row for results.json.

    Runs in a worker process too: the backend travels in ``job`` because ``kernels.backend(...)``
    set in the parent does not reach a spawned process."""
    from lstmkit.kernels import backend
    from lstmkit.train import train

    with backend(job["backend"]):
        r = train(job["config"], Path(job["out"]), progress=job["progress"], desc=job["desc"])
    return {"model": job["model"], "distance": job["distance"], "seed": job["seed"],
            "test_accuracy": r["test"]["accuracy"], "steps": r["steps"], "stopped": r["stopped"],
            "run": job["run"]}


def run_all(jobs: list[dict], processes: int, quiet: bool) -> list[dict]:
    """Every job, in ``processes`` spawned workers (1: here, one after the other)."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc="demo runs", disable=quiet, dynamic_ncols=True)
    rows = []
    if processes == 1:
        for job in jobs:
            rows.append(train_run({**job, "progress": not quiet}))
            bar.update(1)
    else:
        with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
            for future in as_completed([pool.submit(train_run, {**job, "progress": False}) for job in jobs]):
                rows.append(future.result())
                bar.update(1)
    bar.close()
    return sorted(rows, key=lambda r: (MODELS.index(r["model"]), r["distance"], r["seed"]))


def effective_backend() -> str:
    """'cpp' or 'torch': what the CPU runs will use (LSTMKIT_BACKEND=auto resolved)."""
    from lstmkit.kernels import cpp_available, get_backend

    return "torch" if get_backend() == "torch" or not cpp_available() else "cpp"


def run_demo(args: argparse.Namespace) -> int:
    from lstmkit.cli import UsageError
    from lstmkit.kernels import get_backend
    from lstmkit.runs import write_json

    if args.report:
        if not (Path(args.report) / "results.json").is_file():
            raise UsageError(f"--report {args.report} has no results.json: give the folder of a finished demo")
        print(report(Path(args.report)))
        return 0
    s = settings(args)
    out = Path(args.out or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}")
    if (out / "results.json").exists():
        raise UsageError(f"{out} already holds a demo: give another --out")
    out.mkdir(parents=True, exist_ok=True)
    jobs = [{"model": m, "distance": d, "seed": seed, "run": f"seed{seed}/{m}-d{d}", "desc": f"{m} d={d} s={seed}",
             "out": str(out / f"seed{seed}" / f"{m}-d{d}"), "backend": get_backend(),
             "config": run_config(s, m, d, seed, args.threads)}
            for d in sorted(s["distances"], reverse=True) for m in s["models"] for seed in s["seeds"]]
    processes = min(s["jobs"] or os.cpu_count() or 1, len(jobs))
    name = effective_backend()  # builds the kernel here, once, before the workers start
    load, t0 = os.getloadavg()[0], time.perf_counter()
    rows = run_all(jobs, processes, args.quiet)
    seconds = time.perf_counter() - t0
    write_json(out / "results.json", {
        "settings": s, "backend": name, "threads": args.threads, "processes": processes, "cpus": os.cpu_count(),
        "load_average": round(load, 2), "seconds": round(seconds, 1), "date": time.strftime("%Y-%m-%d"),
        "runs": rows})
    print(report(out))
    print(f"{seconds:.0f} s in {processes} processes.  run folder: {out}")
    return 0


def load_results(out: Path) -> dict:
    """``out/results.json`` with its rows gathered as accuracy[model][distance] = [one per seed]."""
    import json

    results = json.loads((Path(out) / "results.json").read_text(encoding="utf-8"))
    accuracy: dict[str, dict[int, list[float]]] = {}
    for r in results["runs"]:
        accuracy.setdefault(r["model"], {}).setdefault(r["distance"], []).append(r["test_accuracy"])
    results["accuracy"] = accuracy
    return results


def report(out: Path) -> str:
    """Write ``table.md`` and ``accuracy.png`` of the demo in ``out`` from its results.json; return the text."""
    results = load_results(out)
    accuracy, distances = results["accuracy"], results["settings"]["distances"]
    text = format_table(accuracy, distances) + "\n\n" + "\n".join(verdict(accuracy, distances))
    (Path(out) / "table.md").write_text(text + "\n", encoding="utf-8")
    plot(accuracy, distances, Path(out) / "accuracy.png")
    return text


def cell(values: list[float]) -> str:
    """One table cell: the mean over seeds, and (with several seeds) the lowest and highest."""
    mean = f"{statistics.fmean(values):.0%}"
    if len(values) == 1:
        return mean
    return f"{mean} ({100 * min(values):.0f}–{100 * max(values):.0f})"


def format_table(accuracy: dict[str, dict[int, list[float]]], distances: list[int]) -> str:
    """A Markdown table: one row per model, one column per distance; test accuracy in %, mean (min–max)."""
    head = "| model | " + " | ".join(f"N={d}" for d in distances) + " |"
    rule = "|---|" + "---:|" * len(distances)
    rows = [f"| {m.upper()} | " + " | ".join(cell(acc[d]) for d in distances) + " |" for m, acc in accuracy.items()]
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


def plot(accuracy: dict[str, dict[int, list[float]]], distances: list[int], path: Path) -> None:
    """Mean test accuracy against distance, one line per model, the min–max band and a dot per seed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lstmkit.runs import atomic_write

    fig, ax = plt.subplots(figsize=(6, 4))
    for m, acc in accuracy.items():
        pct = [[100 * a for a in acc[d]] for d in distances]
        line, = ax.plot(distances, [statistics.fmean(p) for p in pct], marker="o", label=m.upper())
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
