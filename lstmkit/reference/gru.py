"""The GRU in NumPy (float64): forward and hand-derived backward (BPTT).

What it is: the reference for the simpler gated alternative the article announces at its end,
with PyTorch's equations, gate order (r, z, n) and parameter layout, checked against
``torch.nn.GRU`` (tests/test_reference_gru.py). Same API shape as ``lstm.py``.

What it is not: the LSTM (see ``lstm.py``, whose docstring also holds the dimension legend:
T time, B batch, I input, H hidden), nor fast, nor multi-layer.

References: PyTorch ``torch.nn.GRU`` documentation; Cho et al., "Learning Phrase
Representations using RNN Encoder-Decoder for Statistical Machine Translation" (2014).

The equations (PyTorch's names; ``W x`` is computed as ``x @ W.T``)::

    Z_r = W_ir x_t + b_ir + W_hr h_{t-1} + b_hr        r_t = σ(Z_r)       reset gate
    Z_z = W_iz x_t + b_iz + W_hz h_{t-1} + b_hz        z_t = σ(Z_z)       update gate
    hn_t = W_hn h_{t-1} + b_hn                                            (kept apart: r_t scales it)
    Z_n = W_in x_t + b_in + r_t ⊙ hn_t                 n_t = tanh(Z_n)    candidate
    h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t-1}

b_hn sits inside the reset gate's product, so unlike the LSTM's the two biases do not merge.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
from numpy.typing import ArrayLike

from .lstm import Array, as_float64, check_sequence, sigmoid, split_gates

GATES = ("r", "z", "n")  # PyTorch's stacked order


@dataclass
class GRUWeights:
    """One GRU layer's weights by PyTorch's documented names (W_ir = weight_ih rows [0:H], ...)."""

    W_ir: Array  # (H, I)  weight_ih rows [0:H]
    W_iz: Array  # (H, I)  rows [H:2H]
    W_in: Array  # (H, I)  rows [2H:3H]
    W_hr: Array  # (H, H)  weight_hh, the same blocks
    W_hz: Array  # (H, H)
    W_hn: Array  # (H, H)
    b_ir: Array  # (H,)  bias_ih blocks
    b_iz: Array  # (H,)
    b_in: Array  # (H,)
    b_hr: Array  # (H,)  bias_hh blocks
    b_hz: Array  # (H,)
    b_hn: Array  # (H,)

    @property
    def input_size(self) -> int:
        return self.W_ir.shape[1]

    @property
    def hidden_size(self) -> int:
        return self.W_ir.shape[0]

    @classmethod
    def from_torch(cls, w_ih: ArrayLike, w_hh: ArrayLike,
                   b_ih: ArrayLike | None = None, b_hh: ArrayLike | None = None) -> GRUWeights:
        """From PyTorch's layout: w_ih (3H, I), w_hh (3H, H), b_ih/b_hh (3H,) or None (zeros)."""
        w_ih, w_hh = as_float64(w_ih), as_float64(w_hh)  # (3H, I), (3H, H)
        H = w_hh.shape[1]
        if w_ih.ndim != 2 or w_ih.shape[0] != 3 * H or w_hh.shape != (3 * H, H):
            raise ValueError(f"expected w_ih of shape (3H, I) and w_hh of shape (3H, H); "
                             f"got w_ih {tuple(w_ih.shape)} and w_hh {tuple(w_hh.shape)}")
        named = {}
        for side, w, b, bname in (("i", w_ih, b_ih, "b_ih"), ("h", w_hh, b_hh, "b_hh")):
            b = np.zeros(3 * H) if b is None else as_float64(b)  # (3H,)
            if b.shape != (3 * H,):
                raise ValueError(f"{bname} must have shape ({3 * H},), got {tuple(b.shape)}")
            for g, W_g, b_g in zip(GATES, split_gates(w, 3, "w"), split_gates(b, 3, bname), strict=True):
                named[f"W_{side}{g}"], named[f"b_{side}{g}"] = W_g.copy(), b_g.copy()
        return cls(**named)

    def to_torch(self) -> tuple[Array, Array, Array, Array]:
        """(w_ih (3H, I), w_hh (3H, H), b_ih (3H,), b_hh (3H,)) in PyTorch's layout."""
        return tuple(np.concatenate([getattr(self, f"{p}{g}") for g in GATES])  # (3H, ...)
                     for p in ("W_i", "W_h", "b_i", "b_h"))

    @classmethod
    def random(cls, input_size: int, hidden_size: int, rng: np.random.Generator) -> GRUWeights:
        """Uniform(-1/√H, 1/√H) like ``torch.nn.GRU``'s default init."""
        k = 1.0 / np.sqrt(hidden_size)
        H, I = hidden_size, input_size
        shapes = {"W_i": (H, I), "W_h": (H, H), "b_i": (H,), "b_h": (H,)}
        return cls(**{f"{p}{g}": rng.uniform(-k, k, size=s) for p, s in shapes.items() for g in GATES})

    def copy(self) -> GRUWeights:
        return GRUWeights(**{f.name: getattr(self, f.name).copy() for f in fields(self)})


