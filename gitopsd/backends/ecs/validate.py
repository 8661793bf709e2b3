"""Offline validation of ECS manifests against botocore's ECS service model.

A typo in a manifest should fail in ``gitopsd validate`` with a file, line and
field path, not as an AWS ``ClientException`` in the middle of a rollout. This
walks each document against the input shape of its kind's write call
(RegisterTaskDefinition, CreateService): unknown members (with a suggestion),
wrong types, enum values, required members, tagged unions and the model's
min/max bounds. On top come the rules gitopsd adds to the API: names are
required and well-formed and unique per app, a service runs in the app's
cluster, it points at a task-definition family declared in the same app, and
no tag key uses a reserved prefix (``gitopsd:``, ``aws:``), and a service's native
deployment strategy settings are complete and consistent
(:mod:`gitopsd.backends.ecs.strategy_rules`: errors here, warnings logged once).

:func:`check_create_service` is the one rule that needs live state: a REPLICA
service without ``desiredCount`` is valid for an existing service (autoscaling
owns the count) but cannot be created; the planner calls it for a CREATE.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from gitopsd.backends.ecs.ownership import RESERVED_TAG_PREFIXES, is_reserved_tag
from gitopsd.backends.ecs.service_model import KIND_NAME_FIELDS, KIND_OPERATIONS, input_shape
from gitopsd.backends.ecs.strategy_rules import strategy_findings
from gitopsd.errors import PlanError, Problem
from gitopsd.manifests.loader import LocatedDoc, json_type
from gitopsd.model import Origin
from gitopsd.pointer import child_pointer, display_path

log = structlog.get_logger(__name__)

#: Task-definition families and service names: 1-255 letters, digits, '_' and '-'.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,255}$")

_TASK_DEFINITION_ARN = re.compile(r"^arn:[^:]+:ecs:[^:]*:[^:]*:task-definition/(?P<family>[^:]+)")
_FAMILY_REVISION = re.compile(r"^(?P<family>[A-Za-z0-9_-]+):\d+$")

#: Container members ECS requires although its model marks none of them required.
CONTAINER_REQUIRED = ("name", "image")

# botocore type name -> how messages call it.
_TYPE_NAMES = {
    "structure": "mapping",
    "map": "mapping",
    "list": "list",
    "string": "string",
    "integer": "integer",
    "long": "integer",
    "boolean": "boolean",
    "double": "number",
    "float": "number",
    "timestamp": "timestamp",
    "blob": "base64 string",
}


def validate_documents(docs: Sequence[LocatedDoc]) -> list[Problem]:
    """Every problem of an app's rendered documents (shape and cross-document rules)."""
    problems: list[Problem] = []
    for doc in docs:
        problems.extend(validate_document(doc))
    problems.extend(_duplicates(docs))
    problems.extend(_service_references(docs))
    return problems


def resource_name(doc: LocatedDoc) -> str | None:
    """The resource's name within the app (family, serviceName), if set to a string."""
    name_field = KIND_NAME_FIELDS.get(doc.kind or "")
    name = doc.data.get(name_field) if name_field else None
    return name if isinstance(name, str) else None


def validate_document(doc: LocatedDoc) -> list[Problem]:
    """Problems of one document on its own: its spec against the model, plus name rules."""
    kind = doc.kind
    if kind not in KIND_OPERATIONS:  # the loader reports unknown kinds
        return []
    problems: list[Problem] = []
    _check(input_shape(KIND_OPERATIONS[kind]), doc.spec, "", doc, problems)
    if kind == "Service":
        problems = _with_strategy_rules(doc, problems)
    name_field = KIND_NAME_FIELDS[kind]
    name = doc.data.get(name_field)
    if isinstance(name, str) and not NAME_PATTERN.match(name):
        problems.append(
            doc.problem(
                child_pointer("", name_field),
                f"invalid name {name!r}: use 1-255 letters, digits, '_' and '-'",
            )
        )
    if kind == "Service":
        problems.extend(_service_rules(doc))
    else:
        problems.extend(_container_rules(doc))
    problems.extend(_reserved_tags(doc))
    return problems


