"""The ``lstmkit::`` operator namespace and what every recurrent operator shares.

What it is: the ``torch.library`` namespace in which ``lstm_op``, ``gru_op`` and ``rnn_op`` define
their operators (a layer's forward, its inference forward, its backward), each with a fake kernel
for shapes and, for the forward, a registered autograd formula; plus the rules the entry functions
follow to pick a path:

- under a ``torch.func`` transform or forward-mode AD, the composite forward of
  ``functional.composite`` (plain PyTorch operations that every transform understands);
- float16 and bfloat16 run in float32 inside and are cast back (as torch's own CPU RNNs keep their
  accumulations in float32), so the compiled kernel serves them and accuracy is not lost per step;
- otherwise the operators: autograd, ``torch.compile``, ``torch.export``, ``torch.jit.trace``,
  dispatch modes and the profiler see one operator per layer and direction. Where nothing can
  observe an operator (``plain_eager``: no tracing, compiling, exporting, mode or profiler, plain
  tensors), an entry calls the operator's own implementation and autograd formula directly
  (``eager_function``): the dispatcher costs ~7 us a call without grad and ~19 us with, which was
  half of a streaming step and 10% of config A of ``lstmkit bench``.

A backward asked to build a graph (``create_graph=True``) recomputes the forward with the
composite and differentiates it (``composite_vjp``), so gradients of gradients are exact.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

LIB = torch.library.Library("lstmkit", "DEF")
REDUCED = (torch.float16, torch.bfloat16)


def define(schema: str, impl: Callable, fake: Callable) -> None:
    """Define ``lstmkit::<schema>`` with impl on every device and a fake kernel for shapes."""
    name = schema.split("(", 1)[0]
    LIB.define(schema)
    LIB.impl(name, impl, "CompositeExplicitAutograd")
    torch.library.register_fake(f"lstmkit::{name}", fake, lib=LIB)


def outside_autocast(entry: Callable) -> Callable:
    """Run an entry function with autocast off for its first tensor's device: the operators and the
    composite compute in the dtype they are given (a module casts its input where torch.nn's
    autocast would), never in a mix that autocast picks op by op."""
    @functools.wraps(entry)
    def run(x: Tensor, *args, **kwargs):
        if not torch.is_autocast_enabled(x.device.type):
            return entry(x, *args, **kwargs)
        with torch.autocast(x.device.type, enabled=False):
            return entry(x, *args, **kwargs)
    return run


def needs_grad(*tensors: Tensor | None) -> bool:
    """True when autograd records and any of the tensors requires a gradient. (A loop, not any() over
    a generator: a cell called step by step asks this every call, and the generator cost ~1 us.)"""
    if not torch.is_grad_enabled():
        return False
    for t in tensors:
        if t is not None and t.requires_grad:
            return True
    return False


def needs_cache(*tensors: Tensor | None) -> bool:
    """True where the forward that keeps a cache for backward must run: a gradient is needed, or
    ``torch.jit.trace`` records (one traced graph serves runs with and without grad, and the trace
    check reruns the module under no_grad: the graph must not depend on the grad mode)."""
    return needs_grad(*tensors) or torch.jit.is_tracing()


_FAKE_MODE, _PROXY_MODE = torch._C._TorchDispatchModeKey.FAKE, torch._C._TorchDispatchModeKey.PROXY
_get_dispatch_mode, _is_tracing = torch._C._get_dispatch_mode, torch._C._is_tracing
_Parameter = torch.nn.Parameter


def plain_eager(*tensors: Tensor | None) -> bool:
    """True where nothing can observe whether an operator was dispatched: eager mode with no
    tracer, compiler, exporter, torch-function or dispatch mode, or profiler, and tensors of the
    plain types (no subclass, no fake tensor). (A cell called step by step asks every step: the
    checks are written out, ~0.6 us in all; is_compiling first, which torch.compile folds to True,
    so it never traces the others.)"""
    if (torch.compiler.is_compiling() or _is_tracing() or torch.compiler.is_exporting()
            or torch.autograd.profiler._is_profiler_enabled or torch._C._is_torch_function_mode_enabled()
            or torch._C._len_torch_dispatch_stack() > 0
            or _get_dispatch_mode(_FAKE_MODE) is not None or _get_dispatch_mode(_PROXY_MODE) is not None):
        return False
    for t in tensors:
        if t is not None and type(t) is not Tensor and type(t) is not _Parameter:
            return False
    return True


def eager_function(name: str, forward: Callable, setup_context: Callable, backward: Callable) -> type:
    """An autograd.Function made of an operator's implementation and its autograd formula: what an
    entry calls in ``plain_eager`` mode instead of the operator (the same functions, no dispatcher)."""
    def run(ctx, *inputs):
        output = forward(*inputs)
        setup_context(ctx, inputs, output)
        return output
    return type(name, (torch.autograd.Function,), {"forward": staticmethod(run), "backward": staticmethod(backward)})


def use_composite(*tensors: Tensor | None) -> bool:
    """True under a ``torch.func`` transform or where a tensor carries a forward-mode tangent:
    there only plain PyTorch operations are understood."""
    if torch.compiler.is_compiling():
        return False
    if torch._C._functorch.peek_interpreter_stack() is not None:
        return True
    return has_tangent(*tensors)


def has_tangent(*tensors: Tensor | None) -> bool:
    """True where a tensor carries a forward-mode tangent (only possible inside a dual level)."""
    if torch.autograd.forward_ad._current_level < 0:
        return False
    return any(t is not None and torch.autograd.forward_ad.unpack_dual(t).tangent is not None for t in tensors)


def compiled_unobserved(*tensors: Tensor | None):
    """The compiled CPU namespace (``kernels.compiled_cells()``) where a direct call of it could not
    be told from the operators: kernels built and selected, nothing watching (``plain_eager``), no
    ``torch.func`` transform or forward-mode tangent among the tensors, no CPU autocast; else None.
    What the modules' shortcuts ask (the cells' compiled step, the LSTM's compiled inference)."""
    from lstmkit.kernels import compiled_cells

    rec = compiled_cells()
    # plain_eager() and use_composite(*tensors), with the states that live in C++ (tracer, modes,
    # autocast) read in one call (kernels/watchers.cpp: ~1 us, ~3 before)
    if rec is None or torch.compiler.is_compiling() or torch.compiler.is_exporting() \
            or torch.autograd.profiler._is_profiler_enabled or not rec.dispatch_unwatched() \
            or torch._C._functorch.peek_interpreter_stack() is not None or has_tangent(*tensors):
        return None
    return rec


