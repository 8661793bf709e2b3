"""A small rule language for putting a document into a comparable form.

A cloud API never hands back exactly what it was given: it fills in defaults,
reorders lists, renames fields and adds read-only ones. Comparing desired with
live naively reports drift forever, so both sides are first normalised by the
same rules, kept as data (tuples of the rule objects below) so that a backend's
whole policy can be read in one table and tested on its own. This module knows
nothing about any backend.

Rules apply in order, each to the result of the previous one; path patterns
are JSON pointers whose ``*`` tokens match every key of a map or index of a
list. Before and after the rules, "empty" values (``None``, ``[]``, ``{}``) are
removed from maps, so empty == absent everywhere, and map keys come out
sorted. :func:`normalise` works on a private copy, so it is pure, and every
rule is idempotent on its own output, so ``normalise(normalise(x, r), r) ==
normalise(x, r)`` for a well-ordered table (a rule must not change what an
earlier rule's condition read). Put order rules innermost first: sorting by
content (also KeyBy's fallback) sees nested lists as they are at that point.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gitopsd.model import MISSING
from gitopsd.pointer import WILDCARD, split_pointer

#: A predicate over the whole (partly normalised) document.
Condition = Callable[[Mapping[str, Any]], bool]


class Rule(Protocol):
    """One normalisation step; returns the (possibly new) root of the private copy."""

    def apply(self, root: dict[str, Any]) -> dict[str, Any]: ...


def normalise(value: Mapping[str, Any], rules: Sequence[Rule]) -> dict[str, Any]:
    """``value`` with ``rules`` applied in order and empty values removed; input untouched."""
    root: dict[str, Any] = _prune(value)  # a private copy: _prune builds new containers
    for rule in rules:
        root = rule.apply(root)
    pruned: dict[str, Any] = _prune(root)
    return pruned


# --- rules --------------------------------------------------------------------


@dataclass(frozen=True)
class Project:
    """Keep only what a botocore input shape has, recursively (read-only fields never count).

    Structures keep their members, lists project their items, maps their values.
    A list that an earlier pass keyed into a map projects the map's values, so
    projecting a normalised document again changes nothing. Values of the wrong
    type are kept as they are (the API will reject them, not the plan).
    ``exclude`` names top-level members to drop as well.
    """

    shape: Any  # botocore.model.Shape
    exclude: frozenset[str] = frozenset()

    def apply(self, root: dict[str, Any]) -> dict[str, Any]:
        projected = project(root, self.shape)
        return {k: v for k, v in projected.items() if k not in self.exclude}


@dataclass(frozen=True)
class Rename:
    """Move the member at ``path`` to the sibling key ``to`` (kept when ``to`` is already set)."""

    path: str
    to: str

    def apply(self, root: dict[str, Any]) -> dict[str, Any]:
        *parent, last = _tokens(self.path)
        for container in _containers(root, parent):
            if isinstance(container, dict) and last in container:
                moved = container.pop(last)
                if _absent(container.get(self.to)):
                    container[self.to] = moved
        return root


@dataclass(frozen=True)
class Drop:
    """Remove what ``path`` matches (when ``when`` holds for the document)."""

    path: str
    when: Condition | None = None

    def apply(self, root: dict[str, Any]) -> dict[str, Any]:
        if self.when is not None and not self.when(root):
            return root
        *parent, last = _tokens(self.path)
        for container in _containers(root, parent):
            for slot in sorted(_slots(container, last), key=_slot_order, reverse=True):
                del container[slot]
        return root


@dataclass(frozen=True)
class DropKeys:
    """Remove the members of the maps at ``path`` whose key satisfies ``predicate``."""

    path: str
    predicate: Callable[[str], bool]

    def apply(self, root: dict[str, Any]) -> dict[str, Any]:
        for target in _containers(root, _tokens(self.path)):
            if isinstance(target, dict):
                for key in [k for k in target if self.predicate(k)]:
                    del target[key]
        return root


@dataclass(frozen=True)
class Sibling:
    """A :class:`Default` value: a copy of the named field next to the defaulted one."""

    name: str


@dataclass(frozen=True)
class Default:
    """Fill ``path`` with ``value`` where it is absent, as the API does.

    Only the last token may be missing: parents are never invented, so a
    default for ``/a/b`` needs ``/a`` (add ``Default("/a", {})`` first to
    create it). ``value`` may be a :class:`Sibling`; ``when`` is evaluated on
    the whole document.
    """

    path: str
    value: Any
    when: Condition | None = None

    def apply(self, root: dict[str, Any]) -> dict[str, Any]:
        if self.when is not None and not self.when(root):
            return root
        *parent, last = _tokens(self.path)
        for container in _containers(root, parent):
            is_map = isinstance(container, dict)
            slots = [last] if is_map and last != WILDCARD else list(_slots(container, last))
            for slot in slots:
                if not _absent(container.get(slot) if is_map else container[slot]):
                    continue
                if isinstance(self.value, Sibling):
                    if not isinstance(container, dict) or _absent(container.get(self.value.name)):
                        continue
                    filled = _copy(container[self.value.name])
                else:
                    filled = _copy(self.value)
                container[slot] = filled
        return root


@dataclass(frozen=True)
class Transform:
    """Replace each present value at ``path`` with ``fn(value)``; ``fn`` must be idempotent."""

    path: str
    fn: Callable[[Any], Any]

    def apply(self, root: dict[str, Any]) -> dict[str, Any]:
        *parent, last = _tokens(self.path)
        for container in _containers(root, parent):
            for slot in list(_slots(container, last)):
                if not _absent(container[slot]):
                    container[slot] = self.fn(container[slot])
        return root


@dataclass(frozen=True)
class KeyBy:
    """Turn a list of objects into a map keyed by their ``key`` field (order no longer counts).

    The key field leaves the entries, so pointers read ``/environment/FOO/value``.
    With ``value`` set, each entry becomes just that field (``/tags/team``).
    A list where some entry lacks a string key or repeats one is sorted by
    content instead, so nothing is ever lost.
    """

    path: str
    key: str
    value: str | None = None

    def apply(self, root: dict[str, Any]) -> dict[str, Any]:
        *parent, last = _tokens(self.path)
        for container in _containers(root, parent):
            for slot in list(_slots(container, last)):
                if isinstance(container[slot], list):
                    container[slot] = self._keyed(container[slot])
        return root

    def _keyed(self, items: list[Any]) -> dict[str, Any] | list[Any]:
        keys = [i.get(self.key) if isinstance(i, dict) else None for i in items]
        if not all(isinstance(k, str) for k in keys) or len(set(keys)) != len(keys):
            return sorted(items, key=content_key)
        if self.value is not None:
            return {i[self.key]: i.get(self.value) for i in items}
        return {i[self.key]: {f: v for f, v in i.items() if f != self.key} for i in items}


@dataclass(frozen=True)
class SortBy:
    """Sort the list at ``path`` by its items' ``key`` field, or by whole content when None."""

    path: str
    key: str | None = None

    def apply(self, root: dict[str, Any]) -> dict[str, Any]:
        *parent, last = _tokens(self.path)
        for container in _containers(root, parent):
            for slot in list(_slots(container, last)):
                if isinstance(container[slot], list):
                    container[slot] = sorted(container[slot], key=self._key)
        return root

    def _key(self, item: Any) -> tuple[str, str]:
        by = item.get(self.key) if self.key is not None and isinstance(item, dict) else None
        return (content_key(by), content_key(item))


