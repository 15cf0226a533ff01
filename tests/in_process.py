"""``run_here(ARGS)``: ``lstmkit ARGS`` by the command line's own main() in the test's process, with
what a process would have returned (exit code, stdout, stderr): the same code from the arguments to
the exit code, without a ~3 s start-up of Python and torch. LSTMKIT_DEBUG is unset, as the tests'
processes have it, and torch's thread count is put back as it was (train restores it itself);
threads, where given, is torch's thread count during the call (the tests' own processes run with
OMP_NUM_THREADS=1: a score compared with one such a process reported is computed the same way)."""

import contextlib
import io
import os
import subprocess
from unittest import mock

import torch

from lstmkit.cli import main


def run_here(*args, threads: int | None = None) -> subprocess.CompletedProcess:
    out, err, before = io.StringIO(), io.StringIO(), torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    with mock.patch.dict(os.environ), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        os.environ.pop("LSTMKIT_DEBUG", None)
        try:
            code = main(list(map(str, args)))
        except SystemExit as e:  # (argparse's own exits, e.g. --help)
            code = e.code
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())
