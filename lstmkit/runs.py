"""The run folder: what a training run leaves on disk, written atomically, read back safely.

    config.json              the resolved config (task, task options, model, training), plus task state
    vocab.json               the token vocabulary (id -> string), for tasks whose input is tokens
    checkpoint.safetensors   model weights + Adam state + RNG state, step and counters in its metadata:
                             one file, so a kill can never leave a half-updated checkpoint
    model.safetensors        the latest weights;  best.safetensors: the weights with the best val loss
    metrics.jsonl            one JSON record per log or evaluation;  loss.png: the loss curve
    results.json             the final test scores

Every file is written to a temporary name and renamed over the old one (``os.replace``), so a
reader sees the old file or the new one, never a torn one. Nothing is ever unpickled: weights and
optimizer state are safetensors, everything else JSON. Not the training loop (``lstmkit.train``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn


class RunError(ValueError):
    """A run folder that cannot be used (missing, not a run, corrupt): one line for the user."""


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)``, then rename the temporary file over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: Path, obj) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
            f.write("\n")
    atomic_write(path, write)


def write_tensors(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def read_tensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; a damaged file raises ``RunError``."""
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return load_file(str(path)), meta
    except FileNotFoundError:
        raise RunError(f"{path} is missing: the run folder is incomplete") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise RunError(f"{path} is not a readable safetensors file ({str(e).splitlines()[0]}); "
                       "it may be truncated or corrupt: train again or restore it") from None


def read_config(run: Path) -> dict:
    """config.json of a run folder, with a clear error if the folder is not a run."""
    run = Path(run)
    if not run.is_dir():
        raise RunError(f"run folder {str(run)!r} does not exist: give the folder `lstmkit train --out` wrote")
    path = run / "config.json"
    if not path.is_file():
        raise RunError(f"{str(run)!r} is not a run folder (no config.json): give the folder "
                       "`lstmkit train --out` wrote")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"{path} is not valid JSON ({e}): the run folder is damaged") from None
    if not isinstance(config, dict) or not {"task", "model", "train"} <= set(config):
        raise RunError(f"{path} is not an lstmkit run config (needs task, model and train)")
    return config


def read_vocab(run: Path) -> list[str] | None:
    path = Path(run) / "vocab.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def load_weights(model: nn.Module, path: Path) -> None:
    """Copy weights from ``path`` into ``model``, refusing weights of another shape."""
    tensors, _ = read_tensors(path)
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise RunError(f"{path} holds weights of another model (missing {missing[:3]}, "
                       f"unexpected {unexpected[:3]}): it does not match config.json")
    for name, t in tensors.items():
        if t.shape != own[name].shape:
            raise RunError(f"{path}: {name} has shape {tuple(t.shape)}, config.json's model needs "
                           f"{tuple(own[name].shape)}: the weights belong to another model")
    model.load_state_dict(tensors)


def best_weights(run: Path) -> Path:
    """The weights to use from a run: the best by validation loss, else the latest."""
    best = Path(run) / "best.safetensors"
    return best if best.is_file() else Path(run) / "model.safetensors"


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, counters: dict) -> None:
    """Model, Adam state, RNG state and ``counters`` (step, best loss, ...) in one atomic file."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    state = optimizer.state_dict()
    for i, per_param in state["state"].items():
        for key, value in per_param.items():
            tensors[f"optim.{i}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"counters": json.dumps(counters), "param_groups": json.dumps(state["param_groups"])}
    write_tensors(path, tensors, meta)


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore what ``save_checkpoint`` wrote; returns the counters."""
    tensors, meta = read_tensors(path)
    if "counters" not in meta or "rng.torch" not in tensors:
        raise RunError(f"{path} is not an lstmkit checkpoint")
    model_part = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(model_part)
    per_param: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, i, key = k.split(".", 2)
            per_param.setdefault(int(i), {})[key] = v
    optimizer.load_state_dict({"state": per_param, "param_groups": json.loads(meta["param_groups"])})
    torch.set_rng_state(tensors["rng.torch"])
    return json.loads(meta["counters"])


def read_metrics(path: Path, up_to_step: int | None = None) -> list[dict]:
    """Records of metrics.jsonl, optionally only those at or before ``up_to_step``."""
    if not Path(path).is_file():
        return []
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if up_to_step is None or r["step"] <= up_to_step]


def plot_losses(rows: list[dict], path: Path, title: str) -> None:
    """loss.png: training and validation loss against step."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        if pts:
            ax.plot(*zip(*pts, strict=True), label=label, marker="." if key == "val_loss" else None)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


class LoadedRun:
    """A run folder brought back: its config, its task (with saved state) and its best model."""

    def __init__(self, config: dict, task, model: nn.Module) -> None:
        self.config, self.task, self.model = config, task, model


def load_run(run: Path) -> LoadedRun:
    """Rebuild task and model from config.json and load the best weights (eval mode, CPU)."""
    from lstmkit.models import build_model
    from lstmkit.tasks import make_task

    run = Path(run)
    config = read_config(run)
    try:
        task = make_task(config["task"], dict(config.get("task_options", {})), config["train"]["seed"])
        task.load_state(config.get("task_state", {}))
        vocab = read_vocab(run)
        if vocab is not None:
            task.restore_vocab(vocab)
        model = build_model(config["model"])
    except (KeyError, TypeError, ValueError) as e:
        raise RunError(f"{run / 'config.json'} cannot be used ({e}): the run folder is damaged") from None
    load_weights(model, best_weights(run))
    return LoadedRun(config, task, model.eval())
