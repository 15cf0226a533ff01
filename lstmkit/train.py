"""The training loop: Adam, clipping, validation, early stopping, checkpoints, resume, DDP.

``TrainConfig`` is the one place where training defaults live, each with its help text (the
command line is generated from it). ``train`` runs one task to the end and leaves a run folder
(see ``lstmkit.runs``). It is deterministic on CPU for a seed: batches are a pure function of
(seed, step), and the only other randomness (dropout) comes from the torch RNG, whose state is
checkpointed, so a resumed run ends with the same weights as an uninterrupted one.

Distributed: under ``torchrun`` (WORLD_SIZE > 1) each process takes an equal slice of every
global batch and DistributedDataParallel averages the gradients (gloo on CPU, nccl on CUDA);
rank 0 alone writes the run folder.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import Tensor, nn

from lstmkit import distributed, runs
from lstmkit.errors import ConfigError, Diverged
from lstmkit.models import ModelConfig, build_model, first_bad_field
from lstmkit.registry import NAMES, RECURRENT, VARIANTS, model_entry, or_list
from lstmkit.tasks import make_task, task_class
from lstmkit.tasks.base import Split, Task, physical_memory
from lstmkit.variants import STANDARD


def _opt(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Training defaults; a task may prefer others (``Task.defaults``), the user overrides both."""

    model: str = _opt(NAMES[0], f"recurrent cell: {or_list()}")
    variant: str = _opt(STANDARD, "LSTM variant, run on the PyTorch path (slower than the standard LSTM's kernel): "
                         + "; ".join(f"{v.name}: {v.about}" for v in VARIANTS.values()))
    hidden_size: int = _opt(64, "hidden units per layer")
    layers: int = _opt(1, "stacked recurrent layers")
    embed_size: int = _opt(32, "embedding size (token tasks)")
    dropout: float = _opt(0.0, "dropout between layers and before the head")
    forget_bias: float = _opt(1.0, "added to the LSTM forget-gate bias at init (keeps memory early on)")
    update_bias: float = _opt(0.0, "added to the GRU update-gate bias at init (keeps the state early on)")
    chrono: int = _opt(0, "LSTM, GRU: chrono init of the keep gate's bias, log(U[1, T_MAX-1]), instead of "
                          "--forget-bias/--update-bias; T_MAX ~ the longest dependency (0: off)")
    lr: float = _opt(3e-3, "Adam learning rate")
    batch_size: int = _opt(64, "sequences per optimizer step (global, across processes)")
    steps: int = _opt(1000, "optimizer steps (the run may stop earlier, see --patience, --target)")
    clip: float = _opt(1.0, "clip the gradient norm to this (0: no clipping)")
    eval_every: int = _opt(50, "steps between validation evaluations")
    patience: int = _opt(10, "stop after this many evaluations without a better val loss (0: never)")
    target: float | None = _opt(None, "stop once the validation metric reaches this value")
    checkpoint_every: int = _opt(100, "steps between checkpoints (and always at the end)")
    seed: int = _opt(0, "seed for data, initialisation and batch order")
    device: str = _opt("cpu", "cpu or cuda")
    threads: int = _opt(0, "CPU threads for torch (0: torch's default)")

    def check(self) -> None:
        """Raise ConfigError naming the first bad option (wrong type, not finite, out of range)."""
        if bad := first_bad_field(self):
            f, problem = bad
            value, flag = getattr(self, f.name), "--" + f.name.replace("_", "-")
            raise ConfigError(f"{flag} must be {f.type.split(' ')[0]}, got {value!r}" if problem == "type"
                              else f"{flag} must be a finite number, got {value}")
        if self.model not in NAMES:
            raise ConfigError(f"--model must be {or_list()}, got {self.model!r}")
        if self.variant != STANDARD and self.variant not in VARIANTS:
            raise ConfigError(f"--variant must be {STANDARD} or one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if self.variant != STANDARD and self.model != "lstm":
            raise ConfigError(f"--variant {self.variant} is a variant of the LSTM: use it with --model lstm, "
                              f"not --model {self.model}")
        for name in ("hidden_size", "layers", "embed_size", "batch_size", "steps", "eval_every",
                     "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("patience", "threads", "clip"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"--dropout must be in [0, 1), got {self.dropout}")
        if not 0 < self.lr <= 1:
            raise ConfigError(f"--lr must be a positive number no larger than 1 (Adam diverges beyond), "
                              f"got {self.lr}")
        for name in ("forget_bias", "update_bias"):
            if not -100 <= getattr(self, name) <= 100:
                raise ConfigError(f"--{name.replace('_', '-')} must be in [-100, 100] (the gate saturates long "
                                  f"before), got {getattr(self, name)}")
        if self.chrono < 0 or self.chrono == 1 or self.chrono > 10**9:
            raise ConfigError(f"--chrono must be 0 (off) or a T_MAX in [2, 1e9], got {self.chrono}")
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"--seed must be in [0, 2**32), got {self.seed}")
        cpus = os.cpu_count() or 1
        if self.threads > 4 * cpus:
            raise ConfigError(f"--threads {self.threads} is far more than this machine's {cpus} CPUs")
        if not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"--device must be cpu, cuda or cuda:N, got {self.device!r}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("--device cuda asked for, but torch sees no CUDA GPU: use --device cpu")
        if ":" in self.device and int(self.device.split(":")[1]) >= torch.cuda.device_count():
            raise ConfigError(f"--device {self.device}: torch sees {torch.cuda.device_count()} CUDA GPU(s)")


def _check_model_fits(model: ModelConfig) -> None:
    """Refuse a model whose weights, gradients and Adam state (4 copies, float32) exceed memory."""
    need = model.parameter_count() * 16
    have = physical_memory()
    if have and need > have:
        raise ConfigError(f"the model asked for (--hidden-size {model.hidden_size}, --layers {model.num_layers}, "
                          f"--embed-size {model.embed_size}) has {model.parameter_count():.3g} parameters and "
                          f"needs about {_bytes(need)} to train: it does not fit in this machine's {_bytes(have)}; "
                          "make it smaller")


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"


def _check_init_flags(cfg: TrainConfig, overrides: dict) -> None:
    """Refuse an initialisation option the user gave (non-zero) that ``--model`` does not take, and
    --chrono together with the keep-gate bias it replaces."""
    r = model_entry(cfg.model, cfg.variant)
    given = {k for k in ("forget_bias", "update_bias", "chrono") if overrides.get(k)}
    for name in sorted(given):
        if (r.chrono if name == "chrono" else r.keep_bias == name):
            continue
        takes = or_list(tuple(m.name for m in RECURRENT.values()
                              if (m.chrono if name == "chrono" else m.keep_bias == name)))
        chosen = f"--model {cfg.model}" + (f" --variant {cfg.variant}" if cfg.variant != STANDARD else "")
        raise ConfigError(f"--{name.replace('_', '-')} does not apply to {chosen}: it is for {takes}"
                          + (f" (this model's is --{r.keep_bias.replace('_', '-')})" if r.keep_bias else ""))
    if "chrono" in given and r.keep_bias in given:
        raise ConfigError(f"--chrono and --{r.keep_bias.replace('_', '-')} both set the keep gate's bias at "
                          "init: give one of them")


def resolve(task_name: str, task_options: dict, overrides: dict, seed: int | None = None) -> dict:
    """The full config of a run: TrainConfig defaults < the task's defaults < the user's ``overrides``."""
    cls = task_class(task_name)
    values = {f.name: f.default for f in fields(TrainConfig)}
    values.update({k: v for k, v in cls.defaults.items() if k in values})
    values.update({k: v for k, v in overrides.items() if v is not None})
    if seed is not None:
        values["seed"] = seed
    cfg = TrainConfig(**values)
    cfg.check()
    _check_init_flags(cfg, overrides)
    keep = model_entry(cfg.model, cfg.variant).keep_bias
    if cfg.chrono and keep:  # chrono replaces the keep-gate bias the task or TrainConfig would give
        setattr(cfg, keep, 0.0)
    task = make_task(task_name, dict(task_options), cfg.seed)
    model = ModelConfig(cell=cfg.model, vocab_size=len(task.vocab) if task.vocab else 0,
                        input_size=task.input_size, embed_size=cfg.embed_size, hidden_size=cfg.hidden_size,
                        num_layers=cfg.layers, dropout=cfg.dropout, forget_bias=cfg.forget_bias,
                        update_bias=cfg.update_bias, chrono=cfg.chrono,
                        output_size=task.output_size, head=task.head, variant=cfg.variant)
    _check_model_fits(model)
    return {"task": task_name, "task_options": task.options, "model": model.to_dict(), "train": asdict(cfg)}


@dataclass
class Progress:
    """Where a run stands: saved in every checkpoint (as a dict), restored on resume."""

    step: int = 0  # optimizer steps done
    best_val_loss: float = math.inf
    best_step: int = 0  # the step of best.safetensors
    bad_evals: int = 0  # evaluations since the best one
    stopped: str = ""  # why the run stopped early ("": it goes on)

    @classmethod
    def from_checkpoint(cls, saved: dict) -> Progress:
        """The counters ``runs.load_checkpoint`` returned (checked there; any it lacks start fresh)."""
        return cls(**{k: v for k, v in saved.items() if k in cls.__dataclass_fields__})


@dataclass
class Run:
    """What the training loop works with, set up once by ``_train``."""

    cfg: TrainConfig
    task: Task
    model: nn.Module  # the SequenceModel itself: weights to check, save and evaluate
    ddp: nn.Module  # what the forward goes through: ``model``, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    out: Path  # the run folder (rank 0 writes it)
    rank: int
    world: int
    device: str


class Batches:
    """Batch ``step`` of the training set: a fixed-seed shuffle per epoch, cut into full batches."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.B, self.seed = n, min(batch_size, n), seed
        self.per_epoch = n // self.B
        self._epoch, self._perm = -1, None

    def indices(self, step: int) -> Tensor:
        epoch, i = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g)
        return self._perm[i * self.B:(i + 1) * self.B]


@torch.no_grad()
def evaluate_split(model: nn.Module, task: Task, data: Split, device: str, chunk: int = 256) -> dict:
    """Mean loss and the task's metrics on a whole split (model in eval mode)."""
    was_training = model.training
    model.eval()
    outs, loss_sum = [], 0.0
    for start in range(0, len(data), chunk):
        part = data.take(torch.arange(start, min(start + chunk, len(data))))
        out = model(part.x.to(device), part.lengths.to(device)).cpu()
        loss_sum += float(task.loss_fn(out, part)) * len(part)
        outs.append(out)
    T = int(data.lengths.max())
    if task.head == "every":  # chunks were trimmed to their own longest sequence: pad back to T
        outs = [torch.nn.functional.pad(o, (0, 0, 0, T - o.shape[1])) for o in outs]
    model.train(was_training)
    return {"loss": loss_sum / len(data), **task.metrics(torch.cat(outs), data)}


def train(config: dict, out: Path, resume: bool = False, progress: bool = True, desc: str = "") -> dict:
    """Train as ``config`` (from ``resolve``) says, writing the run folder ``out``; returns test scores."""
    cfg = TrainConfig(**config["train"])
    out = Path(out)
    rank, world = distributed.start(cfg.device)
    if cfg.batch_size % world:
        raise ConfigError(f"--batch-size {cfg.batch_size} must divide evenly among {world} processes")
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        results = _train(config, cfg, out, rank, world, resume, progress, desc)
    finally:
        torch.set_num_threads(threads)  # leave the calling process as it was
    distributed.leave(world)  # here, not in _train: its DistributedDataParallel wrapper holds the group
    return results


def _train(config: dict, cfg: TrainConfig, out: Path, rank: int, world: int, resume: bool, progress: bool,
           desc: str) -> dict:
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cfg.device == "cuda" and world > 1 else cfg.device
    task = make_task(config["task"], dict(config["task_options"]), cfg.seed)
    train_set, val_set, test_set = task.build()
    torch.manual_seed(cfg.seed)
    model = build_model(config["model"]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    config = {**config, "task_state": task.state()}
    with contextlib.ExitStack() as held:
        def prepare() -> Progress:
            """The run folder made (or read: a folder that is not a run is said so before locking it)
            and locked by rank 0; the progress, from the checkpoint when resuming."""
            if rank == 0:
                runs.read_config(out) if resume else runs.make_folder(out)
                held.enter_context(runs.lock_run(out))
            if resume:
                return _resume(out, config, model, optimizer, write=rank == 0)
            if rank == 0:
                _start(out, config, task)
            return Progress()

        # under torchrun only rank 0 touches the folder: its errors must end every rank
        done = distributed.together(rank, world, prepare, device)
        ddp = model
        if world > 1:
            ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device != "cpu" else None)
        run = Run(cfg, task, model, ddp, optimizer, out, rank, world, device)
        _loop(run, done, train_set, val_set, progress, desc)
        # rank 0 writes the results while the others wait: a failure there ends every rank with one line
        return distributed.together(rank, world, lambda: _finish(run, done, config, test_set) if rank == 0 else {},
                                    device)


def _finish(run: Run, done: Progress, config: dict, test_set: Split) -> dict:
    """The end of a run (rank 0): last checkpoint and weights, the test scores of the best weights,
    results.json and the loss figure."""
    out, model = run.out, run.model
    runs.save_checkpoint(out / "checkpoint.safetensors", model, run.optimizer, asdict(done))
    runs.write_tensors(out / "model.safetensors", model.state_dict())
    runs.load_weights(model, runs.best_weights(out))
    scores = evaluate_split(model, run.task, test_set, run.device)
    results = {"task": config["task"], "model": run.cfg.model, "steps": done.step, "processes": run.world,
               "stopped": done.stopped or "steps", "test": scores, "summary": run.task.summary(scores)}
    runs.write_json(out / "results.json", results)
    runs.plot_losses(runs.read_metrics(out / "metrics.jsonl"), out / "loss.png", f"{config['task']} · {run.cfg.model}")
    return results


def _start(out: Path, config: dict, task: Task) -> None:
    """A fresh run folder (``out`` exists and is locked): refuses to overwrite another run's files."""
    if (out / "checkpoint.safetensors").exists() or (out / "config.json").exists():
        raise runs.RunError(f"{out} already holds a run: use --resume to continue it, or another --out")
    runs.write_json(out / "config.json", config)
    if task.vocab:
        runs.write_json(out / "vocab.json", task.vocab)
    runs.atomic_write(out / "metrics.jsonl", lambda tmp: Path(tmp).write_text("", encoding="utf-8"))


def _resume(out: Path, config: dict, model: nn.Module, optimizer, write: bool = True) -> Progress:
    """Go on from the checkpoint of ``out`` (locked by this process when ``write``). ``config`` may ask
    for more steps than the saved one (extending a run, finished or not); anything else must be the same."""
    saved = runs.read_config(out)
    steps = config["train"]["steps"]
    same = {**config, "train": {**config["train"], "steps": saved.get("train", {}).get("steps")}}
    if {k: saved.get(k) for k in same} != json.loads(json.dumps(same)):
        raise runs.RunError(f"{out} was trained with another config: resume with the same task and options "
                            "(see its config.json)")
    ckpt = out / "checkpoint.safetensors"
    done = Progress()
    if ckpt.is_file():  # else killed before its first checkpoint: start again from step 0
        done = Progress.from_checkpoint(runs.load_checkpoint(ckpt, model, optimizer))
    if steps < done.step:
        raise runs.RunError(f"--steps {steps} is fewer than the {done.step} steps {out} has done: "
                            "give more to extend it")
    if steps != saved["train"]["steps"]:  # extended: an early stop no longer holds
        if steps > done.step:
            done.stopped, done.bad_evals = "", 0
        if write:
            runs.write_json(out / "config.json", {**saved, "train": {**saved["train"], "steps": steps}})
    if not write:
        return done
    rows = runs.read_metrics(out / "metrics.jsonl", up_to_step=done.step)  # drop the lost steps
    runs.atomic_write(out / "metrics.jsonl", lambda tmp: Path(tmp).write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"))
    return done


def _loop(run: Run, done: Progress, train_set: Split, val_set: Split, progress: bool, desc: str) -> None:
    """Optimizer steps until ``run.cfg.steps`` or an early stop, updating ``done``; metrics, the best
    weights and checkpoints go to the run folder as they come."""
    from tqdm import tqdm

    cfg, task, model, out, rank = run.cfg, run.task, run.model, run.out, run.rank
    batches = Batches(len(train_set), cfg.batch_size, cfg.seed)
    share = batches.B // run.world
    bar = tqdm(total=cfg.steps, initial=done.step, desc=desc or f"{task.name} {cfg.model}",
               disable=not progress or rank != 0, leave=False, dynamic_ncols=True)
    t0, seen, postfix = time.perf_counter(), 0, {}
    model.train()
    while done.step < cfg.steps and not done.stopped:
        idx = batches.indices(done.step)[rank * share:(rank + 1) * share]
        batch = train_set.take(idx)
        loss = task.loss_fn(run.ddp(batch.x.to(run.device), batch.lengths.to(run.device)), _to(batch, run.device))
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip:
            norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        else:
            norm = _grad_norm(model)
        _check_finite(loss, norm, done.step + 1, out, run.world, bar)  # before the step: weights stay good
        run.optimizer.step()
        done.step += 1
        step, seen = done.step, seen + batches.B
        bar.update(1)
        record = None
        if step % 10 == 0 or step == cfg.steps:
            record = {"step": step, "train_loss": loss.item()}
            postfix.update(loss=f"{loss.item():.4f}", seq_s=f"{seen / (time.perf_counter() - t0):.0f}")
        if step % cfg.eval_every == 0 or step == cfg.steps:
            record = (record or {"step": step}) | _validate(run, done, val_set, postfix)
        if rank == 0:
            bar.set_postfix(postfix, refresh=False)
            if record:
                runs.append_metrics(out / "metrics.jsonl", record)
            if step % cfg.checkpoint_every == 0 and step < cfg.steps and not done.stopped:
                _check_weights(model, step, out, bar)
                runs.save_checkpoint(out / "checkpoint.safetensors", model, run.optimizer, asdict(done))
                runs.write_tensors(out / "model.safetensors", model.state_dict())
    bar.close()
    _check_weights(model, done.step, out, bar)  # the caller saves them next


def _grad_norm(model: nn.Module) -> Tensor:
    norms = [torch.linalg.vector_norm(p.grad) for p in model.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())


def _check_finite(loss: Tensor, norm: Tensor, step: int, out: Path, world: int, bar) -> None:
    """Stop (``Diverged``) when this step's loss or gradient norm is NaN or infinite, on any process."""
    bad = ~(torch.isfinite(loss.detach()) & torch.isfinite(norm))
    if world > 1:  # every rank must stop at the same step, or the others wait forever
        flag = bad.float().reshape(1)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        bad = flag[0] > 0
    if bool(bad):
        bar.close()
        kept = (f"{out}/checkpoint.safetensors keeps the last good state"
                if (out / "checkpoint.safetensors").is_file() else "no checkpoint was written yet")
        raise Diverged(f"training stopped at step {step}: the loss is {float(loss.detach()):.4g} and the gradient norm "
                       f"{float(norm):.4g} (not finite); {kept}: lower --lr, set --clip, or check the data")


def _check_weights(model: nn.Module, step: int, out: Path, bar) -> None:
    """Never let non-finite weights reach the run folder."""
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        bar.close()
        raise Diverged(f"training stopped at step {step}: the weights are no longer finite (overflow); "
                       f"nothing non-finite was saved to {out}: lower --lr or set --clip")


def _validate(run: Run, done: Progress, val_set: Split, postfix: dict) -> dict:
    """Score the validation set, keep the best weights, decide on early stopping (in ``done``)."""
    cfg, task = run.cfg, run.task
    scores = evaluate_split(run.model, task, val_set, run.device)
    if scores["loss"] < done.best_val_loss:
        done.best_val_loss, done.best_step, done.bad_evals = scores["loss"], done.step, 0
        if run.rank == 0:
            runs.write_tensors(run.out / "best.safetensors", run.model.state_dict())
    else:
        done.bad_evals += 1
        if cfg.patience and done.bad_evals >= cfg.patience:
            done.stopped = f"no better val loss in {cfg.patience} evaluations"
    value = scores[task.metric]
    if cfg.target is not None and (value >= cfg.target if task.higher_is_better else value <= cfg.target):
        done.stopped = f"val {task.metric} reached {cfg.target}"
    postfix[f"val_{task.metric}"] = f"{value:.3f}"
    return {f"val_{k}": v for k, v in scores.items()}


def _to(batch: Split, device: str) -> Split:
    if device == "cpu":
        return batch
    return Split(batch.x.to(device), batch.y.to(device), batch.lengths.to(device),
                 {k: v.to(device) for k, v in batch.extra.items()})
