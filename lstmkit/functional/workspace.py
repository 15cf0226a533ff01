"""Reusable sequence-sized buffers for training: the gates tensor a layer saves for backward.

What it is: a small free list of tensors keyed by shape, dtype and device. A training step
allocates each layer's gates (T,B,4H) in forward and is done with them at the end of backward
(where dz has been written over them); the next step wants the same shapes again. Freshly
allocated, such a buffer past glibc's mmap threshold (32 MB at most) comes back from the kernel as
new pages and is page-faulted on first write, every step: measured 10-15% of a training step of
configs C and D of ``lstmkit bench``. Given back here, it is taken again by the next forward.

What it is not: an allocator for anything a caller can see. Only buffers that never leave the
autograd Function (gates when no trace is asked for) pass through it, so nothing a user holds is
ever reused. ``empty_cache()`` frees what it keeps; it keeps at most ``MAX_BYTES`` in all.
"""

from __future__ import annotations

import threading

import torch
from torch import Tensor

from lstmkit.functional.backend import _alias

MAX_BYTES = 1 << 30            # what the free list may hold in all (1 GiB)
MIN_BYTES = 1 << 20            # smaller buffers come cheaply from malloc's own free lists
PER_KEY = 8                    # buffers of one shape kept (one per layer and direction in flight)

_free: dict[tuple, list[Tensor]] = {}
_held = 0
_lock = threading.Lock()


def _key(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> tuple:
    return tuple(shape), dtype, device


def take(shape: tuple[int, ...], like: Tensor) -> Tensor | None:
    """A kept buffer of this shape with like's dtype and device (contents undefined), or None."""
    global _held
    with _lock:
        bucket = _free.get(_key(shape, like.dtype, like.device))
        if not bucket:
            return None
        t = bucket.pop()
        _held -= t.numel() * t.element_size()
        return t


def give(t: Tensor) -> None:
    """Keep t (contiguous, CPU, not referenced by anything a caller holds) for a later take()."""
    global _held
    nbytes = t.numel() * t.element_size()
    if t.device.type != "cpu" or not t.is_contiguous() or t.storage_offset() or nbytes < MIN_BYTES:
        return
    if t.untyped_storage().nbytes() != nbytes:            # a view of something larger: not ours to keep
        return
    with _lock:
        bucket = _free.setdefault(_key(t.shape, t.dtype, t.device), [])
        if len(bucket) >= PER_KEY or _held + nbytes > MAX_BYTES:
            return
        bucket.append(_alias(t))    # its own version counter: a retained graph still unpacks the saved one
        _held += nbytes


def empty_cache() -> None:
    """Free every kept buffer."""
    global _held
    with _lock:
        _free.clear()
        _held = 0


def held_bytes() -> int:
    """Bytes kept now."""
    return _held