# --- conditions (for Default.when / Drop.when) ----------------------------------


@dataclass(frozen=True)
class Equals:
    """The value at ``pointer`` equals ``value`` (``MISSING``: it is absent or empty)."""

    pointer: str
    value: Any

    def __call__(self, root: Mapping[str, Any]) -> bool:
        found = resolve(root, self.pointer)
        if self.value is MISSING:
            return found is MISSING
        return found is not MISSING and bool(found == self.value)


@dataclass(frozen=True)
class Contains:
    """The list (or map's values) at ``pointer`` contains ``value``."""

    pointer: str
    value: Any

    def __call__(self, root: Mapping[str, Any]) -> bool:
        return any(item == self.value for item in _items(resolve(root, self.pointer)))


@dataclass(frozen=True)
class HasItem:
    """Some object in the list (or map's values) at ``pointer`` has ``field`` in ``values``."""

    pointer: str
    field: str
    values: Collection[Any]

    def __call__(self, root: Mapping[str, Any]) -> bool:
        return any(
            isinstance(item, Mapping) and item.get(self.field) in self.values
            for item in _items(resolve(root, self.pointer))
        )


@dataclass(frozen=True)
class Not:
    """The condition does not hold."""

    condition: Condition

    def __call__(self, root: Mapping[str, Any]) -> bool:
        return not self.condition(root)


