"""The self-contained HTML report: one file, inline CSS and JavaScript, nothing fetched.

What it is: ``render_html(explanation)`` fills ``templates/report.html`` with
``templates/report.css``, ``templates/report.js`` and the data as JSON. Large arrays travel as
base64 little-endian floats: the traced quantities as float32 (their exact values), the step
panel's reference values as float64; the page decodes a quantity only when it is first drawn.
The page draws heatmaps on canvas one page of tokens at a time, so 5,000 tokens × 256 units stay
smooth; ``window.LSTMKIT`` exposes the decoded data and the drawn grid for tests.
What it is not: a server or a notebook widget; the file opens from disk in any current browser.
"""

from __future__ import annotations

import base64
import json
from importlib import resources
from pathlib import Path

import numpy as np

from .explanation import Explanation, View

LONG_NAMES = {"forget_gate": "forget gate", "input_gate": "input gate", "output_gate": "output gate",
              "candidate": "candidate", "cell": "cell state", "hidden": "hidden state",
              "reset_gate": "reset gate", "update_gate": "update gate"}


def b64(a: np.ndarray, dtype: str) -> str:
    """An array as base64 of its little-endian bytes (row-major)."""
    return base64.b64encode(np.ascontiguousarray(a, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()).decode()


def view_payload(v: View) -> dict:
    """One layer and direction as JSON-ready data."""
    tr = v.trace
    T, H = tr.quantities["hidden"].shape
    quantities = []
    for name in tr.fields:
        values = tr.quantities[name]  # (T, H)
        symbol, kind = tr.symbol(name)
        scale = 1.0 if kind == "gate" or name != "cell" else float(max(np.abs(values).max(), 1e-12))
        quantities.append({"name": name, "symbol": symbol, "kind": kind, "long": LONG_NAMES[name],
                           "scale": scale, "data": b64(values, "f4")})
    out = {"name": tr.name, "cell": tr.cell, "title": tr.title, "layer": tr.layer, "direction": tr.direction,
           "T": T, "H": H,
           "order": v.order.tolist(), "quantities": quantities,
           "saturation": [{"gate": s.gate, "symbol": s.symbol, "below": s.below.round(6).tolist(),
                           "above": s.above.round(6).tolist()} for s in v.saturation],
           "panel": None}
    if v.panel is not None:
        fields = {k: b64(a, "f8") for k, a in v.panel.items() if a.ndim == 2}  # (T, U) each
        bias = {k: a.tolist() for k, a in v.panel.items() if a.ndim == 1}  # (U,) each
        out["panel"] = {"units": v.panel_units.tolist(), "fields": fields, "bias": bias}
    return out


def payload(e: Explanation) -> dict:
    """The whole report's data."""
    return {"title": e.title, "note": e.note, "tokens": e.tokens, "step": e.step, "unit": e.unit,
            "views": [view_payload(v) for v in e.views],
            "memory": [{"label": m.label, "start": m.start, "exact": m.exact,
                        "norms": [float(f"{n:.6g}") for n in m.norms]} for m in e.memory]}


def template(name: str) -> str:
    return resources.files("lstmkit.explain").joinpath("templates", name).read_text(encoding="utf-8")


def render_html(e: Explanation) -> str:
    """The report as one HTML string."""
    data = json.dumps(payload(e), ensure_ascii=False, separators=(",", ":"))
    data = data.replace("</", "<\\/")  # never close the <script> early
    page = template("report.html")
    for key, value in (("TITLE", _escape(e.title)), ("/*CSS*/", template("report.css")),
                       ("/*JS*/", template("report.js")), ("/*DATA*/", data)):
        page = page.replace(key, value, 1)
    return page


def write_html(e: Explanation, path: str | Path) -> Path:
    """Write the report; returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(e), encoding="utf-8")
    return path


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
