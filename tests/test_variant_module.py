"""lstmkit.VariantLSTM and VariantLSTMCell: the variants of ``lstmkit.variants`` as modules.

Oracles, each with its tolerance: torch.nn.LSTM with copied weights for the standard spec (float64,
1e-12: outputs, states and every gradient); ``torch.autograd.gradcheck`` (float64) for every named
variant; step-by-step equals one call, a continued call equals one long call, and each sequence
alone equals its place in a padded batch (float64, 1e-12); the functional layer with the masks
drawn from the same seed (regularisers); a safetensors round trip (exact).
"""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import lstmkit
from lstmkit.cli import main
from lstmkit.functional.variant_lstm import variant_lstm_layer
from lstmkit.modules import variant_lstm as variant_module
from lstmkit.variants import NAMED

I, H, T, B = 3, 4, 5, 3
TOL = dict(rtol=1e-12, atol=1e-12)
LENGTHS = torch.tensor([5, 2, 4])


@pytest.fixture(autouse=True)
def quiet_notice():
    """The slowness notice is tested once below; elsewhere it is noise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="lstmkit: LSTM variants")
        yield


def variant(name, seed=0, **kw):
    torch.manual_seed(seed)
    return lstmkit.VariantLSTM(I, H, variant=name, dtype=torch.float64, **kw)


def close(a, b):
    torch.testing.assert_close(a, b, **TOL)


# ---- the standard spec is torch.nn.LSTM ---------------------------------------------------------

@pytest.mark.parametrize("layers, bidirectional, batch_first", [(2, True, False), (1, False, True)])
def test_standard_spec_is_nn_lstm_outputs_states_and_every_gradient(layers, bidirectional, batch_first):
    kw = dict(num_layers=layers, bidirectional=bidirectional, batch_first=batch_first)
    ours = variant("standard", **kw)
    torch.manual_seed(0)
    theirs = nn.LSTM(I, H, dtype=torch.float64, **kw)
    assert not isinstance(ours, nn.LSTM)
    assert all(torch.equal(p, q) for p, q in zip(ours.parameters(), theirs.parameters(), strict=True))  # same init
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn((B, T, I) if batch_first else (T, B, I), dtype=torch.float64)
    results = []
    for m in (ours, theirs):
        xg = x.clone().requires_grad_(True)
        y, (h, c) = m(xg)
        (y.square().sum() + h.sum() + 2 * c.sum()).backward()
        results.append((y, h, c, xg.grad, *(p.grad for p in m.parameters())))
    for a, b in zip(*results, strict=True):
        close(a, b)


def test_standard_spec_with_lengths_and_packed_input_is_nn_lstm_on_packed_input():
    ours, theirs = variant("standard", num_layers=2, bidirectional=True), None
    theirs = nn.LSTM(I, H, num_layers=2, bidirectional=True, dtype=torch.float64)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(T, B, I, dtype=torch.float64)
    packed = pack_padded_sequence(x, LENGTHS, enforce_sorted=False)
    y_ref, (h_ref, c_ref) = theirs(packed)
    y_ref = pad_packed_sequence(y_ref, total_length=T)[0]
    y, (h, c) = ours(x, lengths=LENGTHS)
    for a, b in ((y, y_ref), (h, h_ref), (c, c_ref)):
        close(a, b)
    y_packed, (h2, _) = ours(packed)
    close(pad_packed_sequence(y_packed, total_length=T)[0], y_ref)
    close(h2, h_ref)


# ---- every named variant ------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMED)
def test_parameters_are_the_specs_shapes_named_like_torch_nn(name):
    spec = NAMED[name].spec
    m = variant(name, num_layers=2, bidirectional=True)
    expected = {}
    for layer, in_size in enumerate((I, 2 * H)):
        for suffix in ("", "_reverse"):
            expected |= {f"{n}_l{layer}{suffix}": s for n, s in spec.parameter_shapes(in_size, H).items()}
    assert {n: tuple(p.shape) for n, p in m.named_parameters()} == expected
    assert list(dict(m.named_parameters())) == m._flat_weights_names
    if spec.layer_norm:
        assert bool((m.ln_x_weight_l0 == 1).all()) and bool((m.ln_c_bias_l1_reverse == 0).all())


@pytest.mark.parametrize("name", NAMED)
def test_gradcheck(name):
    """Every input and parameter, float64, with lengths; evaluation mode (the masks are fixed).
    Layer norm: gradcheck's fast mode (random projections of the Jacobian; the full one takes ~5 s)."""
    m = lstmkit.VariantLSTM(2, 2, variant=name, dtype=torch.float64).eval()
    names = [n for n, _ in m.named_parameters()]
    x = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)

    def f(x, *params):
        y, state = torch.func.functional_call(m, dict(zip(names, params, strict=True)), (x,),
                                              {"lengths": torch.tensor([3, 2])})
        return y, *state

    params = tuple(p.detach().clone().requires_grad_(True) for p in m.parameters())
    assert torch.autograd.gradcheck(f, (x, *params), fast_mode=name == "layernorm")


