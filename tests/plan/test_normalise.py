"""The generic normalisation rules, one behaviour at a time, on backend-free documents."""

from __future__ import annotations

import copy
from typing import Any

import botocore.session
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitopsd.model import MISSING
from gitopsd.plan.normalise import (
    AnyOf,
    Contains,
    Default,
    Drop,
    DropKeys,
    Equals,
    HasItem,
    KeyBy,
    Not,
    Project,
    Rename,
    Rule,
    Sibling,
    SortBy,
    Transform,
    normalise,
    project,
    resolve,
)


def test_empty_values_count_as_absent() -> None:
    doc: dict[str, Any] = {
        "a": [],
        "b": {},
        "c": None,
        "d": {"e": [], "f": 0, "g": False, "h": ""},
        "i": [{}],
    }
    assert normalise(doc, ()) == {"d": {"f": 0, "g": False, "h": ""}, "i": [{}]}


def test_map_keys_come_out_sorted() -> None:
    assert list(normalise({"b": 1, "a": {"d": 1, "c": 2}}, ())) == ["a", "b"]
    assert list(normalise({"a": {"d": 1, "c": 2}}, ())["a"]) == ["c", "d"]


def test_input_is_not_mutated() -> None:
    doc: dict[str, Any] = {
        "items": [{"name": "b", "v": 1}, {"name": "a"}],
        "empty": [],
        "nested": {"x": None, "z": 0},
    }
    before = copy.deepcopy(doc)
    rules: tuple[Rule, ...] = (
        Default("/items/*/v", 0),
        KeyBy("/items", "name"),
        Default("/nested/y", 1),
        Transform("/nested/y", lambda v: v + 1),
    )
    out = normalise(doc, rules)
    assert doc == before
    assert out == {"items": {"a": {"v": 0}, "b": {"v": 1}}, "nested": {"y": 2, "z": 0}}


def test_default_fills_absent_none_and_empty_but_not_falsy_values() -> None:
    rules = (Default("/a", 1), Default("/b", 1), Default("/c", 1), Default("/d", True))
    assert normalise({"b": None, "c": 0, "d": False}, rules) == {"a": 1, "b": 1, "c": 0, "d": False}


def test_default_never_invents_parents() -> None:
    rules = (Default("/block/inner", 1),)
    assert normalise({}, rules) == {}
    assert normalise({"block": {"other": 2}}, rules) == {"block": {"inner": 1, "other": 2}}


def test_nested_defaults_are_filled_each_on_its_own() -> None:
    rules = (
        Default("/conf", {}),
        Default("/conf/max", 200),
        Default("/conf/breaker", {}),
        Default("/conf/breaker/enable", False),
        Default("/conf/breaker/rollback", False),
    )
    full = {"conf": {"max": 200, "breaker": {"enable": False, "rollback": False}}}
    assert normalise({}, rules) == full
    assert normalise({"conf": {"breaker": {"enable": True}}}, rules) == {
        "conf": {"max": 200, "breaker": {"enable": True, "rollback": False}}
    }


def test_default_values_are_copied() -> None:
    rules = (Default("/a", {}), Default("/a/x", 1), Default("/b", {}))
    out = normalise({}, rules)
    assert out == {"a": {"x": 1}}


def test_default_under_wildcards_and_from_sibling() -> None:
    rules = (
        Default("/items/*/ports/*/protocol", "tcp"),
        Default("/items/*/ports/*/host", Sibling("port")),
    )
    doc = {"items": [{"ports": [{"port": 80}, {"port": 81, "host": 9000, "protocol": "udp"}]}]}
    assert normalise(doc, rules) == {
        "items": [
            {
                "ports": [
                    {"port": 80, "host": 80, "protocol": "tcp"},
                    {"port": 81, "host": 9000, "protocol": "udp"},
                ]
            }
        ]
    }
    # No sibling, no default.
    assert normalise({"items": [{"ports": [{"range": "1-2"}]}]}, rules[1:]) == {
        "items": [{"ports": [{"range": "1-2"}]}]
    }


def test_default_when_condition() -> None:
    rules = (
        Default("/mode", "bridge", when=Not(Contains("/compat", "FARGATE"))),
        Default("/x", "awsvpc-only", when=Equals("/mode", "awsvpc")),
    )
    assert normalise({}, rules) == {"mode": "bridge"}
    assert normalise({"compat": ["FARGATE"]}, rules) == {"compat": ["FARGATE"]}
    assert normalise({"mode": "awsvpc"}, rules) == {"mode": "awsvpc", "x": "awsvpc-only"}


