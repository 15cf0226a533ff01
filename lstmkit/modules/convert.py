"""Conversion between lstmkit's modules and their ``torch.nn`` twins: same configuration, same
parameter names and shapes, so a state dict moves either way unchanged."""

from __future__ import annotations

from torch import nn


def config_of(module: nn.Module) -> dict:
    """The constructor arguments shared by torch.nn.RNNBase and lstmkit's RecurrentBase."""
    config = {name: getattr(module, name) for name in
              ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "bidirectional")}
    config["dropout"] = float(module.dropout)
    if getattr(module, "proj_size", 0):
        config["proj_size"] = module.proj_size
    if hasattr(module, "nonlinearity"):
        config["nonlinearity"] = module.nonlinearity
    return config


def torch_twin(target_cls: type, source: nn.Module, source_cls: type) -> nn.Module:
    """A new target_cls with source's configuration, device, dtype and a copy of its weights."""
    if not isinstance(source, source_cls):
        raise TypeError(f"expected a {source_cls.__module__}.{source_cls.__name__}, "
                        f"got {type(source).__name__}")
    weight = source.weight_ih_l0
    twin = target_cls(**config_of(source), device=weight.device, dtype=weight.dtype)
    twin.load_state_dict(source.state_dict())
    return twin
