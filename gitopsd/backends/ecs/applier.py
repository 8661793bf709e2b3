"""Apply: make exactly the writes a change set asks for, in a safe order.

Every request is built and checked against botocore's model and the app's
guard-rails first; only when all of them are valid does the first write go
out, so a change gitopsd could have known it cannot make never leaves an app
half-applied. Task definitions are registered first (a new revision is
harmless until a service points at it), then services are created or
updated. An UpdateService carries only the fields that differ (so a value on
the ignore list, or owned by autoscaling, is never overwritten); a field the
manifest dropped is reset to the value that means "never set". What gitopsd
writes carries its ownership tags.

If a write fails part-way (throttling that outlasts the retries, say), the
error says which resource failed and carries what was already written, so the
engine can report and verify it. Each write is reported to the engine's
journal as soon as it is made, and a write in flight is finished (shielded
from cancellation, within the call timeout) before a Ctrl-C or SIGTERM takes
effect, so an interrupted sync can say exactly what it wrote.

RegisterTaskDefinition has no client token: when its answer is lost (a 5xx, a
timeout, a dropped connection) the family's newest revision is compared with
the request before it is sent again, and reused when identical, so a retry
never leaves a duplicate revision.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import anyio
import anyio.lowlevel
import structlog
from botocore.validate import ParamValidator

from gitopsd.backends.base import Applied, ApplyResult, Journal
from gitopsd.backends.ecs.client import EcsClient
from gitopsd.backends.ecs.guardrails import check_specs
from gitopsd.backends.ecs.normalise import normalise_task_definition, service_reset_value
from gitopsd.backends.ecs.ownership import REVISION_TAG, is_reserved_tag, managed_tags
from gitopsd.backends.ecs.planner import blocking, primary_deployment, td_label
from gitopsd.backends.ecs.service_model import input_shape
from gitopsd.backends.ecs.strategy_rules import check_changeset as check_strategies
from gitopsd.config import AppConfig
from gitopsd.errors import ApplyError, BackendUnavailable, PlanError
from gitopsd.model import MISSING, Action, ChangeSet, Origin, ResourceChange
from gitopsd.pointer import split_pointer

log = structlog.get_logger(__name__)

#: Stands in for a task-definition ARN not registered yet while requests are checked.
_PENDING_ARN = "arn:aws:ecs:us-east-1:000000000000:task-definition/pending:1"


#: The operations a :class:`Request` makes (a subset of ``EcsOperation``; gitopsd.iam reads it).
EcsWrite = Literal[
    "RegisterTaskDefinition", "CreateService", "UpdateService", "TagResource", "UntagResource"
]


@dataclass
class Request:
    """One write to make: an ECS operation and its input."""

    key: str
    origin: Origin | None
    op: EcsWrite
    body: dict[str, Any]
    #: For service writes: the family whose ARN fills ``taskDefinition`` at run time.
    family: str = ""
    message: str = ""
    #: UpdateService: whether the service moves to another task definition.
    send_task_definition: bool = False


def _where(key: str, origin: Origin | None) -> str:
    return f"{key} ({origin.file}:{origin.line})" if origin else key


def check_applicable(changeset: ChangeSet) -> None:
    """Raise PlanError, before any write, when a change cannot be made in place."""
    blocked = [
        f"{_where(r.key, r.origin)}: {c.path} {c.note} (live {c.before!r}, desired {c.after!r})"
        for r in changeset.pending
        for c in r.changes
        if blocking(c)
    ]
    if blocked:
        raise PlanError("cannot apply in place; nothing was changed:\n  " + "\n  ".join(blocked))


def _tags(
    spec: Mapping[str, Any], app: AppConfig, changeset: ChangeSet, *, revision: bool = True
) -> list[dict[str, str]]:
    """The user's tags and gitopsd's; ``revision``: with the commit (task definitions only:
    a service names its task definition, which carries it, so a rollout costs no
    TagResource per service)."""
    rev = changeset.revision
    user = [
        {"key": t["key"], "value": t.get("value", "")}
        for t in spec.get("tags", [])
        if not is_reserved_tag(t["key"])
    ]
    commit = rev.commit if rev and revision else None
    return user + managed_tags(app.name, rev.source if rev else "", commit)


def _tag_requests(
    key: str,
    origin: Origin | None,
    arn: str,
    live: Mapping[str, str],
    wanted: list[dict[str, str]],
    app: AppConfig,
) -> list[Request]:
    target = {t["key"]: t["value"] for t in wanted}
    stale = [
        k
        for k in live
        if k not in target
        and (not is_reserved_tag(k) or k == REVISION_TAG)  # services older gitopsd tagged
        and k not in app.ignore_tag_keys
    ]
    changed = [{"key": k, "value": v} for k, v in target.items() if live.get(k) != v]
    out = []
    if stale:
        out.append(Request(key, origin, "UntagResource", {"resourceArn": arn, "tagKeys": stale}))
    if changed:
        out.append(Request(key, origin, "TagResource", {"resourceArn": arn, "tags": changed}))
    return out


def client_token(app: AppConfig, name: str, spec: Mapping[str, Any]) -> str:
    """Idempotency token for CreateService: the same request twice creates one service."""
    digest = hashlib.sha256(
        json.dumps([app.cluster, name, spec], sort_keys=True, default=str).encode()
    ).hexdigest()
    return digest[:32]


def build_requests(app: AppConfig, changeset: ChangeSet) -> list[Request]:
    """Every write the change set needs, task definitions first; nothing is sent."""
    check_applicable(changeset)
    requests: list[Request] = []
    for change in changeset.pending:
        if change.kind != "TaskDefinition":
            continue
        spec = change.details["spec"]
        if change.details.get("retag"):
            requests += _tag_requests(
                change.key,
                change.origin,
                str(change.details["arn"]),
                change.details.get("live_tags", {}),
                _tags(spec, app, changeset),
                app,
            )
            continue
        body = dict(spec, tags=_tags(spec, app, changeset))
        requests.append(Request(change.key, change.origin, "RegisterTaskDefinition", body))
    for change in changeset.pending:
        if change.kind == "Service":
            requests += _service_requests(app, changeset, change)
    return requests


def _service_requests(
    app: AppConfig, changeset: ChangeSet, change: ResourceChange
) -> list[Request]:
    spec: dict[str, Any] = dict(change.details["spec"])
    family = str(change.details["family"])
    tags = _tags(spec, app, changeset, revision=False)
    if change.action is Action.CREATE:
        create = dict(spec, cluster=app.cluster, tags=tags)
        create["clientToken"] = client_token(app, change.name, create)
        return [Request(change.key, change.origin, "CreateService", create, family, "created")]

    fields = {split_pointer(c.path)[0] for c in change.changes} - {"tags"}
    requests = []
    if fields:
        body: dict[str, Any] = {"cluster": app.cluster, "service": change.name}
        for name in sorted(fields - {"taskDefinition"}):
            value = spec.get(name, MISSING)
            if value is MISSING:
                value = service_reset_value(name, spec)
            if name == "deploymentConfiguration":
                value = _clear_dropped(value, change)
            body[name] = value
        requests.append(
            Request(
                change.key,
                change.origin,
                "UpdateService",
                body,
                family,
                "updated " + ", ".join(sorted(fields)),
                send_task_definition="taskDefinition" in fields,
            )
        )
    requests += _tag_requests(
        change.key, change.origin, str(change.details["arn"]),
        change.details.get("live_tags", {}), tags, app,
    )  # fmt: skip
    return requests


#: deploymentConfiguration members ECS keeps when an UpdateService leaves them out, and the
#: value that clears each (what Terraform and Copilot had to learn to send).
_CLEARED_WHEN_DROPPED: dict[str, Any] = {
    "lifecycleHooks": [],
    "alarms": {"alarmNames": [], "enable": False, "rollback": False},
}


def _clear_dropped(value: Any, change: ResourceChange) -> Any:
    """``deploymentConfiguration`` with an explicit clear of each kept member the plan drops.

    Without it a manifest that drops its hooks or alarms (switching back to ROLLING, say)
    would leave them on the service, and every later diff would show them again.
    """
    if not isinstance(value, Mapping):
        return value
    dropped = {
        tokens[1]
        for c in change.changes
        if len(tokens := split_pointer(c.path)) > 1 and tokens[0] == "deploymentConfiguration"
    }
    clears = {
        k: copy.deepcopy(v)
        for k, v in _CLEARED_WHEN_DROPPED.items()
        if k in dropped and k not in value
    }
    return {**value, **clears} if clears else value


def validate_requests(requests: list[Request]) -> None:
    """Check every request against botocore's model before the first write."""
    problems = []
    validator = ParamValidator()
    for r in requests:
        body = dict(r.body)
        if r.op == "CreateService" or r.send_task_definition:
            body["taskDefinition"] = _PENDING_ARN
        report = validator.validate(body, input_shape(r.op))
        if report.has_errors():
            problems.append(f"{_where(r.key, r.origin)}: {r.op}: {report.generate_report()}")
    if problems:
        raise PlanError(
            "the ECS requests for this plan are invalid; nothing was changed:\n  "
            + "\n  ".join(problems)
        )


