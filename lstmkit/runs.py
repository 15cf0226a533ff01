"""The run folder: what a training run leaves on disk, written atomically, read back safely.

    config.json              the resolved config (task, task options, model, training), plus task state
    vocab.json               the token vocabulary (id -> string), for tasks whose input is tokens
    checkpoint.safetensors   model weights + Adam state + RNG state, step and counters in its metadata:
                             one file, so a kill can never leave a half-updated checkpoint
    model.safetensors        the latest weights;  best.safetensors: the weights with the best val loss
    metrics.jsonl            one JSON record per log or evaluation;  loss.png: the loss curve
    results.json             the final test scores

Every file is written to a temporary name, flushed to disk and renamed over the old one
(``os.replace``), so a reader sees the old file or the new one, never a torn one; a write that fails
(a full disk) leaves the old file and raises ``RunError``. metrics.jsonl is appended one whole record
at a time: a failed append is cut back to the previous end, and a torn last line (from a crash) is
dropped when read. One process at a time writes a run folder: it holds ``.lock`` (an OS file lock,
with its pid inside), which the OS releases if the process dies, so a stale lock never blocks; the
holder removes temporaries that a killed writer left. Nothing is ever unpickled: weights and
optimizer state are safetensors, everything else JSON. Not the training loop (``lstmkit.train``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from lstmkit.errors import RunError
from lstmkit.models import build_model
from lstmkit.tasks import make_task


def _write_failed(path: Path, e: BaseException) -> RunError:
    reason = os.strerror(e.errno) if isinstance(e, OSError) and e.errno else str(e).splitlines()[0]
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in reason:
        reason = "no space left on the device"
    return RunError(f"cannot write {path} ({reason}); it keeps its previous version: free space, then "
                    "continue with --resume")


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)``, flush it to disk, then rename the temporary file over ``path``.

    A failure (a full disk, ...) removes the temporary, leaves ``path`` as it was and raises ``RunError``.
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except (OSError, SafetensorError) as e:
        if isinstance(e, OSError) and e.errno in (errno.ENOENT, errno.ENOTDIR) and not path.parent.is_dir():
            raise RunError(f"cannot write {path}: its folder is gone") from None
        raise _write_failed(path, e) from None
    finally:
        if tmp and os.path.exists(tmp):
            os.remove(tmp)


def _fsync_dir(folder: Path) -> None:
    if os.name == "posix":  # make the rename itself durable
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{6,}\.tmp$")  # atomic_write's mkstemp names


def remove_temporaries(run: Path) -> list[str]:
    """Delete temporaries a killed writer left in ``run`` (call only while holding its lock)."""
    removed = []
    for f in Path(run).iterdir():
        if _TEMPORARY.match(f.name) and f.is_file():
            with contextlib.suppress(OSError):
                f.unlink()
                removed.append(f.name)
    return removed


def append_metrics(path: Path, record: dict) -> None:
    """Append one record to metrics.jsonl as one write; a failed write is cut back to the old end."""
    data = (json.dumps(record) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        end = os.fstat(fd).st_size
        try:
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
        except OSError as e:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, end)  # the file stays as it was: no torn line
            raise _write_failed(Path(path), e) from None
    finally:
        os.close(fd)


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
    if run.exists() and not run.is_dir():
        raise RunError(f"{str(run)!r} is a file, not a run folder: give the folder `lstmkit train --out` wrote")
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


COUNTERS = {"step": int, "best_val_loss": (int, float), "best_step": int, "bad_evals": int, "stopped": str}


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore what ``save_checkpoint`` wrote; returns the counters.

    Everything is checked before anything is restored: a checkpoint of another model or a damaged
    one (wrong shape, extra or missing key, bad optimizer, RNG state or counters) raises ``RunError``.
    """
    tensors, meta = read_tensors(path)

    def bad(why: str) -> RunError:
        return RunError(f"{path} cannot be resumed from: {why}; it is damaged or belongs to another run")

    if "counters" not in meta or "param_groups" not in meta or "rng.torch" not in tensors:
        raise bad("it is not an lstmkit checkpoint (no counters, optimizer groups or RNG state)")
    try:
        counters, groups = json.loads(meta["counters"]), json.loads(meta["param_groups"])
    except json.JSONDecodeError as e:
        raise bad(f"its metadata is not valid JSON ({e})") from None
    if not isinstance(counters, dict) or "step" not in counters or any(
            k in counters and (not isinstance(counters[k], t) or isinstance(counters[k], bool))
            for k, t in COUNTERS.items()):
        raise bad(f"its counters {str(meta['counters'])[:80]} are not step, best_val_loss, best_step, "
                  "bad_evals, stopped")
    if counters["step"] < 0 or math.isnan(counters.get("best_val_loss", 0.0)):
        raise bad(f"its counters {str(meta['counters'])[:80]} are out of range")
    # the model
    own = model.state_dict()
    model_part = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    missing, unexpected = sorted(set(own) - set(model_part)), sorted(set(model_part) - set(own))
    if missing or unexpected:
        raise bad(f"its weights do not match config.json's model (missing {missing[:3]}, "
                  f"unexpected {unexpected[:3]})")
    for name, t in model_part.items():
        if t.shape != own[name].shape or not t.is_floating_point():
            raise bad(f"model.{name} is {t.dtype} {tuple(t.shape)}, the model needs {own[name].dtype} "
                      f"{tuple(own[name].shape)}")
    # the optimizer: per parameter index, step (a scalar) and moments of the parameter's shape
    params = [p for g in optimizer.param_groups for p in g["params"]]
    per_param: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            parts = k.split(".", 2)
            if len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) >= len(params):
                raise bad(f"{k} names no parameter of the model")
            per_param.setdefault(int(parts[1]), {})[parts[2]] = v
    expected = {"step", "exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if optimizer.defaults.get("amsgrad") else set())
    if per_param and set(per_param) != set(range(len(params))):
        raise bad(f"it has optimizer state for {len(per_param)} of the model's {len(params)} parameters")
    for i, state in per_param.items():
        if set(state) != expected:
            raise bad(f"the optimizer state of parameter {i} holds {sorted(state)}, not {sorted(expected)}")
        if state["step"].numel() != 1 or not torch.isfinite(state["step"]).all() or float(state["step"]) < 0:
            raise bad(f"optim.{i}.step is not a step count")
        for key in expected - {"step"}:
            if state[key].shape != params[i].shape or not state[key].is_floating_point():
                raise bad(f"optim.{i}.{key} is {state[key].dtype} {tuple(state[key].shape)}, its parameter is "
                          f"{tuple(params[i].shape)}")
    own_groups = optimizer.state_dict()["param_groups"]
    if (not isinstance(groups, list) or len(groups) != len(own_groups)
            or any(not isinstance(g, dict) or g.get("params") != o["params"] or not _numbers_like(g, o)
                   for g, o in zip(groups, own_groups, strict=False))):
        raise bad("its optimizer parameter groups do not match the model")
    rng = tensors["rng.torch"]
    if rng.dtype != torch.uint8 or rng.shape != torch.get_rng_state().shape:
        raise bad(f"rng.torch is {rng.dtype} {tuple(rng.shape)}, not a torch RNG state")
    try:
        model.load_state_dict(model_part)
        optimizer.load_state_dict({"state": per_param, "param_groups": groups})
        torch.set_rng_state(rng)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise bad(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    return counters


def _numbers_like(saved: dict, own: dict) -> bool:
    """The optimizer's numeric settings (lr, betas, eps, ...) are finite numbers in ``saved`` too."""
    def numbers(v):
        v = v if isinstance(v, (list, tuple)) else [v]
        return [x for x in v if isinstance(x, (int, float)) and not isinstance(x, bool)]
    for key, value in own.items():
        if key != "params" and numbers(value) and key in saved:
            got = numbers(saved[key])
            if len(got) != len(numbers(value)) or not all(math.isfinite(x) for x in got):
                return False
    return True


def read_metrics(path: Path, up_to_step: int | None = None) -> list[dict]:
    """Records of metrics.jsonl, optionally only those at or before ``up_to_step``.

    A torn last line (a crash or a full disk mid-append) is dropped; a damaged line before it raises
    ``RunError``.
    """
    if not Path(path).is_file():
        return []
    lines = Path(path).read_bytes().split(b"\n")
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                raise ValueError("not a record with a step")
        except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            if all(not rest.strip() for rest in lines[n:]):
                break  # the torn last line: it was being written when the run stopped
            raise RunError(f"{path} line {n} is not a metrics record ({e}): the run folder is damaged") from None
        rows.append(row)
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


def make_folder(run: Path) -> None:
    """Create the run folder ``run`` (and its parents) if needed; a file in the way raises ``RunError``."""
    run = Path(run)
    if run.exists() and not run.is_dir():
        raise RunError(f"--out {run} is a file, not a folder: give a folder for the run")
    try:
        run.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise RunError(f"cannot create the run folder {run}: a part of its path is a file") from None
    except OSError as e:
        raise RunError(f"cannot create the run folder {run} ({os.strerror(e.errno) if e.errno else e})") from None


LOCK = ".lock"


@contextlib.contextmanager
def lock_run(run: Path):
    """Hold the run folder ``run`` (it must exist) for writing; another live holder raises ``RunError``.

    The lock is ``run/.lock``, locked with ``flock`` (released by the OS when its holder dies, however it
    dies) and holding the holder's pid for the message. Where there is no ``flock`` the file is created
    exclusively and a lock whose pid is no longer alive is taken over. On entry, temporaries a killed
    writer left behind are removed; on exit the lock file is removed.
    """
    run = Path(run)
    path = run / LOCK
    try:
        import fcntl
    except ImportError:  # not POSIX
        fcntl = None
    for _ in range(100):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | (0 if fcntl else os.O_EXCL), 0o666)
        except FileExistsError:  # no flock: a lock file exists; is its owner alive?
            owner = _lock_owner(path)
            if owner is not None and _alive(owner):
                raise _locked(run, owner) from None
            with contextlib.suppress(OSError):
                path.unlink()  # stale: its owner is gone
            continue
        except OSError as e:
            raise RunError(f"cannot create the lock file {path} ({os.strerror(e.errno) if e.errno else e})") from None
        if fcntl:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise _locked(run, _lock_owner(path)) from None
            try:  # the file may have been removed by its last holder between our open and our flock
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
        break
    else:
        raise RunError(f"could not take the lock {path}: it keeps changing hands")
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError:
        pass  # the pid is only for the message; the lock holds without it
    try:
        remove_temporaries(run)
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # before closing: whoever opened the old file will see it is gone and retry
        os.close(fd)


def _lock_owner(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _locked(run: Path, owner: int | None) -> RunError:
    who = f"process {owner}" if owner else "another process"
    return RunError(f"{run} is being written by {who} (another lstmkit train?): wait for it to end, "
                    "or give another --out")


class LoadedRun:
    """A run folder brought back: its config, its task (with saved state) and its best model."""

    def __init__(self, config: dict, task, model: nn.Module) -> None:
        self.config, self.task, self.model = config, task, model


def load_run(run: Path) -> LoadedRun:
    """Rebuild task and model from config.json and load the best weights (eval mode, CPU)."""
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
