"""Ownership tags: which keys are reserved, and which app owns a resource."""

from __future__ import annotations

import pytest

from gitopsd.backends.ecs.ownership import (
    APP_TAG,
    RESERVED_TAG_PREFIXES,
    is_managed_tag,
    is_reserved_tag,
    managed_tags,
    owner_of,
)


def test_owner_of() -> None:
    tags = [{"key": "team", "value": "shop"}, *managed_tags("shop", "git", "a" * 40)]
    assert owner_of(tags) == "shop"
    assert owner_of(iter(tags)) == "shop"  # any iterable
    assert owner_of([{"key": "team", "value": "shop"}]) is None
    assert owner_of([]) is None


def test_owner_of_a_tag_without_value() -> None:
    assert owner_of([{"key": APP_TAG}]) == ""
    assert owner_of([{"value": "x"}, {"key": APP_TAG, "value": "a"}]) == "a"


@pytest.mark.parametrize(
    ("key", "managed", "reserved"),
    [
        ("gitopsd:app", True, True),
        ("gitopsd:anything", True, True),
        ("aws:cloudformation:stack-name", False, True),
        ("team", False, False),
        ("AWS:x", False, True),  # AWS reserves its prefix in any letter case
        ("Gitopsd:app", False, True),
        ("gitopsd", False, False),
        ("awsome", False, False),
    ],
)
def test_reserved_and_managed_keys(key: str, managed: bool, reserved: bool) -> None:
    assert is_managed_tag(key) is managed
    assert is_reserved_tag(key) is reserved
    assert RESERVED_TAG_PREFIXES == ("gitopsd:", "aws:")
