"""The recurrent models lstmkit has, each named once: everything else reads this table.

What it is: one ``Recurrent`` entry per model (``lstm``, ``gru``, ``rnn``) that says where its pieces
live (the ``torch.nn``-style module and cell, the functional entry that runs one layer and
direction, the NumPy reference with its equations, its ``torch.nn`` twins), how many gate blocks
its weights stack, which quantities its trace holds, its state (h, or h and c) and which
initialisation of its keep gate it takes (a constant bias by name, chrono).
The command line (``--model``, ``demo --models``), the models the training loop builds, the
explain report, ``lstmkit bench`` and the tests all read it.
What it is not: where the math lives (that is ``reference/`` and ``functional/``, one file per model)
or a factory chosen by a string mode: an entry only points at the real classes.

The LSTM's named variants (``lstmkit.variants``: cifg, peephole, ...) have their own table,
``VARIANTS``, beside ``RECURRENT`` (not in it: they have no torch.nn twin); ``model_entry(cell,
variant)`` gives the entry of either kind for a model config.

Adding a model: its equations (``reference/<name>.py``, ``functional/<name>.py`` and its operator,
a module in ``modules/``), then one entry here.

Layers: this module sits above ``modules/``, ``functional/`` and ``reference/`` (it imports them) and
below everything that chooses a model by name (``models``, ``train``, ``demo``, ``explain``, ``bench``,
``cli``). ``kernels/`` is a leaf and does not read it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from torch import nn

from lstmkit import functional, modules
from lstmkit.functional.variant_lstm import variant_lstm_layer
from lstmkit.reference import gru as gru_reference
from lstmkit.reference import lstm as lstm_reference
from lstmkit.reference import rnn as rnn_reference
from lstmkit.variants import NAMED, STANDARD, VariantSpec


@dataclass(frozen=True)
class Recurrent:
    """One recurrent model and where its pieces live."""

    name: str  # "lstm": the name on the command line and in config.json
    title: str  # "LSTM": in tables and figures
    module: type[nn.Module]  # lstmkit's sequence module (layers, directions, lengths)
    cell: type[nn.Module]  # lstmkit's one-step cell
    layer: Callable  # functional entry: one layer and direction over a sequence, with autograd
    reference: ModuleType  # NumPy float64 forward and BPTT: the specification
    torch_module: type[nn.Module]  # the torch.nn twin of ``module``
    torch_cell: type[nn.Module]  # the torch.nn twin of ``cell``
    gates: int  # gate blocks stacked in weight_ih / weight_hh (rows = gates * hidden_size)
    trace_fields: tuple[str, ...]  # the trace's quantities, in the order the report shows them
    states: tuple[str, ...] = ("h",)  # the recurrent state: ("h", "c") for the LSTM (hx = (h_0, c_0))
    keep_bias: str | None = None  # the argument that adds a constant to its keep gate's bias at init:
    #                               "forget_bias" (LSTM, f) or "update_bias" (GRU, z); None: no keep gate
    chrono: bool = False  # takes ``chrono=T_max`` (Tallec & Ollivier 2018; see lstmkit.modules.init)


RECURRENT: dict[str, Recurrent] = {r.name: r for r in (
    Recurrent("lstm", "LSTM", modules.LSTM, modules.LSTMCell, functional.lstm_layer, lstm_reference,
              nn.LSTM, nn.LSTMCell, gates=4, states=("h", "c"),
              keep_bias="forget_bias", chrono=True,
              trace_fields=("forget_gate", "input_gate", "output_gate", "candidate", "cell", "hidden")),
    Recurrent("gru", "GRU", modules.GRU, modules.GRUCell, functional.gru_layer, gru_reference,
              nn.GRU, nn.GRUCell, gates=3, keep_bias="update_bias", chrono=True,
              trace_fields=("reset_gate", "update_gate", "candidate", "hidden")),
    Recurrent("rnn", "RNN", modules.RNN, modules.RNNCell, functional.rnn_layer, rnn_reference,
              nn.RNN, nn.RNNCell, gates=1, trace_fields=("hidden",)),
)}
NAMES = tuple(RECURRENT)  # ("lstm", "gru", "rnn")


def recurrent(name: str) -> Recurrent:
    """The entry called ``name``; ValueError naming the known ones otherwise."""
    if name not in RECURRENT:
        raise ValueError(f"cell must be one of {', '.join(NAMES)}, got {name!r}")
    return RECURRENT[name]


def of_module(core: nn.Module) -> Recurrent | None:
    """The entry whose lstmkit module or ``torch.nn`` twin ``core`` is (exact torch.nn type), or None."""
    for r in RECURRENT.values():
        if isinstance(core, r.module) or type(core) is r.torch_module:
            return r
    return None


def or_list(names: tuple[str, ...] = NAMES) -> str:
    """'lstm, gru or rnn': the names for a message."""
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


@dataclass(frozen=True)
class Variant:
    """One named variant of the LSTM (``lstmkit.variants.NAMED``) as a model: a separate table from
    ``RECURRENT`` (which lists models with their torch.nn twins; a variant has none), with the
    fields that readers of a model's entry use (``gates``, ``trace_fields``, ``states``, ...)."""

    name: str  # "cifg": ``--variant cifg`` and ``model.variant`` in config.json
    title: str  # "CIFG": in tables and figures
    about: str  # what it changes, one line
    spec: VariantSpec
    module: Callable[..., nn.Module]  # VariantLSTM bound to this variant: module(input_size, hidden_size, ...)
    cell: Callable[..., nn.Module]  # VariantLSTMCell bound to this variant
    layer: Callable  # functional entry: functional.variant_lstm.variant_lstm_layer (takes the spec)
    gates: int  # blocks stacked in weight_ih / weight_hh (rows = gates * hidden_size)
    trace_fields: tuple[str, ...]  # the trace's quantities, in the order the report shows them
    states: tuple[str, ...]  # ("h", "c"), or ("h", "c", "q") with FGR
    keep_bias: str | None  # "forget_bias" (every variant with a forget gate; CIFG through its input gate) or None
    base: str = "lstm"  # the entry of ``RECURRENT`` it varies
    chrono: bool = False  # no chrono initialisation for the variants


def _variant_entry(name: str) -> Variant:
    v = NAMED[name]
    return Variant(name, v.title, v.about, v.spec, functools.partial(modules.VariantLSTM, variant=name),
                   functools.partial(modules.VariantLSTMCell, variant=name), variant_lstm_layer,
                   gates=len(v.spec.blocks), trace_fields=v.spec.trace_fields,
                   states=("h", "c", "q") if v.spec.full_gate_recurrence else ("h", "c"),
                   keep_bias="forget_bias" if v.spec.forget_gate else None)


VARIANTS: dict[str, Variant] = {name: _variant_entry(name) for name in NAMED}  # not in NAMES: no torch twin


def model_entry(cell: str, variant: str = STANDARD) -> Recurrent | Variant:
    """The entry of a model config's (cell, variant): ``RECURRENT[cell]`` for the standard one, else
    ``VARIANTS[variant]``; ValueError (one line naming the known ones) for any other pair."""
    if variant == STANDARD:
        return recurrent(cell)
    if variant not in VARIANTS:
        raise ValueError(f"variant must be {STANDARD} or one of {', '.join(VARIANTS)}, got {variant!r}")
    if cell != VARIANTS[variant].base:
        raise ValueError(f"variant {variant} is a variant of the LSTM: it needs cell lstm, not {cell!r}")
    return VARIANTS[variant]
