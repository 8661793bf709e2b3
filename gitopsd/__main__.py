"""``python -m gitopsd`` runs the command line."""

import sys

try:
    from gitopsd.cli import main

    sys.exit(main())
except KeyboardInterrupt:  # Ctrl-C while importing: no traceback, the usual status
    sys.exit(130)
