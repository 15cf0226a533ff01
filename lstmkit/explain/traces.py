"""Per-step data of one recurrent core on one input sequence, ready to be drawn.

What it is: the bridge from a model to the report. ``trace_core`` runs an ``lstmkit.LSTM``/``GRU``/
``RNN`` (or its ``torch.nn`` twin, converted) or a named ``VariantLSTM`` (the gates it has) on one
sequence with ``return_trace=True`` and keeps, for every layer and direction, each traced quantity
as a NumPy (T, H) array in token order, plus the layer's own input (what x_t is for that layer) for
the reference computation of the step panel.
What it is not: a plot, or a second computation of the gates: the values are the module's trace
(``lstmkit.modules.trace``), the tensors its backward uses.

Dimension legend: T tokens (time steps), I input features of a layer, H hidden units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from lstmkit.modules import VariantLSTM
from lstmkit.registry import RECURRENT, VARIANTS, model_entry, of_module
from lstmkit.variants import STANDARD

# quantity name -> (article symbol, kind); kind "gate" is in (0, 1), "signed" may be any sign
QUANTITIES: dict[str, tuple[str, str]] = {
    "forget_gate": ("f_t", "gate"),
    "input_gate": ("i_t", "gate"),
    "output_gate": ("o_t", "gate"),
    "candidate": ("c̃_t", "signed"),
    "cell": ("c_t", "signed"),
    "hidden": ("h_t", "signed"),
    "reset_gate": ("r_t", "gate"),
    "update_gate": ("z_t", "gate"),
}
GRU_CANDIDATE = ("n_t", "signed")  # the GRU's candidate is n_t, not the LSTM's c̃_t


@dataclass
class LayerTrace:
    """One layer and direction of one sequence, every array in token order."""

    cell: str  # a name of ``lstmkit.registry``: "lstm", "gru" or "rnn"
    layer: int
    direction: int  # 0 forward in time, 1 backward (bidirectional)
    quantities: dict[str, np.ndarray]  # name -> (T, H) float32, the traced values
    inputs: np.ndarray  # (T, I) float64: x_t of this layer (embeddings, or the layer below's h_t)
    variant: str = STANDARD  # an LSTM variant's name (``registry.VARIANTS``): its gates only are traced

    @property
    def fields(self) -> tuple[str, ...]:
        """The traced quantities of this cell type (a variant's: the gates it has), in the order the
        report shows them."""
        return model_entry(self.cell, self.variant).trace_fields

    @property
    def title(self) -> str:
        """The model for a reader: "LSTM", "GRU", "LSTM CIFG" ..."""
        title = RECURRENT[self.cell].title
        return title if self.variant == STANDARD else f"{title} {VARIANTS[self.variant].title}"

    @property
    def name(self) -> str:
        return f"layer {self.layer}" + (", backward" if self.direction else "")

    def symbol(self, quantity: str) -> tuple[str, str]:
        """(article symbol, kind) of a quantity of this cell type."""
        if self.cell == "gru" and quantity == "candidate":
            return GRU_CANDIDATE
        return QUANTITIES[quantity]


def as_lstmkit(core: nn.Module) -> nn.Module:
    """The core itself when it is lstmkit's, else its lstmkit twin (torch.nn cores have no trace)."""
    if isinstance(core, VariantLSTM):
        return core
    r = of_module(core)
    if r is None:
        raise TypeError(f"core should be an lstmkit or torch.nn LSTM, GRU or RNN, got {type(core).__name__}")
    return core if isinstance(core, r.module) else r.module.from_torch(core)


def cell_name(core: nn.Module) -> str:
    """The registry name of an lstmkit core ("lstm", ...; a VariantLSTM's is "lstm")."""
    if isinstance(core, VariantLSTM):
        return "lstm"
    r = of_module(core)
    if r is None or not isinstance(core, r.module):
        raise TypeError(f"not an lstmkit recurrent core: {type(core).__name__}")
    return r.name


def check_inputs(core: nn.Module, x: Tensor) -> None:
    """ValueError/TypeError naming ``x`` when it is not one (T, I) sequence for this core."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x should be a torch.Tensor of shape (T, input_size), got {type(x).__name__}")
    if x.dim() != 2 or x.shape[1] != core.input_size or x.shape[0] < 1:
        raise ValueError(f"x should have shape (T, input_size) = (T, {core.input_size}) with T >= 1, "
                         f"got {tuple(x.shape)}")
    if isinstance(core, VariantLSTM) and core.variant != STANDARD and core.variant not in VARIANTS:
        raise ValueError("explain shows the named variants of lstmkit.variants.NAMED; this VariantLSTM's spec "
                         f"is none of them: {core.spec}")
    if getattr(core, "proj_size", 0):
        raise ValueError("explain needs an LSTM without proj_size (the article's cell has no projection)")


@torch.no_grad()
def trace_core(core: nn.Module, x: Tensor) -> list[LayerTrace]:
    """Run ``core`` (in eval mode) on one sequence x (T, I); a ``LayerTrace`` per layer and direction,
    layer by layer, forward direction first."""
    core = as_lstmkit(core)
    check_inputs(core, x)
    was_training = core.training
    core.eval()
    weight = core.weight_ih_l0
    batched = x.to(weight.dtype).unsqueeze(0 if core.batch_first else 1)  # (1, T, I) or (T, 1, I)
    try:
        *_, trace = core(batched, return_trace=True)
    finally:
        core.train(was_training)
    cell, out = cell_name(core), []
    variant = core.variant if isinstance(core, VariantLSTM) else STANDARD
    fields = model_entry(cell, variant).trace_fields
    layer_in = x.double().numpy()  # (T, I)
    for layer, directions in enumerate(trace):
        hiddens = []
        for direction, tr in enumerate(directions):
            q = {name: _one_sequence(getattr(tr, name), core.batch_first) for name in fields}
            out.append(LayerTrace(cell, layer, direction, q, layer_in, variant))
            hiddens.append(q["hidden"].astype(np.float64))
        layer_in = np.concatenate(hiddens, axis=1)  # (T, D*H): the next layer's x_t
    return out


def _one_sequence(t: Tensor, batch_first: bool) -> np.ndarray:
    """A traced (1, T, H) or (T, 1, H) tensor -> (T, H) float32 NumPy."""
    t = t[0] if batch_first else t[:, 0]  # (T, H)
    return t.detach().float().cpu().numpy().copy()


def unit_order(tr: LayerTrace) -> np.ndarray:
    """Units by activity, most active first: mean |h_t| over the tokens (ties by index)."""
    activity = np.abs(tr.quantities["hidden"]).mean(axis=0)  # (H,)
    return np.argsort(-activity, kind="stable")
