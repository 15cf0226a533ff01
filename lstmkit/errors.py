"""Every error lstmkit raises for a user's mistake, in one place.

What it is: ``LstmkitError`` and its kinds. Each names what was expected and what came; the command
line (``lstmkit.cli``) prints any of them as one line on stderr with exit code 2, never a
traceback. The kinds also derive from the builtin a caller would catch for the same mistake
(``ValueError`` for a bad value, ``RuntimeError`` for a run that broke off), so code written
before this module keeps working.
What it is not: the errors of the ``torch.nn`` drop-in layer (``lstmkit.modules``): those raise
exactly the exception types ``torch.nn`` raises, so code written for ``nn.LSTM`` catches them.
This module imports nothing: every layer may raise these.
"""

from __future__ import annotations


class LstmkitError(Exception):
    """A user's mistake or a run that cannot go on: one line for the user, no traceback."""


class UsageError(LstmkitError):
    """A command-line mistake (an option out of range, options that do not go together)."""


class ConfigError(LstmkitError, ValueError):
    """A training option out of range."""


class ModelError(LstmkitError, ValueError):
    """A model config that cannot be built (bad value, too large for memory)."""


class TaskError(LstmkitError, ValueError):
    """A mistake in a task's input (file, column, values)."""


class RunError(LstmkitError, ValueError):
    """A run folder that cannot be used (missing, not a run, corrupt, not writable)."""


class Diverged(LstmkitError, RuntimeError):
    """The loss or the gradients became NaN or infinite: training stops, nothing non-finite is saved."""


class OtherRankFailed(LstmkitError, RuntimeError):
    """Another process of the same torchrun run failed; its message says why."""


__all__ = ["ConfigError", "Diverged", "LstmkitError", "ModelError", "OtherRankFailed", "RunError", "TaskError",
           "UsageError"]
