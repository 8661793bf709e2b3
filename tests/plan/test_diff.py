"""The generic diff: pointers, leaf-level changes, subtrees, ignore patterns."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gitopsd.model import MISSING, FieldChange
from gitopsd.plan.diff import diff, pointer_matches, same_json
from gitopsd.pointer import split_pointer


def test_equal_documents_have_no_changes() -> None:
    doc = {"a": {"b": [1, {"c": True}]}, "d": "x"}
    assert diff(doc, {"d": "x", "a": {"b": [1, {"c": True}]}}) == ()


def test_one_change_per_leaf_with_live_before_and_desired_after() -> None:
    desired = {"c": {"web": {"image": "nginx:2", "cpu": 0}}, "family": "f"}
    live = {"c": {"web": {"image": "nginx:1", "cpu": 0}}, "family": "f"}
    assert diff(desired, live) == (FieldChange("/c/web/image", "nginx:1", "nginx:2"),)


def test_added_and_removed_subtrees_are_one_change_each() -> None:
    desired = {"c": {"web": {"image": "x"}, "sidecar": {"image": "s", "env": {"A": {"v": "1"}}}}}
    live = {"c": {"web": {"image": "x"}, "old": {"image": "o"}}, "gone": [1, 2]}
    changes = diff(desired, live)
    assert changes == (
        FieldChange("/c/old", {"image": "o"}, MISSING),
        FieldChange("/c/sidecar", MISSING, {"image": "s", "env": {"A": {"v": "1"}}}),
        FieldChange("/gone", [1, 2], MISSING),
    )
    assert [c.op for c in changes] == ["remove", "add", "remove"]


def test_lists_compare_by_index() -> None:
    assert diff({"l": [1, 2, 3]}, {"l": [1, 5]}) == (
        FieldChange("/l/1", 5, 2),
        FieldChange("/l/2", MISSING, 3),
    )
    assert diff({"l": [{"p": 80}]}, {"l": [{"p": 81}]}) == (FieldChange("/l/0/p", 81, 80),)


def test_type_changes_are_one_replace() -> None:
    assert diff({"a": {"b": 1}}, {"a": [1]}) == (FieldChange("/a", [1], {"b": 1}),)
    assert diff({"a": "1"}, {"a": 1}) == (FieldChange("/a", 1, "1"),)


def test_booleans_are_not_numbers() -> None:
    assert diff({"a": True}, {"a": 1}) == (FieldChange("/a", 1, True),)
    assert diff({"a": 1}, {"a": 1.0}) == ()
    assert same_json([1, {"a": (2,)}], (1, {"a": [2]}))
    assert not same_json(False, 0)


def test_changes_are_sorted_by_path_with_numeric_indices() -> None:
    desired = {"l": list(range(12)), "a": 1}
    live = {"l": [0, 1, -2, 3, 4, 5, 6, 7, 8, 9, -10, 11], "a": 2}
    assert [c.path for c in diff(desired, live)] == ["/a", "/l/2", "/l/10"]


def test_change_paths_are_escaped() -> None:
    desired = {"dockerLabels": {"com.example/team": "a", "x~y": "1"}}
    live = {"dockerLabels": {"com.example/team": "b", "x~y": "1"}}
    assert diff(desired, live) == (FieldChange("/dockerLabels/com.example~1team", "b", "a"),)


def test_pointer_matches() -> None:
    assert pointer_matches("/desiredCount", "/desiredCount")
    assert pointer_matches("/tags", "/tags/team")
    assert pointer_matches("/c/*/image", "/c/web/image")
    assert pointer_matches("/c/*/env/*/value", "/c/web/env/FOO/value")
    assert pointer_matches("/c/*", "/c/web/image/deeper")
    assert pointer_matches("", "/anything")
    assert not pointer_matches("/c/*/image", "/c/web")
    assert not pointer_matches("/c/*/image", "/c/web/cpu")
    assert not pointer_matches("/desiredCount", "/desiredCountX")
    assert pointer_matches("/a~1b", "/a~1b/c")
    assert not pointer_matches("/a~1b", "/a/b")


def test_ignore_suppresses_a_path_and_everything_below() -> None:
    desired = {"desiredCount": 2, "c": {"web": {"image": "b", "cpu": 1}}, "tags": {"x": "1"}}
    live = {"desiredCount": 5, "c": {"web": {"image": "a", "cpu": 2}}, "tags": {"x": "2"}}
    assert [c.path for c in diff(desired, live)] == [
        "/c/web/cpu",
        "/c/web/image",
        "/desiredCount",
        "/tags/x",
    ]
    assert diff(desired, live, ["/desiredCount", "/c", "/tags/*"]) == ()
    assert [c.path for c in diff(desired, live, ["/c/*/image"])] == [
        "/c/web/cpu",
        "/desiredCount",
        "/tags/x",
    ]


def test_ignored_parts_leave_added_subtrees() -> None:
    desired = {"c": {"web": {"image": "x", "cpu": 1}}}
    live: dict[str, Any] = {}
    assert diff(desired, live, ["/c/*/image"]) == (FieldChange("/c", MISSING, {"web": {"cpu": 1}}),)
    # A subtree of nothing but ignored parts is no change at all.
    assert diff({}, {"tags": {"team": "a"}}, ["/tags/*"]) == ()
    assert diff({"l": [1]}, {}, ["/l/*"]) == ()


_leaves = st.none() | st.booleans() | st.integers(-3, 3) | st.text("ab", max_size=2)
_json = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text("ab/~", max_size=2), inner, max_size=3)
    ),
    max_leaves=10,
)
_maps = st.recursive(
    _leaves | st.lists(_leaves, max_size=2),
    lambda inner: st.dictionaries(st.text("ab/~", max_size=2), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=80, deadline=None)
@given(st.dictionaries(st.text("abc", max_size=2), _json, max_size=4), st.data())
def test_no_changes_exactly_when_equal(desired: dict[str, Any], data: st.DataObject) -> None:
    live = data.draw(st.just(desired) | st.dictionaries(st.text("abc", max_size=2), _json))
    changes = diff(desired, live)
    assert (changes == ()) == same_json(desired, live)
    assert len({c.path for c in changes}) == len(changes)


def _replay(live: dict[str, Any], changes: tuple[FieldChange, ...]) -> dict[str, Any]:
    """Apply changes to a copy of live: replacements, then additions, then removals."""
    doc = copy.deepcopy(live)
    replaced = [c for c in changes if c.op == "replace"]
    added = [c for c in changes if c.op == "add"]  # in path order: list appends ascend
    removed = [c for c in changes if c.op == "remove"][::-1]  # list deletes descend
    for change in [*replaced, *added, *removed]:
        *parent, last = split_pointer(change.path)
        node: Any = doc
        for token in parent:
            node = node[int(token)] if isinstance(node, list) else node[token]
        key: Any = int(last) if isinstance(node, list) else last
        if change.op == "remove":
            del node[key]
        elif isinstance(node, list) and key == len(node):
            node.append(change.after)
        else:
            node[key] = change.after
    return doc


@settings(max_examples=80, deadline=None)
@given(
    st.dictionaries(st.text("ab/~", max_size=2), _maps, max_size=4),
    st.dictionaries(st.text("ab/~", max_size=2), _maps, max_size=4),
)
def test_replaying_the_changes_on_live_gives_desired(
    desired: dict[str, Any], live: dict[str, Any]
) -> None:
    assert same_json(_replay(live, diff(desired, live)), desired)
