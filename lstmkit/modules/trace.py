"""Traces: what a recurrent layer computed at every step, returned by ``forward(...,
return_trace=True)`` as ``trace[layer][direction]``.

The tensors are the ones the hand-written backward saves anyway (``lstmkit.functional``), so a
trace costs no second computation. Every field has the layout of the module's output: (T,B,·), or
(B,T,·) with ``batch_first``, or (T,·) for unbatched input; time runs forward in both directions.
With ``lengths``, every field is zero at padded steps.
The symbols are the article's (``lstmkit.reference.lstm`` writes the equations out).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class LSTMTrace:
    """One LSTM layer and direction.

    input_gate  i_t  = σ(Z_i)           (…,H) how much of the candidate is written
    forget_gate f_t  = σ(Z_f)           (…,H) how much of c_{t-1} is kept (0 forget, 1 keep)
    candidate   c̃_t = tanh(Z_c)        (…,H) PyTorch's g: what could enter the cell
    output_gate o_t  = σ(Z_o)           (…,H) how much of the cell is exposed
    cell        c_t  = f_t ⊙ c_{t-1} + i_t ⊙ c̃_t   (…,H) long-term memory
    hidden      h_t  = o_t ⊙ tanh(c_t)  (…,P) short-term memory and output (projected with proj_size)
    """

    input_gate: Tensor
    forget_gate: Tensor
    candidate: Tensor
    output_gate: Tensor
    cell: Tensor
    hidden: Tensor


@dataclass(frozen=True)
class GRUTrace:
    """One GRU layer and direction.

    reset_gate  r_t (…,H)   update_gate z_t (…,H)   candidate n_t (…,H)
    hidden      h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t-1}  (…,H)
    """

    reset_gate: Tensor
    update_gate: Tensor
    candidate: Tensor
    hidden: Tensor


@dataclass(frozen=True)
class RNNTrace:
    """One plain RNN layer and direction: hidden h_t = act(W_ih x_t + W_hh h_{t-1} + b) (…,H)."""

    hidden: Tensor


@dataclass(frozen=True)
class VariantTrace:
    """One layer and direction of an LSTM variant (``lstmkit.VariantLSTM``); the fields are those of
    ``LSTMTrace`` that the variant has (``VariantSpec.trace_fields``, equations in ``lstmkit.variants``).

    A gate the variant does not have is None (NIG: input_gate, NFG: forget_gate, NOG: output_gate),
    not a tensor of ones. CIFG has no forget-gate weights but a forget gate all the same: its
    forget_gate is the computed f_t = 1 − i_t. NIAF's candidate is Z_c itself (no tanh).
    """

    candidate: Tensor
    cell: Tensor
    hidden: Tensor
    input_gate: Tensor | None = None
    forget_gate: Tensor | None = None
    output_gate: Tensor | None = None


Trace = tuple[tuple[LSTMTrace | GRUTrace | RNNTrace | VariantTrace, ...], ...]
"""trace[layer][direction]; direction 0 runs forward in time, 1 backward (bidirectional)."""
