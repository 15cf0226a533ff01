"""Everything the report and the figures show, computed once from a core and one input sequence.

What it is: ``explain_model(core, x, tokens)`` -> ``Explanation``: per layer and direction the
traced quantities (``traces``), the units by activity, the gate saturation (``saturation``), the
step panel's reference values (``step_panel``), and the memory curves (``memory``). ``html`` and
``figures`` only draw it.
What it is not: a loader of run folders or a tokenizer (``lstmkit.explain.inputs`` does that), nor
a drawing.

Dimension legend: T tokens, I input features, H hidden units, U units in the step panel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import Tensor, nn

from lstmkit.variants import STANDARD

from .memory import MemoryCurve, memory_curves
from .saturation import GateSaturation, saturation
from .step_panel import panel_units, step_panel
from .traces import LayerTrace, as_lstmkit, check_inputs, trace_core, unit_order


@dataclass
class View:
    """One layer and direction, ready to draw."""

    trace: LayerTrace
    order: np.ndarray  # (H,) unit indices, most active first
    saturation: list[GateSaturation]
    panel_units: np.ndarray | None = None  # (U,) units with step-panel values; None: not a standard LSTM
    panel: dict[str, np.ndarray] | None = None  # see step_panel.step_panel


@dataclass
class Explanation:
    """What one report shows."""

    tokens: list[str]  # (T,) the input as words
    views: list[View]
    memory: list[MemoryCurve] = field(default_factory=list)
    title: str = "lstmkit explain"
    note: str = ""  # where the model and the text came from
    step: int = -1  # the step the panel opens on (-1: the last token)
    unit: int | None = None  # the unit it opens on (None: the most active one)


def build_view(core: nn.Module | None, tr: LayerTrace, panel_budget: int) -> View:
    """A ``View`` of one traced layer; the step panel needs ``core``'s weights (None: no panel)."""
    order = unit_order(tr)
    view = View(tr, order, saturation(tr))
    if core is not None and tr.cell == "lstm" and tr.variant == STANDARD:  # the standard LSTM's computation
        view.panel_units = panel_units(order, tr.inputs.shape[0], panel_budget)
        view.panel = step_panel(core, tr, view.panel_units)
    return view


def explain_model(core: nn.Module, x: Tensor, tokens: list[str], *, title: str = "lstmkit explain",
                  note: str = "", label: str | None = None, memory: bool = True, baselines: bool = True,
                  panel_budget: int = 1_500_000) -> Explanation:
    """Explain ``core`` (an lstmkit or torch.nn LSTM/GRU/RNN) on one sequence x (T, I) whose steps
    are ``tokens`` (T,). ``memory``: measure ‖∂h_T/∂x_t‖ (and, ``baselines``, for a fresh RNN and
    LSTM on the same x)."""
    core = as_lstmkit(core)
    check_inputs(core, x)
    if len(tokens) != x.shape[0]:
        raise ValueError(f"tokens should have one entry per step of x: {x.shape[0]}, got {len(tokens)}")
    views = [build_view(core, tr, panel_budget) for tr in trace_core(core, x)]
    label = label or f"this model ({views[0].trace.title})"
    curves = memory_curves(core, x, label, baselines) if memory else []
    return Explanation([str(t) for t in tokens], views, curves, title, note)