# --- the model walk ---------------------------------------------------------------------------


def _check(shape: Any, value: Any, pointer: str, doc: LocatedDoc, out: list[Problem]) -> None:
    type_name = shape.type_name
    if type_name == "structure" and shape.is_document_type:
        return  # free-form JSON
    if not _type_ok(type_name, value):
        out.append(doc.problem(pointer, _type_message(type_name, value)))
        return
    if type_name == "structure":
        _check_structure(shape, value, pointer, doc, out)
    elif type_name == "list":
        _check_length(shape, len(value), "item", pointer, doc, out)
        for i, item in enumerate(value):
            _check(shape.member, item, child_pointer(pointer, i), doc, out)
    elif type_name == "map":
        _check_length(shape, len(value), "entry", pointer, doc, out)
        for key, item in value.items():
            _check(shape.value, item, child_pointer(pointer, key), doc, out)
    elif type_name == "string":
        if shape.enum and value not in shape.enum:
            out.append(doc.problem(pointer, _enum_message(value, shape.enum)))
        else:
            _check_length(shape, len(value), "character", pointer, doc, out)
    elif type_name in ("integer", "long"):
        _check_range(shape, value, pointer, doc, out)


def _check_structure(
    shape: Any, value: dict[str, Any], pointer: str, doc: LocatedDoc, out: list[Problem]
) -> None:
    members = shape.members
    for key, item in value.items():
        child = child_pointer(pointer, key)
        if key in members:
            _check(members[key], item, child, doc, out)
        else:
            out.append(doc.problem(child, _unknown_message(key, list(members))))
    for required in shape.required_members:
        if required not in value:
            out.append(
                doc.problem(
                    child_pointer(pointer, required), f"missing required field {required!r}"
                )
            )
    if shape.is_tagged_union and len(value) != 1:
        choices = ", ".join(members)
        out.append(doc.problem(pointer, f"set exactly one of: {choices}"))


