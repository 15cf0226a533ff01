"""Settings for the whole suite.

The kernels' path limits stay at their built-in values (LSTMKIT_TUNING=defaults, inherited by the
commands the tests start): which path a call takes then does not depend on how busy the machine was
when it measured. Both sides of every limit are tested against the oracles with the path forced;
tests/test_tuning.py measures and applies limits itself.
"""

import os

os.environ.setdefault("LSTMKIT_TUNING", "defaults")
