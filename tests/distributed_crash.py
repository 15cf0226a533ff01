"""lstmkit's command line under torchrun with one rank raising at a given step (CRASH_RANK, CRASH_STEP):
the fault injected by tests/test_train_distributed.py."""
import os
import sys

import lstmkit.train as train
from lstmkit.cli import main

CRASH_RANK, CRASH_STEP = int(os.environ["CRASH_RANK"]), int(os.environ["CRASH_STEP"])
real = train._check_finite


def crashing(loss, norm, step, *args):
    if int(os.environ["RANK"]) == CRASH_RANK and step == CRASH_STEP:
        raise ZeroDivisionError("injected crash")
    return real(loss, norm, step, *args)


train._check_finite = crashing
sys.exit(main(sys.argv[1:]))
