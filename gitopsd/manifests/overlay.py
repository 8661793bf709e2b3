"""Per-environment overlays: patches (and extra documents) applied to an app's base.

An overlay directory holds patch documents::

    target: {kind: Service, name: web}
    mergePatch: {desiredCount: 4}          # RFC 7396, or:
    jsonPatch:                             # RFC 6902
      - {op: replace, path: /containerDefinitions/0/cpu, value: 512}

and may also hold whole documents (anything with ``kind``), which are added to
the app. Overlays are applied in configuration order, files sorted by path,
documents in file order. Patched values keep pointing at the line in the
overlay file they came from, so a validation error names the file to fix.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import json_merge_patch
import jsonpatch

from gitopsd.config import DEFAULT_MAX_FILE_SIZE
from gitopsd.errors import Problem
from gitopsd.manifests.loader import LocatedDoc, check_manifest, read_documents
from gitopsd.manifests.schema import Schema
from gitopsd.model import Origin
from gitopsd.pointer import child_pointer, is_below, parent_pointer, split_pointer, value_at

PATCH_FIELDS = ("target", "mergePatch", "jsonPatch")
JSON_PATCH_OPS = ("add", "remove", "replace", "move", "copy", "test")

Origins = dict[str, Origin]


@dataclass(frozen=True)
class Patch:
    """One patch document of an overlay."""

    kind: str
    name: str
    doc: LocatedDoc  # the patch document itself (for its origins)
    field: str  # "mergePatch" or "jsonPatch"

    @property
    def body(self) -> Any:
        return self.doc.data[self.field]


OverlayItem = Patch | LocatedDoc  # a LocatedDoc is a document the overlay adds


def parse_overlay(
    files: Mapping[str, bytes], schema: Schema, *, max_file_size: int = DEFAULT_MAX_FILE_SIZE
) -> tuple[list[OverlayItem], list[Problem]]:
    """The patches and added documents among ``files`` (path -> content), in order.

    A file over ``max_file_size`` bytes is a problem and is not parsed.
    """
    return read_documents(
        files, functools.partial(_parse_item, schema=schema), max_file_size=max_file_size
    )


def _parse_item(doc: LocatedDoc, schema: Schema) -> tuple[OverlayItem | None, list[Problem]]:
    """A document with ``kind`` is added to the app; anything else must be a patch."""
    return check_manifest(doc, schema) if "kind" in doc.data else _parse_patch(doc, schema)


def _parse_patch(doc: LocatedDoc, schema: Schema) -> tuple[Patch | None, list[Problem]]:
    problems: list[Problem] = []
    expected = "a patch has 'target' and one of 'mergePatch' or 'jsonPatch'"
    if "target" not in doc.data:
        if not any(k in doc.data for k in PATCH_FIELDS):
            return None, [
                doc.problem(
                    "",
                    f"neither a manifest nor a patch: add 'kind' for a new resource, or {expected}",
                )
            ]
        problems.append(doc.problem("", f"missing 'target'; {expected}"))
    for key in [k for k in doc.data if k not in PATCH_FIELDS]:
        problems.append(doc.problem(child_pointer("", key), f"unknown field {key!r}; {expected}"))
    bodies = [f for f in ("mergePatch", "jsonPatch") if f in doc.data]
    if not bodies:
        problems.append(doc.problem("", f"missing 'mergePatch' or 'jsonPatch'; {expected}"))
    elif len(bodies) == 2:
        problems.append(doc.problem("/jsonPatch", "set 'mergePatch' or 'jsonPatch', not both"))
    target = _parse_target(doc, problems, schema)
    if bodies and not isinstance(doc.data[bodies[0]], dict if bodies[0] == "mergePatch" else list):
        what = "a mapping" if bodies[0] == "mergePatch" else "a list of operations"
        problems.append(doc.problem(child_pointer("", bodies[0]), f"must be {what}"))
    if problems or target is None:
        return None, problems
    return Patch(target[0], target[1], doc, bodies[0]), []


def _parse_target(
    doc: LocatedDoc, problems: list[Problem], schema: Schema
) -> tuple[str, str] | None:
    target = doc.data.get("target")
    if target is None:
        return None
    if not isinstance(target, dict):
        problems.append(
            doc.problem("/target", "must be a mapping such as {kind: Service, name: web}")
        )
        return None
    for key in [k for k in target if k not in ("kind", "name")]:
        problems.append(
            doc.problem(child_pointer("/target", key), f"unknown field {key!r}; use kind and name")
        )
    kind, name = target.get("kind"), target.get("name")
    kinds = schema.kind_names
    if kind not in kinds:
        what = "missing" if kind is None else f"unknown kind {kind!r}"
        problems.append(doc.problem("/target/kind", f"{what} (known kinds: {', '.join(kinds)})"))
    if not isinstance(name, str):
        problems.append(doc.problem("/target/name", "must be the resource's name (a string)"))
    if isinstance(kind, str) and isinstance(name, str):
        return kind, name
    return None


def apply_overlay(
    docs: Sequence[LocatedDoc], items: Sequence[OverlayItem], schema: Schema
) -> tuple[list[LocatedDoc], list[Problem]]:
    """``docs`` with every item applied in order; a failing patch leaves its target as it was."""
    out = list(docs)
    problems: list[Problem] = []
    for item in items:
        if isinstance(item, LocatedDoc):
            out.append(item)
            continue
        matches = [
            i for i, d in enumerate(out) if d.kind == item.kind and schema.name_of(d) == item.name
        ]
        if not matches:
            names = {schema.name_of(d) or "?" for d in out if d.kind == item.kind}
            declared = ", ".join(sorted(names))
            problems.append(
                item.doc.problem(
                    "/target",
                    f"patch target {item.kind} {item.name!r} does not exist in the app "
                    f"({item.kind} names: {declared or 'none'})",
                )
            )
            continue
        for i in matches:
            patched, found = apply_patch(out[i], item)
            problems.extend(found)
            if patched is not None:
                out[i] = patched
    return out, problems


def apply_patch(doc: LocatedDoc, patch: Patch) -> tuple[LocatedDoc | None, list[Problem]]:
    """``doc`` (the patch's target) patched, or ``None`` and the problems when it does not apply."""
    if patch.field == "mergePatch":
        result, origins, problems = _merge(doc, patch)
    else:
        result, origins, problems = _json_patch(doc, patch)
    if problems:
        return None, problems
    if not isinstance(result, dict) or result.get("kind") != doc.kind:
        return None, [patch.doc.problem(f"/{patch.field}", "a patch cannot change 'kind'")]
    return doc.replace(data=result, origins=origins), []


# --- RFC 7396 merge patch ---------------------------------------------------------------------


def _merge(doc: LocatedDoc, patch: Patch) -> tuple[Any, Origins, list[Problem]]:
    # json_merge_patch mutates and shares its arguments: give it copies.
    result = json_merge_patch.merge(copy.deepcopy(doc.data), copy.deepcopy(patch.body))
    origins = dict(doc.origins)
    _merge_origins(origins, doc.data, patch.body, "", patch.doc.origins, f"/{patch.field}")
    return result, origins, []


def _merge_origins(
    out: Origins,
    target: Any,
    body: Mapping[str, Any],
    pointer: str,
    source: Mapping[str, Origin],
    source_pointer: str,
) -> None:
    """Mirror RFC 7396 on the origin map: patched values point into the overlay file."""
    if not isinstance(target, dict):
        _drop(out, pointer)
        if source_pointer in source:
            out[pointer] = source[source_pointer]
        target = {}
    for key, value in body.items():
        child, source_child = child_pointer(pointer, key), child_pointer(source_pointer, key)
        if value is None:
            _drop(out, child)
        elif isinstance(value, dict):
            _merge_origins(out, target.get(key), value, child, source, source_child)
        else:
            _drop(out, child)
            _graft(out, child, _subtree(source, source_child))


# --- RFC 6902 JSON patch ----------------------------------------------------------------------


def _json_patch(doc: LocatedDoc, patch: Patch) -> tuple[Any, Origins, list[Problem]]:
    data: Any = doc.data
    origins = dict(doc.origins)
    for i, raw_op in enumerate(patch.body):
        op_pointer = f"/{patch.field}/{i}"
        label = _describe_op(raw_op)
        if not isinstance(raw_op, dict):
            return None, {}, [patch.doc.problem(op_pointer, "an operation must be a mapping")]
        if raw_op.get("op") not in JSON_PATCH_OPS:
            message = f"{label}: 'op' must be one of {', '.join(JSON_PATCH_OPS)}"
            return None, {}, [patch.doc.problem(op_pointer, message)]
        try:
            after = jsonpatch.JsonPatch([raw_op]).apply(data)  # copies; keeps `data` as it was
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            message = f"{label} failed on {patch.kind} {patch.name!r}: {_reason(exc, raw_op, data)}"
            return None, {}, [patch.doc.problem(op_pointer, message)]
        value_pointer = f"{op_pointer}/value"
        origins = _op_origins(origins, raw_op, data, after, patch.doc.origins, value_pointer)
        data = copy.deepcopy(after)  # `after` may share values with the patch document
    return data, origins, []


def _describe_op(op: Any) -> str:
    if isinstance(op, dict):
        text = " ".join(str(op[k]) for k in ("op", "from", "path") if isinstance(op.get(k), str))
        if text:
            return f"operation '{text}'"
    return "operation"


def _reason(exc: Exception, op: Mapping[str, Any], data: Any) -> str:
    if isinstance(exc, jsonpatch.JsonPatchTestFailed):
        actual = value_at(data, op.get("path", ""))
        return f"test failed: the value is {_show(actual)}, not {_show(op.get('value'))}"
    for key in ("from", "path"):
        pointer = op.get(key)
        if isinstance(pointer, str) and pointer.startswith("/"):
            missing = _missing_prefix(data, pointer, allow_new_leaf=key == "path")
            if missing is not None:
                return f"{missing} does not exist"
    message = str(exc)
    return message if len(message) <= 200 else message[:200] + "..."


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _missing_prefix(data: Any, pointer: str, allow_new_leaf: bool) -> str | None:
    """The first prefix of ``pointer`` that does not exist in ``data`` (``None``: all do)."""
    tokens = split_pointer(pointer)
    prefix = ""
    for n, token in enumerate(tokens):
        prefix = child_pointer(prefix, token)
        last = n == len(tokens) - 1
        if isinstance(data, dict) and token in data:
            data = data[token]
        elif isinstance(data, list) and token.isdigit() and int(token) < len(data):
            data = data[int(token)]
        elif last and allow_new_leaf and isinstance(data, dict | list):
            return None  # the op may create it (add); the library explains otherwise
        else:
            return f"'{prefix}'"
    return None


def _op_origins(
    origins: Origins,
    op: Mapping[str, Any],
    before: Any,
    after: Any,
    source: Mapping[str, Origin],
    value_pointer: str,
) -> Origins:
    """Mirror one applied RFC 6902 operation on the origin map."""
    name, path = op["op"], op["path"]
    out = dict(origins)
    if name == "replace":
        _drop(out, path)
        _graft(out, path, _subtree(source, value_pointer))
    elif name == "add":
        _insert(out, after, path, _subtree(source, value_pointer))
    elif name == "remove":
        _remove(out, before, path)
    elif name in ("move", "copy"):
        moved = _subtree(origins, op["from"])
        if name == "move":
            _remove(out, before, op["from"])
        _insert(out, after, path, moved)
    return out


def _insert(out: Origins, after: Any, path: str, value: Origins) -> None:
    """Origins for a value added at ``path``; ``after`` is the data with it added."""
    if path:
        parent, token = parent_pointer(path), split_pointer(path)[-1]
        siblings = value_at(after, parent)
        if isinstance(siblings, list):
            index = len(siblings) - 1 if token == "-" else int(token)
            _shift(out, parent, index, +1)
            path = child_pointer(parent, index)
    _drop(out, path)
    _graft(out, path, value)


def _remove(out: Origins, before: Any, path: str) -> None:
    """Drop the origins of the value removed at ``path``; ``before`` still holds it."""
    _drop(out, path)
    if path:
        parent, token = parent_pointer(path), split_pointer(path)[-1]
        if isinstance(value_at(before, parent), list):
            _shift(out, parent, int(token) + 1, -1)


def _shift(out: Origins, parent: str, start: int, delta: int) -> None:
    """Renumber list items ``parent/start..`` by ``delta`` (an insert or removal)."""
    prefix = parent + "/"
    moved: Origins = {}
    for pointer in list(out):
        if not pointer.startswith(prefix):
            continue
        head, _, rest = pointer[len(prefix) :].partition("/")
        if head.isdigit() and int(head) >= start:
            new = f"{prefix}{int(head) + delta}" + (f"/{rest}" if rest else "")
            moved[new] = out.pop(pointer)
    out.update(moved)


def _subtree(origins: Mapping[str, Origin], pointer: str) -> Origins:
    """Origins at and below ``pointer``, keyed relative to it (``""`` is ``pointer``)."""
    return {p[len(pointer) :]: o for p, o in origins.items() if is_below(p, pointer)}


def _graft(out: Origins, pointer: str, relative: Mapping[str, Origin]) -> None:
    for rel, origin in relative.items():
        out[pointer + rel] = origin


def _drop(out: Origins, pointer: str) -> None:
    for p in [p for p in out if is_below(p, pointer)]:
        del out[p]


def apply_overlays(
    docs: Sequence[LocatedDoc],
    overlays: Sequence[Mapping[str, bytes]],
    schema: Schema,
    *,
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
) -> tuple[list[LocatedDoc], list[Problem]]:
    """Parse and apply each overlay directory's files (path -> content) in order."""
    out = list(docs)
    problems: list[Problem] = []
    for files in overlays:
        items, found = parse_overlay(files, schema, max_file_size=max_file_size)
        problems.extend(found)
        out, found = apply_overlay(out, items, schema)
        problems.extend(found)
    return out, problems
