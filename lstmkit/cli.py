"""The command line: ``lstmkit demo | train | evaluate | generate | predict | explain | bench``.

Every command has the same shape: a function that adds its options to its parser and one that
runs it on the parsed options (``COMMANDS``). Training options are generated from
``lstmkit.train.TrainConfig`` and the demo's from ``lstmkit.demo.DemoSettings`` (the one place their
defaults and help live); task options (--distance, --data, ...) are listed here.
A user's mistake (any ``lstmkit.errors.LstmkitError``) ends in one line on stderr and exit code 2,
never a traceback (set LSTMKIT_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import NamedTuple

import torch

from lstmkit import ablate, bench, demo, explain
from lstmkit.errors import LstmkitError, UsageError
from lstmkit.inference import generate, load, predict
from lstmkit.runs import read_config
from lstmkit.tasks import TASKS, task_class
from lstmkit.train import TrainConfig, evaluate_split, resolve, train

MAX_GENERATE = 1_000_000  # characters `generate` writes at most (one model step each)

TASK_OPTIONS = {  # name -> (type, help); each task reads the ones it needs
    "distance": (int, "sentence: neutral filler words between the opening clause and the cue"),
    "length": (int, "adding, copy, temporal-order: sequence length T; text: characters per example"),
    "size": (int, "examples to generate (generated tasks) or to read at most (text)"),
    "data": (str, "text: a UTF-8 file; classify: a CSV or JSONL file; forecast: a CSV file"),
    "column": (str, "forecast: the CSV column of the series; classify: the label column"),
    "window": (int, "forecast: past values the model sees for each forecast"),
}


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + message
        raise UsageError(f"{message} (see `{self.prog} --help`)")


class Command(NamedTuple):
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="lstmkit", description="Train, compare and use LSTMs, GRUs and RNNs.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, command in COMMANDS.items():
        command.add_arguments(sub.add_parser(name, help=command.help))
    return p


def _train_arguments(t: argparse.ArgumentParser) -> None:
    t.add_argument("task", help="one of: " + ", ".join(TASKS))
    for f in fields(TrainConfig):
        kind = {"str": str, "int": int, "float": float, "float | None": float}[f.type]
        t.add_argument("--" + f.name.replace("_", "-"), type=kind, default=None,
                       help=f"{f.metadata['help']} (default: {f.default}, or the task's own)")
    for name, (kind, text) in TASK_OPTIONS.items():
        t.add_argument("--" + name, type=kind, default=None, help=text)
    t.add_argument("--out", help="run folder (default: runs/TASK-MODEL-TIME)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    t.add_argument("--quick", action="store_true", help="tiny data and few steps (tests, a first look)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")


def _evaluate_arguments(e: argparse.ArgumentParser) -> None:
    e.add_argument("run", help="a run folder")


def _generate_arguments(g: argparse.ArgumentParser) -> None:
    g.add_argument("run", help="a run folder of task text")
    g.add_argument("--prompt", default="", help="text to start from")
    g.add_argument("--length", type=int, default=200, help="characters to generate")
    g.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (> 0)")
    g.add_argument("--seed", type=int, default=0, help="sampling seed")


def _predict_arguments(r: argparse.ArgumentParser) -> None:
    r.add_argument("run", help="a run folder")
    r.add_argument("--input", required=True, help="sentence: words; classify: numbers; forecast: past values")


def main(argv: list[str] | None = None) -> int:
    with warnings.catch_warnings():  # lstmkit's own notices as one line each ("lstmkit: note: ...")
        shown = warnings.showwarning
        warnings.showwarning = lambda message, *args, **kw: (
            print(f"lstmkit: note: {str(message).removeprefix('lstmkit: ')}", file=sys.stderr)
            if str(message).startswith("lstmkit: ") else shown(message, *args, **kw))
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command].run(args)
    except LstmkitError as e:  # under torchrun, OtherRankFailed: the failing rank said why, the others say this
        return _fail(str(e))
    except MemoryError:
        return _fail("out of memory: use a smaller --size, --batch-size, --hidden-size or --layers")
    except RuntimeError as e:  # torch's allocation failures; anything else is a bug: traceback
        if _peer_gone(e):  # gloo's first sentence, without its source location
            said = re.sub(r"^\[[^\]]*\]\s*", "", str(e).splitlines()[0]).split(". ")[0][:200]
            return _fail(f"another process of this torchrun run ended ({said}); its own output says why")
        if not _out_of_memory(e):
            raise
        return _fail(f"out of memory ({str(e).splitlines()[0][:160]}): use a smaller --size, --batch-size, "
                     "--hidden-size or --layers")
    except OSError as e:  # a path that cannot be written or read, a full disk
        where = f": {e.filename}" if e.filename else ""
        return _fail(f"{e.strerror or e}{where}")
    except KeyboardInterrupt:
        print("lstmkit: interrupted", file=sys.stderr)
        return 130


def _fail(message: str) -> int:
    """One line on stderr, exit code 2 (LSTMKIT_DEBUG=1: the traceback instead)."""
    if os.environ.get("LSTMKIT_DEBUG"):
        raise
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every rank meets the same error: say it once
        print(f"lstmkit: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def _peer_gone(e: RuntimeError) -> bool:
    """A collective that failed because another rank of the run is gone (crashed or stopped): gloo
    raises a plain RuntimeError naming the closed connection, NCCL a DistBackendError."""
    text = str(e)
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and (
        isinstance(e, torch.distributed.DistBackendError) or "closed by peer" in text or "reset by peer" in text)


def _out_of_memory(e: RuntimeError) -> bool:
    text = str(e).lower()
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in text or "can't allocate" in text


def _train(args: argparse.Namespace) -> int:
    cls = task_class(args.task)
    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    task_options = {k: getattr(args, k) for k in TASK_OPTIONS}
    if args.quick:
        overrides = {**cls.quick_train, **{k: v for k, v in overrides.items() if v is not None}}
        task_options = {**cls.quick_options, **{k: v for k, v in task_options.items() if v is not None}}
    if args.resume and not args.out:
        raise UsageError("--resume needs --out RUN_FOLDER (the run to continue)")
    if args.resume:
        config = _resumable(Path(args.out), args.task, overrides, task_options)
    else:
        config = resolve(args.task, task_options, overrides)
    model = _model_label(config["model"])
    out = Path(args.out or f"runs/{args.task}-{model}-{time.strftime('%Y%m%d-%H%M%S')}")
    results = train(config, out, resume=args.resume, progress=not args.quiet)
    if results:
        print(f"{args.task} · {model}: {results['summary']}  "
              f"({results['steps']} steps, stopped by {results['stopped']})")
        print(f"run folder: {out}")
    return 0


def _model_label(model: dict) -> str:
    """"lstm", or "lstm-cifg" for a variant (runs from before variants have none)."""
    variant = model.get("variant", "standard")
    return model["cell"] if variant == "standard" else f"{model['cell']}-{variant}"


def _resumable(out: Path, task: str, overrides: dict, task_options: dict) -> dict:
    """On --resume the run's own config.json says how to go on; options given again must agree, but
    --steps may differ: more steps extend the run (finished or not)."""
    saved = read_config(out)
    if saved["task"] != task:
        raise UsageError(f"{out} is a run of task {saved['task']!r}, not {task!r}")
    for given, kept in ((overrides, saved["train"]), (task_options, saved["task_options"])):
        for key, value in given.items():
            if value is not None and kept.get(key) != value and not (kept is saved["train"] and key == "steps"):
                raise UsageError(f"--resume continues {out} with its saved options: --{key.replace('_', '-')} "
                                 f"is {kept.get(key)!r} there, not {value!r} (drop the option)")
    config = {k: saved[k] for k in ("task", "task_options", "model", "train")}
    if overrides.get("steps") is not None:
        config["train"] = {**config["train"], "steps": overrides["steps"]}
        if overrides["steps"] < 1:
            raise UsageError(f"--steps must be >= 1, got {overrides['steps']}")
    return config


def _evaluate(args: argparse.Namespace) -> int:
    loaded = load(args.run)
    _, _, test = loaded.task.build()
    scores = evaluate_split(loaded.model, loaded.task, test, "cpu")
    print(f"{loaded.config['task']} · {_model_label(loaded.config['model'])}: {loaded.task.summary(scores)} "
          f"(test set, {len(test)} examples)")
    return 0


def _generate(args: argparse.Namespace) -> int:
    if not 1 <= args.length <= MAX_GENERATE:
        raise UsageError(f"--length must be in 1..{MAX_GENERATE:,}, got {args.length}")
    if not (args.temperature > 0 and math.isfinite(args.temperature)):
        raise UsageError(f"--temperature must be > 0 and finite, got {args.temperature}")
    if not 0 <= args.seed < 2**63:
        raise UsageError(f"--seed must be in [0, 2**63), got {args.seed}")
    print(generate(load(args.run), args.prompt, args.length, args.temperature, args.seed))
    return 0


def _predict(args: argparse.Namespace) -> int:
    loaded = load(args.run)
    answer = predict(loaded, args.input)
    for note in loaded.task.notes:
        print(f"lstmkit: note: {note}", file=sys.stderr)
    print(answer)
    return 0


COMMANDS = {  # name -> (help, adds its options, runs it)
    "demo": Command("the article's claim measured: RNN vs GRU vs LSTM by distance", demo.add_arguments, demo.run),
    "train": Command("train a model on a task", _train_arguments, _train),
    "evaluate": Command("score a run's model on its task's test set", _evaluate_arguments, _evaluate),
    "generate": Command("sample text from a `text` run", _generate_arguments, _generate),
    "predict": Command("the model's answer for new input (sentence, classify, forecast)", _predict_arguments,
                       _predict),
    "explain": Command("an HTML report (and PNGs) of a model's gates, cell and hidden states over a text",
                       explain.add_arguments, explain.run),
    "ablate": Command(ablate.HELP, ablate.add_arguments, ablate.run),
    "bench": Command(bench.HELP, bench.add_arguments, bench.run),
}

if __name__ == "__main__":
    sys.exit(main())
