"""The LSTM's variants as switches on one set of equations: what each piece of the article's cell
is for, answered by taking it away (Greff et al., "LSTM: A Search Space Odyssey", 2017), plus the
layer-normalised LSTM and two recurrent regularisers.

What it is: ``VariantSpec``, the switches, and what follows from them (which gate blocks the
weights stack, which parameters exist and their shapes, which quantities a trace holds). The
NumPy reference (``reference/lstm_variants.py``), the PyTorch layer (``functional/variant_lstm.py``)
and the module (``modules/variant_lstm.py``) all read the layout from here, so they cannot
disagree on it. The named variants (``cifg``, ``nig`` ...) are entries of ``lstmkit.registry``.
What it is not: the math (that is the reference and the functional layer) or a model.

The equations, one layer, in the article's symbols (rows of x_t, h_t are batch examples, so
``W h`` is computed as ``h @ W.T``); each switch names the line it changes::

    a_t = W_x x_t                         LN: a_t = LN(W_x x_t) ⊙ α_x         (B, nH)
    m   = 1                               recurrent_dropout p: m ~ Bernoulli(1 - p) / (1 - p), one
                                          mask per sequence and unit, the same at every step (Gal &
                                          Ghahramani 2016); m = 1 outside training
    r_t = W_h (m ⊙ h_{t-1})               LN: r_t = LN(W_h (m ⊙ h_{t-1})) ⊙ α_h
    Z   = a_t + r_t + b                   FGR: Z += W_q q_{t-1}, q_{t-1} = the sigmoid gates of the
                                          last step [i, f, o] (those that exist; zeros before the
                                          first step unless carried in the state)
    Z_i += p_i ⊙ c_{t-1}, Z_f += p_f ⊙ c_{t-1}                    peepholes
    i_t = σ(Z_i)                          NIG: i_t = 1
    f_t = σ(Z_f)                          NFG: f_t = 1       CIFG: f_t = 1 − i_t (no W_xf, W_hf, b_f)
    c̃_t = tanh(Z_c)                       NIAF: c̃_t = Z_c
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ c̃_t
    Z_o += p_o ⊙ c_t                                              peepholes
    o_t = σ(Z_o)                          NOG: o_t = 1
    h_t = o_t ⊙ tanh(c_t)                 NOAF: h_t = o_t ⊙ c_t;  LN: h_t = o_t ⊙ tanh(LN(c_t) ⊙ α_c + β_c)
    zoneout z_c, z_h (Krueger et al. 2017), d ~ Bernoulli(z) per step and unit in training, d = z
    (the expectation) otherwise:
        c_t ← d^c_t ⊙ c_{t-1} + (1 − d^c_t) ⊙ c_t,     h_t ← d^h_t ⊙ h_{t-1} + (1 − d^h_t) ⊙ h_t

LN(v) = (v − mean(v)) / sqrt(var(v) + ε) over the last dimension (all n gate blocks together for
a_t and r_t, as Ba, Kiros & Hinton 2016 do), ε = ``LN_EPS``, population variance.
Every switch off is the standard LSTM, exactly ``torch.nn.LSTM`` (which has no peepholes: the
standard here is Greff et al.'s "NP"; their "vanilla" V is ``peepholes=True``).

Stacked layout (PyTorch's order i, f, g, o, absent blocks left out; g is the candidate c̃):
``blocks``. Parameters of one layer (``parameter_shapes``), named like torch.nn's with ``_l{k}``:
    weight_ih (nH, I), weight_hh (nH, H), bias_ih (nH,), bias_hh (nH,)   [bias=True]
    weight_ch (nP·H,)    peepholes p, blocks ``peephole_gates`` (i, f, o among those with weights)
    weight_qh (nH, nQ·H) W_q, FGR: columns are the blocks ``recurrent_gates`` of q_{t-1}
    ln_x_weight (nH,) α_x, ln_h_weight (nH,) α_h, ln_c_weight (H,) α_c, ln_c_bias (H,) β_c   [LN]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

LN_EPS = 1e-5
BLOCK_ORDER = ("i", "f", "g", "o")  # PyTorch's stacked order; g is the article's candidate c̃
GATE_FIELDS = {"i": "input_gate", "f": "forget_gate", "g": "candidate", "o": "output_gate"}


@dataclass(frozen=True)
class VariantSpec:
    """Switches on the LSTM's equations (module docstring); all defaults: the standard LSTM."""

    input_gate: bool = True  # False: NIG, i_t = 1
    forget_gate: bool = True  # False: NFG, f_t = 1
    output_gate: bool = True  # False: NOG, o_t = 1
    input_activation: bool = True  # False: NIAF, c̃_t = Z_c
    output_activation: bool = True  # False: NOAF, h_t = o_t ⊙ c_t
    coupled: bool = False  # CIFG: f_t = 1 − i_t
    peepholes: bool = False  # p_i, p_f look at c_{t-1}; p_o at c_t
    full_gate_recurrence: bool = False  # FGR: the last step's gates feed every block
    layer_norm: bool = False  # Ba et al. 2016
    recurrent_dropout: float = 0.0  # variational dropout on h_{t-1}, probability of a zero
    zoneout_cell: float = 0.0  # probability that a unit of c keeps its last value
    zoneout_hidden: float = 0.0  # the same for h

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "bool" and not isinstance(value, bool):
                raise TypeError(f"{f.name} should be True or False, got {value!r}")
            if f.type == "float":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise TypeError(f"{f.name} should be a finite number, got {value!r}")
                if not 0.0 <= value < 1.0:
                    raise ValueError(f"{f.name} should be a probability in [0, 1), got {value}")
        if self.coupled and not (self.input_gate and self.forget_gate):
            raise ValueError("coupled (CIFG: f_t = 1 - i_t) needs both the input and the forget gate")

    @property
    def is_standard(self) -> bool:
        """Every switch off: the equations of ``torch.nn.LSTM``."""
        return self == VariantSpec()

    @property
    def blocks(self) -> tuple[str, ...]:
        """The pre-activation blocks W_x, W_h and b stack, in order, e.g. ("i", "g", "o") for NFG."""
        present = {"i": self.input_gate, "f": self.forget_gate and not self.coupled, "g": True,
                   "o": self.output_gate}
        return tuple(b for b in BLOCK_ORDER if present[b])

    @property
    def peephole_gates(self) -> tuple[str, ...]:
        """The sigmoid gates with their own weights (each gets a peephole), in order: i, f, o."""
        return tuple(b for b in self.blocks if b != "g")

    recurrent_gates = peephole_gates  # FGR's q_{t-1}: the same gates, in the same order

    @property
    def trace_fields(self) -> tuple[str, ...]:
        """What a trace holds, in the order the report shows it (a CIFG trace has f_t = 1 − i_t)."""
        gates = [name for name, present in (("forget_gate", self.forget_gate), ("input_gate", self.input_gate),
                                            ("output_gate", self.output_gate)) if present]
        return (*gates, "candidate", "cell", "hidden")

    def parameter_shapes(self, input_size: int, hidden_size: int, bias: bool = True) -> dict[str, tuple[int, ...]]:
        """One layer's parameters: name (without ``_l{k}``) -> shape, in registration order."""
        nH, H = len(self.blocks) * hidden_size, hidden_size
        shapes: dict[str, tuple[int, ...]] = {"weight_ih": (nH, input_size), "weight_hh": (nH, H)}
        if bias:
            shapes |= {"bias_ih": (nH,), "bias_hh": (nH,)}
        if self.peepholes:
            shapes["weight_ch"] = (len(self.peephole_gates) * H,)
        if self.full_gate_recurrence:
            shapes["weight_qh"] = (nH, len(self.recurrent_gates) * H)
        if self.layer_norm:
            shapes |= {"ln_x_weight": (nH,), "ln_h_weight": (nH,), "ln_c_weight": (H,), "ln_c_bias": (H,)}
        return shapes

    def switched(self) -> tuple[str, ...]:
        """The names of the switches that differ from the standard LSTM, e.g. ("coupled",)."""
        standard = VariantSpec()
        return tuple(f.name for f in fields(self) if getattr(self, f.name) != getattr(standard, f.name))


