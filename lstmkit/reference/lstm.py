"""The article's LSTM in NumPy (float64): forward and hand-derived backward (BPTT).

What it is: the executable specification of the project. The equations below are written
once, here, in the same symbols as the code; each is one line of ``lstm_step``. Every other
path in lstmkit (functional, kernels, modules) is tested against this file, and this file is
tested against finite differences and ``torch.nn.LSTM`` (tests/test_reference_lstm.py).

What it is not: fast, batched over layers or directions, or aware of lengths. One layer, one
direction, plain loops over time.

References: the article "LSTM(Long Short-Term Memory): Gate를 도입해 RNN의 한계를 완화한 모델"
(2025); PyTorch ``torch.nn.LSTM`` for the stacked layout (gate order i, f, g, o; g is the
candidate c̃); Graves, "Supervised Sequence Labelling with Recurrent Neural Networks" (2012),
ch. 4, for the BPTT equations.

Dimensions (the legend for all of lstmkit/reference):
    T time steps, B batch, I input features, H hidden units.

The equations (the article's W_h^(f) is ``W_hf`` here, W_x^(f) is ``W_xf``, b^(f) is ``b_f``;
rows of x_t, h_t are batch examples, so ``W h`` is computed as ``h @ W.T``)::

    Z_f = W_hf h_{t-1} + W_xf x_t + b_f        f_t = σ(Z_f)         forget gate
    Z_c = W_hc h_{t-1} + W_xc x_t + b_c        c̃_t = tanh(Z_c)      candidate (``c_tilde``)
    Z_i = W_hi h_{t-1} + W_xi x_t + b_i        i_t = σ(Z_i)         input gate
    Z_o = W_ho h_{t-1} + W_xo x_t + b_o        o_t = σ(Z_o)         output gate
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ c̃_t                                 cell state (long-term)
    h_t = o_t ⊙ tanh(c_t)                                           hidden state (short-term)

Backward (``lstm_step_backward``) runs these lines bottom to top; each gradient is named
``d`` + the forward name, and every activation derivative uses the saved output:
σ'(Z) = y (1 − y), tanh'(Z) = 1 − y².
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]

GATES = ("i", "f", "c", "o")  # PyTorch's stacked order (i, f, g, o); the article's c is PyTorch's g


def sigmoid(z: Array) -> Array:
    """σ(z) = (1 + tanh(z/2)) / 2: the same function as 1 / (1 + e^-z), without overflow."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def as_float64(a: ArrayLike) -> Array:
    """A float64 NumPy copy of a NumPy array, a list or a torch tensor (no torch import needed)."""
    if hasattr(a, "detach"):  # a torch.Tensor
        a = a.detach().cpu().numpy()
    return np.array(a, dtype=np.float64)


def split_gates(stacked: Array, n_gates: int, name: str) -> list[Array]:
    """Split PyTorch's stacked (n_gates*H, ...) rows into n_gates blocks of H rows."""
    if stacked.shape[0] % n_gates:
        raise ValueError(f"{name} must have a first dimension divisible by {n_gates} "
                         f"(gates stacked), got shape {tuple(stacked.shape)}")
    return np.split(stacked, n_gates, axis=0)


# ---------------------------------------------------------------------------------------------
# Weights and gradients, by the article's names
# ---------------------------------------------------------------------------------------------

