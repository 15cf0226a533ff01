"""Gate saturation: how often each gate is nearly shut or nearly open.

What it is: for every gate and unit, the share of steps the gate spends below 0.1 (left-saturated,
"closed") and above 0.9 (right-saturated, "open"), as in Karpathy, Johnson & Fei-Fei,
"Visualizing and Understanding Recurrent Networks" (2015), fig. 3: a unit near the top-left
of that scatter is a gate that stays open, e.g. a forget gate that keeps its memory for long.
What it is not: a measure of importance; a gate can matter at the few steps it moves.

Dimension legend: T tokens, H hidden units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .traces import QUANTITIES, LayerTrace

LOW, HIGH = 0.1, 0.9


@dataclass
class GateSaturation:
    """One gate of one layer and direction."""

    gate: str  # e.g. "forget_gate"
    symbol: str  # e.g. "f_t"
    below: np.ndarray  # (H,) share of steps with value < LOW, per unit
    above: np.ndarray  # (H,) share of steps with value > HIGH, per unit


def gate_saturation(values: np.ndarray, gate: str, symbol: str) -> GateSaturation:
    """values (T, H) in (0, 1) -> per-unit shares of steps below LOW and above HIGH."""
    if values.ndim != 2 or values.shape[0] < 1:
        raise ValueError(f"{gate} values should have shape (T, H) with T >= 1, got {values.shape}")
    below = (values < LOW).mean(axis=0)  # (H,)
    above = (values > HIGH).mean(axis=0)  # (H,)
    return GateSaturation(gate, symbol, below, above)


def saturation(tr: LayerTrace) -> list[GateSaturation]:
    """Every gate of one layer and direction (the candidate and the states are not gates)."""
    return [gate_saturation(v, name, tr.symbol(name)[0]) for name, v in tr.quantities.items()
            if QUANTITIES[name][1] == "gate"]
