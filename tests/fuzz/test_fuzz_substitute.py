"""Fuzzing ``${VAR}`` substitution: any text and variables give text and messages, fast.

Substitution is one pass over the text, so a value holding ``${...}`` is
inserted as written and never expanded again; it takes linear time, so one
string full of ``${`` (a manifest file can hold a mebibyte of it) cannot stall
a render.
"""

from __future__ import annotations

import time

from hypothesis import example, given
from hypothesis import strategies as st

from gitopsd.manifests.loader import LocatedDoc
from gitopsd.manifests.substitute import substitute, substitute_text

from .support import FUZZ, JSON_DATA, time_limit

_NAMES = st.sampled_from(["A", "B", "TAG", "_x", "a1"]) | st.text(max_size=5)
_VARIABLES = st.dictionaries(_NAMES, st.text(max_size=10) | st.sampled_from(["${A}", "$${", "}"]))
_TEXT = st.lists(
    st.sampled_from(["$", "{", "}", "$$", "${", "$${", "A", "B", "TAG", "-", " ", "\n", "é"])
    | _NAMES,
    max_size=40,
).map("".join)


@FUZZ
@given(text=_TEXT, variables=_VARIABLES)
@example(text="${" * 200_000, variables={})  # was quadratic: minutes for one string
@example(text="${1}" * 50_000, variables={})  # one message, not fifty thousand
@example(text="${A}${", variables={"A": "${B}"})
def test_any_text_gives_text_and_messages(text: str, variables: dict[str, str]) -> None:
    with time_limit():
        result, errors = substitute_text(text, variables)
    assert isinstance(result, str)
    assert all(isinstance(e, str) and e for e in errors)
    assert len(errors) == len(set(errors))
    if "$" not in text:
        assert (result, errors) == (text, [])


@FUZZ
@given(name=st.sampled_from(["A", "B", "TAG"]), value=st.text(max_size=20))
def test_values_are_inserted_as_written_and_never_expanded_again(name: str, value: str) -> None:
    variables = {"A": "${B}", "B": "b", "TAG": "$${A}", name: value}
    result, errors = substitute_text("$${" + "x} " + "${" + name + "}", variables)
    assert (result, errors) == ("${x} " + variables[name], [])


@FUZZ
@given(data=st.dictionaries(st.text(max_size=5), JSON_DATA, max_size=6), variables=_VARIABLES)
def test_documents_keep_their_shape(data: dict[str, object], variables: dict[str, str]) -> None:
    doc = LocatedDoc("app/web.yaml", 1, {"kind": "Service", **data})
    with time_limit():
        done, problems = substitute(doc, variables)
    assert done.data.keys() == doc.data.keys()
    assert all(p.file == "app/web.yaml" and p.message for p in problems)


def test_a_mebibyte_of_unclosed_references_is_linear() -> None:
    text = "${" * (512 * 1024)
    start = time.monotonic()
    with time_limit(5):
        _, errors = substitute_text(text, {})
    assert time.monotonic() - start < 1
    assert errors == ["unclosed '${' (write '$${' for a literal '${')"]
