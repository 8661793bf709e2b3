"""Apply: make exactly the writes a change set asks for, in a safe order.

Task definitions are registered first (a new revision is harmless until a
service points at it), then services are created or updated. Every write is
refused up front when the plan holds a change that cannot be made in place,
so an app is never left half-applied by a change gitopsd knew it could not
make. What gitopsd writes carries its ownership tags.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import structlog

from gitopsd.backends.base import Applied, ApplyResult
from gitopsd.backends.ecs.client import EcsClient
from gitopsd.backends.ecs.normalise import service_update_fields
from gitopsd.backends.ecs.ownership import is_managed_tag, managed_tags
from gitopsd.backends.ecs.service_model import input_shape
from gitopsd.config import AppConfig
from gitopsd.errors import PlanError
from gitopsd.model import Action, ChangeSet, ResourceChange
from gitopsd.pointer import split_pointer

log = structlog.get_logger(__name__)


def check_applicable(changeset: ChangeSet) -> None:
    """Raise PlanError, before any write, when a change needs a replacement."""
    blocked = [
        f"{r.key}: {c.path} {c.note} (live {c.before!r}, desired {c.after!r})"
        for r in changeset.pending
        for c in r.changes
        if c.note.startswith("immutable")
    ]
    if blocked:
        raise PlanError(
            "cannot apply in place; ECS does not allow changing these fields of an existing "
            "service (delete and recreate the service, or give it a new serviceName):\n  "
            + "\n  ".join(blocked)
        )


def _tags(spec: dict[str, Any], app: AppConfig, changeset: ChangeSet) -> list[dict[str, str]]:
    rev = changeset.revision
    user = [t for t in spec.get("tags", []) if not is_managed_tag(t["key"])]
    return user + managed_tags(app.name, rev.source if rev else "", rev.commit if rev else None)


def client_token(app: AppConfig, name: str, spec: dict[str, Any]) -> str:
    """Idempotency token for CreateService: the same request twice creates one service."""
    digest = hashlib.sha256(
        json.dumps([app.cluster, name, spec], sort_keys=True, default=str).encode()
    ).hexdigest()
    return digest[:32]


async def apply_changeset(client: EcsClient, app: AppConfig, changeset: ChangeSet) -> ApplyResult:
    check_applicable(changeset)
    applied: list[Applied] = []
    td_arns: dict[str, str] = {}
    for change in changeset.resources:
        if change.kind != "TaskDefinition":
            continue
        if change.action is Action.NOOP:
            td_arns[change.name] = str(change.details["arn"])
            continue
        spec = dict(change.details["spec"])
        spec["tags"] = _tags(spec, app, changeset)
        td = await client.register_task_definition(spec)
        arn = td["taskDefinitionArn"]
        td_arns[change.name] = arn
        applied.append(Applied(change.key, "registered", arn, f"registered {arn}"))
        log.info("apply.task_definition", app=app.name, arn=arn)

    for change in changeset.resources:
        if change.kind != "Service" or change.action is Action.NOOP:
            continue
        applied.append(await _apply_service(client, app, changeset, change, td_arns))
    return ApplyResult(app=app.name, applied=tuple(applied))


async def _apply_service(
    client: EcsClient,
    app: AppConfig,
    changeset: ChangeSet,
    change: ResourceChange,
    td_arns: dict[str, str],
) -> Applied:
    spec = dict(change.details["spec"])
    started = time.time()
    td_arn = td_arns.get(str(change.details["family"]), "")
    tags = _tags(spec, app, changeset)
    if change.action is Action.CREATE:
        body = dict(spec, cluster=app.cluster, taskDefinition=td_arn, tags=tags)
        body["clientToken"] = client_token(app, change.name, body)
        svc = await client.create_service(body)
        log.info("apply.service.create", app=app.name, service=change.name, td=td_arn)
        return Applied(
            change.key, "created", svc["serviceArn"], f"created on {td_arn}", td_arn, started
        )

    arn = str(change.details["arn"])
    fields_changed = {split_pointer(c.path)[0] for c in change.changes}
    message = []
    if fields_changed - {"tags"}:
        body = _update_body(app, change.name, spec, td_arn, change)
        await client.update_service(body)
        message.append(f"updated {', '.join(sorted(fields_changed - {'tags'}))}")
    live_tags: dict[str, str] = dict(change.details.get("live_tags", {}))
    wanted = {t["key"]: t["value"] for t in tags}
    stale = [
        k
        for k in live_tags
        if k not in wanted and not is_managed_tag(k) and k not in app.ignore_tag_keys
    ]
    await client.untag_resource(arn, stale)
    await client.tag_resource(
        arn, [{"key": k, "value": v} for k, v in wanted.items() if live_tags.get(k) != v]
    )
    if "tags" in fields_changed:
        message.append("retagged")
    log.info(
        "apply.service.update", app=app.name, service=change.name, fields=sorted(fields_changed)
    )
    rolls = "taskDefinition" in fields_changed or "forceNewDeployment" in spec
    return Applied(change.key, "updated", arn, "; ".join(message), td_arn if rolls else "", started)


def _update_body(
    app: AppConfig, name: str, spec: dict[str, Any], td_arn: str, change: ResourceChange
) -> dict[str, Any]:
    allowed = service_update_fields()
    body: dict[str, Any] = {k: v for k, v in spec.items() if k in allowed}
    body.update(cluster=app.cluster, service=name, taskDefinition=td_arn)
    # A field the manifest leaves out is not sent, so ECS would keep a value changed
    # behind Git's back: send the value the normalised manifest means (the AWS
    # default), or an empty list for a list the manifest no longer has.
    members = input_shape("UpdateService").members
    desired_view: dict[str, Any] = dict(change.details.get("desired_view", {}))
    for c in change.changes:
        top = split_pointer(c.path)[0]
        if top not in allowed or top in body:
            continue
        if top in desired_view:
            body[top] = desired_view[top]
        elif members[top].type_name == "list":
            body[top] = []
    return body
