"""The in-sync memo: keys cover every input, hits are fresh copies, bounded, persistable."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gitopsd.plan.memo import ComparisonMemo

SPEC = {"family": "web", "containerDefinitions": [{"name": "main", "image": "busybox:1"}]}


def test_equal_inputs_share_a_key_and_any_difference_changes_it() -> None:
    key = ComparisonMemo.key("Service", SPEC, ["/desiredCount"], ["team"])
    assert key == ComparisonMemo.key("Service", dict(SPEC), ["/desiredCount"], ["team"])
    others = [
        ComparisonMemo.key("TaskDefinition", SPEC, ["/desiredCount"], ["team"]),
        ComparisonMemo.key("Service", dict(SPEC, family="api"), ["/desiredCount"], ["team"]),
        ComparisonMemo.key("Service", SPEC, [], ["team"]),
        ComparisonMemo.key("Service", SPEC, ["/desiredCount"], []),
    ]
    assert key not in others
    assert len(set(others)) == len(others)


def test_a_datetime_and_its_text_are_different_inputs() -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    assert ComparisonMemo.key({"createdAt": at}) != ComparisonMemo.key({"createdAt": str(at)})
    assert ComparisonMemo.key({"createdAt": at}) == ComparisonMemo.key({"createdAt": at})
    assert ComparisonMemo.key({"x": float("nan")}) is None  # not remembered at all


def test_a_hit_is_a_fresh_copy() -> None:
    memo = ComparisonMemo()
    key = ComparisonMemo.key("k")
    assert memo.get(key) is None
    memo.put(key, SPEC)
    got = memo.get(key)
    assert got == SPEC
    assert got is not None
    got["containerDefinitions"][0]["image"] = "changed by a caller"
    assert memo.get(key) == SPEC
    assert (memo.hits, memo.misses) == (2, 1)


def test_what_does_not_survive_json_is_not_remembered() -> None:
    memo = ComparisonMemo()
    specs: list[dict[str, Any]] = [{"a": (1, 2)}, {"a": {1: "x"}}, {"a": object()}]
    for i, spec in enumerate(specs):
        key = ComparisonMemo.key(i)
        memo.put(key, spec)
        assert memo.get(key) is None
    memo.put(None, SPEC)  # an input that had no key
    assert len(memo) == 0


def test_bounded_least_recently_used_first() -> None:
    memo = ComparisonMemo(max_entries=2)
    a, b, c = (ComparisonMemo.key(n) for n in "abc")
    memo.put(a, {"n": "a"})
    memo.put(b, {"n": "b"})
    assert memo.get(a) == {"n": "a"}  # a is now the most recently used
    memo.put(c, {"n": "c"})
    assert memo.get(b) is None
    assert memo.get(a) == {"n": "a"}
    assert memo.get(c) == {"n": "c"}


def test_entries_load_into_another_memo_and_damage_is_skipped() -> None:
    memo = ComparisonMemo()
    a, b = ComparisonMemo.key("a"), ComparisonMemo.key("b")
    memo.put(a, {"n": "a"})
    memo.put(b, {"n": "b"})
    assert memo.dirty
    saved = memo.entries()
    assert not memo.dirty
    damaged = [*saved, ["not hex", "{}"], "not a pair", [ComparisonMemo.key("c").hex(), "{"]]
    other = ComparisonMemo()
    assert other.load(damaged) == 3
    assert other.get(a) == {"n": "a"}
    assert other.get(b) == {"n": "b"}
    assert other.get(ComparisonMemo.key("c")) is None  # undecodable: dropped
    assert len(other) == 2
    assert other.load("not a list") == 0
