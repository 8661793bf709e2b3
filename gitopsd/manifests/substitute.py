"""Strict ``${VAR}`` substitution from an app's ``vars``.

Substitution runs on parsed data, inside string values only (never keys), so a
variable can change a value but never the structure of a document. It is
strict: an undefined variable is an error naming file, line and field, because
a silently empty image tag or role ARN would deploy something nobody wrote.
``$${`` writes a literal ``${``; a ``$`` not followed by ``{`` is left alone.

The value of a variable named in ``secret`` is registered with
:mod:`gitopsd.redact` when it is substituted, so it is masked in every output.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from gitopsd.errors import Problem
from gitopsd.manifests.loader import LocatedDoc
from gitopsd.pointer import child_pointer
from gitopsd.redact import REDACTOR

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# `$${` (escape), `${...}` (a reference), or a `${` that is never closed.
_TOKEN = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")


def substitute_text(
    text: str, variables: Mapping[str, str], secret: Collection[str] = ()
) -> tuple[str, list[str]]:
    """``text`` with references replaced, and the error messages (empty when all is well).

    The value of a variable in ``secret`` is registered as secret when it is used.
    """
    errors: list[str] = []

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "$${":
            return "${"
        name = match.group(1)
        if not _NAME.match(name):
            errors.append(
                f"invalid variable reference {token!r}: names are letters, digits and '_' "
                "(write '$${' for a literal '${')"
            )
            return token
        if name not in variables:
            defined = ", ".join(sorted(variables)) or "none"
            errors.append(
                f"undefined variable ${{{name}}}; define it in apps[].vars (defined: {defined})"
            )
            return token
        if name in secret:
            REDACTOR.register(variables[name])
        return variables[name]

    out: list[str] = []
    pos = 0
    while match := _TOKEN.search(text, pos):
        out.append(text[pos : match.start()])
        if match.group(0) == "${" and match.group(1) is None:
            # No '}' follows, so no reference can: stop here (searching on from every
            # later '${' to the end of the text would take quadratic time).
            errors.append("unclosed '${' (write '$${' for a literal '${')")
            pos = match.start()
            break
        out.append(replace(match))
        pos = match.end()
    out.append(text[pos:])
    return "".join(out), list(dict.fromkeys(errors))


def substitute(
    doc: LocatedDoc, variables: Mapping[str, str], secret: Collection[str] = ()
) -> tuple[LocatedDoc, list[Problem]]:
    """``doc`` with every string value substituted; ``kind`` and keys are left as written."""
    problems: list[Problem] = []

    def walk(value: Any, pointer: str) -> Any:
        if isinstance(value, str):
            if "$" not in value:
                return value
            result, errors = substitute_text(value, variables, secret)
            problems.extend(doc.problem(pointer, e) for e in errors)
            return result
        if isinstance(value, dict):
            return {k: walk(v, child_pointer(pointer, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, child_pointer(pointer, i)) for i, v in enumerate(value)]
        return value

    data = {k: v if k == "kind" else walk(v, child_pointer("", k)) for k, v in doc.data.items()}
    return doc.replace(data=data), problems


def substitute_all(
    docs: list[LocatedDoc], variables: Mapping[str, str], secret: Collection[str] = ()
) -> tuple[list[LocatedDoc], list[Problem]]:
    """:func:`substitute` over every document; ``secret`` names the secret variables."""
    out: list[LocatedDoc] = []
    problems: list[Problem] = []
    for doc in docs:
        done, found = substitute(doc, variables, secret)
        out.append(done)
        problems.extend(found)
    return out, problems