@dataclass
class GRUGrads:
    """Gradients of a scalar loss, named d + the forward name."""

    dx: Array  # (T, B, I)
    dh0: Array  # (B, H)
    dW_ir: Array  # (H, I)
    dW_iz: Array
    dW_in: Array
    dW_hr: Array  # (H, H)
    dW_hz: Array
    dW_hn: Array
    db_ir: Array  # (H,)
    db_iz: Array
    db_in: Array
    db_hr: Array
    db_hz: Array
    db_hn: Array

    def to_torch(self) -> tuple[Array, Array, Array, Array]:
        """(dw_ih (3H, I), dw_hh (3H, H), db_ih (3H,), db_hh (3H,)) in PyTorch's layout."""
        return tuple(np.concatenate([getattr(self, f"d{p}{g}") for g in GATES])  # (3H, ...)
                     for p in ("W_i", "W_h", "b_i", "b_h"))


@dataclass
class GRUStepCache:
    x_t: Array  # (B, I)
    h_prev: Array  # (B, H)
    Z_r: Array  # (B, H)  stored for display; the backward uses r_t
    Z_z: Array  # (B, H)
    r_t: Array  # (B, H)  reset gate
    z_t: Array  # (B, H)  update gate
    hn_t: Array  # (B, H)  W_hn h_{t-1} + b_hn, stored: dr_t needs it (recomputing costs a matmul)
    Z_n: Array  # (B, H)
    n_t: Array  # (B, H)  candidate
    h_t: Array  # (B, H)


def gru_step(x_t: Array, h_prev: Array, w: GRUWeights) -> tuple[Array, GRUStepCache]:
    """One step of the module docstring's equations: x_t (B, I), h_prev (B, H) -> (h_t, cache)."""
    Z_r = x_t @ w.W_ir.T + w.b_ir + h_prev @ w.W_hr.T + w.b_hr  # (B, H)
    r_t = sigmoid(Z_r)  # (B, H)
    Z_z = x_t @ w.W_iz.T + w.b_iz + h_prev @ w.W_hz.T + w.b_hz  # (B, H)
    z_t = sigmoid(Z_z)  # (B, H)
    hn_t = h_prev @ w.W_hn.T + w.b_hn  # (B, H)
    Z_n = x_t @ w.W_in.T + w.b_in + r_t * hn_t  # (B, H)
    n_t = np.tanh(Z_n)  # (B, H)
    h_t = (1.0 - z_t) * n_t + z_t * h_prev  # (B, H)
    cache = GRUStepCache(x_t=x_t, h_prev=h_prev, Z_r=Z_r, Z_z=Z_z, r_t=r_t, z_t=z_t,
                         hn_t=hn_t, Z_n=Z_n, n_t=n_t, h_t=h_t)
    return h_t, cache