def check_guardrails(app: AppConfig, requests: list[Request]) -> None:
    """Refuse, before the first write, a task definition outside the app's guard-rails
    (roles, privileged settings, plaintext secrets: gitopsd.backends.ecs.guardrails)."""
    registered = [
        ("TaskDefinition", r.body, r.origin) for r in requests if r.op == "RegisterTaskDefinition"
    ]
    problems = check_specs(app, registered)
    if problems:
        raise PlanError(
            "outside the guard-rails ([policy], apps[].policy); nothing was changed:\n  "
            + "\n  ".join(problems)
        )


async def apply_changeset(
    client: EcsClient,
    app: AppConfig,
    changeset: ChangeSet,
    journal: Journal | None = None,
    *,
    grace: float = 60.0,
) -> ApplyResult:
    """Send the change set's requests in order.

    ``grace`` bounds one write with all its retries (see ``client.retry_budget``); a
    write still unanswered then is reported as unsure and fails the apply as temporary.
    """
    requests = build_requests(app, changeset)
    validate_requests(requests)
    check_guardrails(app, requests)
    check_strategies(changeset)
    td_arns = {
        r.name: str(r.details["arn"])
        for r in changeset.resources
        if r.kind == "TaskDefinition" and "arn" in r.details
    }
    applied: list[Applied] = []
    for request in requests:

        async def send(request: Request = request) -> Applied | None:
            return await _send(client, app, request, td_arns)

        await write_once(
            send,
            key=request.key,
            op=request.op,
            where=_where(request.key, request.origin),
            grace=grace,
            journal=journal,
            written=lambda: ApplyResult(app=app.name, applied=tuple(applied)),
            done=applied,
        )
    return ApplyResult(app=app.name, applied=tuple(_merge(applied)))