@dataclass
class LSTMWeights:
    """One LSTM layer's weights by the article's names; each gate has its own W_x, W_h and b."""

    W_xi: Array  # (H, I)  input gate      = weight_ih rows [0:H]
    W_xf: Array  # (H, I)  forget gate     = weight_ih rows [H:2H]
    W_xc: Array  # (H, I)  candidate c̃    = weight_ih rows [2H:3H]
    W_xo: Array  # (H, I)  output gate     = weight_ih rows [3H:4H]
    W_hi: Array  # (H, H)  weight_hh, the same row blocks
    W_hf: Array  # (H, H)
    W_hc: Array  # (H, H)
    W_ho: Array  # (H, H)
    b_i: Array  # (H,)    bias_ih + bias_hh, the same blocks
    b_f: Array  # (H,)
    b_c: Array  # (H,)
    b_o: Array  # (H,)

    @property
    def input_size(self) -> int:
        return self.W_xi.shape[1]

    @property
    def hidden_size(self) -> int:
        return self.W_xi.shape[0]

    @classmethod
    def from_torch(cls, w_ih: ArrayLike, w_hh: ArrayLike,
                   b_ih: ArrayLike | None = None, b_hh: ArrayLike | None = None) -> LSTMWeights:
        """From PyTorch's layout: w_ih (4H, I), w_hh (4H, H), b_ih/b_hh (4H,) or None (summed).

        Accepts NumPy arrays or torch tensors, e.g. ``from_torch(*lstm.parameters())`` of a
        one-layer ``torch.nn.LSTM``. Values are copied to float64.
        """
        w_ih, w_hh = as_float64(w_ih), as_float64(w_hh)  # (4H, I), (4H, H)
        H = w_hh.shape[1]
        if w_ih.ndim != 2 or w_ih.shape[0] != 4 * H or w_hh.shape != (4 * H, H):
            raise ValueError(f"expected w_ih of shape (4H, I) and w_hh of shape (4H, H); "
                             f"got w_ih {tuple(w_ih.shape)} and w_hh {tuple(w_hh.shape)}")
        b = np.zeros(4 * H)  # (4H,)
        for name, bias in (("b_ih", b_ih), ("b_hh", b_hh)):
            if bias is not None:
                bias = as_float64(bias)
                if bias.shape != (4 * H,):
                    raise ValueError(f"{name} must have shape ({4 * H},), got {tuple(bias.shape)}")
                b = b + bias
        W_x, W_h, bs = (split_gates(a, 4, n) for a, n in ((w_ih, "w_ih"), (w_hh, "w_hh"), (b, "b")))
        named = {f"W_x{g}": W_x[k] for k, g in enumerate(GATES)}
        named |= {f"W_h{g}": W_h[k] for k, g in enumerate(GATES)}
        named |= {f"b_{g}": bs[k] for k, g in enumerate(GATES)}
        return cls(**{k: v.copy() for k, v in named.items()})

    def to_torch(self) -> tuple[Array, Array, Array, Array]:
        """PyTorch's layout (w_ih (4H, I), w_hh (4H, H), b_ih (4H,), b_hh (4H,)).

        The whole bias goes to b_ih; b_hh is zeros (only their sum matters to the LSTM).
        """
        w_ih = np.concatenate([getattr(self, f"W_x{g}") for g in GATES])  # (4H, I)
        w_hh = np.concatenate([getattr(self, f"W_h{g}") for g in GATES])  # (4H, H)
        b_ih = np.concatenate([getattr(self, f"b_{g}") for g in GATES])  # (4H,)
        return w_ih, w_hh, b_ih, np.zeros_like(b_ih)

    @classmethod
    def random(cls, input_size: int, hidden_size: int, rng: np.random.Generator) -> LSTMWeights:
        """Uniform(-1/√H, 1/√H) like ``torch.nn.LSTM``'s default init."""
        k = 1.0 / np.sqrt(hidden_size)
        shapes = {"W_x": (hidden_size, input_size), "W_h": (hidden_size, hidden_size), "b_": (hidden_size,)}
        return cls(**{f"{p}{g}": rng.uniform(-k, k, size=s) for p, s in shapes.items() for g in GATES})

    def copy(self) -> LSTMWeights:
        return LSTMWeights(**{f.name: getattr(self, f.name).copy() for f in fields(self)})


@dataclass
class LSTMGrads:
    """Gradients of a scalar loss: one per input, initial state and weight, named d + its name."""

    dx: Array  # (T, B, I)
    dh0: Array  # (B, H)
    dc0: Array  # (B, H)
    dW_xi: Array  # (H, I)
    dW_xf: Array
    dW_xc: Array
    dW_xo: Array
    dW_hi: Array  # (H, H)
    dW_hf: Array
    dW_hc: Array
    dW_ho: Array
    db_i: Array  # (H,)
    db_f: Array
    db_c: Array
    db_o: Array

    def to_torch(self) -> tuple[Array, Array, Array]:
        """(dw_ih (4H, I), dw_hh (4H, H), db (4H,)); db is the gradient of both b_ih and b_hh."""
        dw_ih = np.concatenate([getattr(self, f"dW_x{g}") for g in GATES])  # (4H, I)
        dw_hh = np.concatenate([getattr(self, f"dW_h{g}") for g in GATES])  # (4H, H)
        db = np.concatenate([getattr(self, f"db_{g}") for g in GATES])  # (4H,)
        return dw_ih, dw_hh, db


