"""Field-level differences between two normalised documents.

Plan compares what Git wants with what is live only after both sides went
through :mod:`gitopsd.plan.normalise`; what is left to do here is a plain,
generic, recursive comparison that names every difference by an RFC 6901 JSON
pointer, so a plan reads ``/containerDefinitions/web/image`` and the user's
ignore list can say exactly the same thing (with ``*`` for "any key").

Conventions: ``before`` is the live value and ``after`` the desired one;
``MISSING`` marks the side where a key is absent. Maps are compared key by
key, lists index by index (lists whose order does not matter were keyed or
sorted by normalisation), and a subtree present on one side only is one
change, not one per leaf.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gitopsd.model import MISSING, FieldChange
from gitopsd.pointer import WILDCARD, join_pointer, split_pointer


def tokens_match(pattern: Sequence[str], path: Sequence[str]) -> bool:
    """Whether ``path`` is ``pattern`` or lies below it (``*`` matches any one token)."""
    if len(path) < len(pattern):
        return False
    return all(p in (WILDCARD, t) for p, t in zip(pattern, path, strict=False))


def pointer_matches(pattern: str, path: str) -> bool:
    """Whether the pointer ``path`` is ``pattern`` or below it; ``*`` segments match any key.

    >>> pointer_matches("/containerDefinitions/*/image", "/containerDefinitions/web/image")
    True
    >>> pointer_matches("/tags", "/tags/team")
    True
    """
    return tokens_match(split_pointer(pattern), split_pointer(path))


def diff(
    desired: Mapping[str, Any], live: Mapping[str, Any], ignore: Sequence[str] = ()
) -> tuple[FieldChange, ...]:
    """Every leaf-level difference from ``live`` (before) to ``desired`` (after), by path.

    ``ignore`` holds JSON pointers, ``*`` segments allowed; a difference at or
    below one of them does not count, and ignored parts are left out of a
    subtree reported as added or removed.
    """
    patterns = tuple(split_pointer(p) for p in ignore)
    changes: list[FieldChange] = []
    _compare((), after=desired, before=live, patterns=patterns, out=changes)
    changes.sort(key=lambda c: _sort_key(split_pointer(c.path)))
    return tuple(changes)


def _compare(
    path: tuple[str, ...],
    *,
    after: Any,
    before: Any,
    patterns: tuple[tuple[str, ...], ...],
    out: list[FieldChange],
) -> None:
    if any(tokens_match(p, path) for p in patterns):
        return
    if same_json(after, before):
        return
    if isinstance(after, Mapping) and isinstance(before, Mapping):
        for key in sorted(set(after) | set(before), key=str):
            _compare(
                (*path, str(key)),
                after=after.get(key, MISSING),
                before=before.get(key, MISSING),
                patterns=patterns,
                out=out,
            )
        return
    if _is_list(after) and _is_list(before):
        for i in range(max(len(after), len(before))):
            _compare(
                (*path, str(i)),
                after=after[i] if i < len(after) else MISSING,
                before=before[i] if i < len(before) else MISSING,
                patterns=patterns,
                out=out,
            )
        return
    # A leaf, a type change, or a subtree on one side only: one change.
    after_kept = _strip(path, after, patterns)
    before_kept = _strip(path, before, patterns)
    if after_kept is MISSING and before_kept is MISSING:
        return
    if same_json(after_kept, before_kept):
        return
    out.append(FieldChange(join_pointer(path), before=before_kept, after=after_kept))


def _strip(path: tuple[str, ...], value: Any, patterns: tuple[tuple[str, ...], ...]) -> Any:
    """A copy of ``value`` without the ignored parts; MISSING when nothing but those is left."""
    if value is MISSING:
        return MISSING
    if isinstance(value, Mapping):
        kept = {}
        for key, item in value.items():
            sub = (*path, str(key))
            if any(tokens_match(p, sub) for p in patterns):
                continue
            stripped = _strip(sub, item, patterns)
            if stripped is not MISSING:
                kept[key] = stripped
        return MISSING if value and not kept else kept
    if _is_list(value):
        items = []
        for i, item in enumerate(value):
            sub = (*path, str(i))
            if any(tokens_match(p, sub) for p in patterns):
                continue
            stripped = _strip(sub, item, patterns)
            if stripped is not MISSING:
                items.append(stripped)
        return MISSING if value and not items else items
    return value


def same_json(a: Any, b: Any) -> bool:
    """JSON equality: like ``==`` but ``True`` is not ``1`` and tuples equal lists."""
    if a is MISSING or b is MISSING:
        return a is b
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if _is_list(a) and _is_list(b):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping | list | tuple) or isinstance(b, Mapping | list | tuple):
        return False
    return bool(a == b)


def _is_list(value: Any) -> bool:
    return isinstance(value, list | tuple)


def _sort_key(tokens: tuple[str, ...]) -> tuple[tuple[int, int, str], ...]:
    """Paths in document order, with list indices compared as numbers (2 before 10)."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in tokens)