def gru_step_backward(dh_t: Array, s: GRUStepCache, w: GRUWeights
                      ) -> tuple[Array, Array, dict[str, Array]]:
    """dh_t (B, H), the total gradient at h_t -> (dx_t (B, I), dh_prev (B, H), weight gradients)."""
    # h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t-1}
    dn_t = dh_t * (1.0 - s.z_t)  # (B, H)
    dz_t = dh_t * (s.h_prev - s.n_t)  # (B, H)
    dh_prev = dh_t * s.z_t  # (B, H)
    # n_t = tanh(Z_n);  Z_n = W_in x_t + b_in + r_t ⊙ hn_t
    dZ_n = dn_t * (1.0 - s.n_t**2)  # (B, H)  tanh' from the saved output
    dr_t = dZ_n * s.hn_t  # (B, H)
    dhn_t = dZ_n * s.r_t  # (B, H)
    # hn_t = W_hn h_{t-1} + b_hn
    dh_prev = dh_prev + dhn_t @ w.W_hn  # (B, H)
    # z_t = σ(Z_z), r_t = σ(Z_r), σ' from the saved outputs
    dZ_z = dz_t * s.z_t * (1.0 - s.z_t)  # (B, H)
    dZ_r = dr_t * s.r_t * (1.0 - s.r_t)  # (B, H)
    # Z_g = W_ig x_t + b_ig + W_hg h_{t-1} + b_hg for g in r, z;  the x-side of Z_n for g = n
    dZ_x = {"r": dZ_r, "z": dZ_z, "n": dZ_n}  # gradient at each gate's input-side sum
    dZ_h = {"r": dZ_r, "z": dZ_z, "n": dhn_t}  # ... and at its hidden-side sum
    dx_t = sum(dZ_x[g] @ getattr(w, f"W_i{g}") for g in GATES)  # (B, I)
    dh_prev = dh_prev + dZ_r @ w.W_hr + dZ_z @ w.W_hz  # (B, H)
    dweights = {f"dW_i{g}": dZ_x[g].T @ s.x_t for g in GATES}  # (H, I) each
    dweights |= {f"dW_h{g}": dZ_h[g].T @ s.h_prev for g in GATES}  # (H, H) each
    dweights |= {f"db_i{g}": dZ_x[g].sum(axis=0) for g in GATES}  # (H,) each
    dweights |= {f"db_h{g}": dZ_h[g].sum(axis=0) for g in GATES}  # (H,) each
    return dx_t, dh_prev, dweights


@dataclass
class GRUCache:
    """Every step's cache, in time order; ``stacked(name)`` gives one quantity over time."""

    steps: list[GRUStepCache] = field(default_factory=list)

    def stacked(self, name: str) -> Array:
        return np.stack([getattr(s, name) for s in self.steps])


def gru_forward(x: Array, h0: Array, w: GRUWeights) -> tuple[Array, Array, GRUCache]:
    """x (T, B, I), h0 (B, H) -> (hs (T, B, H), h_T (B, H), cache)."""
    check_sequence(x, w.W_ir.shape, {"h0": h0})
    h, cache = h0, GRUCache()
    for x_t in x:  # x_t (B, I)
        h, step = gru_step(x_t, h, w)
        cache.steps.append(step)
    return cache.stacked("h_t"), h, cache


def gru_backward(dhs: Array, dh_T: Array | None, cache: GRUCache, w: GRUWeights) -> GRUGrads:
    """BPTT. dhs (T, B, H): gradient at each output h_t; dh_T (B, H) or None: at the final state."""
    T, B, H = dhs.shape
    dh = np.zeros((B, H)) if dh_T is None else dh_T  # (B, H)  gradient flowing back through h
    dx = np.zeros((T, B, w.input_size))  # (T, B, I)
    dweights = {f"d{f.name}": np.zeros_like(getattr(w, f.name)) for f in fields(w)}
    for t in reversed(range(T)):
        dx[t], dh, dw_t = gru_step_backward(dhs[t] + dh, cache.steps[t], w)
        for name, g in dw_t.items():
            dweights[name] += g  # shared across steps: gradients add
    return GRUGrads(dx=dx, dh0=dh, **dweights)
