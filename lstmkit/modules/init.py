"""Gate-bias initialisation shared by ``lstmkit.LSTM`` and ``lstmkit.GRU``: the argument checks and
the draws, applied after torch.nn's own initialisation (so 0/None keep exact parity with torch.nn).

Two ways to make a fresh network start by keeping its state:
- a constant *keep bias* added to the gate that carries the state forward: ``forget_bias`` (the
  LSTM's f, Jozefowicz, Zaremba & Sutskever 2015) or ``update_bias`` (the GRU's z, as
  h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1});
- *chrono* initialisation (Tallec & Ollivier 2018, "Can recurrent neural networks warp time?"):
  the keep gate's bias b ~ log(U[1, T_max − 1]) per unit, so σ(b) = u / (1 + u) and the gate's time
  constant 1 / (1 − σ(b)) = 1 + u spans 2..T_max, the range of dependencies the data is expected
  to hold. For the LSTM also b_i = −b_f (a unit that keeps much writes little).
What it is not: the gate math (``lstmkit.functional``). Dimensions: H hidden.
"""

from __future__ import annotations

import numbers

import torch
from torch import nn


def check_keep_bias(name: str, value: float, bias: bool) -> float:
    """``forget_bias`` / ``update_bias`` as a float: TypeError for a non-number, ValueError without a bias."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} should be a number, got {type(value).__name__}")
    if value and not bias:
        raise ValueError(f"{name}={value} needs bias=True (there is no bias to add it to)")
    return float(value)


def check_chrono(chrono: int | None, bias: bool, keep_name: str, keep_value: float) -> int:
    """``chrono`` (T_max) as an int, 0 when off; errors as torch.nn's size checks raise them."""
    if chrono is None:
        return 0
    if isinstance(chrono, bool) or not isinstance(chrono, numbers.Integral):
        raise TypeError(f"chrono should be an int (T_max) or None, got {type(chrono).__name__}")
    if chrono == 0:
        return 0
    if chrono < 2:
        raise ValueError(f"chrono should be >= 2 (T_max, the longest dependency expected) or 0 (off), got {chrono}")
    if not bias:
        raise ValueError(f"chrono={chrono} needs bias=True (it sets the gate biases)")
    if keep_value:
        raise ValueError(f"chrono={chrono} and {keep_name}={keep_value} both set the keep gate's bias: "
                         f"give one of them")
    return int(chrono)


def chrono_bias(T_max: int, H: int, like: torch.Tensor) -> torch.Tensor:
    """(H,) draws of log(U[1, T_max − 1]) from torch's global RNG, on ``like``'s device and dtype."""
    return torch.empty(H, device=like.device, dtype=like.dtype).uniform_(1, T_max - 1).log_()


@torch.no_grad()
def init_keep_gate(module: nn.RNNBase, keep: int, keep_bias: float, chrono: int, opposite: int | None = None) -> None:
    """Add ``keep_bias`` to gate block ``keep`` of every ``bias_ih``; or, with ``chrono``, set that block
    to a chrono draw (and block ``opposite``, if given, to its negative), zeroing the same blocks of
    ``bias_hh`` so that b_ih + b_hh is exactly the drawn value. Called after torch.nn's initialisation."""
    H = module.hidden_size
    blocks = [keep] if opposite is None else [keep, opposite]
    for name, b_ih in module.named_parameters():
        if not name.startswith("bias_ih"):
            continue
        if not chrono:
            b_ih[keep * H:(keep + 1) * H] += keep_bias
            continue
        b_hh = getattr(module, name.replace("bias_ih", "bias_hh"))
        b = chrono_bias(chrono, H, b_ih)                                   # (H,)
        b_ih[keep * H:(keep + 1) * H] = b
        if opposite is not None:
            b_ih[opposite * H:(opposite + 1) * H] = -b
        for k in blocks:
            b_hh[k * H:(k + 1) * H] = 0.0
