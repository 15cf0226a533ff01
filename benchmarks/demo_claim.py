"""The demo's headline checked seed by seed, and the README's demo table written from a results.json.

Usage:
    python benchmarks/demo_claim.py                          # the full default `lstmkit demo`, then the check
    python benchmarks/demo_claim.py --seeds 0,1,2,3,4 --distances 50,100,200    # any demo option
    python benchmarks/demo_claim.py --from runs/demo-TIME --readme    # train nothing: check that demo,
                                                             # rewrite README.md's table and docs/demo-accuracy.png

The claim, as the README states it: at every distance of at least ``--long`` filler words, the LSTM
remembers the opening clause (test accuracy >= 90%) and the RNN forgets it (below 30%; chance is
20%) — in every seed, not on average; and at the shortest distance every model learns the task, so
the RNN's failure is one of memory. The exit status is 1 when the claim fails anywhere, and each
(model, distance, seed) where it fails is printed. What it is not: a tuner; it reports, it does not
search for settings that pass.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import textwrap
import time
from dataclasses import asdict
from pathlib import Path

from lstmkit.demo import NEAR_CHANCE, SOLVED, DemoSettings, add_arguments, load_results, report, run

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "<!-- demo table: begin (benchmarks/demo_claim.py --readme writes this block) -->"
END = "<!-- demo table: end -->"
PLOT = "![test accuracy against distance](docs/demo-accuracy.png)"


def failures(rows: list[dict], long: int) -> list[str]:
    """Each (model, distance, seed) that breaks the claim, as one line."""
    shortest = min(r["distance"] for r in rows)
    bad = []
    for r in rows:
        where = f"{r['model'].upper()} N={r['distance']} seed {r['seed']}: {r['test_accuracy']:.1%}"
        long_range = r["distance"] >= long
        if long_range and r["model"] == "lstm" and r["test_accuracy"] < SOLVED:
            bad.append(f"{where} (the LSTM should remember: >= {SOLVED:.0%})")
        elif long_range and r["model"] == "rnn" and r["test_accuracy"] >= NEAR_CHANCE:
            bad.append(f"{where} (the RNN should forget: < {NEAR_CHANCE:.0%})")
        elif r["distance"] == shortest < long and r["test_accuracy"] < SOLVED:
            bad.append(f"{where} (every model should learn the task at the shortest distance)")
    return bad


def _option(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def provenance(results: dict) -> str:
    """How the table was made: command, date, time, machine, backend."""
    s, defaults = results["settings"], asdict(DemoSettings())
    changed = [f"--{k.replace('_', '-')} {_option(s[k])}" for k in defaults
               if k != "jobs" and k in s and _option(s[k]) != _option(defaults[k])]
    command = "`lstmkit demo`" + (f" `{' '.join(changed)}`" if changed else ", all defaults")
    return (f"A real run ({command}, {results['date']}: {results['seconds']:.0f} s in {results['processes']} "
            f"processes on a {results['cpus']}-core machine shared with other work, load average "
            f"{results['load_average']:.1f} at the start; {results['backend']} backend), written from its "
            f"results.json by `python benchmarks/demo_claim.py --from RUN --readme`. Test accuracy over "
            f"seeds {', '.join(map(str, s['seeds']))}: mean (lowest–highest).")


def write_readme(out: Path, results: dict, text: str) -> None:
    """Replace the README's demo block with this demo's table and verdict, and copy its plot to docs/."""
    readme = ROOT / "README.md"
    old = readme.read_text(encoding="utf-8")
    if BEGIN not in old or END not in old:
        raise SystemExit(f"README.md has no block between {BEGIN!r} and {END!r}")
    block = f"{BEGIN}\n{textwrap.fill(provenance(results), 100)}\n\n{text}\n\n{PLOT}\n{END}"
    head, rest = old.split(BEGIN, 1)
    readme.write_text(head + block + rest.split(END, 1)[1], encoding="utf-8")
    shutil.copyfile(out / "accuracy.png", ROOT / "docs" / "demo-accuracy.png")
    print(f"wrote README.md's demo table and docs/demo-accuracy.png from {out / 'results.json'}")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(p)
    p.add_argument("--from", dest="source", metavar="RUN", help="check this demo folder instead of training")
    p.add_argument("--long", type=int, default=50, help="distances from here on are 'long' (default 50)")
    p.add_argument("--readme", action="store_true", help="rewrite README.md's demo table and docs/demo-accuracy.png")
    args = p.parse_args(argv)
    out = Path(args.source) if args.source else Path(args.out or f"runs/demo-claim-{time.strftime('%Y%m%d-%H%M%S')}")
    if args.source:
        text = report(out)
    else:
        args.out = str(out)
        if run(args):
            return 1
        text = (out / "table.md").read_text(encoding="utf-8").strip()
    results = load_results(out)
    if args.readme:
        write_readme(out, results, text)
    bad = failures(results["runs"], args.long)
    print("\n".join(["the claim fails at:", *bad]) if bad else
          f"the claim holds in every seed: the LSTM remembers and the RNN forgets from N={args.long} on")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
