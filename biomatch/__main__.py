"""``python -m biomatch`` runs the command line (see :mod:`biomatch.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
