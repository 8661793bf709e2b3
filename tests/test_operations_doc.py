"""docs/operations.md's troubleshooting section agrees with the code.

The section promises "every error message a user can meet, with its cause and fix".
Two ways it could lie: a documented message that the code no longer prints (reworded
or removed), and an error class a user can meet that the section never mentions.
These tests catch both:

- each documented message (``- **`message`**``) is found in one string literal of
  the ``gitopsd`` package, f-strings included: ``<placeholders>`` in the doc stand for
  the f-string's replacement fields (or any text), ``…`` separates pieces that are
  built by different strings, and module-level string constants used in f-strings
  (``${ENV_SSM}``) are read as their values;
- every classified error class (subclasses of ``PermanentError`` and
  ``TemporaryError``) and every stage reason is named in the section.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from functools import cache
from pathlib import Path

import pytest

import gitopsd
from gitopsd.engine.outcome import FAILURE_REASONS
from gitopsd.errors import PermanentError, TemporaryError

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "operations.md"
PACKAGE = ROOT / "gitopsd"
#: What a replacement field (``{name!r}``) of an f-string becomes in a code template.
HOLE = "\x00"
#: A documented message: bold inline code, with one or two backticks as delimiters.
ENTRY = re.compile(r"\*\*(`{1,2}) ?(.+?) ?\1\*\*")
#: A placeholder, with the quotes ``!r`` adds around it (the doc may show them or not).
PLACEHOLDER = re.compile(r"""['"]?<[A-Za-z$][^<>\s]*>['"]?""")
PIECES = re.compile(r"\s*…\s*")


def troubleshooting() -> str:
    text = DOC.read_text()
    start = text.index("\n## Troubleshooting\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def documented_messages() -> list[str]:
    return [m.group(2) for m in ENTRY.finditer(troubleshooting())]


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring nodes: what a module says about itself is not a message."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                found.add(id(body[0].value))
    return found


def _module_constants(tree: ast.Module) -> dict[str, str]:
    """``NAME = "text"`` at module level."""
    out = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            out[node.targets[0].id] = node.value.value
    return out


def _template(node: ast.JoinedStr, constants: dict[str, str]) -> str:
    parts = []
    for value in node.values:
        if isinstance(value, ast.Constant):
            parts.append(str(value.value))
        elif (
            isinstance(value, ast.FormattedValue)
            and isinstance(value.value, ast.Name)
            and value.value.id in constants
            and value.conversion == -1
            and value.format_spec is None
        ):
            parts.append(constants[value.value.id])
        else:
            parts.append(HOLE)
    return "".join(parts)


@cache
def code_strings() -> tuple[str, ...]:
    """Every string literal and f-string template in the gitopsd package."""
    trees = {path: ast.parse(path.read_text(), str(path)) for path in PACKAGE.rglob("*.py")}
    constants: dict[str, str] = {}
    for tree in trees.values():
        constants.update(_module_constants(tree))
    out: list[str] = []
    for tree in trees.values():
        skip = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr):
                out.append(_template(node, constants))
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in skip
            ):
                out.append(node.value)
    return tuple(out)


def piece_pattern(piece: str) -> re.Pattern[str]:
    """A documented piece as a regex: literal text, placeholders match anything."""
    regex = ""
    last = 0
    for m in PLACEHOLDER.finditer(piece):
        regex += re.escape(piece[last : m.start()]) + r"""['"]?.*?['"]?"""
        last = m.end()
    regex += re.escape(piece[last:])
    return re.compile(regex, re.S)


def test_the_section_documents_many_messages() -> None:
    messages = documented_messages()
    assert len(messages) >= 100, messages
    assert len(set(messages)) == len(messages), "a message is documented twice"


@pytest.mark.parametrize("message", documented_messages())
def test_each_documented_message_is_printed_by_the_code(message: str) -> None:
    strings = code_strings()
    for piece in filter(None, PIECES.split(message.strip())):
        pattern = piece_pattern(piece)
        fixed = PLACEHOLDER.sub("", piece).strip(" .,;:")
        assert len(fixed) >= 6, f"{piece!r}: too little fixed text to check"
        assert any(pattern.search(s) for s in strings), (
            f"docs/operations.md documents {piece!r}, which no string in gitopsd/ prints: "
            "update the troubleshooting entry to the code's wording"
        )


def test_a_reworded_message_would_be_caught() -> None:
    """The matcher is not so tolerant that anything passes."""
    strings = code_strings()
    assert any(
        piece_pattern("<source>: authentication failed (HTTP 401)").search(s) for s in strings
    )
    assert not any(
        piece_pattern("<source>: authentication has failed (HTTP 401)").search(s) for s in strings
    )
    assert not any(piece_pattern("this sentence is in no message").search(s) for s in strings)


def _subclasses(base: type) -> set[type]:
    found: set[type] = set()
    todo: list[type] = [base]
    while todo:
        subclasses: list[type] = todo.pop().__subclasses__()
        for sub in subclasses:
            if sub not in found:
                found.add(sub)
                todo.append(sub)
    return found


def _import_package() -> None:
    """Import every module (but the local endpoint and entry scripts) so subclasses exist."""
    for info in pkgutil.walk_packages(gitopsd.__path__, "gitopsd."):
        if info.name.startswith("gitopsd.local_aws") or info.name.endswith("__main__"):
            continue
        importlib.import_module(info.name)


def test_every_classified_error_and_stage_reason_is_documented() -> None:
    _import_package()
    section = troubleshooting()
    classes = {
        cls.__name__
        for base in (PermanentError, TemporaryError)
        for cls in _subclasses(base)
        if cls.__module__.startswith("gitopsd.") and not cls.__name__.startswith("_")
    }
    assert {"ConfigError", "SourceRejected", "PlanError", "RolloutFailed"} <= classes
    missing = sorted(c for c in classes if f"`{c}`" not in section)
    assert not missing, f"docs/operations.md's troubleshooting never names {missing}"
    reasons = sorted(r for r in FAILURE_REASONS.values() if f"`{r}`" not in section)
    assert not reasons, f"docs/operations.md's troubleshooting never names the reasons {reasons}"