def test_conditions() -> None:
    doc = {"a": "x", "l": ["p", "q"], "m": {"k": "p"}, "s": [{"n": "F"}], "e": []}
    assert Equals("/a", "x")(doc)
    assert not Equals("/a", "y")(doc)
    assert Equals("/nope", MISSING)(doc)
    assert Equals("/e", MISSING)(doc)  # empty is absent
    assert not Equals("/a", MISSING)(doc)
    assert Contains("/l", "q")(doc)
    assert Contains("/m", "p")(doc)
    assert not Contains("/a", "x")(doc)
    assert HasItem("/s", "n", ("F", "G"))(doc)
    assert not HasItem("/s", "n", ("G",))(doc)
    assert AnyOf((Equals("/a", "y"), Equals("/a", "x")))(doc)
    assert not AnyOf(())(doc)
    assert resolve(doc, "/l/1") == "q"
    assert resolve(doc, "/l/7") is MISSING
    assert resolve(doc, "") == doc


def test_transform_applies_to_present_values_only() -> None:
    rules = (Transform("/n", str), Transform("/items/*/n", str))
    assert normalise({"n": 1, "items": [{"n": 2}, {}]}, rules) == {
        "n": "1",
        "items": [{"n": "2"}, {}],
    }
    assert normalise({}, rules) == {}


def test_drop_and_drop_keys() -> None:
    rules: tuple[Rule, ...] = (
        Drop("/readOnly"),
        Drop("/items/*/secret"),
        Drop("/maybe", when=Equals("/flag", True)),
        DropKeys("/tags", lambda k: k.startswith("own:")),
    )
    doc = {
        "readOnly": 1,
        "items": [{"secret": 1, "keep": 2}],
        "maybe": 1,
        "tags": {"own:x": "1", "team": "a"},
    }
    assert normalise(doc, rules) == {"items": [{"keep": 2}], "maybe": 1, "tags": {"team": "a"}}
    assert "maybe" not in normalise({**doc, "flag": True}, rules)


def test_drop_list_items_by_wildcard() -> None:
    assert normalise({"l": [1, 2, 3], "k": 1}, (Drop("/l/*"),)) == {"k": 1}
    assert normalise({"l": [1, 2, 3]}, (Drop("/l/1"),)) == {"l": [1, 3]}


def test_rename_moves_without_overwriting() -> None:
    rule = (Rename("/roleArn", "role"),)
    assert normalise({"roleArn": "r"}, rule) == {"role": "r"}
    assert normalise({"roleArn": "r", "role": "kept"}, rule) == {"role": "kept"}
    assert normalise({"a": [{"old": 1}]}, (Rename("/a/*/old", "new"),)) == {"a": [{"new": 1}]}