@dataclass(frozen=True)
class NamedVariant:
    """A variant as the command line and the tables name it."""

    name: str  # "cifg": ``--variant cifg``, ``VariantLSTM(..., variant="cifg")``
    title: str  # "CIFG": in tables and figures
    spec: VariantSpec
    about: str  # what it changes, in one line of the article's symbols


NAMED: dict[str, NamedVariant] = {v.name: v for v in (
    NamedVariant("nig", "NIG", VariantSpec(input_gate=False), "no input gate: i_t = 1"),
    NamedVariant("nfg", "NFG", VariantSpec(forget_gate=False), "no forget gate: f_t = 1"),
    NamedVariant("nog", "NOG", VariantSpec(output_gate=False), "no output gate: o_t = 1"),
    NamedVariant("niaf", "NIAF", VariantSpec(input_activation=False), "no input activation: c̃_t = Z_c"),
    NamedVariant("noaf", "NOAF", VariantSpec(output_activation=False), "no output activation: h_t = o_t ⊙ c_t"),
    NamedVariant("cifg", "CIFG", VariantSpec(coupled=True), "coupled input and forget gate: f_t = 1 − i_t"),
    NamedVariant("peephole", "peepholes", VariantSpec(peepholes=True),
                 "peepholes: the gates see the cell (Greff et al.'s vanilla V)"),
    NamedVariant("fgr", "FGR", VariantSpec(full_gate_recurrence=True), "full gate recurrence: Z += W_q q_{t-1}"),
    NamedVariant("layernorm", "LN", VariantSpec(layer_norm=True), "layer normalisation (Ba et al. 2016)"),
    NamedVariant("vardrop", "var. dropout", VariantSpec(recurrent_dropout=0.25),
                 "variational dropout on h_{t-1}, p = 0.25 (Gal & Ghahramani 2016)"),
    NamedVariant("zoneout", "zoneout", VariantSpec(zoneout_cell=0.5, zoneout_hidden=0.05),
                 "zoneout, z_c = 0.5, z_h = 0.05 (Krueger et al. 2017)"),
)}
STANDARD = "standard"  # the name of every switch off: the standard LSTM (``lstmkit.LSTM``)


def variant_spec(variant: str | VariantSpec) -> VariantSpec:
    """A name of ``NAMED`` (or "standard") or a spec -> the spec; ValueError naming the known names."""
    if isinstance(variant, VariantSpec):
        return variant
    if variant == STANDARD:
        return VariantSpec()
    if not isinstance(variant, str) or variant not in NAMED:
        raise ValueError(f"variant must be a VariantSpec or one of {STANDARD}, {', '.join(NAMED)}; got {variant!r}")
    return NAMED[variant].spec
