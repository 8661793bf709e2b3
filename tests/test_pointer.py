"""RFC 6901 JSON pointers: escaping, splitting, walking, display."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitopsd.pointer import (
    child_pointer,
    display_path,
    escape_token,
    is_below,
    join_pointer,
    parent_pointer,
    split_pointer,
    unescape_token,
    value_at,
)

# Text that leans on the characters RFC 6901 escapes, and on what they escape to.
_tokens = st.text(alphabet=st.sampled_from("~/01a") | st.characters(), max_size=8)


@pytest.mark.parametrize(
    ("tokens", "pointer"),
    [
        ((), ""),
        (("a",), "/a"),
        (("a/b", "c~d"), "/a~1b/c~0d"),
        (("~1",), "/~01"),  # '~' first: "~1" must not come back as "/"
        (("~0",), "/~00"),
        (("/~",), "/~1~0"),
        (("",), "/"),
        (("", ""), "//"),
        (("l", 0), "/l/0"),
    ],
)
def test_escaping_round_trips(tokens: tuple[Any, ...], pointer: str) -> None:
    assert join_pointer(tokens) == pointer
    assert split_pointer(pointer) == tuple(str(t) for t in tokens)


def test_escape_and_unescape_tokens() -> None:
    assert escape_token("a~/b") == "a~0~1b"
    assert escape_token(3) == "3"
    assert unescape_token("a~0~1b") == "a~/b"
    assert unescape_token("~01") == "~1"


def test_split_rejects_relative_pointers() -> None:
    with pytest.raises(ValueError, match="JSON pointer"):
        split_pointer("a/b")


def test_child_and_parent() -> None:
    assert child_pointer("", "a") == "/a"
    assert child_pointer("/a", "b/c") == "/a/b~1c"
    assert child_pointer("/l", 2) == "/l/2"
    assert parent_pointer("/a/b~1c") == "/a"
    assert parent_pointer("/a") == ""
    assert parent_pointer("/") == ""
    with pytest.raises(ValueError, match="no parent"):
        parent_pointer("")


def test_is_below() -> None:
    assert is_below("/a", "/a")
    assert is_below("/a/b", "/a")
    assert is_below("/a", "")
    assert not is_below("/ab", "/a")
    assert not is_below("/a", "/a/b")


def test_value_at() -> None:
    doc = {"a/b": [{"c": 1}, None], "": {"~": "t"}}
    assert value_at(doc, "") is doc
    assert value_at(doc, "/a~1b/0/c") == 1
    assert value_at(doc, "//~0") == "t"
    assert value_at(doc, "/a~1b/1", "absent") is None  # present, and None
    assert value_at(doc, "/a~1b/2") is None
    assert value_at(doc, "/a~1b/2", "absent") == "absent"
    assert value_at(doc, "/a~1b/-", "absent") == "absent"
    assert value_at(doc, "/a~1b/0/c/d", "absent") == "absent"  # below a scalar
    assert value_at(doc, "/a/b", "absent") == "absent"


def test_display_path() -> None:
    assert display_path("") == ""
    assert display_path("/containerDefinitions/0/image") == "containerDefinitions[0].image"
    assert display_path("/dockerLabels/com.example~1x") == 'dockerLabels["com.example/x"]'
    assert display_path("/0/a~0b") == '[0]["a~b"]'


@given(st.lists(_tokens, max_size=5))
def test_tokens_round_trip(tokens: list[str]) -> None:
    pointer = join_pointer(tokens)
    assert split_pointer(pointer) == tuple(tokens)
    built = ""
    for token in tokens:
        built = child_pointer(built, token)
    assert built == pointer
    if tokens:
        assert parent_pointer(pointer) == join_pointer(tokens[:-1])
        assert is_below(pointer, parent_pointer(pointer))


@given(_tokens)
def test_one_token_round_trips(token: str) -> None:
    escaped = escape_token(token)
    assert "/" not in escaped
    assert unescape_token(escaped) == token
