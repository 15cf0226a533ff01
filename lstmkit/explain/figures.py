"""The report's views as PNG figures (matplotlib), for slides and papers.

What it is: ``write_pngs(explanation, folder)`` writes, for one layer and direction,
``heatmaps.png`` (the traced quantities over the tokens, most active units first),
``step.png`` (the article's computation for the report's step and unit, from the reference),
``saturation.png`` (Karpathy-style scatter per gate) and ``memory.png`` (‖∂h_T/∂x_t‖ against t).
Long inputs and many units are cut to the first ``MAX_TOKENS`` tokens and ``MAX_UNITS`` units.
What it is not: interactive (the HTML report is); it draws only what ``Explanation`` holds.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .explanation import Explanation, View
from .html import LONG_NAMES

MAX_TOKENS, MAX_UNITS = 120, 48
HANGUL_FONTS = ("NanumGothic", "Noto Sans CJK KR", "Noto Sans KR", "Malgun Gothic", "AppleGothic", "UnDotum")


def _pyplot():
    """matplotlib's pyplot on the Agg backend, with a Hangul-capable font first when one is installed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    first = [name for name in HANGUL_FONTS if name in installed][:1]
    plt.rcParams["font.family"] = first + ["DejaVu Sans"]  # per-glyph fallback (matplotlib >= 3.6)
    plt.rcParams["axes.unicode_minus"] = False
    plt.rcParams["mathtext.fontset"] = "dejavusans"
    return plt