def test_key_by_turns_named_lists_into_maps() -> None:
    rules = (KeyBy("/c", "name"), KeyBy("/c/*/env", "name"))
    doc = {
        "c": [
            {"name": "web", "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]},
            {"name": "log", "image": "x"},
        ]
    }
    assert normalise(doc, rules) == {
        "c": {
            "log": {"image": "x"},
            "web": {"env": {"A": {"value": "1"}, "B": {"value": "2"}}},
        }
    }


def test_key_by_with_value_field() -> None:
    rule = (KeyBy("/tags", "key", value="value"),)
    assert normalise({"tags": [{"key": "b", "value": "2"}, {"key": "a", "value": "1"}]}, rule) == {
        "tags": {"a": "1", "b": "2"}
    }


@pytest.mark.parametrize(
    "items",
    [
        [{"name": "a", "v": 2}, {"name": "a", "v": 1}],  # a repeated key
        [{"v": 2}, {"name": "a", "v": 1}],  # a missing key
        [{"name": 1, "v": 2}],  # a key that is no string
        ["plain", "strings"],
    ],
)
def test_key_by_falls_back_to_content_order(items: list[Any]) -> None:
    rule = (KeyBy("/l", "name"),)
    out = normalise({"l": items}, rule)
    assert isinstance(out["l"], list)
    assert sorted(map(repr, out["l"])) == sorted(map(repr, items))
    assert normalise({"l": list(reversed(items))}, rule) == out


def test_sort_by_content_and_by_field() -> None:
    by_content = (SortBy("/l"),)
    a = {"l": [{"p": 81, "q": "tcp"}, {"p": 80}, {"p": 80, "q": "udp"}]}
    b = {"l": [{"p": 80, "q": "udp"}, {"p": 81, "q": "tcp"}, {"p": 80}]}
    assert normalise(a, by_content) == normalise(b, by_content)
    by_field = (SortBy("/l", key="n"),)
    doc = {"l": [{"n": "b", "x": 1}, {"n": "a", "x": 2}]}
    assert normalise(doc, by_field) == {"l": [{"n": "a", "x": 2}, {"n": "b", "x": 1}]}
    assert normalise({"l": ["b", "a", "c"]}, by_content) == {"l": ["a", "b", "c"]}


def test_order_rules_leave_keyed_maps_alone() -> None:
    rules = (KeyBy("/l", "name"), SortBy("/l"))
    once = normalise({"l": [{"name": "b"}, {"name": "a", "x": 1}]}, rules)
    assert once == {"l": {"a": {"x": 1}}}  # "b" has nothing left: empty == absent
    assert normalise(once, rules) == once


def test_wildcards_match_map_keys_and_list_indices() -> None:
    rule = (Default("/c/*/essential", True),)
    assert normalise({"c": [{"n": 1}, {"n": 2}]}, rule) == {
        "c": [{"n": 1, "essential": True}, {"n": 2, "essential": True}]
    }
    assert normalise({"c": {"a": {"n": 1}}}, rule) == {"c": {"a": {"n": 1, "essential": True}}}


def test_pointer_tokens_are_unescaped() -> None:
    doc = {"a/b": {"c~d": None, "k": 0}, "x": {"a/b": 1}}
    assert normalise(doc, (Default("/a~1b/c~0d", 1),)) == {
        "a/b": {"c~d": 1, "k": 0},
        "x": {"a/b": 1},
    }
    assert normalise(doc, (Drop("/x/a~1b"),)) == {"a/b": {"k": 0}}


def _shapes() -> Any:
    return botocore.session.get_session().get_service_model("ecs")


def test_projection_onto_a_botocore_shape() -> None:
    shape = _shapes().operation_model("RegisterTaskDefinition").input_shape
    live = {
        "family": "web",
        "revision": 7,  # read-only: not an input member
        "status": "ACTIVE",
        "containerDefinitions": [
            {
                "name": "web",
                "image": "nginx",
                "bogus": 1,
                "dockerLabels": {"any.key": "v"},  # a map keeps its keys
                "logConfiguration": {"logDriver": "awslogs", "options": {"k": "v"}},
            }
        ],
    }
    assert project(live, shape) == {
        "family": "web",
        "containerDefinitions": [
            {
                "name": "web",
                "image": "nginx",
                "dockerLabels": {"any.key": "v"},
                "logConfiguration": {"logDriver": "awslogs", "options": {"k": "v"}},
            }
        ],
    }
    # Keyed lists and key -> value tags survive a second projection.
    keyed = {"containerDefinitions": {"web": {"image": "x", "junk": 1}}, "tags": {"a": "b"}}
    assert project(keyed, shape) == {
        "containerDefinitions": {"web": {"image": "x"}},
        "tags": {"a": "b"},
    }
    assert (
        normalise({"family": "f", "cluster": "c"}, (Project(shape, frozenset({"family"})),)) == {}
    )


# A small rule table and random documents for it: normalise is idempotent and order-free.

_TABLE: tuple[Rule, ...] = (
    Default("/mode", "bridge"),
    Default("/items/*/on", True),
    Default("/items/*/ports/*/host", Sibling("port"), when=Equals("/mode", "awsvpc")),
    Transform("/size", lambda v: str(v).strip().lower()),
    SortBy("/items/*/ports"),  # innermost first: a content sort sees nested lists as they are
    KeyBy("/items", "name"),
    KeyBy("/tags", "key", value="value"),
)

_names = st.text(alphabet="abcxyz", min_size=1, max_size=3)
_ports = st.lists(
    st.fixed_dictionaries({"port": st.integers(1, 5)}, optional={"host": st.integers(1, 5)}),
    max_size=3,
)
_items = st.lists(
    st.fixed_dictionaries(
        {"name": _names}, optional={"on": st.booleans() | st.none(), "ports": _ports}
    ),
    max_size=4,
)
_docs = st.fixed_dictionaries(
    {},
    optional={
        "mode": st.sampled_from(["bridge", "awsvpc", "host"]),
        "size": st.integers(1, 3) | st.sampled_from([" A ", "b"]),
        "items": _items,
        "tags": st.lists(st.fixed_dictionaries({"key": _names, "value": _names}), max_size=3),
        "other": st.lists(st.none() | st.integers(), max_size=2),
    },
)


@settings(max_examples=80, deadline=None)
@given(_docs)
def test_normalise_is_idempotent_and_pure(doc: dict[str, Any]) -> None:
    before = copy.deepcopy(doc)
    once = normalise(doc, _TABLE)
    assert doc == before
    assert normalise(once, _TABLE) == once


@settings(max_examples=60, deadline=None)
@given(_docs, st.randoms(use_true_random=False))
def test_normalise_ignores_the_order_of_keyed_and_sorted_lists(
    doc: dict[str, Any], rnd: Any
) -> None:
    shuffled = copy.deepcopy(doc)
    for item in shuffled.get("items", []):
        rnd.shuffle(item.get("ports", []))
    rnd.shuffle(shuffled.get("items", []))
    rnd.shuffle(shuffled.get("tags", []))
    # Duplicate names fall back to content order, which any shuffle also leaves equal.
    assert normalise(shuffled, _TABLE) == normalise(doc, _TABLE)
