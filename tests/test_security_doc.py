"""docs/security.md names real tests: every ``tests/FILE.py::test_name`` exists.

The threat model promises, for each defence, "the test that shows it". A test
renamed or removed would leave the promise pointing at nothing; this check
fails first. Bare file references (``tests/source/test_verify.py``) must exist
too, and the threat model must name a test for each defence it lists.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "security.md"
#: ``tests/a/test_b.py::test_c`` (a parametrized id in brackets is allowed and ignored).
REFERENCE = re.compile(r"(tests/[\w/]+\.py)::(\w+)(?:\[[^\]`]*\])?")
#: A test file named on its own.
FILE = re.compile(r"(?<![\w/])(tests/[\w/]+\.py)(?!::)")


@cache
def _tests_in(path: str) -> frozenset[str]:
    """The test functions (sync or async) defined at the top level of ``path``, or in classes."""
    tree = ast.parse((ROOT / path).read_text(), filename=path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
            "test"
        ):
            names.add(node.name)
    return frozenset(names)


def _references() -> list[tuple[str, str]]:
    return sorted(set(REFERENCE.findall(DOC.read_text())))


def _threat_model() -> str:
    text = DOC.read_text()
    start = text.index("\n## Threat model\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_the_document_names_tests() -> None:
    assert len(REFERENCE.findall(_threat_model())) >= 20


@pytest.mark.parametrize(("path", "name"), _references(), ids="::".join)
def test_every_named_test_exists(path: str, name: str) -> None:
    assert (ROOT / path).is_file(), f"docs/security.md names {path}, which does not exist"
    assert name in _tests_in(path), f"docs/security.md names {path}::{name}, which is not defined"


def test_every_named_test_file_exists() -> None:
    missing = [p for p in sorted(set(FILE.findall(DOC.read_text()))) if not (ROOT / p).is_file()]
    assert missing == []


def test_each_defence_names_a_test() -> None:
    """Each bold threat of "What it defends against" is followed by a test before the next."""
    section = _threat_model()
    body = section[section.index("### What it defends against") : section.index("### Out of scope")]
    threats = re.split(r"\n\*\*", body)[1:]
    assert len(threats) >= 8
    for threat in threats:
        title = threat.split("**", 1)[0]
        assert REFERENCE.search(threat), f"no test named for: {title}"
