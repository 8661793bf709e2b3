"""``python -m gitopsd.iam --write`` (regenerate config/iam/*.json) or ``--check``.

After adding or removing an AWS call, run ``python -m gitopsd.iam --write`` and
commit the two files: tests/test_iam.py fails until they match the code.
"""

from __future__ import annotations

import argparse
import sys

from gitopsd.iam.collect import collect, package_root
from gitopsd.iam.policy import Target, build_policy, render

#: The checked-in documents (placeholders), relative to the repository root.
FILES: dict[str, bool] = {
    "config/iam/gitopsd-policy.json": False,
    "config/iam/gitopsd-readonly-policy.json": True,
}


def expected() -> dict[str, str]:
    """File path -> the text the generator makes for it now."""
    found = collect()
    if found.problems:
        raise SystemExit(
            "gitopsd.iam: cannot read every AWS call:\n  " + "\n  ".join(found.problems)
        )
    target = Target(operations=found.operations)
    return {path: render(build_policy(target, read_only=ro)) for path, ro in FILES.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gitopsd.iam", description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite config/iam/*.json")
    mode.add_argument("--check", action="store_true", help="exit 1 if they are out of date")
    args = parser.parse_args(argv)
    root = package_root()
    stale = []
    for rel, text in expected().items():
        path = root / rel
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(rel)
        if args.write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {rel}")
    if args.check and stale:
        print(
            f"out of date: {', '.join(stale)}; run python -m gitopsd.iam --write", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
