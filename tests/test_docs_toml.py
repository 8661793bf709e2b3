"""Every TOML example in the docs and the README parses: a user copies them as they are.

An example that is not valid TOML (an inline table spread over lines, a stray comma)
fails the copy-paste a user tries first; this found two such gate examples.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md", ROOT / "examples" / "README.md"]
BLOCK = re.compile(r"```toml\n(.*?)```", re.S)


def _blocks() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        for n, block in enumerate(BLOCK.findall(path.read_text()), 1):
            found.append((f"{path.relative_to(ROOT)}#{n}", block))
    return found


def test_the_docs_have_toml_examples() -> None:
    assert len(_blocks()) >= 10


@pytest.mark.parametrize(("where", "block"), _blocks(), ids=[w for w, _ in _blocks()])
def test_toml_example_parses(where: str, block: str) -> None:
    try:
        tomllib.loads(block)
    except tomllib.TOMLDecodeError as exc:
        pytest.fail(f"{where}: not valid TOML: {exc}")