# ---------------------------------------------------------------------------------------------
# One step: forward, and right under it its backward
# ---------------------------------------------------------------------------------------------

@dataclass
class LSTMStepCache:
    """Everything one step computed: what the backward needs and what the gate pictures show."""

    x_t: Array  # (B, I)
    h_prev: Array  # (B, H)  h_{t-1}
    c_prev: Array  # (B, H)  c_{t-1}
    Z_f: Array  # (B, H)
    Z_c: Array  # (B, H)
    Z_i: Array  # (B, H)
    Z_o: Array  # (B, H)
    f_t: Array  # (B, H)  forget gate, in (0, 1)
    c_tilde: Array  # (B, H)  candidate c̃_t, in (-1, 1)
    i_t: Array  # (B, H)  input gate, in (0, 1)
    o_t: Array  # (B, H)  output gate, in (0, 1)
    c_t: Array  # (B, H)  cell state
    tanh_c_t: Array  # (B, H)  tanh(c_t), stored: the backward needs it, recomputing costs a tanh
    h_t: Array  # (B, H)  hidden state


def lstm_step(x_t: Array, h_prev: Array, c_prev: Array, w: LSTMWeights
              ) -> tuple[Array, Array, LSTMStepCache]:
    """One step of the module docstring's equations: x_t (B, I), h_prev, c_prev (B, H)."""
    Z_f = h_prev @ w.W_hf.T + x_t @ w.W_xf.T + w.b_f  # (B, H)
    f_t = sigmoid(Z_f)  # (B, H)
    Z_c = h_prev @ w.W_hc.T + x_t @ w.W_xc.T + w.b_c  # (B, H)
    c_tilde = np.tanh(Z_c)  # (B, H)
    Z_i = h_prev @ w.W_hi.T + x_t @ w.W_xi.T + w.b_i  # (B, H)
    i_t = sigmoid(Z_i)  # (B, H)
    Z_o = h_prev @ w.W_ho.T + x_t @ w.W_xo.T + w.b_o  # (B, H)
    o_t = sigmoid(Z_o)  # (B, H)
    c_t = f_t * c_prev + i_t * c_tilde  # (B, H)
    tanh_c_t = np.tanh(c_t)  # (B, H)
    h_t = o_t * tanh_c_t  # (B, H)
    # Z_* are stored although the backward only needs the activated values: the explain page
    # shows them, and they cost B*H each.
    cache = LSTMStepCache(x_t=x_t, h_prev=h_prev, c_prev=c_prev, Z_f=Z_f, Z_c=Z_c, Z_i=Z_i, Z_o=Z_o,
                          f_t=f_t, c_tilde=c_tilde, i_t=i_t, o_t=o_t, c_t=c_t, tanh_c_t=tanh_c_t, h_t=h_t)
    return h_t, c_t, cache


