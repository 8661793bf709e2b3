"""How gitopsd marks what it owns in AWS.

Resources gitopsd creates or updates carry tags under ``MANAGED_TAG_PREFIX``
(app name, source revision). They let later prune and drift detection tell
gitopsd's resources from others', and they never count as a difference.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

MANAGED_TAG_PREFIX = "gitopsd:"
APP_TAG = "gitopsd:app"
REVISION_TAG = "gitopsd:revision"
SOURCE_TAG = "gitopsd:source"

#: Tag keys AWS reserves (``aws:cloudformation:stack-name``, ...): set by AWS itself, they
#: cannot be changed or removed by users, and AWS refuses user tags under the prefix in
#: any letter case.
AWS_TAG_PREFIX = "aws:"

#: Tag-key prefixes (any letter case) a manifest may not use and that never count as a
#: difference: gitopsd's own ownership tags and AWS's reserved ones.
RESERVED_TAG_PREFIXES: tuple[str, ...] = (MANAGED_TAG_PREFIX, AWS_TAG_PREFIX)


def is_managed_tag(key: str) -> bool:
    return key.startswith(MANAGED_TAG_PREFIX)


def is_reserved_tag(key: str) -> bool:
    """A key under one of :data:`RESERVED_TAG_PREFIXES`: written by gitopsd or by AWS."""
    return key.lower().startswith(RESERVED_TAG_PREFIXES)


def managed_tags(app: str, source: str, commit: str | None) -> list[dict[str, str]]:
    """The tag list gitopsd writes on a resource it creates or changes."""
    tags = [{"key": APP_TAG, "value": app}, {"key": SOURCE_TAG, "value": source}]
    if commit:
        tags.append({"key": REVISION_TAG, "value": commit})
    return tags


def owner_of(tags: Iterable[Mapping[str, str]]) -> str | None:
    """The app named by the ``gitopsd:app`` tag, or None when the resource has none.

    Tags as AWS lists them (``{"key": ..., "value": ...}``); a tag without a
    value has the value ``""``.
    """
    for tag in tags:
        if tag.get("key") == APP_TAG:
            return tag.get("value", "")
    return None
