"""Training under torchrun: the process group, and ranks that fail together instead of waiting.

What it is: ``start`` joins the process group torchrun set up (gloo on the CPU, NCCL on CUDA);
``together`` runs a piece of work on every rank and, when it raised on any of them, raises on all
of them (the failing rank its own error, the others ``OtherRankFailed`` carrying its message), so
no rank is left waiting in a collective that a failed one never joins; ``leave`` ends a run on
every rank together (a barrier, then the group destroyed on each, its threads joined).

Why the group must really be destroyed: gloo runs collectives on worker threads, and a worker
drops its last finished collective a moment after the caller's ``wait`` returns. Dropping it
releases the tensors it was given; a tensor made in Python needs the interpreter's lock for that.
If the interpreter is already shutting down, the worker thread is ended inside a C++ destructor
and the process aborts ("terminate called without an active exception", SIGABRT) after a run that
succeeded. Destroying the group joins its workers first, but only if nothing else holds the group:
``torch.distributed.nn.functional`` (imported by DistributedDataParallel) takes ``group.WORLD`` as
a default argument, evaluated at import, so imported after the group exists it holds the group to
the end of the process. ``start`` imports it before the group exists; ``leave`` wants the
DistributedDataParallel wrapper dropped (it holds the group too). ``together``'s failure path
destroys the group while the wrapper, in the frames the error passes through, still holds it:
there the threads end with the wrapper (the run has failed already; its exit code says so).
What it is not: the training loop (lstmkit/train.py), which keeps every rank on the same step by
itself (one global batch per step, a non-finite loss stops every rank at once).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.distributed as dist

from lstmkit.errors import OtherRankFailed

R = TypeVar("R")
MESSAGE_BYTES = 1024                  # the failing rank's message, as sent to the others (cut to this)


def start(device: str) -> tuple[int, int]:
    """(rank, world size): (0, 1) outside torchrun; under it, joins the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        import torch.distributed.nn.functional  # noqa: F401  before the group: see the module docstring
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def leave(world: int) -> None:
    """The end of a run on every rank: wait for all (so none exits while another still uses the
    group), then destroy the group, which joins its worker threads. Call it once the model's
    DistributedDataParallel wrapper is dropped (see the module docstring)."""
    if world > 1 and dist.is_initialized():
        dist.barrier()
        gc.collect()  # a dropped wrapper caught in a reference cycle still holds the group
        dist.destroy_process_group()


def together(rank: int, world: int, work: Callable[[], R], device: str = "cpu") -> R:
    """work() on every rank; if it raised on any rank, every rank raises (see the module docstring).

    A collective on every rank, so every rank must call it at the same point of the run.
    """
    if world == 1:
        return work()
    try:
        result, error = work(), None
    except Exception as e:  # any failure: the other ranks must hear of it rather than wait
        result, error = None, e
    first = torch.tensor([rank if error is not None else world], device=device)
    dist.all_reduce(first, op=dist.ReduceOp.MIN)                   # the lowest failing rank, or world
    failed = int(first.item())
    if failed == world:
        return result
    message = torch.zeros(MESSAGE_BYTES, dtype=torch.uint8, device=device)
    if rank == failed:
        text = " ".join(str(error).split()) or type(error).__name__
        data = text.encode()[:MESSAGE_BYTES]
        message[:len(data)] = torch.tensor(list(data), dtype=torch.uint8)
    dist.broadcast(message, src=failed)                            # its words, as bytes: nothing unpickled
    dist.barrier()                                                 # every rank has them before any exits
    dist.destroy_process_group()
    if error is not None:
        raise error
    text = bytes(message.cpu().tolist()).rstrip(b"\0").decode(errors="replace")
    raise OtherRankFailed(f"process {failed} of this torchrun run failed: {text}")
