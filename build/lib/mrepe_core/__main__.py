"""``python -m mrepe_core ...`` runs the command line (``mrepe`` once installed); see ``cli.py``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