def heatmaps(plt, e: Explanation, v: View):
    """One panel per traced quantity: units (rows, most active first) × tokens (columns)."""
    tr, T = v.trace, len(e.tokens)
    units, n = v.order[:MAX_UNITS], min(T, MAX_TOKENS)
    names = tr.fields
    fig, axes = plt.subplots(len(names), 1, figsize=(max(6, 0.28 * n + 2), 1.2 + 1.9 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        values = tr.quantities[name][:n, units].T  # (U, n)
        symbol, kind = tr.symbol(name)
        scale = 1.0 if kind == "gate" else max(float(np.abs(values).max()), 1e-12)
        im = ax.imshow(values, aspect="auto", interpolation="nearest", cmap="Blues" if kind == "gate" else "RdBu_r",
                       vmin=0 if kind == "gate" else -scale, vmax=1 if kind == "gate" else scale)
        ax.set_title(f"{symbol}  {LONG_NAMES[name]}", loc="left", fontsize=10)
        ax.set_ylabel("unit rank")
        ax.set_xticks(range(n) if n <= 40 else [])
        ax.tick_params(labelbottom=False)
        fig.colorbar(im, ax=ax, fraction=0.025, pad=0.01)
    if n <= 40:
        axes[-1, 0].tick_params(labelbottom=True)
        axes[-1, 0].set_xticklabels(e.tokens[:n], rotation=60, ha="right", fontsize=8)
    fig.suptitle(f"{e.title} — {tr.name}" + (f" (first {n} of {T} tokens)" if n < T else ""), fontsize=11)
    fig.tight_layout()
    return fig


def step_figure(plt, e: Explanation, v: View):
    """The step panel as text: the article's computation for one step and unit, real numbers."""
    T = len(e.tokens)
    t = e.step % T
    unit = e.unit if e.unit is not None and e.unit in v.panel_units else int(v.panel_units[0])
    k = int(np.flatnonzero(v.panel_units == unit)[0])
    p = {name: (a[k] if a.ndim == 1 else a[t, k]) for name, a in v.panel.items()}
    lines = step_lines(p, "t+1" if v.trace.direction else "t-1")
    fig = plt.figure(figsize=(9, 0.32 * len(lines) + 0.8))
    fig.text(0.02, 0.98, f"step {t} “{e.tokens[t]}”, unit {unit} ({v.trace.name})", va="top", fontsize=12)
    fig.text(0.02, 0.90, "\n".join(lines), va="top", family="monospace", fontsize=9, linespacing=1.5)
    return fig


def step_lines(p: dict[str, float], prev: str) -> list[str]:
    """The article's order: Z_f → f_t → f_t⊙c_prev; Z_c → c̃_t; Z_i → i_t → i_t⊙c̃_t; c_t; tanh(c_t), Z_o → o_t → h_t."""
    def z(g: str) -> str:
        return (f"Z_{g} = W_h^({g}) h_{prev} + W_x^({g}) x_t + b^({g}) = {p['Wh_' + g]:+.4f} {p['Wx_' + g]:+.4f} "
                f"{p['b_' + g]:+.4f} = {p['Z_' + g]:+.4f}")
    return [z("f"), f"f_t = σ(Z_f) = {p['f_t']:.4f}",
            f"f_t ⊙ c_{prev} = {p['f_t']:.4f} × {p['c_prev']:+.4f} = {p['fc']:+.4f}",
            z("c"), f"c̃_t = tanh(Z_c) = {p['c_tilde']:+.4f}",
            z("i"), f"i_t = σ(Z_i) = {p['i_t']:.4f}",
            f"i_t ⊙ c̃_t = {p['i_t']:.4f} × {p['c_tilde']:+.4f} = {p['ic']:+.4f}",
            f"c_t = f_t ⊙ c_{prev} + i_t ⊙ c̃_t = {p['fc']:+.4f} {p['ic']:+.4f} = {p['c_t']:+.4f}",
            f"tanh(c_t) = {p['tanh_c_t']:+.4f}", z("o"), f"o_t = σ(Z_o) = {p['o_t']:.4f}",
            f"h_t = o_t ⊙ tanh(c_t) = {p['o_t']:.4f} × {p['tanh_c_t']:+.4f} = {p['h_t']:+.4f}"]


def saturation_figure(plt, v: View):
    """Per gate, a dot per unit: share of steps below 0.1 (x) and above 0.9 (y)."""
    fig, axes = plt.subplots(1, len(v.saturation), figsize=(3.2 * len(v.saturation), 3.4), squeeze=False)
    for ax, s in zip(axes[0], v.saturation, strict=True):
        ax.scatter(s.below, s.above, s=14, alpha=0.6)
        ax.plot([0, 1], [1, 0], color="0.85", lw=1)
        ax.set(xlim=(-0.03, 1.03), ylim=(-0.03, 1.03), xlabel="share of steps < 0.1", title=f"{s.symbol} {s.gate}")
    axes[0, 0].set_ylabel("share of steps > 0.9")
    fig.suptitle(f"gate saturation — {v.trace.name}", fontsize=11)
    fig.tight_layout()
    return fig


def memory_figure(plt, e: Explanation):
    """‖∂h_T/∂x_t‖ against t, one line per model, log scale."""
    fig, ax = plt.subplots(figsize=(8, 4))
    for m in e.memory:
        t = np.arange(m.start, m.start + len(m.norms))
        ax.semilogy(t, np.maximum(m.norms, 1e-300), marker="o" if len(t) <= 60 else None, ms=3, label=m.label)
    n = len(e.tokens)
    if n <= 40 and e.memory:
        ax.set_xticks(range(n), e.tokens, rotation=45, ha="right", fontsize=8)
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda y, _: f"{y:.0e}"))  # plain text, no mathtext
    ax.yaxis.set_minor_formatter(plt.NullFormatter())
    ax.set_ylabel("‖∂h_T / ∂x_t‖")
    ax.set_title("memory over distance: how much h_T still depends on each input")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def write_pngs(e: Explanation, folder: str | Path, view: int = 0) -> list[Path]:
    """Write the figures of ``e.views[view]`` into ``folder``; returns the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plt, v = _pyplot(), e.views[view]
    figures = {"heatmaps.png": heatmaps(plt, e, v), "saturation.png": saturation_figure(plt, v)}
    if v.panel is not None:
        figures["step.png"] = step_figure(plt, e, v)
    if e.memory:
        figures["memory.png"] = memory_figure(plt, e)
    paths = []
    for name, fig in figures.items():
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Glyph .* missing")  # no Hangul font installed
            fig.savefig(folder / name, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(folder / name)
    return paths