def compute_dtype(x: Tensor, *tensors: Tensor | None) -> torch.dtype | None:
    """float32 where x or any tensor is float16/bfloat16 (computed in float32, cast back), else None.
    The common case is decided on x and one weight (tensors[2]) alone: any other tensor of
    another dtype is refused by the kernel's checks or PyTorch's operators, never computed."""
    if (x.dtype is torch.float32 or x.dtype is torch.float64) and tensors[2].dtype is x.dtype:
        return None
    if x.dtype in REDUCED or any(t is not None and t.dtype in REDUCED for t in tensors):
        return torch.float32
    return None


def cast(tensors: Sequence[Tensor | None], dtype: torch.dtype) -> list[Tensor | None]:
    """Floating tensors cast to dtype (a differentiable cast); None and integer tensors as given."""
    return [t.to(dtype) if t is not None and t.is_floating_point() else t for t in tensors]


def composite_vjp(forward: Callable, inputs: Sequence[Tensor | None], extra: Sequence, grads: Sequence[Tensor | None],
                  need: Sequence[bool]) -> list[Tensor | None]:
    """Gradients of forward(*inputs, *extra)'s first len(grads) outputs, as a graph (create_graph):
    the backward of an operator when its gradient must itself be differentiated. Taken with respect
    to a view of each input that requires a gradient, so autograd stops there: with respect to the
    inputs themselves it would also follow their history, and a tensor that earlier operators of
    the same graph used too (a weight shared by the steps of a cell loop, tied weights) would get
    those operators' contributions twice (the outer backward adds them as well). Through the views
    the gradients still depend on the inputs, so higher derivatives reach them."""
    with torch.enable_grad():
        inputs = [t.view_as(t) if t is not None and t.requires_grad else t for t in inputs]
        outs = forward(*inputs, *extra)[:len(grads)]
    pairs = [(o, g) for o, g in zip(outs, grads, strict=True) if g is not None]
    wrt = [t for t, n in zip(inputs, need, strict=True) if n and t is not None]
    found = iter(torch.autograd.grad([o for o, _ in pairs], wrt, [g for _, g in pairs], create_graph=True,
                                     allow_unused=True) if pairs and wrt else [None] * len(wrt))
    return [next(found) if n and t is not None else None for t, n in zip(inputs, need, strict=True)]


def refuse_backward(op: str, instead: str) -> Callable:
    """An autograd formula for an inference operator: backward raises instead of returning a
    gradient that was never computed."""
    def backward(ctx, *grads):
        raise RuntimeError(f"lstmkit::{op} keeps nothing for backward (it is the inference path); "
                           f"call lstmkit::{instead} where a gradient is needed")
    return backward


def none_setup(ctx, inputs, output) -> None:
    """setup_context of an operator whose backward needs nothing."""


def present(t: Tensor, wanted: bool) -> Tensor | None:
    """An operator's optional gradient output (an empty placeholder where not wanted) -> None."""
    return t if wanted else None


def fake_grads(like: Sequence[Tensor | None], need: Sequence[bool], x: Tensor) -> tuple[Tensor, ...]:
    """A backward operator's fake result: a gradient shaped like each wanted input, else a placeholder."""
    return tuple(torch.empty_like(t) if n and t is not None else placeholder(x)
                 for t, n in zip(like, need, strict=True))


def placeholder(like: Tensor) -> Tensor:
    """What an operator returns for a gradient nobody asked for (a schema cannot return None)."""
    return like.new_empty(0)
