"""``python -m gitopsd.local_aws``: the ``local-aws`` command without the main CLI.

The test harness (:mod:`gitopsd.local_aws.testing`) starts the server this way,
so it does not depend on :mod:`gitopsd.cli`.
"""

from __future__ import annotations

import argparse
import sys

from gitopsd.local_aws.command import DESCRIPTION, add_arguments, run


def main(argv: list[str] | None = None) -> int:
    """Parse the ``local-aws`` options and serve."""
    parser = argparse.ArgumentParser(
        prog="python -m gitopsd.local_aws",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
