"""Shared pieces of the ported PyTorch suite (tests/test_torch_suite_*.py): the one registry of
lstmkit module -> torch.nn twin, and a twin maker that copies the weights (load_state_dict), so
every ported comparison keeps the torch.nn module as the oracle.

Not a test file itself; see tests/test_torch_suite_nn.py and tests/test_torch_suite_modules.py.
"""

from __future__ import annotations

import torch
from torch import nn

from lstmkit.registry import RECURRENT

# The six drop-ins (every model of lstmkit.registry and its cell) and their torch.nn twins.
SEQUENCE_MODULES = tuple(r.module for r in RECURRENT.values())
CELLS = tuple(r.cell for r in RECURRENT.values())
TWINS: dict[type, type] = {**{r.module: r.torch_module for r in RECURRENT.values()},
                           **{r.cell: r.torch_cell for r in RECURRENT.values()}}

_SEQUENCE_ARGS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
                  "bidirectional")


def config(module: nn.Module) -> dict:
    """The constructor arguments lstmkit's modules share with their torch.nn twins."""
    if isinstance(module, CELLS):
        kwargs = {"input_size": module.input_size, "hidden_size": module.hidden_size,
                  "bias": bool(module.bias)}
    else:
        kwargs = {name: getattr(module, name) for name in _SEQUENCE_ARGS}
        kwargs["dropout"] = float(kwargs["dropout"])
        if getattr(module, "proj_size", 0):
            kwargs["proj_size"] = module.proj_size
    if hasattr(module, "nonlinearity"):
        kwargs["nonlinearity"] = module.nonlinearity
    return kwargs


def twin(module: nn.Module) -> nn.Module:
    """The torch.nn twin of an lstmkit module: same configuration, dtype, device, a copy of the
    weights, and the same train/eval mode."""
    weight = next(module.parameters())
    oracle = TWINS[type(module)](**config(module), device=weight.device, dtype=weight.dtype)
    oracle.load_state_dict(module.state_dict())
    return oracle.train(module.training)


def flat(value) -> list[torch.Tensor]:
    """Nested tuples of tensors / PackedSequences -> a flat list of tensors."""
    if isinstance(value, nn.utils.rnn.PackedSequence):
        return [value.data]
    if isinstance(value, torch.Tensor):
        return [value]
    return [t for v in value for t in flat(v)]
