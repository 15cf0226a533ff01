"""lstmkit against torch.nn over the grid of sizes users pick: the script form of ``lstmkit bench --grid``.

Usage: python benchmarks/bench_grid.py [--models lstm gru] [--modes infer] [--markdown grid.md] [--json grid.json]
The cases, the timing and the summary live in ``lstmkit/bench_grid.py`` (see its docstring).
"""

import sys

from lstmkit.bench import main

if __name__ == "__main__":
    raise SystemExit(main(["--grid", *sys.argv[1:]]))
