"""Problems found while parsing manifests read from a source carry a line and printable names.

(They live with the source tests because a source hands the loader the raw
file names and bytes these cases come from.)
"""

from __future__ import annotations

import os

import pytest

from gitopsd.errors import ManifestError, Problem
from gitopsd.manifests.loader import MAX_DEPTH, display_name, parse_file


def problems(file: str, text: str) -> list[Problem]:
    docs, found = parse_file(file, text.encode())
    assert docs == []
    return found


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_json_constant_that_is_not_json_has_a_line(constant: str) -> None:
    text = f'{{\n  "kind": "TaskDefinition",\n  "family": "web",\n  "cpu": {constant}\n}}'
    assert problems("td.json", text) == [
        Problem("td.json", 4, "", f"invalid JSON: {constant} is not valid JSON")
    ]


def test_yaml_nested_too_deep_for_the_parser_has_a_line() -> None:
    text = "kind: TaskDefinition\nfamily: web\nlabels: " + "[" * 3000 + "]" * 3000 + "\n"
    (problem,) = problems("td.yaml", text)
    assert problem == Problem(
        "td.yaml", 3, "", f"document is nested more than {MAX_DEPTH} levels deep"
    )


@pytest.mark.parametrize("levels", [70, 1500], ids=["builder", "parser"])
def test_yaml_block_nesting_reports_the_line_where_it_gets_too_deep(levels: int) -> None:
    """Just too deep (found while building) or too deep for PyYAML: the same line."""
    lines = ["kind: TaskDefinition"] + [f"{'  ' * i}k{i}:" for i in range(levels)]
    (problem,) = problems("td.yaml", "\n".join([*lines, "  " * levels + "v"]) + "\n")
    # the mapping at depth 65 (the root is 0) starts with key k65, on line 67
    assert problem == Problem(
        "td.yaml", MAX_DEPTH + 3, "", f"document is nested more than {MAX_DEPTH} levels deep"
    )


def test_json_nested_too_deep_for_the_parser_has_a_line() -> None:
    text = (
        '{\n  "kind": "TaskDefinition",\n  "x": "[[[{",\n  "y":\n' + "[" * 3000 + "]" * 3000 + "}"
    )
    (problem,) = problems("td.json", text)
    assert problem == Problem(
        "td.json", 5, "", f"document is nested more than {MAX_DEPTH} levels deep"
    )


def test_a_file_name_that_is_not_utf8_is_shown_with_escapes() -> None:
    name = "apps/" + os.fsdecode(b"lat\xe9n.yaml")
    (problem,) = problems(name, "kind: [\n")
    assert problem.file == "apps/lat\\xe9n.yaml"
    str(ManifestError([problem])).encode("utf-8")
    assert display_name("apps/wéb/日本.yaml") == "apps/wéb/日本.yaml"
    assert display_name("lone\ud800.yaml") == "lone\\ud800.yaml"