@pytest.mark.parametrize("name", NAMED)
def test_step_by_step_and_a_continued_call_equal_one_call(name):
    m = variant(name, num_layers=2).eval()
    x = torch.randn(T, B, I, dtype=torch.float64)
    y, state = m(x)
    assert len(state) == (3 if NAMED[name].spec.full_gate_recurrence else 2)
    s, ys = None, []
    for t in range(T):
        y_t, s = m.step(x[t], s)
        ys.append(y_t)
    close(torch.stack(ys), y)
    y1, s1 = m(x[:2])
    y2, s2 = m(x[2:], s1)
    close(torch.cat([y1, y2]), y)
    for a, b, c in zip(s, s2, state, strict=True):
        close(a, c)
        close(b, c)


@pytest.mark.parametrize("name", NAMED)
def test_lengths_each_sequence_as_if_alone_and_traces_hold_the_specs_fields(name):
    spec = NAMED[name].spec
    m = variant(name, num_layers=2, bidirectional=True, batch_first=True).eval()
    x = torch.randn(B, T, I, dtype=torch.float64)
    y, state, trace = m(x, lengths=LENGTHS, return_trace=True)
    for b, n in enumerate(LENGTHS.tolist()):
        y_b, state_b = m(x[b:b + 1, :n])
        close(y[b, :n], y_b[0])
        assert not y[b, n:].any()
        for s, s_b in zip(state, state_b, strict=True):
            close(s[:, b], s_b[:, 0])
    for layer in trace:
        for tr in layer:
            present = {f.name for f in dataclasses.fields(tr) if getattr(tr, f.name) is not None}
            assert present == set(spec.trace_fields)
            assert all(getattr(tr, f).shape == (B, T, H) for f in present)
    close(torch.cat([trace[1][0].hidden, trace[1][1].hidden], dim=2), y)
    if spec.coupled:
        close(trace[0][0].forget_gate, (1 - trace[0][0].input_gate) * (torch.arange(T) < LENGTHS[:, None])[..., None])


@pytest.mark.parametrize("name", ["cifg", "fgr", "layernorm", "peephole"])
def test_cell_is_one_step_of_the_module(name):
    m = variant(name)
    cell = lstmkit.VariantLSTMCell(I, H, variant=name, dtype=torch.float64)
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in m.state_dict().items()})
    x = torch.randn(2, B, I, dtype=torch.float64)
    y, state = m(x)
    s = cell(x[0])
    s = cell(x[1], s)
    for a, b in zip(s, state, strict=True):
        close(a, b[0])
    close(cell(x[0, 0])[0], m(x[:1, 0])[0][0])  # unbatched


def test_forget_bias_goes_to_the_forget_block_or_comes_off_the_input_block_with_cifg():
    plain, biased = variant("peephole"), variant("peephole", forget_bias=2.0)
    zeros, twos = torch.zeros(H, dtype=torch.float64), torch.full((H,), 2.0, dtype=torch.float64)
    close(biased.bias_ih_l0 - plain.bias_ih_l0, torch.cat([zeros, twos, zeros, zeros]))  # i, f, g, o
    plain, biased = variant("cifg"), variant("cifg", forget_bias=2.0)
    close(biased.bias_ih_l0 - plain.bias_ih_l0, torch.cat([-twos, zeros, zeros]))  # i, g, o


# ---- regularisers: random in training, their expectation in evaluation ---------------------------

def test_variational_dropout_one_mask_per_call_drawn_in_training_none_in_evaluation():
    p = NAMED["vardrop"].spec.recurrent_dropout
    m = variant("vardrop")
    x = torch.randn(T, B, I, dtype=torch.float64)
    params = {k.removesuffix("_l0"): v for k, v in m.state_dict().items()}
    h0 = torch.zeros(B, H, dtype=torch.float64)
    torch.manual_seed(3)
    mask = torch.empty(B, H, dtype=torch.float64).bernoulli_(1 - p) / (1 - p)
    torch.manual_seed(3)
    y_train = m.train()(x)[0]
    close(y_train, variant_lstm_layer(x, h0, h0, None, params, m.spec, dropout_mask=mask).y)
    assert not torch.equal(m(x)[0], y_train)  # another call, another mask
    m.eval()
    close(m(x)[0], variant_lstm_layer(x, h0, h0, None, params, m.spec).y)
    close(m(x)[0], m(x)[0])


def test_zoneout_keeps_some_units_in_training_and_uses_the_rates_in_evaluation():
    spec = NAMED["zoneout"].spec
    m = variant("zoneout").train()
    x = torch.randn(T, B, I, dtype=torch.float64)
    torch.manual_seed(5)
    _, _, trace = m(x, return_trace=True)
    kept = trace[0][0].cell[1:] == trace[0][0].cell[:-1]  # (T-1,B,H): c_t = c_{t-1} exactly
    assert kept.any() and not kept.all()
    assert not torch.equal(m(x)[0], m(x)[0])
    m.eval()
    params = {k.removesuffix("_l0"): v for k, v in m.state_dict().items()}
    h0 = torch.zeros(B, H, dtype=torch.float64)
    masks = (torch.full((T, B, H), spec.zoneout_cell, dtype=torch.float64),
             torch.full((T, B, H), spec.zoneout_hidden, dtype=torch.float64))
    close(m(x)[0], variant_lstm_layer(x, h0, h0, None, params, spec, zoneout_masks=masks).y)
    close(m(x)[0], m(x)[0])


