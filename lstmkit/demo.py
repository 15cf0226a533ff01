"""``lstmkit demo``: the article's claim, measured — an RNN forgets the opening clause, an LSTM keeps it.

Trains an RNN, a GRU and an LSTM on the sentence task (``lstmkit.tasks.sentence``) at several
distances between the deciding clause and the cue, then prints a table of held-out test accuracy,
and writes ``accuracy.png`` (accuracy against distance, one line per model), ``results.json`` and
``table.md`` into a run folder, beside one ordinary training run folder per model and distance
(``lstm-d100/`` ...), which ``lstmkit evaluate`` / ``predict`` accept.

Settings, and why: every model gets the same steps, learning rate and size. The LSTM's forget-gate
bias starts at 5 (``forget_bias``): σ(5) ≈ 0.993, so at initialisation the cell keeps ~50% of
what it held 100 steps ago (σ(1)^100 ≈ 1e-14), and the gradient from the answer reaches the first
words. A run stops early once its validation accuracy reaches 99%, or after ``patience``
evaluations without a better validation loss.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DEFAULTS = {  # the demo's settings; --quick replaces some of them
    "distances": "5,10,20,50,100,200",
    "models": "rnn,gru,lstm",
    "steps": 1000, "size": 3000, "hidden_size": 64, "lr": 3e-3, "forget_bias": 5.0,
    "patience": 12,  # evaluations (every 25 steps) without a better val loss before a run gives up
}
QUICK = {"distances": "5,30", "steps": 40, "size": 400, "hidden_size": 32, "patience": 12}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--distances", help=f"filler words between clause and cue (default {DEFAULTS['distances']})")
    p.add_argument("--models", help=f"cells to compare (default {DEFAULTS['models']})")
    p.add_argument("--steps", type=int, help=f"max optimizer steps per run (default {DEFAULTS['steps']})")
    p.add_argument("--size", type=int, help=f"training sentences per distance (default {DEFAULTS['size']})")
    p.add_argument("--hidden-size", type=int, help=f"hidden units (default {DEFAULTS['hidden_size']})")
    p.add_argument("--lr", type=float, help=f"Adam learning rate (default {DEFAULTS['lr']})")
    p.add_argument("--forget-bias", type=float, help=f"LSTM forget-gate bias at init (default "
                   f"{DEFAULTS['forget_bias']})")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1: layers this small gain "
                   "little from more, and one thread stays fast on a busy machine; 0: torch's default)")
    p.add_argument("--out", help="run folder (default runs/demo-TIME)")
    p.add_argument("--quick", action="store_true", help="two short distances, few steps: under a minute")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def settings(args: argparse.Namespace) -> dict:
    """DEFAULTS < QUICK (with --quick) < the user's options, checked."""
    from lstmkit.cli import UsageError

    s = {**DEFAULTS, **(QUICK if args.quick else {})}
    s.update({k: getattr(args, k) for k in DEFAULTS if getattr(args, k, None) is not None})
    try:
        s["distances"] = [int(d) for d in str(s["distances"]).split(",")]
    except ValueError:
        raise UsageError(f"--distances must be comma-separated integers, got {s['distances']!r}") from None
    s["models"] = str(s["models"]).split(",")
    if any(d < 0 for d in s["distances"]):
        raise UsageError(f"--distances must be >= 0, got {s['distances']}")
    if bad := [m for m in s["models"] if m not in ("rnn", "gru", "lstm")]:
        raise UsageError(f"--models must be from rnn, gru, lstm; got {bad}")
    return s


def run_demo(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lstmkit.train import resolve, train

    s = settings(args)
    out = Path(args.out or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}")
    if (out / "results.json").exists():
        from lstmkit.cli import UsageError
        raise UsageError(f"{out} already holds a demo: give another --out")
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(d, m) for d in s["distances"] for m in s["models"]]
    accuracy: dict[str, dict[int, float]] = {m: {} for m in s["models"]}
    t0 = time.perf_counter()
    for d, m in tqdm(jobs, desc="demo", disable=args.quiet, dynamic_ncols=True):
        config = resolve("sentence", {"distance": d, "size": s["size"]}, {
            "model": m, "steps": s["steps"], "hidden_size": s["hidden_size"], "lr": s["lr"],
            "forget_bias": s["forget_bias"] if m == "lstm" else 0.0, "eval_every": 25, "patience": s["patience"],
            "target": 0.99, "checkpoint_every": s["steps"], "threads": args.threads}, seed=args.seed)
        results = train(config, out / f"{m}-d{d}", progress=not args.quiet, desc=f"{m} d={d}")
        accuracy[m][d] = results["test"]["accuracy"]
    seconds = time.perf_counter() - t0
    table = format_table(accuracy, s["distances"])
    print(table)
    print(f"chance: 20%.  {seconds:.0f} s.  run folder: {out}")
    from lstmkit.runs import write_json
    write_json(out / "results.json", {"settings": s, "seed": args.seed, "seconds": round(seconds, 1),
                                      "test_accuracy": {m: {str(d): a for d, a in v.items()}
                                                        for m, v in accuracy.items()}})
    (out / "table.md").write_text(table + "\n", encoding="utf-8")
    plot(accuracy, s["distances"], out / "accuracy.png")
    return 0


def format_table(accuracy: dict[str, dict[int, float]], distances: list[int]) -> str:
    """A Markdown table: one row per model, one column per distance, test accuracy in %."""
    head = "| model | " + " | ".join(f"N={d}" for d in distances) + " |"
    rule = "|---|" + "---:|" * len(distances)
    rows = [f"| {m.upper()} | " + " | ".join(f"{acc[d]:.0%}" for d in distances) + " |"
            for m, acc in accuracy.items()]
    return "\n".join([head, rule, *rows])


def plot(accuracy: dict[str, dict[int, float]], distances: list[int], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lstmkit.runs import atomic_write

    fig, ax = plt.subplots(figsize=(6, 4))
    for m, acc in accuracy.items():
        ax.plot(distances, [100 * acc[d] for d in distances], marker="o", label=m.upper())
    ax.axhline(20, color="grey", linestyle=":", label="chance (5 moods)")
    log = min(distances) > 0  # distances span 5..200: a log axis spaces them evenly
    if log:
        ax.set_xscale("log")
        ax.minorticks_off()
    ax.set_xticks(distances, [str(d) for d in distances])
    ax.set_xlabel("filler words between the opening clause and the cue" + (" (log scale)" if log else ""))
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title("Sentence task: who remembers the opening clause?")
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