def _type_ok(type_name: str, value: Any) -> bool:
    if type_name in ("structure", "map"):
        return isinstance(value, dict)
    if type_name == "list":
        return isinstance(value, list)
    if type_name == "string":
        return isinstance(value, str)
    if type_name in ("integer", "long"):
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "boolean":
        return isinstance(value, bool)
    if type_name in ("double", "float"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if type_name == "timestamp":
        return isinstance(value, str | int | float) and not isinstance(value, bool)
    if type_name == "blob":
        return isinstance(value, str | bytes)
    return True  # a type botocore adds later: leave it to the API


def _type_message(type_name: str, value: Any) -> str:
    expected = _TYPE_NAMES.get(type_name, type_name)
    message = f"expected {expected}, got {json_type(value)}"
    if type_name == "string" and isinstance(value, bool | int | float):
        message += " (quote it to make it a string)"
    elif type_name in ("integer", "long", "double", "float") and isinstance(value, str):
        if re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", value) or "${" in value:
            message += (
                " (quoted numbers and ${VAR} substitutions are strings;"
                " set numbers unquoted, per environment with an overlay)"
            )
    elif type_name == "boolean" and isinstance(value, str):
        message += " (write true or false, unquoted)"
    return message


def _unknown_message(key: str, members: list[str]) -> str:
    message = f"unknown field {key!r}"
    close = difflib.get_close_matches(key, members, n=1, cutoff=0.6)
    if not close:
        lowered = {m.lower(): m for m in members}
        close = [lowered[key.lower()]] if key.lower() in lowered else []
    if close:
        return f"{message} (did you mean {close[0]!r}?)"
    return f"{message} (known fields: {', '.join(members)})"


def _enum_message(value: str, allowed: list[str]) -> str:
    message = f"invalid value {value!r} (allowed: {', '.join(allowed)})"
    close = difflib.get_close_matches(value, allowed, n=1, cutoff=0.6)
    if not close:
        close = [a for a in allowed if a.lower() == value.lower()]
    if close:
        message += f"; did you mean {close[0]!r}?"
    return message


def _check_length(
    shape: Any, length: int, unit: str, pointer: str, doc: LocatedDoc, out: list[Problem]
) -> None:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and length < low:
        out.append(doc.problem(pointer, f"too short: at least {low} {unit}(s) required"))
    elif high is not None and length > high:
        out.append(doc.problem(pointer, f"too long: at most {high} {unit}(s) allowed"))


def _check_range(shape: Any, value: int, pointer: str, doc: LocatedDoc, out: list[Problem]) -> None:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and value < low:
        out.append(doc.problem(pointer, f"must be at least {low}, got {value}"))
    elif high is not None and value > high:
        out.append(doc.problem(pointer, f"must be at most {high}, got {value}"))


# --- gitopsd's rules on top of the API --------------------------------------------------------

#: (file, line, field, message) of strategy warnings logged already: once per process.
_warned: set[tuple[str, int | None, str, str]] = set()


def _with_strategy_rules(doc: LocatedDoc, model_problems: list[Problem]) -> list[Problem]:
    """The model walk's problems plus the strategy rules' errors; a rule's message replaces
    the model's for the same field (``BAKE_TIME`` says why, not just "invalid value")."""
    errors: list[Problem] = []
    for finding in strategy_findings(doc.spec):
        problem = doc.problem(finding.pointer, finding.message)
        if not finding.warning:
            errors.append(problem)
            continue
        key = (problem.file, problem.line, problem.path, problem.message)
        if key not in _warned:
            _warned.add(key)
            log.warning(
                "manifest.strategy_warning",
                at=f"{problem.file}:{problem.line}",
                field=display_path(finding.pointer),
                problem=finding.message,
            )
    replaced = {p.path for p in errors}
    return [p for p in model_problems if p.path not in replaced] + errors


def _container_rules(doc: LocatedDoc) -> list[Problem]:
    """What RegisterTaskDefinition rejects although the model does not say so."""
    containers = doc.data.get("containerDefinitions")
    if not isinstance(containers, list):
        return []
    problems: list[Problem] = []
    names: dict[str, int] = {}
    for i, container in enumerate(containers):
        if not isinstance(container, dict):
            continue
        pointer = child_pointer("/containerDefinitions", i)
        for member in CONTAINER_REQUIRED:
            if member not in container:
                problems.append(
                    doc.problem(
                        child_pointer(pointer, member), f"missing required field {member!r}"
                    )
                )
        name = container.get("name")
        if isinstance(name, str) and name in names:
            problems.append(
                doc.problem(
                    child_pointer(pointer, "name"),
                    f"duplicate container name {name!r} (also containerDefinitions[{names[name]}])",
                )
            )
        elif isinstance(name, str):
            names[name] = i
    return problems


def _reserved_tags(doc: LocatedDoc) -> list[Problem]:
    """Tag keys under a reserved prefix: gitopsd writes its own, AWS its ``aws:`` ones."""
    tags = doc.data.get("tags")
    if not isinstance(tags, list):
        return []
    prefixes = ", ".join(repr(p) for p in RESERVED_TAG_PREFIXES)
    problems: list[Problem] = []
    for i, tag in enumerate(tags):
        key = tag.get("key") if isinstance(tag, dict) else None
        if isinstance(key, str) and is_reserved_tag(key):
            problems.append(
                doc.problem(
                    child_pointer(child_pointer("/tags", i), "key"),
                    f"reserved tag key {key!r}: the prefixes {prefixes} are reserved "
                    "(gitopsd writes its own ownership tags; AWS sets the aws: ones); "
                    "rename the tag",
                )
            )
    return problems


def _service_rules(doc: LocatedDoc) -> list[Problem]:
    problems: list[Problem] = []
    if "cluster" in doc.data:
        problems.append(
            doc.problem(
                "/cluster",
                "must not be set: a service runs in its app's cluster "
                "(apps[].cluster in the gitopsd configuration); remove this field",
            )
        )
    task_definition = doc.data.get("taskDefinition")
    if "taskDefinition" not in doc.data:
        problems.append(
            doc.problem(
                "/taskDefinition",
                "missing required field 'taskDefinition': name the family of a "
                "TaskDefinition declared in this app",
            )
        )
    elif isinstance(task_definition, str):
        forms = ((_TASK_DEFINITION_ARN, "an ARN"), (_FAMILY_REVISION, "family:revision"))
        for pattern, what in forms:
            m = pattern.match(task_definition)
            if m:
                problems.append(
                    doc.problem(
                        "/taskDefinition",
                        f"must name a task-definition family declared in this app, not {what}: "
                        "gitopsd registers the revision itself and points the service at it; "
                        f"write {m.group('family')!r}",
                    )
                )
    return problems


def check_create_service(spec: Mapping[str, Any], origin: Origin) -> None:
    """Refuse to create a REPLICA service without ``desiredCount``; raises :class:`PlanError`.

    CreateService's documentation: desiredCount "is required if
    schedulingStrategy is REPLICA or isn't specified. If schedulingStrategy is
    DAEMON then this isn't required." The offline validator cannot enforce that:
    a manifest may omit desiredCount on purpose for a service that already
    exists, leaving its live count to Application Auto Scaling. So this is
    checked when the plan is to *create* the service.
    """
    if "desiredCount" in spec or spec.get("schedulingStrategy", "REPLICA") == "DAEMON":
        return
    name = spec.get("serviceName")
    which = f"Service {name!r}" if isinstance(name, str) else "the Service"
    raise PlanError(
        f"{origin.file}:{origin.line}: desiredCount: required to create {which}: "
        "CreateService needs it for a REPLICA service (schedulingStrategy REPLICA or unset); "
        "set desiredCount (autoscaling may take it over later: once the service exists, "
        "a manifest without desiredCount leaves the live count alone)"
    )


def _service_references(docs: Sequence[LocatedDoc]) -> list[Problem]:
    families = sorted(
        {name for d in docs if d.kind == "TaskDefinition" and (name := resource_name(d))}
    )
    problems: list[Problem] = []
    for doc in docs:
        ref = doc.data.get("taskDefinition") if doc.kind == "Service" else None
        if not isinstance(ref, str) or ref in families:
            continue
        if _TASK_DEFINITION_ARN.match(ref) or _FAMILY_REVISION.match(ref):
            continue  # reported by _service_rules
        message = (
            f"taskDefinition {ref!r} names no TaskDefinition in this app "
            f"(declared families: {', '.join(families) or 'none'})"
        )
        close = difflib.get_close_matches(ref, families, n=1, cutoff=0.6)
        if close:
            message += f"; did you mean {close[0]!r}?"
        problems.append(doc.problem("/taskDefinition", message))
    return problems


def _duplicates(docs: Sequence[LocatedDoc]) -> list[Problem]:
    first: dict[tuple[str, str], LocatedDoc] = {}
    problems: list[Problem] = []
    for doc in docs:
        name = resource_name(doc)
        if doc.kind is None or name is None:
            continue
        key = (doc.kind, name)
        name_pointer = child_pointer("", KIND_NAME_FIELDS[doc.kind])
        if key in first:
            seen = first[key].where(name_pointer)
            problems.append(
                doc.problem(
                    name_pointer,
                    f"duplicate {doc.kind} {name!r}: also declared at {seen.file}:{seen.line}",
                )
            )
        else:
            first[key] = doc
    return problems
