"""``python tests/commands_in_one_process.py ARGS [; ARGS ...]``: each ``lstmkit ARGS`` in turn, by
the command line's own main(), in this one process: one start-up of Python and torch (~3 s) for all
of them. Exits with the first failing command's code (the rest do not run)."""

import sys

from lstmkit.cli import main


def commands(argv: list[str]) -> list[list[str]]:
    """argv cut at each ";" argument."""
    out = [[]]
    for arg in argv:
        if arg == ";":
            out.append([])
        else:
            out[-1].append(arg)
    return [c for c in out if c]


if __name__ == "__main__":
    for command in commands(sys.argv[1:]):
        code = main(command)
        if code:
            sys.exit(code)
