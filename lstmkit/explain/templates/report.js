// lstmkit explain report: decodes the embedded data and draws heatmaps (canvas), the step panel,
// gate saturation and memory over distance (SVG). No network access; window.LSTMKIT is the test hook.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("data").textContent);
  const $ = (id) => document.getElementById(id);
  const SVGNS = "http://www.w3.org/2000/svg";
  const decoded = new Map(); // "view/quantity" -> Float32Array (T*H) or Float64Array (T*U)
  const state = { view: 0, order: "activity", nunits: 0, unitstart: 0, unitlist: null,
                  page: 0, pagesize: 100, step: 0, unit: null, log: true };

  // ---- data ------------------------------------------------------------------------------------
  function decode(b64, Type) {
    const bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (let k = 0; k < bin.length; k++) bytes[k] = bin.charCodeAt(k);
    return new Type(bytes.buffer); // little-endian, as written (every browser platform is LE)
  }
  function quantityValues(v, q) {
    const key = v + "/" + q;
    if (!decoded.has(key)) decoded.set(key, decode(quantityInfo(v, q).data, Float32Array));
    return decoded.get(key);
  }
  function quantityInfo(v, q) { return DATA.views[v].quantities.find((x) => x.name === q); }
  function value(v, q, t, u) { return quantityValues(v, q)[t * DATA.views[v].H + u]; }
  function panelField(v, name) {
    const key = v + "/panel/" + name;
    if (!decoded.has(key)) decoded.set(key, decode(DATA.views[v].panel.fields[name], Float64Array));
    return decoded.get(key);
  }
  function panelValue(v, name, t, unit) {
    const p = DATA.views[v].panel, k = p.units.indexOf(unit);
    if (k < 0) return null;
    if (name in p.bias) return p.bias[name][k];
    return panelField(v, name)[t * p.units.length + k];
  }

  // ---- colours ---------------------------------------------------------------------------------
  const SEQ = [[247, 251, 255], [198, 219, 239], [107, 174, 214], [33, 113, 181], [8, 48, 107]];
  const NEG = [33, 102, 172], POS = [178, 24, 43], MID = [247, 247, 247];
  function mix(a, b, s) { return [0, 1, 2].map((k) => Math.round(a[k] + (b[k] - a[k]) * s)); }
  function colour(info, x) {
    if (info.kind === "gate") {
      const s = Math.min(Math.max(x, 0), 1) * (SEQ.length - 1), k = Math.min(Math.floor(s), SEQ.length - 2);
      return mix(SEQ[k], SEQ[k + 1], s - k);
    }
    const s = Math.max(-1, Math.min(1, x / info.scale));
    return s < 0 ? mix(MID, NEG, -s) : mix(MID, POS, s);
  }
  const css = (c) => "rgb(" + c[0] + "," + c[1] + "," + c[2] + ")";

  // ---- which units and tokens are shown ---------------------------------------------------------
  function parseUnits(text, H) {
    const out = [];
    for (const part of text.split(",").map((s) => s.trim()).filter(Boolean)) {
      const m = part.match(/^(\d+)\s*(?:-\s*(\d+))?$/);
      if (!m) return null;
      const a = +m[1], b = m[2] === undefined ? a : +m[2];
      for (let u = a; u <= b; u++) if (u < H && !out.includes(u)) out.push(u);
    }
    return out.length ? out : null;
  }
  function shownUnits() {
    const v = DATA.views[state.view];
    if (state.unitlist) return state.unitlist;
    const ranked = state.order === "activity" ? v.order : [...Array(v.H).keys()];
    return ranked.slice(state.unitstart, state.unitstart + state.nunits);
  }
  function pageCount() { return Math.max(1, Math.ceil(DATA.tokens.length / state.pagesize)); }
  function shownTokens() {
    const t0 = state.page * state.pagesize, t1 = Math.min(DATA.tokens.length, t0 + state.pagesize);
    return [...Array(t1 - t0).keys()].map((k) => t0 + k);
  }

  // ---- heatmaps ----------------------------------------------------------------------------------
  const LEFT = 56;
  function geometry(nTok, nUnits) {
    const width = Math.max(300, $("heatmaps").clientWidth || 900);
    const cw = Math.max(2, Math.min(48, Math.floor((width - LEFT - 4) / Math.max(nTok, 1))));
    const ch = nUnits > 128 ? 3 : nUnits > 64 ? 6 : nUnits > 24 ? 10 : 14;
    return { cw, ch, width: LEFT + cw * nTok + 4, height: ch * nUnits };
  }
  function sizeCanvas(cv, w, h) {
    const r = window.devicePixelRatio || 1;
    cv.width = Math.round(w * r); cv.height = Math.round(h * r);
    cv.style.width = w + "px"; cv.style.height = h + "px";
    const g = cv.getContext("2d"); g.setTransform(r, 0, 0, r, 0, 0); return g;
  }
  function drawHeatmap(cv, q, toks, units, geo) {
    const v = state.view, info = quantityInfo(v, q), vals = quantityValues(v, q), H = DATA.views[v].H;
    const g = sizeCanvas(cv, geo.width, geo.height);
    g.font = "10px sans-serif"; g.fillStyle = "#5b6475"; g.textBaseline = "middle";
    units.forEach((u, r) => {
      if (geo.ch >= 9) g.fillText("u" + u, 2, r * geo.ch + geo.ch / 2);
      toks.forEach((t, c) => {
        g.fillStyle = css(colour(info, vals[t * H + u]));
        g.fillRect(LEFT + c * geo.cw, r * geo.ch, geo.cw, geo.ch);
      });
      g.fillStyle = "#5b6475";
    });
    const c = toks.indexOf(state.step);
    if (c >= 0) { g.strokeStyle = "#c0392b"; g.lineWidth = 2; g.strokeRect(LEFT + c * geo.cw + 1, 1, geo.cw - 2, geo.height - 2); }
    cv.dataset.tokens = toks.join(","); cv.dataset.units = units.join(",");
    cv.dataset.cw = geo.cw; cv.dataset.ch = geo.ch; cv.dataset.left = LEFT;
  }
  function drawTokenStrip(toks, geo) {
    const show = geo.cw >= 12, h = show ? 64 : 18, g = sizeCanvas($("tokens"), geo.width, h);
    g.fillStyle = "#1d2330"; g.font = "11px sans-serif";
    const every = show ? 1 : Math.ceil(40 / geo.cw);
    toks.forEach((t, c) => {
      if (c % every) return;
      const x = LEFT + c * geo.cw + geo.cw / 2;
      g.save(); g.translate(x, h - 4); if (show) g.rotate(-Math.PI / 4);
      g.fillText(show ? DATA.tokens[t] : String(t), show ? 0 : -4, 0); g.restore();
    });
  }
  function buildHeatmaps() {
    const box = $("heatmaps"); box.textContent = "";
    const v = DATA.views[state.view];
    for (const q of v.quantities) {
      const div = document.createElement("div"); div.className = "hm";
      const h = document.createElement("h3");
      h.innerHTML = '<span class="sym"></span> <span class="name"></span><span class="legend"></span>';
      h.querySelector(".sym").append(math(q.symbol));
      h.querySelector(".name").textContent = q.long;
      h.querySelector(".legend").append(legend(q));
      const cv = document.createElement("canvas"); cv.className = "heat"; cv.dataset.quantity = q.name;
      cv.addEventListener("mousemove", (ev) => hover(ev, cv));
      cv.addEventListener("mouseleave", () => { $("tooltip").style.display = "none"; });
      cv.addEventListener("click", (ev) => pick(ev, cv));
      div.append(h, cv); box.append(div);
    }
  }
  function legend(q) {
    const span = document.createElement("span"), cv = document.createElement("canvas");
    const g = sizeCanvas(cv, 90, 10);
    const lo = q.kind === "gate" ? 0 : -q.scale, hi = q.kind === "gate" ? 1 : q.scale;
    for (let k = 0; k < 90; k++) { g.fillStyle = css(colour(q, lo + (hi - lo) * k / 89)); g.fillRect(k, 0, 1, 10); }
    span.append(fmt(lo), cv, fmt(hi));
    return span;
  }
  function drawHeatmaps() {
    const toks = shownTokens(), units = shownUnits(), geo = geometry(toks.length, units.length);
    drawTokenStrip(toks, geo);
    document.querySelectorAll("canvas.heat").forEach((cv) => drawHeatmap(cv, cv.dataset.quantity, toks, units, geo));
    drawOverview(units);
    $("pageinfo").textContent = "tokens " + toks[0] + "–" + toks[toks.length - 1] + " of " + DATA.tokens.length +
      " · " + units.length + " of " + DATA.views[state.view].H + " units";
  }
  function drawOverview(units) {
    const cv = $("overview"), w = Math.max(300, cv.clientWidth || 900), T = DATA.tokens.length;
    const g = sizeCanvas(cv, w, 28), v = state.view, H = DATA.views[v].H, hid = quantityValues(v, "hidden");
    for (let x = 0; x < w; x++) {
      const t0 = Math.floor(x * T / w), t1 = Math.max(t0 + 1, Math.floor((x + 1) * T / w));
      let s = 0, n = 0;
      for (let t = t0; t < t1 && t < T; t++) for (const u of units) { s += Math.abs(hid[t * H + u]); n++; }
      g.fillStyle = css(colour({ kind: "gate" }, n ? s / n : 0)); g.fillRect(x, 0, 1, 28);
    }
    const t0 = state.page * state.pagesize, t1 = Math.min(T, t0 + state.pagesize);
    g.strokeStyle = "#c0392b"; g.lineWidth = 2; g.strokeRect(t0 * w / T + 1, 1, Math.max(2, (t1 - t0) * w / T - 2), 26);
  }
  function cellAt(ev, cv) {
    const r = cv.getBoundingClientRect(), x = ev.clientX - r.left, y = ev.clientY - r.top;
    const c = Math.floor((x - LEFT) / +cv.dataset.cw), row = Math.floor(y / +cv.dataset.ch);
    const toks = cv.dataset.tokens.split(",").map(Number), units = cv.dataset.units.split(",").map(Number);
    if (x < LEFT || c < 0 || c >= toks.length || row < 0 || row >= units.length) return null;
    return { t: toks[c], u: units[row] };
  }
  function hover(ev, cv) {
    const cell = cellAt(ev, cv), tip = $("tooltip");
    if (!cell) { tip.style.display = "none"; return; }
    const q = quantityInfo(state.view, cv.dataset.quantity), x = value(state.view, q.name, cell.t, cell.u);
    tip.textContent = q.symbol + " · token " + cell.t + " “" + DATA.tokens[cell.t] + "” · unit " + cell.u + " = " + String(x);
    tip.dataset.value = String(x); tip.dataset.t = cell.t; tip.dataset.u = cell.u; tip.dataset.q = q.name;
    tip.style.display = "block"; tip.style.left = (ev.clientX + 14) + "px"; tip.style.top = (ev.clientY + 14) + "px";
  }
  function pick(ev, cv) {
    const cell = cellAt(ev, cv);
    if (!cell) return;
    state.step = cell.t; state.unit = cell.u; drawHeatmaps(); drawPanel();
  }

  // ---- the step panel ---------------------------------------------------------------------------------
  function fmt(x) {
    if (x === null || x === undefined) return "–";
    const a = Math.abs(x);
    return a !== 0 && (a < 1e-3 || a >= 1e4) ? x.toExponential(3) : x.toFixed(4);
  }
  function math(str) { // "W_h^(f) h_{t−1}" -> a span with <sub>/<sup>; only ever our own symbol strings
    const esc = str.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
    const span = document.createElement("span"); span.className = "math";
    span.innerHTML = esc.replace(/\^\(([^)]*)\)/g, "<sup>($1)</sup>").replace(/_\{([^}]*)\}/g, "<sub>$1</sub>")
      .replace(/_([A-Za-z0-9]+)/g, "<sub>$1</sub>");
    return span;
  }
  function num(v, field, t, unit, cls) {
    const x = panelValue(v, field, t, unit), s = document.createElement("span");
    s.className = "num" + (cls ? " " + cls : ""); s.dataset.field = field; s.dataset.value = String(x);
    s.textContent = fmt(x); s.title = field + " = " + String(x); return s;
  }
  const GATES = [["f", "forget gate", "σ", "f_t"], ["c", "candidate", "tanh", "c̃_t"],
                 ["i", "input gate", "σ", "i_t"], ["o", "output gate", "σ", "o_t"]];
  function linear(v, t, u, g) {
    const prev = DATA.views[v].direction ? "h_{t+1}" : "h_{t−1}";
    return ["Z_" + g[0] + " = W_h^(" + g[0] + ") " + prev + " + W_x^(" + g[0] + ") x_t + b^(" + g[0] + ") = ",
      num(v, "Wh_" + g[0], t, u), " + ", num(v, "Wx_" + g[0], t, u), " + ", num(v, "b_" + g[0], t, u), " = ",
      num(v, "Z_" + g[0], t, u, "result")];
  }
  function activation(v, t, u, g) {
    return [g[3] + " = " + g[2] + "(Z_" + g[0] + ") = " + g[2] + "(", num(v, "Z_" + g[0], t, u), ") = ",
      num(v, g[3] === "c̃_t" ? "c_tilde" : g[3], t, u, "result")];
  }
  function panelRows(v, t, u) {
    const cprev = DATA.views[v].direction ? "c_{t+1}" : "c_{t−1}", G = Object.fromEntries(GATES.map((g) => [g[0], g]));
    return [
      ["① forget gate", linear(v, t, u, G.f)], ["", activation(v, t, u, G.f)],
      ["", ["f_t ⊙ " + cprev + " = ", num(v, "f_t", t, u), " × ", num(v, "c_prev", t, u), " = ", num(v, "fc", t, u, "result")]],
      ["② candidate", linear(v, t, u, G.c)], ["", activation(v, t, u, G.c)],
      ["③ input gate", linear(v, t, u, G.i)], ["", activation(v, t, u, G.i)],
      ["", ["i_t ⊙ c̃_t = ", num(v, "i_t", t, u), " × ", num(v, "c_tilde", t, u), " = ", num(v, "ic", t, u, "result")]],
      ["④ cell state", ["c_t = f_t ⊙ " + cprev + " + i_t ⊙ c̃_t = ", num(v, "fc", t, u), " + ", num(v, "ic", t, u), " = ",
        num(v, "c_t", t, u, "result")]],
      ["⑤ output", ["tanh(c_t) = tanh(", num(v, "c_t", t, u), ") = ", num(v, "tanh_c_t", t, u, "result")]],
      ["", linear(v, t, u, G.o)], ["", activation(v, t, u, G.o)],
      ["", ["h_t = o_t ⊙ tanh(c_t) = ", num(v, "o_t", t, u), " × ", num(v, "tanh_c_t", t, u), " = ", num(v, "h_t", t, u, "result")]],
    ];
  }
  function drawPanel() {
    const v = state.view, view = DATA.views[v], box = $("panel"); box.textContent = "";
    const t = Math.max(0, Math.min(DATA.tokens.length - 1, state.step));
    $("step").value = t; $("step-token").textContent = "“" + DATA.tokens[t] + "”";
    box.dataset.t = t; box.dataset.view = v;
    if (!view.panel) { $("panel-help").textContent = "The step panel shows the standard LSTM's computation; this layer is a " + view.title + "."; return; }
    const units = view.panel.units;
    if (!units.includes(state.unit)) {
      $("panel-help").textContent = (state.unit === null ? "" : "Unit " + state.unit + " has no embedded panel values (only the " +
        units.length + " most active units do); showing unit " + units[0] + ". ");
      state.unit = units[0];
    } else {
      $("panel-help").textContent = "Computed in float64 by lstmkit.reference.lstm_step from this layer's weights, in the article's order." +
        (view.direction ? " Backward direction: the previous step is token t+1." : "");
    }
    $("unit").value = String(state.unit); box.dataset.unit = state.unit;
    for (const [stage, parts] of panelRows(v, t, state.unit)) {
      const a = document.createElement("div"), b = document.createElement("div");
      a.className = "stage"; a.textContent = stage; b.className = "eq";
      b.append(...parts.map((x) => typeof x === "string" ? math(x) : x));
      if (stage && box.childElementCount) { const gap = document.createElement("div"); gap.className = "gap"; box.append(gap); }
      box.append(a, b);
    }
  }
  function fillUnitSelect() {
    const sel = $("unit"), p = DATA.views[state.view].panel; sel.textContent = "";
    for (const u of (p ? p.units : [])) { const o = document.createElement("option"); o.value = u; o.textContent = "u" + u; sel.append(o); }
  }

  // ---- SVG charts -----------------------------------------------------------------------------------
  function el(name, attrs, parent) {
    const e = document.createElementNS(SVGNS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.append(e);
    return e;
  }
  function text(parent, x, y, s, attrs) { const e = el("text", Object.assign({ x, y }, attrs || {}), parent); e.textContent = s; return e; }
  function drawSaturation() {
    const box = $("saturation"), view = DATA.views[state.view]; box.textContent = "";
    const table = document.createElement("table"); table.className = "sat";
    table.innerHTML = "<tr><th>gate</th><th>steps below 0.1</th><th>steps above 0.9</th></tr>";
    for (const s of view.saturation) {
      const fig = document.createElement("figure"), S = 190, P = 30;
      const svg = el("svg", { width: S + P + 10, height: S + P + 10, "data-gate": s.gate });
      el("rect", { x: P, y: 5, width: S, height: S, class: "axis" }, svg);
      el("line", { x1: P, y1: 5, x2: P + S, y2: 5 + S, stroke: "#d8dce4" }, svg);
      text(svg, P, S + 20, "0"); text(svg, P + S - 4, S + 20, "1"); text(svg, P + S / 2 - 30, S + 32, "share < 0.1");
      text(svg, 2, 12, "1"); text(svg, 2, S + 5, "0");
      const lab = text(svg, 12, 5 + S / 2 + 30, "share > 0.9", { transform: "rotate(-90 12 " + (5 + S / 2 + 30) + ")" });
      lab.setAttribute("text-anchor", "start");
      s.below.forEach((b, u) => {
        const dot = el("circle", { cx: P + b * S, cy: 5 + S - s.above[u] * S, r: 3, fill: "rgba(33,113,181,0.55)" }, svg);
        el("title", {}, dot).textContent = "unit " + u + ": " + (100 * b).toFixed(1) + "% below 0.1, " + (100 * s.above[u]).toFixed(1) + "% above 0.9";
      });
      const cap = document.createElement("figcaption"); cap.append(math(s.symbol), " (" + s.gate.replace("_", " ") + ")");
      fig.append(svg, cap); box.append(fig);
      const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
      const row = table.insertRow(); row.insertCell().textContent = s.symbol;
      row.insertCell().textContent = (100 * mean(s.below)).toFixed(1) + "%"; row.insertCell().textContent = (100 * mean(s.above)).toFixed(1) + "%";
    }
    if (view.saturation.length) box.append(table);
  }
  const LINE_COLOURS = ["#c0392b", "#2c3e50", "#2980b9", "#27ae60", "#8e44ad"];
  function drawMemory() {
    const box = $("memory"); box.textContent = "";
    if (!DATA.memory.length) { box.textContent = "(not measured)"; return; }
    const W = Math.min(1100, Math.max(500, box.clientWidth || 900)), Hh = 280, L = 64, B = 60, top = 10;
    const svg = el("svg", { width: W, height: Hh + B + top }, box), keys = document.createElement("div");
    keys.className = "keys";
    const start = Math.min(...DATA.memory.map((m) => m.start)), T = DATA.tokens.length, n = T - start;
    const all = DATA.memory.flatMap((m) => m.norms).filter((x) => x > 0);
    const hi = Math.max(...all), lo = state.log ? Math.max(Math.min(...all), hi * 1e-12) : 0;
    const y = (x) => state.log ? top + Hh - Hh * (Math.log10(Math.max(x, lo)) - Math.log10(lo)) / Math.max(1e-9, Math.log10(hi) - Math.log10(lo))
      : top + Hh - Hh * x / hi;
    const xOf = (t) => L + (W - L - 40) * (n === 1 ? 0.5 : (t - start) / (n - 1));
    el("path", { d: "M" + L + " " + top + " V" + (top + Hh) + " H" + (W - 10), class: "axis" }, svg);
    text(svg, 4, top + 10, state.log ? hi.toExponential(1) : hi.toFixed(3));
    text(svg, 4, top + Hh, state.log ? lo.toExponential(1) : "0");
    const every = Math.max(1, Math.ceil(n / 40));
    for (let t = start; t < T; t += every) {
      const lab = n <= 40 ? DATA.tokens[t] : String(t), x = xOf(t);
      text(svg, x, top + Hh + 12, lab, { transform: "rotate(45 " + x + " " + (top + Hh + 12) + ")" });
    }
    DATA.memory.forEach((m, k) => {
      const pts = m.norms.map((v, j) => xOf(m.start + j).toFixed(1) + "," + y(v).toFixed(1));
      const col = LINE_COLOURS[k % LINE_COLOURS.length];
      el("polyline", { points: pts.join(" "), fill: "none", stroke: col, "stroke-width": 2, "data-label": m.label }, svg);
      m.norms.forEach((v, j) => { const c = el("circle", { cx: xOf(m.start + j), cy: y(v), r: n <= 60 ? 3 : 0, fill: col }, svg);
        el("title", {}, c).textContent = m.label + " · token " + (m.start + j) + ": " + v; });
      const item = document.createElement("div"); item.className = "key"; item.style.color = col;
      item.textContent = "━ " + m.label + (m.exact ? "" : " (estimated with 16 random probes)"); keys.append(item);
    });
    box.append(keys);
    if (start > 0) { const p = document.createElement("p"); p.className = "note";
      p.textContent = "Measured over the last " + n + " tokens (further back the gradient has vanished)."; box.append(p); }
  }

  // ---- controls ----------------------------------------------------------------------------------------
  function setView(v) {
    state.view = v; const view = DATA.views[v];
    state.nunits = Math.min(view.H, state.nunitsWanted || 32); $("nunits").value = state.nunits; $("nunits").max = view.H;
    fillUnitSelect(); buildHeatmaps(); drawHeatmaps(); drawPanel(); drawSaturation();
  }
  function setStep(t) {
    state.step = Math.max(0, Math.min(DATA.tokens.length - 1, t));
    state.page = Math.floor(state.step / state.pagesize); $("page").value = state.page;
    drawHeatmaps(); drawPanel();
  }
  function wire() {
    const sel = $("view");
    DATA.views.forEach((v, k) => { const o = document.createElement("option"); o.value = k; o.textContent = v.name + " (" + v.title + ", " + v.H + " units)"; sel.append(o); });
    sel.addEventListener("change", () => setView(+sel.value));
    $("order").addEventListener("change", (e) => { state.order = e.target.value; drawHeatmaps(); });
    $("nunits").addEventListener("change", (e) => { state.nunitsWanted = Math.max(1, +e.target.value || 1); state.nunits = Math.min(DATA.views[state.view].H, state.nunitsWanted); drawHeatmaps(); });
    $("unitstart").addEventListener("change", (e) => { state.unitstart = Math.max(0, +e.target.value || 0); drawHeatmaps(); });
    $("unitlist").addEventListener("change", (e) => { state.unitlist = parseUnits(e.target.value, DATA.views[state.view].H); drawHeatmaps(); });
    $("page").addEventListener("input", (e) => { state.page = +e.target.value; drawHeatmaps(); });
    $("prev").addEventListener("click", () => { state.page = Math.max(0, state.page - 1); $("page").value = state.page; drawHeatmaps(); });
    $("next").addEventListener("click", () => { state.page = Math.min(pageCount() - 1, state.page + 1); $("page").value = state.page; drawHeatmaps(); });
    $("pagesize").addEventListener("change", (e) => { state.pagesize = +e.target.value; $("page").max = pageCount() - 1; setStep(state.step); });
    $("overview").addEventListener("click", (e) => { const r = e.target.getBoundingClientRect();
      setStep(Math.floor((e.clientX - r.left) / r.width * DATA.tokens.length)); });
    $("step").addEventListener("change", (e) => setStep(+e.target.value));
    $("unit").addEventListener("change", (e) => { state.unit = +e.target.value; drawPanel(); });
    $("logscale").addEventListener("change", (e) => { state.log = e.target.checked; drawMemory(); });
    window.addEventListener("resize", () => { drawHeatmaps(); });
  }
  function init() {
    $("title").textContent = DATA.title; $("note").textContent = DATA.note;
    const T = DATA.tokens.length;
    state.pagesize = T <= 200 ? T : 100;
    const ps = $("pagesize");
    if (T <= 200) { const o = document.createElement("option"); o.textContent = String(T); ps.prepend(o); }
    ps.value = String(state.pagesize); $("page").max = pageCount() - 1;
    state.step = DATA.step < 0 ? T - 1 : Math.min(DATA.step, T - 1);
    state.page = Math.floor(state.step / state.pagesize); $("page").value = state.page;
    state.unit = DATA.unit === null ? DATA.views[0].order[0] : DATA.unit;
    wire(); setView(0); drawMemory();
    $("token-strip").style.top = $("controls").offsetHeight + "px"; // stays under the sticky controls
  }

  // ---- the test hook ------------------------------------------------------------------------------------
  window.LSTMKIT = {
    data: DATA, state, value, panelValue, colour: (q, x) => colour(quantityInfo(state.view, q), x),
    setView, setStep, shownUnits, shownTokens,
    setUnit: (u) => { state.unit = u; drawPanel(); },
    grid: (q) => { const toks = shownTokens(), units = shownUnits();
      return { tokens: toks, units, values: units.map((u) => toks.map((t) => value(state.view, q, t, u))) }; },
  };
  init();
  window.LSTMKIT.ready = true;
})();
