"""How gitopsd marks what it owns in AWS.

Resources gitopsd creates or updates carry tags under ``MANAGED_TAG_PREFIX``
(app name, source revision). They let later prune and drift detection tell
gitopsd's resources from others', and they never count as a difference.
"""

from __future__ import annotations

MANAGED_TAG_PREFIX = "gitopsd:"
APP_TAG = "gitopsd:app"
REVISION_TAG = "gitopsd:revision"
SOURCE_TAG = "gitopsd:source"


def is_managed_tag(key: str) -> bool:
    return key.startswith(MANAGED_TAG_PREFIX)


def managed_tags(app: str, source: str, commit: str | None) -> list[dict[str, str]]:
    """The tag list gitopsd writes on a resource it creates or changes."""
    tags = [{"key": APP_TAG, "value": app}, {"key": SOURCE_TAG, "value": source}]
    if commit:
        tags.append({"key": REVISION_TAG, "value": commit})
    return tags
