"""The explain report in a real browser (headless Chromium via Playwright).

Opens reports written by ``lstmkit.explain`` and checks, from the page itself: no console
errors; every heatmap holds one cell per token and unit, with the traced values (read back from
the page and from the canvas pixels); hovering a cell shows its exact value; the step panel's
numbers equal ``lstmkit.reference.lstm_step`` for that step (float64, 1e-12); 5,000 tokens × 256
units load and page quickly; a screenshot is taken. Skips, saying why, where no Chromium is installed.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import lstmkit
from lstmkit.explain import explain_model, write_html
from lstmkit.explain.explanation import Explanation, View
from lstmkit.explain.saturation import saturation
from lstmkit.explain.traces import LayerTrace, unit_order
from lstmkit.kernels import backend
from lstmkit.reference import LSTMWeights, lstm_forward
from lstmkit.registry import RECURRENT

CHROMIUM = next((p for p in (os.environ.get("LSTMKIT_CHROMIUM"), shutil.which("chromium"),
                             shutil.which("chromium-browser"), "/usr/bin/chromium") if p and Path(p).is_file()), None)
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
TOKENS = "귀여운 강아지를 출근길에서 만났다 오늘 하루 종일 기분이 </script>".split()

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium, "
                                "or set LSTMKIT_CHROMIUM to its path): the browser tests need one")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install playwright")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def model_and_report(tmp_path_factory, pure_pytorch_backend):
    """A 2-layer bidirectional LSTM on 9 tokens, and its report."""
    torch.manual_seed(0)
    core = lstmkit.LSTM(5, 6, num_layers=2, bidirectional=True, forget_bias=1.0)
    x = torch.randn(len(TOKENS), 5)  # (T, I)
    e = explain_model(core, x, TOKENS, title="browser test")
    path = write_html(e, tmp_path_factory.mktemp("report") / "report.html")
    return core, x, e, path


def open_report(browser, path: Path, viewport=(1280, 900)):
    """A page with the report loaded; returns (page, console errors list)."""
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]}, device_scale_factor=1)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda r: None if r.url.startswith(("file:", "data:")) else errors.append("fetched " + r.url))
    page.goto(path.as_uri())
    page.wait_for_function("window.LSTMKIT && window.LSTMKIT.ready", timeout=30_000)
    return page, errors


def reference_layer(core, x, layer: int, direction: int):
    """(weights, the reference's step caches in token order) of one layer and direction, computed
    here independently of lstmkit.explain. Above layer 0, x_t is what the module fed that layer:
    the layer below's traced outputs (float32), both directions."""
    inputs = x.double().numpy()  # (T, I)
    if layer:
        with torch.no_grad():
            *_, trace = core(x.unsqueeze(1), return_trace=True)
        inputs = torch.cat([tr.hidden[:, 0] for tr in trace[layer - 1]], dim=1).double().numpy()  # (T, 2H)
    sfx = f"_l{layer}" + ("_reverse" if direction else "")
    w = LSTMWeights.from_torch(*(getattr(core, n + sfx) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
    seq = np.ascontiguousarray(inputs[::-1] if direction else inputs)
    _, _, cache = lstm_forward(seq[:, None], np.zeros((1, 6)), np.zeros((1, 6)), w)
    return w, (cache.steps[::-1] if direction else cache.steps)


@pytest.fixture(autouse=True, scope="module")
def pure_pytorch_backend():
    """The pure-PyTorch recurrences: these tests are about the report, not the compiled kernels."""
    with backend("torch"):
        yield


def test_report_has_no_console_errors_and_a_screenshot(browser, model_and_report, tmp_path):
    *_, path = model_and_report
    page, errors = open_report(browser, path)
    shot = Path(os.environ.get("LSTMKIT_SCREENSHOT_DIR", tmp_path)) / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert errors == []
    assert shot.stat().st_size > 20_000
    assert page.title() == "browser test"
    assert page.locator("#step-token").inner_text() == "“</script>”"  # the data never closes its <script>
    page.close()


def test_heatmaps_hold_one_cell_per_token_and_unit_with_traced_values(browser, model_and_report):
    _, _, e, path = model_and_report
    page, errors = open_report(browser, path)
    for v_index in (0, 3):  # layer 0 forward, layer 1 backward
        page.evaluate(f"LSTMKIT.setView({v_index})")
        tr = e.views[v_index].trace
        for q in RECURRENT["lstm"].trace_fields:
            canvas = page.locator(f'canvas.heat[data-quantity="{q}"]')
            toks = [int(t) for t in canvas.get_attribute("data-tokens").split(",")]
            units = [int(u) for u in canvas.get_attribute("data-units").split(",")]
            assert toks == list(range(len(TOKENS))) and sorted(units) == list(range(6))
            assert units == e.views[v_index].order.tolist()  # most active first
            grid = np.array(page.evaluate(f"LSTMKIT.grid('{q}').values"))  # (U, T)
            np.testing.assert_array_equal(grid, tr.quantities[q][:, units].T.astype(np.float64))
            pixels = page.evaluate(PIXELS_JS, q)  # drawn colour vs the colour map of the traced value
            assert pixels["mismatches"] == 0, (q, pixels)
    assert [m for m in errors if "willReadFrequently" not in m] == []  # that warning is our own readback
    page.close()


PIXELS_JS = """(q) => {
  const cv = document.querySelector(`canvas.heat[data-quantity="${q}"]`), g = cv.getContext("2d");
  const cw = +cv.dataset.cw, ch = +cv.dataset.ch, left = +cv.dataset.left, st = LSTMKIT.state.step;
  const toks = cv.dataset.tokens.split(",").map(Number), units = cv.dataset.units.split(",").map(Number);
  let mismatches = 0, checked = 0;
  units.forEach((u, r) => toks.forEach((t, c) => {
    if (t === st) return;  // the selected step carries an outline
    const px = g.getImageData(left + c * cw + Math.floor(cw / 2), r * ch + Math.floor(ch / 2), 1, 1).data;
    const want = LSTMKIT.colour(q, LSTMKIT.value(LSTMKIT.state.view, q, t, u)); checked++;
    if ([0, 1, 2].some((k) => Math.abs(px[k] - want[k]) > 1)) mismatches++;
  }));
  return { mismatches, checked };
}"""


def test_hover_shows_the_exact_traced_value(browser, model_and_report):
    _, _, e, path = model_and_report
    page, _ = open_report(browser, path)
    tr, order = e.views[0].trace, e.views[0].order
    canvas = page.locator('canvas.heat[data-quantity="forget_gate"]')
    cw, ch, left = (float(canvas.get_attribute(a)) for a in ("data-cw", "data-ch", "data-left"))
    for t, row in ((0, 0), (3, 2), (8, 5)):
        canvas.hover(position={"x": left + (t + 0.5) * cw, "y": (row + 0.5) * ch})
        tip = page.locator("#tooltip")
        assert tip.is_visible()
        assert int(tip.get_attribute("data-t")) == t and int(tip.get_attribute("data-u")) == order[row]
        assert float(tip.get_attribute("data-value")) == float(tr.quantities["forget_gate"][t, order[row]])
        assert tip.inner_text().endswith(tip.get_attribute("data-value"))
    page.close()


@pytest.mark.parametrize("v_index, layer, direction", [(0, 0, 0), (3, 1, 1)])
def test_step_panel_numbers_equal_the_reference(browser, model_and_report, v_index, layer, direction):
    core, x, e, path = model_and_report
    page, errors = open_report(browser, path)
    page.evaluate(f"LSTMKIT.setView({v_index})")
    order = e.views[v_index].order
    canvas = page.locator('canvas.heat[data-quantity="cell"]')
    cw, ch, left = (float(canvas.get_attribute(a)) for a in ("data-cw", "data-ch", "data-left"))
    t, row = 4, 1
    canvas.click(position={"x": left + (t + 0.5) * cw, "y": (row + 0.5) * ch})  # opens that step and unit
    unit = int(order[row])
    assert page.locator("#panel").get_attribute("data-t") == str(t)
    assert page.locator("#panel").get_attribute("data-unit") == str(unit)
    w, steps = reference_layer(core, x, layer, direction)
    s = steps[t]
    h_prev = s.h_prev[0]
    want = {"c_prev": s.c_prev, "c_t": s.c_t, "tanh_c_t": s.tanh_c_t, "h_t": s.h_t, "f_t": s.f_t, "i_t": s.i_t,
            "o_t": s.o_t, "c_tilde": s.c_tilde, "fc": s.f_t * s.c_prev, "ic": s.i_t * s.c_tilde}
    for g in "fcio":
        want |= {f"Z_{g}": getattr(s, f"Z_{g}"), f"Wh_{g}": getattr(w, f"W_h{g}") @ h_prev,
                 f"Wx_{g}": getattr(w, f"W_x{g}") @ s.x_t[0], f"b_{g}": getattr(w, f"b_{g}")}
    shown = page.evaluate("[...document.querySelectorAll('#panel .num')]"
                          ".map(n => [n.dataset.field, n.dataset.value, n.textContent])")
    assert [f for f, *_ in shown][:4] == ["Wh_f", "Wx_f", "b_f", "Z_f"]  # the article's order starts at Z_f
    assert {f for f, *_ in shown} == set(want)
    for field, value, text in shown:
        expected = float(np.ravel(want[field])[unit])
        assert float(value) == pytest.approx(expected, rel=1e-12, abs=1e-14), field
        assert text == format_like_page(expected), field
    assert errors == []
    page.close()


def format_like_page(x: float) -> str:
    """The page's number format: 4 decimals, or 3-digit exponent for tiny and huge values."""
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e4):
        mantissa, exp = f"{x:.3e}".split("e")
        return f"{mantissa}e{int(exp):+d}"
    return f"{x:.4f}"


def big_explanation(T: int = 5000, H: int = 256) -> Explanation:
    """Traced-looking arrays for 5,000 tokens × 256 units, without a model (no step panel)."""
    rng = np.random.default_rng(0)
    q = {name: (rng.random((T, H)) if name.endswith("gate") else rng.uniform(-1, 1, (T, H))).astype(np.float32)
         for name in RECURRENT["lstm"].trace_fields}
    tr = LayerTrace("lstm", 0, 0, q, np.zeros((T, 1)))
    return Explanation([f"w{t}" for t in range(T)], [View(tr, unit_order(tr), saturation(tr))], title="big")


def test_five_thousand_tokens_and_256_units_load_and_page_quickly(browser, tmp_path):
    path = write_html(big_explanation(), tmp_path / "big.html")
    t0 = time.perf_counter()
    page, errors = open_report(browser, path)
    load = time.perf_counter() - t0
    assert page.evaluate("LSTMKIT.state.page") == 49  # opens on the last token's page
    info = page.evaluate("""() => { LSTMKIT.setStep(0); const t0 = performance.now();
        for (let k = 0; k < 5; k++) document.getElementById('next').click();
        const cv = document.querySelector('canvas.heat'); return { ms: (performance.now() - t0) / 5,
        tokens: cv.dataset.tokens.split(',').length, units: cv.dataset.units.split(',').length,
        page: LSTMKIT.state.page }; }""")
    assert errors == []
    assert info["page"] == 5 and info["tokens"] == 100 and info["units"] == 32
    assert load < 20 and info["ms"] < 500, (load, info)
    page.evaluate("() => { const n = document.getElementById('nunits'); n.value = 256;"
                  " n.dispatchEvent(new Event('change')); }")
    assert len(page.locator("canvas.heat").first.get_attribute("data-units").split(",")) == 256
    page.close()


@pytest.mark.filterwarnings("ignore:lstmkit. LSTM variants")
def test_a_variant_report_draws_only_its_gates_without_a_step_panel(browser, tmp_path):
    """NIG (no input gate): the page names the variant, draws a heatmap per traced quantity (no
    input gate among them) and says why there is no step panel; no console errors."""
    torch.manual_seed(0)
    core = lstmkit.VariantLSTM(5, 6, variant="nig")
    e = explain_model(core, torch.randn(len(TOKENS), 5), TOKENS, memory=False)
    page, errors = open_report(browser, write_html(e, tmp_path / "nig.html"))
    assert errors == []
    assert "(LSTM NIG, 6 units)" in page.locator("#view option").first.inner_text()
    drawn = page.evaluate("LSTMKIT.data.views[0].quantities.map((q) => q.name)")
    assert drawn == ["forget_gate", "output_gate", "candidate", "cell", "hidden"]
    assert "standard LSTM's computation; this layer is a LSTM NIG." in page.locator("#panel-help").inner_text()
    page.close()
