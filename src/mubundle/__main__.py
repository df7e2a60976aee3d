"""``python -m mubundle`` (also what ``torchrun -m mubundle`` runs)."""

import sys

from mubundle.cli import main

sys.exit(main())
