"""Checks at the public edge of the modules: every message names the argument, what was
expected, what came, and where it helps, the fix. Internal invariants use ``assert`` instead.

The exception types are torch.nn's for the same mistake, so code written for ``nn.LSTM`` catches
them: TypeError / ValueError for constructor arguments, ValueError for an input of the wrong rank
or dtype, RuntimeError for a size that does not match (input size, state shape, sequence length 0)
and for a tensor on another device or a state of another dtype."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import Tensor


def check_sizes(name: str, value: object, minimum: int) -> int:
    """An int >= minimum (bools refused), for constructor sizes."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} should be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} should be >= {minimum}, got {value}")
    return int(value)


def check_flag(name: str, value: object) -> bool:
    """A real bool, as torch.nn asks of ``bias`` and ``batch_first`` (``bias="False"`` would be
    truthy)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} should be a bool (True or False), got {type(value).__name__} {value!r}")
    return value


def check_dropout(dropout: object) -> float:
    """A probability in [0, 1]; like torch.nn it only acts between layers."""
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real):
        raise TypeError(f"dropout should be a number in [0, 1], got {type(dropout).__name__} {dropout!r}")
    if not 0 <= dropout <= 1:
        raise ValueError(f"dropout should be a number in [0, 1] representing the probability of an "
                         f"element being zeroed, got {dropout}")
    return float(dropout)


def check_input(x: object, input_size: int, weight: Tensor, batch_first: bool | None = None) -> Tensor:
    """A 2-D (unbatched) or 3-D float tensor whose last size is input_size, on the weights'
    device and of their dtype. With batch_first given (None: not known), also at least one step."""
    if not isinstance(x, Tensor):
        raise TypeError(f"input should be a torch.Tensor or PackedSequence, got {type(x).__name__}")
    if x.dim() not in (2, 3):
        raise ValueError(f"input should be 3-D (batched) or 2-D (unbatched), got {x.dim()}-D "
                         f"with shape {tuple(x.shape)}")
    if x.shape[-1] != input_size:
        raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected {input_size}, "
                           f"got {x.shape[-1]}")
    if x.dtype != weight.dtype:
        raise ValueError(f"input dtype {x.dtype} does not match the weights' dtype {weight.dtype}: "
                         f"convert input: input.to({weight.dtype}), or the model: model.to({x.dtype})")
    check_like(x, weight, "input")
    if batch_first is not None or x.dim() == 2:
        check_steps(x.shape[1] if batch_first and x.dim() == 3 else x.shape[0])
    return x


def check_cell_input(cell, input: object) -> tuple[Tensor, bool]:
    """A cell's input (B,I) or (I,), checked as torch.nn's cells check it -> (x (1,B,I), unbatched)."""
    if not isinstance(input, Tensor):
        raise TypeError(f"input should be a torch.Tensor, got {type(input).__name__}")
    if input.dim() not in (1, 2):
        raise ValueError(f"{type(cell).__name__}: Expected input to be 1-D or 2-D but received {input.dim()}-D tensor")
    if input.shape[-1] != cell.input_size:
        raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected {cell.input_size}, "
                           f"got {input.shape[-1]}")
    check_like(input, cell.weight_ih, "input")
    unbatched = input.dim() == 1
    return input.reshape(1, 1 if unbatched else input.shape[0], cell.input_size), unbatched


def check_steps(steps: int) -> None:
    """A sequence of at least one step (torch.nn says the same, with a RuntimeError)."""
    if steps == 0:
        raise RuntimeError("Expected sequence length to be larger than 0 in RNN: the input has 0 time steps")


def check_like(t: Tensor, weight: Tensor, name: str) -> None:
    """t has the weights' dtype and device; the message says how to convert either side."""
    if t.dtype != weight.dtype:
        raise RuntimeError(f"{name} dtype {t.dtype} does not match the weights' dtype {weight.dtype}: "
                           f"convert {name}: {name}.to({weight.dtype}), or the model: model.to({t.dtype})")
    if t.device != weight.device:
        raise RuntimeError(f"{name} is on {t.device} but the weights are on {weight.device}: "
                           f"move {name}: {name}.to('{weight.device}'), or the model: model.to('{t.device}')")


def check_state(name: str, t: object, expected: tuple[int, ...], weight: Tensor) -> Tensor:
    """An initial state tensor of exactly the expected shape, dtype and device."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} should be a torch.Tensor, got {type(t).__name__}")
    if tuple(t.shape) != expected:
        raise RuntimeError(f"Expected hidden {name} size {expected}, got {tuple(t.shape)}")
    check_like(t, weight, name)
    return t


def check_lengths(lengths: object, batch: int, steps: int, device: torch.device) -> Tensor:
    """Lengths of the sequences in a padded batch: B integers in [1, T], as int64 on device."""
    if isinstance(lengths, Tensor):
        if lengths.dtype.is_floating_point or lengths.dtype == torch.bool or lengths.is_complex():
            raise TypeError(f"lengths should hold integers, got a tensor of {lengths.dtype}")
    elif isinstance(lengths, Sequence) and all(
            isinstance(n, numbers.Integral) and not isinstance(n, bool) for n in lengths):
        lengths = torch.tensor(list(lengths), dtype=torch.int64)
    else:
        raise TypeError(f"lengths should be a 1-D integer tensor or a list of ints, got {type(lengths).__name__}")
    if lengths.dim() != 1 or lengths.shape[0] != batch:
        raise ValueError(f"lengths should have one entry per sequence in the batch, shape ({batch},), "
                         f"got shape {tuple(lengths.shape)}")
    if torch.compiler.is_compiling() or torch.compiler.is_exporting():
        return lengths.to(device=device, dtype=torch.int64)     # values unknown while tracing (the kernel checks)
    low, high = int(lengths.min()), int(lengths.max())
    if low < 1 or high > steps:
        raise ValueError(f"lengths should lie in [1, {steps}] (the padded input has {steps} steps), "
                         f"got values from {low} to {high}")
    return lengths.to(device=device, dtype=torch.int64)
