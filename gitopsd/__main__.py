"""``python -m gitopsd`` runs the command line."""

import sys

from gitopsd.cli import main

sys.exit(main())
