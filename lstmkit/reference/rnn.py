"""The plain RNN in NumPy (float64): forward and hand-derived backward (BPTT).

What it is: the reference for the article's starting point, the RNN whose gradient fades over
long sequences, with PyTorch's equations and parameter layout so that it can be checked
against ``torch.nn.RNN`` (tests/test_reference_rnn.py). Same API shape as ``lstm.py``:
weights dataclass, ``*_step`` / ``*_step_backward``, ``*_forward`` / ``*_backward``.

What it is not: the LSTM (see ``lstm.py``, whose docstring also holds the dimension legend:
T time, B batch, I input, H hidden), nor fast, nor multi-layer.

References: PyTorch ``torch.nn.RNN`` documentation; the article "LSTM(Long Short-Term Memory): Gate를
도입해 RNN의 한계를 완화한 모델" (2025), part 1.

The equations (PyTorch's names; rows are batch examples)::

    Z_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh
    h_t = φ(Z_t)          φ = tanh  (φ' = 1 − h_t²)   or   relu  (φ' = [h_t > 0])
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
from numpy.typing import ArrayLike

from .lstm import Array, as_float64, check_sequence

NONLINEARITIES = ("tanh", "relu")


@dataclass
class RNNWeights:
    """One RNN layer's weights, exactly ``torch.nn.RNN``'s ``*_l0`` tensors."""

    w_ih: Array  # (H, I)
    w_hh: Array  # (H, H)
    b_ih: Array  # (H,)
    b_hh: Array  # (H,)

    @property
    def input_size(self) -> int:
        return self.w_ih.shape[1]

    @property
    def hidden_size(self) -> int:
        return self.w_ih.shape[0]

    @classmethod
    def from_torch(cls, w_ih: ArrayLike, w_hh: ArrayLike,
                   b_ih: ArrayLike | None = None, b_hh: ArrayLike | None = None) -> RNNWeights:
        """From NumPy arrays or torch tensors in PyTorch's layout; a missing bias becomes zeros."""
        w_ih, w_hh = as_float64(w_ih), as_float64(w_hh)  # (H, I), (H, H)
        H = w_hh.shape[0]
        if w_ih.ndim != 2 or w_ih.shape[0] != H or w_hh.shape != (H, H):
            raise ValueError(f"expected w_ih of shape (H, I) and w_hh of shape (H, H); "
                             f"got w_ih {tuple(w_ih.shape)} and w_hh {tuple(w_hh.shape)}")
        biases = [np.zeros(H) if b is None else as_float64(b) for b in (b_ih, b_hh)]  # (H,) each
        for name, b in zip(("b_ih", "b_hh"), biases, strict=True):
            if b.shape != (H,):
                raise ValueError(f"{name} must have shape ({H},), got {tuple(b.shape)}")
        return cls(w_ih, w_hh, *biases)

    def to_torch(self) -> tuple[Array, Array, Array, Array]:
        """(w_ih (H, I), w_hh (H, H), b_ih (H,), b_hh (H,)), copies."""
        return self.w_ih.copy(), self.w_hh.copy(), self.b_ih.copy(), self.b_hh.copy()

    @classmethod
    def random(cls, input_size: int, hidden_size: int, rng: np.random.Generator) -> RNNWeights:
        """Uniform(-1/√H, 1/√H) like ``torch.nn.RNN``'s default init."""
        k = 1.0 / np.sqrt(hidden_size)
        H, I = hidden_size, input_size
        return cls(*(rng.uniform(-k, k, size=s) for s in ((H, I), (H, H), (H,), (H,))))

    def copy(self) -> RNNWeights:
        return RNNWeights(**{f.name: getattr(self, f.name).copy() for f in fields(self)})


@dataclass
class RNNGrads:
    """Gradients of a scalar loss, named d + the forward name. db_ih equals db_hh."""

    dx: Array  # (T, B, I)
    dh0: Array  # (B, H)
    dw_ih: Array  # (H, I)
    dw_hh: Array  # (H, H)
    db_ih: Array  # (H,)
    db_hh: Array  # (H,)

    def to_torch(self) -> tuple[Array, Array, Array, Array]:
        """(dw_ih, dw_hh, db_ih, db_hh) in PyTorch's layout."""
        return self.dw_ih, self.dw_hh, self.db_ih, self.db_hh


