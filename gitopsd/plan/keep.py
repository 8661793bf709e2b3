"""Keep what the ignore list protects when gitopsd writes a whole object.

An ignore pointer says "this value is owned elsewhere" (CI sets the image,
autoscaling sets the count). The diff already hides such differences, but a
write that sends the whole manifest would still overwrite the live value:
registering a new task-definition revision sends every container. Before such
a write, :func:`keep_ignored` copies the live values at ignored places into
the request, so an ignored field is never changed by gitopsd.

Ignore pointers address the normalised form, where named lists are keyed by
name (``/containerDefinitions/web/image``). Raw API documents keep lists, so a
token that is not an index selects the list element whose identity field
(``name``, ``key``, ``containerName`` ...) has that value. Lists normalised by
sorting (compared by position) cannot be addressed inside; a pointer to the
whole list works.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from gitopsd.pointer import WILDCARD, join_pointer, split_pointer

#: Fields that identify an element of a list of objects in ECS documents.
IDENTITY_FIELDS = ("name", "key", "containerName", "namespace", "sourceVolume")

_ABSENT = object()


def concrete_paths(document: Any, pattern: Sequence[str]) -> Iterator[tuple[str, ...]]:
    """Every existing path in ``document`` that ``pattern`` (with ``*`` tokens) names."""
    if not pattern:
        yield ()
        return
    head, rest = pattern[0], pattern[1:]
    if isinstance(document, Mapping):
        keys = list(document) if head == WILDCARD else [head] if head in document else []
        for key in keys:
            for tail in concrete_paths(document[key], rest):
                yield (str(key), *tail)
    elif isinstance(document, list):
        if head == WILDCARD:
            indexes = range(len(document))
        elif head.isdigit() and int(head) < len(document):
            indexes = range(int(head), int(head) + 1)
        else:
            indexes = range(0)
        for i in indexes:
            for tail in concrete_paths(document[i], rest):
                yield (str(i), *tail)


def _step(node: Any, token: str) -> tuple[Any, Any]:
    """(container, slot) for ``token`` in a raw node, or (None, None) when not addressable."""
    if isinstance(node, dict):
        return node, token
    if isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, Mapping) and any(
                item.get(f) == token for f in IDENTITY_FIELDS if f in item
            ):
                return node, i
    return None, None


def _child(node: Any, token: str) -> Any:
    container, slot = _step(node, token)
    if container is None:
        return _ABSENT
    if isinstance(container, dict):
        return container.get(slot, _ABSENT)
    return container[slot]


def _locate(raw: Any, tokens: Sequence[str]) -> tuple[Any, Any]:
    """The container and slot of ``tokens`` in ``raw`` (creating nothing)."""
    node = raw
    for token in tokens[:-1]:
        node = _child(node, token)
        if node is _ABSENT:
            return None, None
    return _step(node, tokens[-1])


def _read(raw: Any, tokens: Sequence[str]) -> Any:
    node = raw
    for token in tokens:
        node = _child(node, token)
        if node is _ABSENT:
            break
    return node


def keep_ignored(
    desired: Mapping[str, Any],
    live: Mapping[str, Any],
    live_view: Mapping[str, Any],
    patterns: Sequence[str],
) -> tuple[dict[str, Any], list[str]]:
    """``desired`` with the live values at ignored places; and the pointers that were kept.

    ``live_view`` is the normalised live document the patterns address; ``live``
    and ``desired`` are raw API documents. Places that cannot be mapped onto the
    raw documents are left as the manifest has them.
    """
    result = copy.deepcopy(dict(desired))
    kept: list[str] = []
    for pattern in patterns:
        for path in concrete_paths(live_view, split_pointer(pattern)):
            if not path:
                continue
            value = _read(live, path)
            if value is _ABSENT:
                continue
            container, slot = _locate(result, path)
            if container is None:
                continue
            container[slot] = copy.deepcopy(value)
            kept.append(join_pointer(path))
    return result, kept