@dataclass(frozen=True)
class AnyOf:
    """At least one of the conditions holds."""

    conditions: tuple[Condition, ...] = field(default_factory=tuple)

    def __call__(self, root: Mapping[str, Any]) -> bool:
        return any(c(root) for c in self.conditions)


def resolve(root: Any, pointer: str) -> Any:
    """The value at a concrete pointer, or ``MISSING`` when absent or empty."""
    node: Any = root
    for token in _tokens(pointer):
        if isinstance(node, Mapping) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return MISSING
    return MISSING if _absent(node) else node


# --- shape projection ------------------------------------------------------------


def project(value: Any, shape: Any) -> Any:
    """``value`` restricted to a botocore shape (see :class:`Project`); returns a new value."""
    kind = getattr(shape, "type_name", None)
    if kind == "structure" and isinstance(value, Mapping):
        members = shape.members
        return {k: project(v, members[k]) for k, v in value.items() if k in members}
    if kind == "list" and isinstance(value, list):
        return [project(v, shape.member) for v in value]
    if kind == "list" and isinstance(value, Mapping):  # keyed by an earlier pass
        return {k: project(v, shape.member) for k, v in value.items()}
    if kind == "map" and isinstance(value, Mapping):
        return {k: project(v, shape.value) for k, v in value.items()}
    return value


# --- helpers ---------------------------------------------------------------------


def content_key(value: Any) -> str:
    """A total, deterministic order over JSON values (canonical JSON text)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    return value


def _absent(value: Any) -> bool:
    """None and empty lists/maps count as absent."""
    return value is None or (isinstance(value, dict | list) and not value)


def _prune(value: Any) -> Any:
    """A copy without the absent members of maps, recursively (list items are kept: position
    may matter); other mappings come out as dicts, tuples as lists.

    Map keys come out sorted, so equal documents also serialise the same.
    """
    if isinstance(value, dict):
        out = {}
        for k in sorted(value, key=str):
            v = _prune(value[k])
            if not (v is None or (isinstance(v, dict | list) and not v)):
                out[k] = v
        return out
    if isinstance(value, list):
        return [_prune(v) for v in value]
    if isinstance(value, str | int | float):
        return value
    if isinstance(value, Mapping):
        return _prune(dict(value))
    if isinstance(value, tuple):
        return [_prune(v) for v in value]
    return value


@functools.lru_cache(maxsize=4096)
def _tokens(pointer: str) -> tuple[str, ...]:
    """:func:`split_pointer`, remembered: rule paths are few and read on every document."""
    return split_pointer(pointer)


def _containers(node: Any, tokens: Sequence[str]) -> list[Any]:
    """Every map or list that ``tokens`` (``*`` expanding) lead to from ``node``.

    All of them sit at the same depth, so a rule changing what is inside one of them
    never changes which others there are: they are listed before any is changed.
    """
    level = [node]
    for token in tokens:
        found: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                if token == WILDCARD:
                    found.extend(item.values())
                elif token in item:
                    found.append(item[token])
            elif isinstance(item, list):
                if token == WILDCARD:
                    found.extend(item)
                elif token.isdigit() and int(token) < len(item):
                    found.append(item[int(token)])
        if not found:
            return []
        level = found
    return [item for item in level if isinstance(item, dict | list)]


def _slots(container: Any, token: str) -> Iterator[Any]:
    """The existing keys (map) or indices (list) of ``container`` that ``token`` names."""
    if isinstance(container, dict):
        if token == WILDCARD:
            yield from list(container)
        elif token in container:
            yield token
    elif isinstance(container, list):
        if token == WILDCARD:
            yield from range(len(container))
        elif token.isdigit() and int(token) < len(container):
            yield int(token)


def _slot_order(slot: Any) -> tuple[int, str]:
    return (slot, "") if isinstance(slot, int) else (0, str(slot))


def _items(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        return list(value.values())
    if isinstance(value, list):
        return value
    return []