@dataclass
class RNNStepCache:
    x_t: Array  # (B, I)
    h_prev: Array  # (B, H)
    Z_t: Array  # (B, H)  pre-activation, stored for display only (φ' is taken from h_t)
    h_t: Array  # (B, H)
    nonlinearity: str


def check_nonlinearity(nonlinearity: str) -> None:
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, got {nonlinearity!r}")


def rnn_step(x_t: Array, h_prev: Array, w: RNNWeights, nonlinearity: str = "tanh"
             ) -> tuple[Array, RNNStepCache]:
    """One step: x_t (B, I), h_prev (B, H) -> (h_t (B, H), step cache)."""
    Z_t = x_t @ w.w_ih.T + w.b_ih + h_prev @ w.w_hh.T + w.b_hh  # (B, H)
    h_t = np.tanh(Z_t) if nonlinearity == "tanh" else np.maximum(Z_t, 0.0)  # (B, H)
    return h_t, RNNStepCache(x_t=x_t, h_prev=h_prev, Z_t=Z_t, h_t=h_t, nonlinearity=nonlinearity)


def rnn_step_backward(dh_t: Array, s: RNNStepCache, w: RNNWeights
                      ) -> tuple[Array, Array, dict[str, Array]]:
    """dh_t (B, H), the total gradient at h_t -> (dx_t (B, I), dh_prev (B, H), weight gradients)."""
    # h_t = φ(Z_t), φ' from the saved output
    dphi = 1.0 - s.h_t**2 if s.nonlinearity == "tanh" else (s.h_t > 0.0).astype(np.float64)  # (B, H)
    dZ_t = dh_t * dphi  # (B, H)
    # Z_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh
    dx_t = dZ_t @ w.w_ih  # (B, I)
    dh_prev = dZ_t @ w.w_hh  # (B, H)
    db = dZ_t.sum(axis=0)  # (H,)
    dweights = {"dw_ih": dZ_t.T @ s.x_t, "dw_hh": dZ_t.T @ s.h_prev, "db_ih": db, "db_hh": db.copy()}
    return dx_t, dh_prev, dweights


@dataclass
class RNNCache:
    """Every step's cache, in time order; ``stacked(name)`` gives one quantity over time."""

    steps: list[RNNStepCache] = field(default_factory=list)

    def stacked(self, name: str) -> Array:
        return np.stack([getattr(s, name) for s in self.steps])


def rnn_forward(x: Array, h0: Array, w: RNNWeights, nonlinearity: str = "tanh"
                ) -> tuple[Array, Array, RNNCache]:
    """x (T, B, I), h0 (B, H) -> (hs (T, B, H), h_T (B, H), cache)."""
    check_nonlinearity(nonlinearity)
    check_sequence(x, w.w_ih.shape, {"h0": h0})
    h, cache = h0, RNNCache()
    for x_t in x:  # x_t (B, I)
        h, step = rnn_step(x_t, h, w, nonlinearity)
        cache.steps.append(step)
    return cache.stacked("h_t"), h, cache


def rnn_backward(dhs: Array, dh_T: Array | None, cache: RNNCache, w: RNNWeights) -> RNNGrads:
    """BPTT. dhs (T, B, H): gradient at each output h_t; dh_T (B, H) or None: at the final state."""
    T, B, H = dhs.shape
    dh = np.zeros((B, H)) if dh_T is None else dh_T  # (B, H)  gradient flowing back through h
    dx = np.zeros((T, B, w.input_size))  # (T, B, I)
    dweights = {f"d{f.name}": np.zeros_like(getattr(w, f.name)) for f in fields(w)}
    for t in reversed(range(T)):
        dx[t], dh, dw_t = rnn_step_backward(dhs[t] + dh, cache.steps[t], w)
        for name, g in dw_t.items():
            dweights[name] += g  # shared across steps: gradients add
    return RNNGrads(dx=dx, dh0=dh, **dweights)