async def write_once(
    send: Callable[[], Awaitable[Applied | None]],
    *,
    key: str,
    op: str,
    where: str,
    grace: float,
    journal: Journal | None,
    written: Callable[[], ApplyResult],
    done: list[Applied],
) -> None:
    """One write, finished even if the caller is cancelled meanwhile (within ``grace``).

    What it made is appended to ``done`` and told to ``journal``; a write unanswered
    within ``grace`` is reported as unsure. A failure raises :class:`ApplyError`
    carrying ``written()``, what was written before it. A cancellation takes effect
    between writes, never during one.
    """
    await anyio.lowlevel.checkpoint()
    made: Applied | None = None
    error: Exception | None = None
    with anyio.CancelScope(shield=True), anyio.move_on_after(grace) as scope:
        try:
            made = await send()
        except Exception as exc:
            error = exc
    if scope.cancelled_caught:
        if journal is not None:
            journal.unsure(key, f"{op} got no answer within {grace:g}s")
        error = BackendUnavailable(f"{op} got no answer within {grace:g}s", maybe_applied=True)
    if error is not None:
        unsure = getattr(error, "maybe_applied", False)
        maybe = " (it may have been made: the next sync checks)" if unsure else ""
        raise ApplyError(f"{where}: {error}{maybe}", cause=error, partial=written()) from error
    if made is not None:
        done.append(made)
        if journal is not None:
            journal.wrote(made)


def _identical_revision(client: EcsClient, body: Mapping[str, Any], app: AppConfig) -> Any:
    """A ``recover`` for RegisterTaskDefinition: the family's newest revision, if it is ours."""
    wanted = normalise_task_definition(body, ignore_tag_keys=app.ignore_tag_keys)

    async def recover() -> dict[str, Any] | None:
        latest = await client.latest_task_definition(str(body["family"]))
        if latest is None:
            return None
        if normalise_task_definition(latest, ignore_tag_keys=app.ignore_tag_keys) != wanted:
            return None
        log.warning(
            "apply.register_recovered",
            app=app.name,
            arn=latest["taskDefinitionArn"],
            hint="the earlier attempt was registered although its answer was lost",
        )
        return {"taskDefinition": latest, "tags": latest.get("tags", [])}

    return recover


async def _send(
    client: EcsClient, app: AppConfig, request: Request, td_arns: dict[str, str]
) -> Applied | None:
    if request.op == "RegisterTaskDefinition":
        td = await client.register_task_definition(
            request.body, recover=_identical_revision(client, request.body, app)
        )
        arn = td["taskDefinitionArn"]
        td_arns[request.body["family"]] = arn
        log.info("apply.task_definition", app=app.name, arn=arn)
        return Applied(request.key, "registered", arn, f"registered {td_label(arn)}")
    if request.op in ("TagResource", "UntagResource"):
        await client.call(request.op, **request.body)
        return Applied(request.key, "retagged", request.body["resourceArn"], "retagged")
    td_arn = td_arns[request.family]
    body = dict(request.body)
    if request.op == "CreateService" or request.send_task_definition:
        body["taskDefinition"] = td_arn
    started = time.time()
    if request.op == "CreateService":
        svc = await client.create_service(body)
        message = f"created on {td_label(td_arn)}"
    else:
        svc = await client.update_service(body)
        message = request.message
    log.info("apply.service", app=app.name, op=request.op, service=request.key, td=td_arn)
    primary = primary_deployment(svc) or {}
    return Applied(
        request.key,
        "created" if request.op == "CreateService" else "updated",
        str(svc.get("serviceArn", "")),
        message,
        rollout=td_arn,
        at=started,
        deployment=str(primary.get("id", "")),
        service_deployment=str(svc.get("currentServiceDeployment") or ""),
    )


def _merge(applied: list[Applied]) -> list[Applied]:
    """One entry per resource: a retag after an update is part of the update."""
    out: dict[str, Applied] = {}
    for a in applied:
        prev = out.get(a.key)
        if prev is None:
            out[a.key] = a
        elif a.action == "retagged":
            out[a.key] = replace(prev, message=f"{prev.message}; retagged")
        else:
            out[a.key] = a
    return list(out.values())
