"""keep_ignored: live values at ignored places survive a write of the whole manifest."""

from __future__ import annotations

from typing import Any

from gitopsd.backends.ecs.normalise import normalise_task_definition
from gitopsd.plan.diff import diff
from gitopsd.plan.keep import keep_ignored

LIVE: dict[str, Any] = {
    "family": "web",
    "containerDefinitions": [
        {"name": "sidecar", "image": "envoy:1"},
        {
            "name": "web",
            "image": "registry/web:ci-42",
            "environment": [{"name": "A", "value": "live"}, {"name": "B", "value": "x"}],
        },
    ],
    "tags": [{"key": "cost", "value": "7"}],
}
DESIRED: dict[str, Any] = {
    "family": "web",
    "containerDefinitions": [
        {
            "name": "web",
            "image": "registry/web:placeholder",
            "environment": [{"name": "B", "value": "y"}, {"name": "A", "value": "git"}],
        }
    ],
    "tags": [{"key": "cost", "value": "1"}],
}


def keep(patterns: list[str]) -> tuple[dict[str, Any], list[str]]:
    return keep_ignored(DESIRED, LIVE, normalise_task_definition(LIVE), patterns)


def test_wildcard_image_is_taken_from_live_by_container_name() -> None:
    spec, kept = keep(["/containerDefinitions/*/image"])
    assert spec["containerDefinitions"][0]["image"] == "registry/web:ci-42"
    assert kept == ["/containerDefinitions/web/image"]  # the sidecar is not in the manifest
    assert DESIRED["containerDefinitions"][0]["image"] == "registry/web:placeholder"


def test_keyed_entries_and_tags() -> None:
    spec, kept = keep(["/containerDefinitions/web/environment/A/value", "/tags/cost"])
    env = {e["name"]: e["value"] for e in spec["containerDefinitions"][0]["environment"]}
    assert env == {"A": "live", "B": "y"}
    assert spec["tags"] == [{"key": "cost", "value": "7"}]
    assert sorted(kept) == ["/containerDefinitions/web/environment/A/value", "/tags/cost"]


def test_after_keeping_the_ignored_places_are_the_only_ones_that_match() -> None:
    ignore = ["/containerDefinitions/*/image", "/containerDefinitions/web/environment/A"]
    spec, _ = keep(ignore)
    changes = diff(normalise_task_definition(spec), normalise_task_definition(LIVE))
    paths = {c.path for c in changes}
    assert "/containerDefinitions/web/image" not in paths
    assert "/containerDefinitions/web/environment/A/value" not in paths
    assert "/containerDefinitions/web/environment/B/value" in paths


def test_pointers_that_name_nothing_change_nothing() -> None:
    spec, kept = keep(["/nope", "/containerDefinitions/absent/image"])
    assert spec == DESIRED
    assert kept == []
