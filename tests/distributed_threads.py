"""lstmkit's command line under torchrun, then the names of the threads each rank still has: the
probe of tests/test_train_distributed.py for a process group destroyed at the end of a run."""
import os
import sys
from pathlib import Path

from lstmkit.cli import main

code = main(sys.argv[1:])
names = sorted(Path(f"/proc/self/task/{t}/comm").read_text().strip() for t in os.listdir("/proc/self/task"))
print(f"rank {os.environ['RANK']} threads left: {' '.join(names)}", flush=True)
sys.exit(code)