# ---- weights, dtype, notice, errors -------------------------------------------------------------

def test_safetensors_round_trip_and_dtype_moves(tmp_path):
    m = variant("fgr", num_layers=2)
    x = torch.randn(T, B, I, dtype=torch.float64)
    save_file(m.state_dict(), tmp_path / "w.safetensors")
    other = variant("fgr", seed=9, num_layers=2)
    other.load_state_dict(load_file(tmp_path / "w.safetensors"))
    for a, b in zip(m(x)[1], other(x)[1], strict=True):
        assert torch.equal(a, b)
    m.float()
    assert m(x.float())[0].dtype == torch.float32 and m._flat_weights[0].dtype == torch.float32
    m.to(torch.float64)
    assert all(w.dtype == torch.float64 for w in m._flat_weights)


def test_a_parametrized_peephole_is_read_as_an_attribute():
    class Double(nn.Module):
        def forward(self, w):
            return 2 * w

    m, x = variant("peephole"), torch.randn(T, B, I, dtype=torch.float64)
    doubled = variant("peephole")
    with torch.no_grad():
        doubled.weight_ch_l0.mul_(2)
    nn.utils.parametrize.register_parametrization(m, "weight_ch_l0", Double())
    close(m(x)[0], doubled(x)[0])
    m(x)[0].sum().backward()
    assert m.parametrizations.weight_ch_l0.original.grad is not None


def test_the_slowness_notice_is_given_once_and_not_for_the_standard_spec(monkeypatch):
    monkeypatch.setattr(variant_module, "_notice_given", False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        lstmkit.VariantLSTM(I, H)
        assert not seen
    with pytest.warns(UserWarning, match="PyTorch path .* not the compiled kernel"):
        lstmkit.VariantLSTM(I, H, variant="cifg")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        lstmkit.VariantLSTM(I, H, variant="nig")
        lstmkit.VariantLSTMCell(I, H, variant="nig")
        assert not seen


def test_mistakes_are_named(monkeypatch):
    with pytest.raises(ValueError, match="cifg, peephole"):
        lstmkit.VariantLSTM(I, H, variant="cfig")
    with pytest.raises(ValueError, match="forget gate"):
        lstmkit.VariantLSTM(I, H, variant="nfg", forget_bias=1.0)
    with pytest.raises(TypeError, match="proj_size"):
        lstmkit.VariantLSTM(I, H, proj_size=2)
    m, fgr = lstmkit.VariantLSTM(I, H, variant="cifg"), lstmkit.VariantLSTM(I, H, variant="fgr")
    x, h = torch.randn(T, B, I), torch.zeros(1, B, H)
    with pytest.raises(RuntimeError, match=r"Expected hidden h_0 size \(1, 3, 4\), got \(1, 2, 4\)"):
        m(x, (torch.zeros(1, 2, H), h))
    with pytest.raises(TypeError, match=r"\(h_0, c_0, q_0\)"):
        fgr(x, (h, h))
    with pytest.raises(RuntimeError, match=r"q_0 size \(1, 3, 12\)"):
        fgr(x, (h, h, h))
    with pytest.raises(TypeError, match=r"\(h, c, q\)"):
        lstmkit.VariantLSTMCell(I, H, variant="fgr")(x[0], (h[0], h[0]))
    with pytest.raises(RuntimeError, match="input_size"):
        m(torch.randn(T, B, I + 1))
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    with pytest.raises(RuntimeError, match="ONNX has no operator"):
        m(x)


# ---- the command line ---------------------------------------------------------------------------

def test_train_evaluate_and_explain_a_variant_run(tmp_path, capsys):
    run = tmp_path / "cifg"
    assert main(["train", "sentence", "--quick", "--quiet", "--steps", "5", "--variant", "cifg",
                 "--out", str(run)]) == 0
    assert '"variant": "cifg"' in (run / "config.json").read_text()
    assert main(["evaluate", str(run)]) == 0
    assert main(["explain", str(run), "--no-memory", "-o", str(tmp_path / "r.html")]) == 0
    out = capsys.readouterr().out
    assert "sentence · lstm-cifg" in out and "wrote" in out
    html = (tmp_path / "r.html").read_text()
    assert '"title":"LSTM CIFG"' in html and '"name":"forget_gate"' in html


def test_a_variant_with_another_model_is_one_line(capsys):
    assert main(["train", "adding", "--quick", "--model", "gru", "--variant", "cifg"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["lstmkit: error: --variant cifg is a variant of the LSTM: use it with --model lstm, not --model gru"]
    assert main(["train", "adding", "--quick", "--variant", "lstm2"]) == 2
    assert "--variant must be standard or one of nig" in capsys.readouterr().err
