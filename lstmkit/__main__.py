"""``python -m lstmkit``: the command line (also what ``torchrun -m lstmkit`` runs)."""

import sys

from lstmkit.cli import main

sys.exit(main())
