"""lstmkit's LSTM, GRU, RNN and cells equal their torch.nn twins with copied weights: outputs,
final states, and gradients for the input, the initial states and every parameter, over a
hypothesis-generated grid of configurations (tolerances in tests/torch_oracle.py)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence
from torch_oracle import BACKENDS, assert_same, use_backend

from lstmkit.registry import NAMES, RECURRENT

DTYPES = st.sampled_from([torch.float64, torch.float32])


@st.composite
def configs(draw, kind):
    hidden = draw(st.integers(2, 7))
    config = {
        "input_size": draw(st.integers(1, 5)), "hidden_size": hidden,
        "num_layers": draw(st.integers(1, 3)), "bias": draw(st.booleans()),
        "batch_first": draw(st.booleans()), "bidirectional": draw(st.booleans()),
    }
    if kind == "lstm":
        config["proj_size"] = draw(st.sampled_from([0, 0, 1, hidden - 1]))
    if kind == "rnn":
        config["nonlinearity"] = draw(st.sampled_from(["tanh", "relu"]))
    return config


TWINS = {name: (r.module, r.torch_module) for name, r in RECURRENT.items()}


def make_pair(kind, config, dtype, seed):
    torch.manual_seed(seed)
    theirs = TWINS[kind][1](**config, dtype=dtype)
    return TWINS[kind][0].from_torch(theirs), theirs


def make_state(kind, module, batch, dtype, unbatched=False):
    """A random initial state of the module's shape (or None half the time is the caller's choice)."""
    LD = module.num_layers * (2 if module.bidirectional else 1)
    P = module.proj_size or module.hidden_size if kind == "lstm" else module.hidden_size
    shapes = [(LD, batch, P)] + ([(LD, batch, module.hidden_size)] if kind == "lstm" else [])
    return tuple(torch.randn(*(s[0], s[2]) if unbatched else s, dtype=dtype) for s in shapes)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", NAMES)
@settings(max_examples=12, deadline=None)
@given(data=st.data(), dtype=DTYPES, steps=st.integers(1, 6), batch=st.integers(1, 4),
       with_state=st.booleans())
def test_batched_matches_torch(backend, kind, data, dtype, steps, batch, with_state):
    config = data.draw(configs(kind))
    ours, theirs = make_pair(kind, config, dtype, seed=steps * 7 + batch)
    shape = (batch, steps) if config["batch_first"] else (steps, batch)
    x = torch.randn(*shape, config["input_size"], dtype=dtype)
    hx = make_state(kind, ours, batch, dtype) if with_state else None
    with use_backend(backend):
        assert_same(ours, theirs, x, hx)


@pytest.mark.parametrize("kind", NAMES)
@settings(max_examples=6, deadline=None)
@given(data=st.data(), steps=st.integers(1, 5), with_state=st.booleans())
def test_unbatched_matches_torch(kind, data, steps, with_state):
    config = data.draw(configs(kind))
    ours, theirs = make_pair(kind, config, torch.float64, seed=steps)
    x = torch.randn(steps, config["input_size"], dtype=torch.float64)
    hx = make_state(kind, ours, 1, torch.float64, unbatched=True) if with_state else None
    assert_same(ours, theirs, x, hx)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", NAMES)
@settings(max_examples=8, deadline=None)
@given(data=st.data(), dtype=DTYPES, batch=st.integers(1, 4), sorted_=st.booleans())
def test_packed_matches_torch(backend, kind, data, dtype, batch, sorted_):
    config = data.draw(configs(kind))
    ours, theirs = make_pair(kind, config, dtype, seed=batch)
    lengths = torch.tensor(data.draw(st.lists(st.integers(1, 6), min_size=batch, max_size=batch)))
    if sorted_:
        lengths = lengths.sort(descending=True).values
    T = int(lengths.max())
    shape = (batch, T) if config["batch_first"] else (T, batch)
    x = torch.randn(*shape, config["input_size"], dtype=dtype)
    hx = make_state(kind, ours, batch, dtype)

    class Packed(nn.Module):  # packs the leaf inside, so the input gradient reaches the padded x
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x, hx):
            packed = pack_padded_sequence(x, lengths, batch_first=config["batch_first"],
                                          enforce_sorted=sorted_)
            return self.inner(packed, hx)

    with use_backend(backend):
        assert_same(Packed(ours), Packed(theirs), x, hx)


CELLS = {name: (r.cell, r.torch_cell) for name, r in RECURRENT.items()}


@pytest.mark.parametrize("kind", NAMES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_cell_matches_torch(kind, dtype, batched, bias):
    ours_cls, theirs_cls = CELLS[kind]
    torch.manual_seed(3)
    theirs = theirs_cls(4, 5, bias=bias, dtype=dtype)
    torch.manual_seed(3)
    ours = ours_cls(4, 5, bias=bias, dtype=dtype)
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b), "same seed, same initial weights"
    x = torch.randn(3, 4, dtype=dtype) if batched else torch.randn(4, dtype=dtype)
    shape = (3, 5) if batched else (5,)
    hx = tuple(torch.randn(shape, dtype=dtype) for _ in range(2 if kind == "lstm" else 1))
    assert_same(ours, theirs, x, hx)
    assert_same(ours, theirs, x, None)


USER_SIZES = [  # (kind, config, batch): hidden sizes that are not powers of two, as programs pick them
    ("lstm", {"input_size": 100, "hidden_size": 100}, 20),
    ("lstm", {"input_size": 200, "hidden_size": 200, "num_layers": 2}, 1),
    ("lstm", {"input_size": 50, "hidden_size": 50, "bidirectional": True}, 64),
    ("lstm", {"input_size": 30, "hidden_size": 300, "proj_size": 100}, 9),
    ("gru", {"input_size": 100, "hidden_size": 100}, 20),
    ("rnn", {"input_size": 200, "hidden_size": 200}, 7),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kind,config,batch", USER_SIZES, ids=lambda v: str(v) if not isinstance(v, dict) else
                         "-".join(f"{k}{w}" for k, w in v.items()))
@pytest.mark.parametrize("steps", [6, 1], ids=["T6", "T1"])
def test_sizes_users_pick_match_torch(kind, config, batch, dtype, steps):
    """Hidden sizes like 50, 100, 200, 300 end each gate inside a vector (the kernels' masked ragged
    end) and split across threads at other places than powers of two do; one step of several rows
    takes BLAS (LSTM) or dot products against the weights as stored (GRU, RNN): outputs and every
    gradient."""
    ours, theirs = make_pair(kind, config, dtype, seed=batch)
    x = torch.randn(steps, batch, config["input_size"], dtype=dtype)
    assert_same(ours, theirs, x, make_state(kind, ours, batch, dtype))
