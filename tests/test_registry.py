"""lstmkit.registry tells the truth: each entry's pieces are what it says they are, and the
places that choose a model by name read it (one list, not six)."""

import pytest
import torch

from lstmkit.errors import ConfigError
from lstmkit.models import ModelConfig, make_core
from lstmkit.registry import NAMES, RECURRENT, of_module, recurrent
from lstmkit.train import TrainConfig

I, H, T, B = 3, 4, 5, 2


@pytest.mark.parametrize("name", NAMES)
def test_each_entry_names_pieces_that_agree(name):
    """Module and cell are drop-ins for the named torch.nn twins, their weights stack ``gates``
    blocks, the module's state is ``states``, its trace holds ``trace_fields``, and the functional
    entry and the reference's forward and backward exist."""
    r = RECURRENT[name]
    module, cell = r.module(I, H), r.cell(I, H)
    assert isinstance(module, r.torch_module) and isinstance(cell, r.torch_cell)
    assert module.weight_ih_l0.shape == (r.gates * H, I) and cell.weight_ih.shape == (r.gates * H, I)
    _, state, trace = module(torch.randn(T, B, I), return_trace=True)
    assert len(state if isinstance(state, tuple) else (state,)) == len(r.states)
    assert all(getattr(trace[0][0], f).shape == (T, B, H) for f in r.trace_fields)
    assert callable(r.layer)
    assert callable(getattr(r.reference, f"{name}_forward")) and callable(getattr(r.reference, f"{name}_backward"))
    assert of_module(module) is r and of_module(r.torch_module(I, H)) is r and of_module(cell) is None


@pytest.mark.parametrize("name", NAMES)
def test_keep_gate_init_is_taken_exactly_where_the_entry_says(name):
    r = RECURRENT[name]
    for arg, takes in (("forget_bias", r.keep_bias == "forget_bias"), ("update_bias", r.keep_bias == "update_bias"),
                       ("chrono", r.chrono)):
        value = 20 if arg == "chrono" else 2.0
        if takes:
            assert getattr(r.module(I, H, **{arg: value}), arg) == value
        else:
            with pytest.raises(TypeError, match=arg):
                r.module(I, H, **{arg: value})
    core = make_core(name, I, H, forget_bias=2.0, update_bias=2.0)  # passed only where it is taken
    assert type(core) is r.module and core.batch_first
    if r.chrono:
        assert make_core(name, I, H, forget_bias=0.0, update_bias=0.0, chrono=20).chrono == 20
    assert ModelConfig(cell=name).parameter_count() > 0


def test_unknown_names_are_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match=r"cell must be one of lstm, gru, rnn, got 'transformer'"):
        recurrent("transformer")
    with pytest.raises(ConfigError, match=r"--model must be lstm, gru or rnn, got 'transformer'"):
        TrainConfig(model="transformer").check()
    assert "lstm, gru or rnn" in TrainConfig.__dataclass_fields__["model"].metadata["help"]
