"""``functional/variant_lstm.py`` against the NumPy reference of the variants (float64).

For every case of the reference's tests (each switch alone, the masks in training and evaluation
form, no bias, two combinations): outputs, final states (q_T with FGR), the trace of every gate it
has, and every gradient autograd takes through the PyTorch layer (x, h0, c0, q0, every parameter)
equal ``reference.lstm_variants`` within 1e-10. Then lengths: a padded batch equals each sequence
run alone to its length, with zeros past it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_reference_variants import CASES, make_problem, reference_grads, run_reference

from lstmkit.functional.variant_lstm import variant_lstm_layer
from lstmkit.variants import VariantSpec

ATOL = 1e-10
REFERENCE_NAMES = {"forget_gate": "f_t", "input_gate": "i_t", "output_gate": "o_t", "candidate": "c_tilde",
                   "cell": "c_t"}


def _torch(a) -> torch.Tensor | None:
    return None if a is None else torch.tensor(a, dtype=torch.float64, requires_grad=True)


def run_layer(spec: VariantSpec, p):
    """The PyTorch layer on the reference problem: (tensors of inputs and params, outputs)."""
    inputs = {k: _torch(v) for k, v in p.inputs.items()}
    params = {k: _torch(v) for k, v in p.params.items()}
    dropout, zoneout = p.masks
    dropout = None if dropout is None else torch.tensor(dropout)
    zoneout = None if zoneout is None else tuple(torch.tensor(z) for z in zoneout)
    out = variant_lstm_layer(inputs["x"], inputs["h0"], inputs["c0"], inputs.get("q0"), params, spec,
                             dropout_mask=dropout, zoneout_masks=zoneout, want_trace=True)
    return inputs, params, out


@pytest.mark.parametrize("name", CASES)
def test_outputs_trace_and_every_gradient_match_the_reference(name):
    case = CASES[name]
    p = make_problem(case)
    inputs, params, out = run_layer(case.spec, p)
    ref, _, cache = run_reference(case, p)
    np.testing.assert_allclose(out.y.detach(), ref["hs"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(out.h_n.detach(), ref["h_T"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(out.c_n.detach(), ref["c_T"], atol=ATOL, rtol=0)
    assert (out.q_n is None) == ("q_T" not in ref)
    if out.q_n is not None:
        np.testing.assert_allclose(out.q_n.detach(), ref["q_T"], atol=ATOL, rtol=0)
    assert tuple(out.trace) == tuple(f for f in case.spec.trace_fields if f != "hidden")
    for field, value in out.trace.items():  # the cell is c_t as carried on (after zoneout)
        np.testing.assert_allclose(value.detach(), cache.stacked(REFERENCE_NAMES[field]), atol=ATOL, rtol=0,
                                   err_msg=field)
    loss = sum((o * torch.tensor(p.douts[k])).sum() for k, o in
               (("hs", out.y), ("h_T", out.h_n), ("c_T", out.c_n), ("q_T", out.q_n)) if o is not None)
    loss.backward()
    expected = reference_grads(case, p)
    got = {f"d{k}": t.grad for k, t in (inputs | params).items()}
    assert set(got) == set(expected)
    for gname, g in got.items():
        np.testing.assert_allclose(g, expected[gname], atol=ATOL, rtol=0, err_msg=gname)


@pytest.mark.parametrize("name", ["standard", "cifg", "fgr", "peepholes-fgr-ln-cifg-masks"])
def test_lengths_equal_each_sequence_run_alone(name):
    """A padded batch: each sequence's outputs and final states as if run alone to its length;
    outputs and gates zero past it."""
    case = CASES[name]
    p = make_problem(case)
    spec = case.spec
    lengths = torch.tensor([4, 1, 3])
    inputs, params, out = run_layer(spec, p)
    full = variant_lstm_layer(inputs["x"], inputs["h0"], inputs["c0"], inputs.get("q0"), params, spec, lengths,
                              *(_masks(p)), want_trace=True)
    for b, n in enumerate(lengths.tolist()):
        one = {k: v[b:b + 1] for k, v in inputs.items() if k != "x"}
        dropout, zoneout = _masks(p)
        alone = variant_lstm_layer(inputs["x"][:n, b:b + 1], one["h0"], one["c0"], one.get("q0"), params, spec,
                                   dropout_mask=None if dropout is None else dropout[b:b + 1],
                                   zoneout_masks=None if zoneout is None else tuple(z[:n, b:b + 1] for z in zoneout))
        torch.testing.assert_close(full.y[:n, b], alone.y[:, 0], atol=ATOL, rtol=0)
        assert full.y[n:, b].abs().sum().item() == 0
        torch.testing.assert_close(full.h_n[b], alone.h_n[0], atol=ATOL, rtol=0)
        torch.testing.assert_close(full.c_n[b], alone.c_n[0], atol=ATOL, rtol=0)
        if full.q_n is not None:
            torch.testing.assert_close(full.q_n[b], alone.q_n[0], atol=ATOL, rtol=0)
        for field in full.trace:
            assert full.trace[field][n:, b].abs().sum().item() == 0, field


def _masks(p):
    dropout, zoneout = p.masks
    return (None if dropout is None else torch.tensor(dropout),
            None if zoneout is None else tuple(torch.tensor(z) for z in zoneout))

