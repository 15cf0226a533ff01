"""lstmkit.LSTM against torch.nn.LSTM and an nn.LSTMCell loop: the script form of ``lstmkit bench``.

Usage: python benchmarks/bench_lstm.py [--configs A B] [--modes train] [--repeats 7] [--markdown out.md]
The timing and the table live in ``lstmkit/bench.py`` (see its docstring for the method).
"""

import sys

from lstmkit.bench import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
