"""lstmkit.registry tells the truth: each entry's pieces are what it says they are, and the
places that choose a model by name read it (one list, not six)."""

import pytest
import torch

from lstmkit.errors import ConfigError, ModelError
from lstmkit.models import ModelConfig, build_model, make_core
from lstmkit.modules import VariantLSTM
from lstmkit.registry import NAMES, RECURRENT, VARIANTS, model_entry, of_module, recurrent
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


@pytest.mark.filterwarnings("ignore:lstmkit. LSTM variants")
@pytest.mark.parametrize("name", VARIANTS)
def test_each_variant_entry_builds_its_variant(name):
    """A table beside RECURRENT (not in NAMES: no torch.nn twin) whose entries build VariantLSTM with
    the variant's spec, stack ``gates`` blocks, carry ``states`` and trace ``trace_fields``; the
    models the training loop builds read it, and count their parameters right."""
    v = VARIANTS[name]
    module, cell = v.module(I, H), v.cell(I, H)
    assert isinstance(module, VariantLSTM) and not isinstance(module, torch.nn.LSTM)
    assert module.spec == cell.spec == v.spec and module.variant == name and name not in NAMES
    assert module.weight_ih_l0.shape == (v.gates * H, I) and cell.weight_ih.shape == (v.gates * H, I)
    _, state, trace = module(torch.randn(T, B, I), return_trace=True)
    assert len(state) == len(v.states)
    assert all(getattr(trace[0][0], f).shape == (T, B, H) for f in v.trace_fields)
    assert model_entry("lstm", name) is v and model_entry("lstm") is RECURRENT["lstm"]
    core = make_core("lstm", I, H, 2, forget_bias=0.0, variant=name)
    assert isinstance(core, VariantLSTM) and core.variant == name and core.batch_first
    config = ModelConfig(variant=name, num_layers=2, vocab_size=7)
    assert config.parameter_count() == sum(p.numel() for p in build_model(config).parameters())


def test_a_variant_needs_the_lstm_and_a_known_name():
    with pytest.raises(ValueError, match="needs cell lstm, not 'gru'"):
        model_entry("gru", "cifg")
    with pytest.raises(ModelError, match="model variant must be standard or one of nig, nfg"):
        ModelConfig(variant="cfig").check()
    with pytest.raises(ModelError, match="model variant cifg is a variant of the LSTM"):
        ModelConfig(cell="rnn", variant="cifg").check()
    old = ModelConfig().to_dict()
    del old["variant"]  # a config.json from before variants
    assert type(build_model(old).rnn) is RECURRENT["lstm"].module
