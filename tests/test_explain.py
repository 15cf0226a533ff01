"""lstmkit.explain without a browser: traces, step panel, saturation, memory, HTML data, PNGs, CLI.

Oracles: the module's own forward (traces), ``lstmkit.reference`` (the step panel, float64, exact
identities), a brute-force Jacobian (memory, 1e-10), hand-made arrays (saturation), and the report's
embedded data decoded back (HTML). The CLI runs on a tiny run folder trained here in seconds.
"""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
import torch

import lstmkit
from lstmkit.demo import DemoSettings
from lstmkit.explain import explain, explain_model, main, render_html, write_pngs
from lstmkit.explain import inputs as explain_inputs
from lstmkit.explain.memory import baseline_cores, memory_curve
from lstmkit.explain.saturation import gate_saturation
from lstmkit.explain.step_panel import step_panel
from lstmkit.explain.traces import trace_core
from lstmkit.kernels import backend
from lstmkit.reference import LSTMWeights, lstm_step
from lstmkit.variants import NAMED

TOKENS = "귀여운 강아지를 출근길에서 만났다 오늘 하루 종일 기분이".split()


@pytest.fixture(autouse=True, scope="module")
def pure_pytorch_backend():
    """The pure-PyTorch recurrences: these tests are about explain, not the compiled kernels."""
    with backend("torch"):
        yield


@pytest.fixture(scope="module")
def bilstm():
    torch.manual_seed(1)
    return lstmkit.LSTM(4, 5, num_layers=2, bidirectional=True, forget_bias=1.0), torch.randn(len(TOKENS), 4)


def test_traces_are_the_module_outputs_in_token_order(bilstm):
    core, x = bilstm
    traces = trace_core(core, x)
    assert [(t.layer, t.direction) for t in traces] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    with torch.no_grad():
        y, _ = core(x.unsqueeze(1))  # (T, 1, 2H)
    top = np.concatenate([traces[2].quantities["hidden"], traces[3].quantities["hidden"]], axis=1)
    np.testing.assert_array_equal(top, y[:, 0].numpy())
    np.testing.assert_array_equal(traces[2].inputs[:, :5], traces[0].quantities["hidden"].astype(np.float64))


def test_step_panel_is_the_reference_step_in_the_articles_pieces(bilstm):
    core, x = bilstm
    tr = trace_core(core, x)[1]  # layer 0, backward direction
    units = np.array([4, 0, 2])
    p = step_panel(core, tr, units)
    w = LSTMWeights.from_torch(core.weight_ih_l0_reverse, core.weight_hh_l0_reverse,
                               core.bias_ih_l0_reverse, core.bias_hh_l0_reverse)
    h, c = np.zeros((1, 5)), np.zeros((1, 5))
    for t in reversed(range(len(TOKENS))):  # the backward direction reads the tokens from the end
        h_prev, c_prev = h, c
        h, c, s = lstm_step(x[t].double().numpy()[None], h_prev, c_prev, w)
        np.testing.assert_array_equal(p["Z_f"][t], s.Z_f[0, units])
        np.testing.assert_array_equal(p["h_t"][t], s.h_t[0, units])
        np.testing.assert_array_equal(p["c_prev"][t], c_prev[0, units])
        np.testing.assert_allclose(p["Wh_o"][t], (h_prev @ w.W_ho.T)[0, units], rtol=0, atol=1e-15)
    for g in "fcio":  # Z = W_h h + W_x x + b, added as the reference adds it
        np.testing.assert_array_equal(p[f"Wh_{g}"] + p[f"Wx_{g}"] + p[f"b_{g}"], p[f"Z_{g}"])
    np.testing.assert_array_equal(p["fc"] + p["ic"], p["c_t"])
    np.testing.assert_allclose(p["f_t"], tr.quantities["forget_gate"][:, units], atol=1e-6)  # float32 trace


def test_saturation_counts_steps_below_and_above():
    values = np.array([[0.05, 0.5], [0.95, 0.5], [0.02, 0.99], [0.5, 0.91]])  # (T=4, H=2)
    s = gate_saturation(values, "forget_gate", "f_t")
    np.testing.assert_array_equal(s.below, [0.5, 0.0])
    np.testing.assert_array_equal(s.above, [0.25, 0.5])
    assert s.below.mean() == 0.25 and s.above.mean() == 0.375  # over all units and steps
    with pytest.raises(ValueError, match="forget_gate values should have shape"):
        gate_saturation(np.ones(3), "forget_gate", "f_t")


def test_memory_curve_is_the_jacobian_norm_and_the_rnn_forgets_faster():
    torch.manual_seed(0)
    x = torch.randn(30, 3)
    cores = baseline_cores(3, 8, seed=0)
    lstm = cores["fresh LSTM (untrained)"]
    m = memory_curve(lstm, x, "lstm")
    J = torch.autograd.functional.jacobian(lambda xx: lstm.double()(xx.unsqueeze(0))[0][0, -1], x.double())  # (H, T, I)
    np.testing.assert_allclose(m.norms, J.pow(2).sum((0, 2)).sqrt().numpy(), rtol=1e-10)
    rnn = memory_curve(cores["fresh RNN (untrained)"], x, "rnn")
    lstm_m = memory_curve(lstmkit.LSTM(3, 8, forget_bias=1.0), x, "lstm")
    assert rnn.norms[0] / rnn.norms[-1] < lstm_m.norms[0] / lstm_m.norms[-1]  # what the article's figure shows
    window = memory_curve(lstm, x, "last 10", window=10)
    assert window.start == 20 and window.norms.shape == (10,)
    np.testing.assert_allclose(window.norms, m.norms[20:], rtol=1e-6)  # same state after the prefix


