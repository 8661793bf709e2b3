"""The other version of a secret in a change (rotated away, or set live by another writer)
is masked like the one gitopsd read from Git."""

from __future__ import annotations

import pytest

from gitopsd.redact import MASK, Redactor


@pytest.fixture
def redactor() -> Redactor:
    r = Redactor()
    r.register("new-password-1")
    return r


def test_the_value_a_secret_replaces_is_registered(redactor: Redactor) -> None:
    redactor.register_counterparts("old-password-0", "new-password-1")
    assert redactor.redact("was old-password-0, is new-password-1") == f"was {MASK}, is {MASK}"


def test_a_value_replacing_a_secret_is_registered(redactor: Redactor) -> None:
    redactor.register_counterparts("new-password-1", "set-by-someone-else")
    assert redactor.redact("live: set-by-someone-else") == f"live: {MASK}"


def test_members_are_paired_by_key_and_by_name_not_by_position(redactor: Redactor) -> None:
    before = {
        "environment": [
            {"name": "GREETING", "value": "hello"},
            {"name": "DB_PASSWORD", "value": "drifted-value"},
        ],
        "image": "nginx:1.27",
    }
    after = {
        "environment": [
            {"name": "DB_PASSWORD", "value": "new-password-1"},
            {"name": "GREETING", "value": "hello there"},
        ],
        "image": "nginx:1.28",
    }
    redactor.register_counterparts(before, after)
    assert redactor.redact("drifted-value") == MASK
    # Values beside the secret, or paired with non-secrets, stay readable.
    assert redactor.redact("hello nginx:1.27") == "hello nginx:1.27"
    assert redactor.count == 2


def test_nothing_is_registered_without_a_secret_on_either_side(redactor: Redactor) -> None:
    redactor.register_counterparts(["a-long-value", 3], ["another-value", 4])
    redactor.register_counterparts("same-same", "same-same")
    assert redactor.count == 1