def lstm_step_backward(dh_t: Array, dc_t: Array, s: LSTMStepCache, w: LSTMWeights
                       ) -> tuple[Array, Array, Array, dict[str, Array]]:
    """The step's equations bottom to top. dh_t, dc_t (B, H): total gradients arriving at h_t, c_t.

    Returns (dx_t (B, I), dh_prev (B, H), dc_prev (B, H), {weight gradient name: this step's part}).
    """
    # h_t = o_t ⊙ tanh(c_t)
    do_t = dh_t * s.tanh_c_t  # (B, H)
    dc_t = dc_t + dh_t * s.o_t * (1.0 - s.tanh_c_t**2)  # (B, H)  tanh' from the saved tanh(c_t)
    # c_t = f_t ⊙ c_{t-1} + i_t ⊙ c̃_t
    df_t = dc_t * s.c_prev  # (B, H)
    dc_prev = dc_t * s.f_t  # (B, H)
    di_t = dc_t * s.c_tilde  # (B, H)
    dc_tilde = dc_t * s.i_t  # (B, H)
    # activations, from their saved outputs
    dZ_o = do_t * s.o_t * (1.0 - s.o_t)  # (B, H)  σ' = y(1 − y)
    dZ_i = di_t * s.i_t * (1.0 - s.i_t)  # (B, H)
    dZ_c = dc_tilde * (1.0 - s.c_tilde**2)  # (B, H)  tanh' = 1 − y²
    dZ_f = df_t * s.f_t * (1.0 - s.f_t)  # (B, H)
    # Z_g = W_hg h_{t-1} + W_xg x_t + b_g, for g in f, c, i, o
    dZ = {"f": dZ_f, "c": dZ_c, "i": dZ_i, "o": dZ_o}
    dh_prev = sum(dZ[g] @ getattr(w, f"W_h{g}") for g in GATES)  # (B, H)
    dx_t = sum(dZ[g] @ getattr(w, f"W_x{g}") for g in GATES)  # (B, I)
    dweights = {f"dW_h{g}": dZ[g].T @ s.h_prev for g in GATES}  # (H, H) each
    dweights |= {f"dW_x{g}": dZ[g].T @ s.x_t for g in GATES}  # (H, I) each
    dweights |= {f"db_{g}": dZ[g].sum(axis=0) for g in GATES}  # (H,) each
    return dx_t, dh_prev, dc_prev, dweights


# ---------------------------------------------------------------------------------------------
# The sequence: forward over t = 1..T, and beside it backward over t = T..1
# ---------------------------------------------------------------------------------------------

@dataclass
class LSTMCache:
    """Every step's cache, in time order; ``stacked(name)`` gives one quantity over time."""

    steps: list[LSTMStepCache] = field(default_factory=list)

    def stacked(self, name: str) -> Array:
        """E.g. ``stacked("f_t")`` -> (T, B, H): the forget gate at every step."""
        return np.stack([getattr(s, name) for s in self.steps])


def check_sequence(x: Array, w_shape: tuple[int, int], states: dict[str, Array]) -> None:
    """ValueError naming the argument when x (T, B, I) or a state (B, H) has the wrong shape."""
    H, I = w_shape  # a W_x block is (H, I)
    if x.ndim != 3 or x.shape[2] != I:
        raise ValueError(f"x must have shape (T, B, I) with I = {I}, got {tuple(x.shape)}")
    for name, s in states.items():
        if s.shape != (x.shape[1], H):
            raise ValueError(f"{name} must have shape (B, H) = {(x.shape[1], H)}, got {tuple(s.shape)}")


def lstm_forward(x: Array, h0: Array, c0: Array, w: LSTMWeights
                 ) -> tuple[Array, tuple[Array, Array], LSTMCache]:
    """x (T, B, I), h0 and c0 (B, H) -> (hs (T, B, H), (h_T, c_T), cache)."""
    check_sequence(x, w.W_xi.shape, {"h0": h0, "c0": c0})
    h, c, cache = h0, c0, LSTMCache()
    for x_t in x:  # x_t (B, I)
        h, c, step = lstm_step(x_t, h, c, w)
        cache.steps.append(step)
    hs = cache.stacked("h_t")  # (T, B, H)
    return hs, (h, c), cache


def lstm_backward(dhs: Array, dh_T: Array | None, dc_T: Array | None, cache: LSTMCache, w: LSTMWeights
                  ) -> LSTMGrads:
    """BPTT. dhs (T, B, H): gradient at each output h_t from outside; dh_T, dc_T (B, H) or None
    (zeros): gradient at the final state. Returns every gradient of the loss (``LSTMGrads``)."""
    T, B, H = dhs.shape
    dh = np.zeros((B, H)) if dh_T is None else dh_T  # (B, H)  gradient flowing back through h
    dc = np.zeros((B, H)) if dc_T is None else dc_T  # (B, H)  gradient flowing back through c
    dx = np.zeros((T, B, w.input_size))  # (T, B, I)
    dweights = {f"d{f.name}": np.zeros_like(getattr(w, f.name)) for f in fields(w)}
    for t in reversed(range(T)):
        dx[t], dh, dc, dw_t = lstm_step_backward(dhs[t] + dh, dc, cache.steps[t], w)
        for name, g in dw_t.items():
            dweights[name] += g  # the same weights are used at every step: their gradients add
    return LSTMGrads(dx=dx, dh0=dh, dc0=dc, **dweights)