def test_html_is_self_contained_and_embeds_the_traced_values(bilstm):
    core, x = bilstm
    e = explain_model(core, x, TOKENS[:-1] + ["</script><b>"], memory=False)
    page = render_html(e)
    assert not re.search(r"(src|href)\s*=|https?://[^\s\"']+\.(js|css)|<link|fetch\(|import\(", page)
    data = json.loads(page.split('id="data" type="application/json">')[1].split("</script>")[0].replace("<\\/", "</"))
    assert data["tokens"][-1] == "</script><b>"
    forget = next(q for q in data["views"][3]["quantities"] if q["name"] == "forget_gate")
    decoded = np.frombuffer(base64.b64decode(forget["data"]), dtype="<f4").reshape(len(TOKENS), 5)
    np.testing.assert_array_equal(decoded, e.views[3].trace.quantities["forget_gate"])
    z_f = np.frombuffer(base64.b64decode(data["views"][0]["panel"]["fields"]["Z_f"]), dtype="<f8")
    np.testing.assert_array_equal(z_f.reshape(len(TOKENS), -1), e.views[0].panel["Z_f"])


def test_explain_model_checks_its_arguments(bilstm):
    core, x = bilstm
    with pytest.raises(ValueError, match=r"x should have shape \(T, input_size\) = \(T, 4\)"):
        explain_model(core, x[:, :3], TOKENS)
    with pytest.raises(ValueError, match="tokens should have one entry per step of x: 8, got 2"):
        explain_model(core, x, TOKENS[:2])
    with pytest.raises(TypeError, match="core should be an lstmkit or torch.nn LSTM"):
        explain_model(torch.nn.Linear(4, 4), x, TOKENS)
    with pytest.raises(ValueError, match="without proj_size"):
        explain_model(lstmkit.LSTM(4, 5, proj_size=2), x, TOKENS)


def test_gru_and_torch_cores_are_explained_without_a_step_panel(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(len(TOKENS), 4)
    e = explain_model(torch.nn.GRU(4, 5), x, TOKENS, memory=False)
    assert e.views[0].panel is None and [s.symbol for s in e.views[0].saturation] == ["r_t", "z_t"]
    assert sorted(p.name for p in write_pngs(e, tmp_path)) == ["heatmaps.png", "saturation.png"]


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory, pure_pytorch_backend):
    """A tiny demo (RNN and LSTM, a few steps) trained the way ``explain`` trains one."""
    root = tmp_path_factory.mktemp("runs")
    tiny = DemoSettings.make(quick=True, models=("rnn", "lstm"), distances=(2,), steps=3, size=60, hidden_size=8)
    explain_inputs.train_demo_run(root, tiny)
    return root


def test_explain_without_run_uses_the_demo_on_the_articles_sentence(demo_root, tmp_path):
    e = explain(None, out=tmp_path / "r.html", png=tmp_path / "png", demo_root=demo_root)
    assert e.tokens[:3] == ["귀여운", "강아지를", "출근길에서"] and e.tokens[-1] == "기분이"
    assert [m.label.split(" (")[0] for m in e.memory] == ["trained LSTM", "trained RNN", "fresh RNN", "fresh LSTM"]
    assert (tmp_path / "r.html").stat().st_size > 10_000
    for name in ("heatmaps", "step", "saturation", "memory"):
        assert (tmp_path / "png" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_main_writes_the_report_and_reports_mistakes_in_one_line(demo_root, tmp_path, capsys):
    run = explain_inputs.find_demo_run(demo_root)
    assert run.name == "lstm-d2"
    assert main([str(run), "--text", "귀여운 강아지를 만났다", "-o", str(tmp_path / "r.html"), "--no-memory"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main([str(tmp_path / "nowhere"), "-o", str(tmp_path / "x.html")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([str(run), "--text", "  "]) == 2
    assert "--text is empty" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:lstmkit. LSTM variants")
@pytest.mark.parametrize("name", NAMED)
def test_a_variant_shows_the_gates_it_has_and_no_step_panel(name, tmp_path):
    """Every named variant: the views hold exactly the variant's trace fields (its module's trace,
    token order), saturation only its gates, no step panel (that is the standard LSTM's computation);
    the report and (a few) the figures are written; FGR's three-tensor state goes through the memory curve."""
    torch.manual_seed(0)
    core = lstmkit.VariantLSTM(4, 5, bidirectional=True, variant=name)
    x = torch.randn(len(TOKENS), 4)
    e = explain_model(core, x, TOKENS, memory=name == "fgr", baselines=False)
    spec = NAMED[name].spec
    _, _, trace = core.eval()(x.unsqueeze(1), return_trace=True)
    for v, tr in zip(e.views, trace[0], strict=True):
        assert v.trace.fields == tuple(v.trace.quantities) == spec.trace_fields and v.panel is None
        assert [s.gate for s in v.saturation] == [f for f in spec.trace_fields if f.endswith("_gate")]
        for f in spec.trace_fields:
            np.testing.assert_array_equal(v.trace.quantities[f], getattr(tr, f)[:, 0].detach().numpy())
    html = render_html(e)
    assert f'"title":"LSTM {NAMED[name].title}"' in html
    if name in ("cifg", "nig", "fgr"):  # the figures (matplotlib, ~1 s) for a few
        assert sorted(p.name for p in write_pngs(e, tmp_path)) == sorted(
            ["heatmaps.png", "saturation.png"] + (["memory.png"] if name == "fgr" else []))
