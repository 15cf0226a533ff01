"""Explain a recurrent model: its gates and states over a text, as an HTML report and PNG figures.

``lstmkit explain [RUN] --text "..." -o report.html [--png DIR]`` (``main``), or from Python::

    from lstmkit.explain import explain_model, write_html, write_pngs
    e = explain_model(core, x, tokens)      # core: lstmkit/torch.nn LSTM, GRU or RNN; x (T, I)
    write_html(e, "report.html"); write_pngs(e, "figures/")

The pieces, one file each: ``traces`` (per-step data from a model), ``step_panel`` (the
article's computation for one step, by ``lstmkit.reference``), ``saturation`` (gates near 0 or 1),
``memory`` (‖∂h_T/∂x_t‖ against t), ``explanation`` (all of it for one input), ``html`` (the
self-contained report), ``figures`` (PNG), ``inputs`` (a run folder and a text, or the demo's model).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lstmkit.errors import LstmkitError, UsageError

from .explanation import Explanation, View, explain_model
from .html import render_html, write_html
from .inputs import ARTICLE_SENTENCE, DEMO_ROOT, encode_text, find_demo_run, partner_run, train_demo_run
from .memory import memory_curve


def write_pngs(e: Explanation, folder: str | Path, view: int = 0) -> list[Path]:
    """The report's views as PNG files in ``folder`` (see ``figures``)."""
    from .figures import write_pngs as write
    return write(e, folder, view)


def explain(run: str | Path | None = None, text: str = ARTICLE_SENTENCE, out: str | Path = "report.html",
            png: str | Path | None = None, step: int = -1, unit: int | None = None, memory: bool = True,
            demo_root: str | Path = DEMO_ROOT) -> Explanation:
    """Explain ``run`` (a run folder; None: the demo's LSTM, trained quickly if none exists) on
    ``text``: write the HTML report to ``out`` and, with ``png``, the figures to that folder."""
    if run is None:
        root = Path(demo_root)
        run = find_demo_run(root) or train_demo_run(root)
    enc = encode_text(run, text)
    e = explain_model(enc.core, enc.x, enc.tokens, title="lstmkit explain: " + text[:60],
                      note=f"model: {run} · text: {text}", label=enc.label, memory=memory)
    e.step, e.unit = step, unit
    partner = partner_run(Path(run)) if memory else None
    if partner is not None:  # the demo's RNN, trained beside this LSTM, on the same text
        other = encode_text(partner, text)
        e.memory.insert(1, memory_curve(other.core, other.x, other.label))
    write_html(e, out)
    if png is not None:
        write_pngs(e, png)
    return e


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``lstmkit explain``'s options."""
    p.add_argument("run", nargs="?", help="run folder (default: the newest `lstmkit demo` LSTM under "
                   f"{DEMO_ROOT}/, trained quickly if there is none)")
    p.add_argument("--text", default=ARTICLE_SENTENCE, help="the input (default: the article's sentence)")
    p.add_argument("-o", "--out", default="report.html", help="the HTML report to write (default report.html)")
    p.add_argument("--png", metavar="DIR", help="also write the views as PNG figures into DIR")
    p.add_argument("--step", type=int, default=-1, help="token the step panel opens on (default: the last)")
    p.add_argument("--unit", type=int, help="unit the step panel opens on (default: the most active)")
    p.add_argument("--no-memory", action="store_true", help="skip the gradient-over-distance measurement")


def run(args: argparse.Namespace) -> int:
    """``lstmkit explain`` on the parsed options; a mistake raises an ``LstmkitError`` (the explain
    checks' ValueErrors too, as ``UsageError``)."""
    if not args.text.strip():
        raise UsageError("--text is empty: give the sentence to explain")
    try:
        e = explain(args.run, args.text, args.out, args.png, args.step, args.unit, not args.no_memory)
    except LstmkitError:
        raise
    except ValueError as err:  # the checks of explain_model and the step panel
        raise UsageError(str(err)) from None
    print(f"wrote {args.out} ({len(e.tokens)} tokens, {len(e.views)} layer/direction view(s))"
          + (f" and PNG figures in {args.png}" if args.png else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``lstmkit explain`` from Python: parse, run; a mistake is one line on stderr and exit code 2."""
    p = argparse.ArgumentParser(prog="lstmkit explain", description="An HTML report (and PNG figures) of a "
                                "model's gates, cell and hidden states over a text.")
    add_arguments(p)
    try:
        return run(p.parse_args(argv))
    except LstmkitError as err:
        print(f"lstmkit explain: error: {err}", file=sys.stderr)
        return 2


__all__ = ["Explanation", "View", "add_arguments", "explain", "explain_model", "main", "render_html", "run",
           "write_html", "write_pngs"]
