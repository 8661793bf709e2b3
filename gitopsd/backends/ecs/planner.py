"""Plan: compare rendered ECS resources with live state, read-only.

Task definitions are immutable and versioned, so "update" means "register a
new revision". The reference a rendered task definition is compared with is
the revision the app's service runs (or, with no service yet, the family's
latest); a new revision is planned only when they differ after
normalisation. A service's ``taskDefinition`` is compared as
``family:revision`` on both sides, so a service that already runs the right
revision is a no-op and one whose family changes shows exactly that.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio

from gitopsd.backends.ecs.client import EcsClient
from gitopsd.backends.ecs.normalise import (
    immutable_service_fields,
    normalise_service,
    normalise_task_definition,
    unowned_service_pointers,
)
from gitopsd.config import AppConfig
from gitopsd.model import (
    Action,
    ChangeSet,
    FieldChange,
    Resource,
    ResourceChange,
    Revision,
)
from gitopsd.plan.diff import diff
from gitopsd.pointer import split_pointer
from gitopsd.state import JsonRecord

NEW_REVISION = "(new revision)"


def td_label(arn: str) -> str:
    """``family:revision`` from a task-definition ARN (or the input when it is no ARN)."""
    return arn.rsplit("/", 1)[-1]


def td_family(arn: str) -> str:
    return td_label(arn).split(":", 1)[0]


def primary_deployment(service: dict[str, Any]) -> dict[str, Any] | None:
    return next((d for d in service.get("deployments", []) if d.get("status") == "PRIMARY"), None)


def _ignores(app: AppConfig, kind: str, name: str) -> list[str]:
    return [p for rule in app.ignore if rule.matches(kind, name) for p in rule.pointers]


async def plan_app(
    client: EcsClient,
    app: AppConfig,
    resources: Sequence[Resource],
    revision: Revision | None,
    last_good: JsonRecord | None = None,
) -> ChangeSet:
    """The change set that brings the app's live resources to ``resources``."""
    tds = [r for r in resources if r.kind == "TaskDefinition"]
    services = [r for r in resources if r.kind == "Service"]
    live_services = await client.describe_services(app.cluster, [s.name for s in services])
    _remember_steady(live_services, last_good)

    td_changes: dict[str, ResourceChange] = {}

    async def plan_td(td: Resource) -> None:
        td_changes[td.name] = await _plan_task_definition(client, app, td, services, live_services)

    async with anyio.create_task_group() as tg:
        for td in tds:
            tg.start_soon(plan_td, td)

    changes: list[ResourceChange] = [td_changes[td.name] for td in tds]
    for svc in services:
        changes.append(_plan_service(app, svc, live_services.get(svc.name), td_changes))
    return ChangeSet(app=app.name, revision=revision, resources=tuple(changes))


def _remember_steady(live: dict[str, dict[str, Any]], record: JsonRecord | None) -> None:
    """Record, per service, a task definition seen fully rolled out: the rollback target."""
    if record is None:
        return
    steady = {}
    for name, svc in live.items():
        deployments = svc.get("deployments", [])
        primary = primary_deployment(svc)
        if (
            primary is not None
            and len(deployments) == 1
            and primary.get("rolloutState") == "COMPLETED"
        ):
            steady[name] = primary["taskDefinition"]
    if steady:
        record.update(**steady)


async def _plan_task_definition(
    client: EcsClient,
    app: AppConfig,
    td: Resource,
    services: Sequence[Resource],
    live_services: dict[str, dict[str, Any]],
) -> ResourceChange:
    reference_arn = None
    for svc in services:
        live = live_services.get(svc.name)
        if (
            svc.spec.get("taskDefinition") == td.name
            and live is not None
            and td_family(live.get("taskDefinition", "")) == td.name
        ):
            reference_arn = live["taskDefinition"]
            break
    reference = (
        await client.task_definition(reference_arn)
        if reference_arn
        else await client.latest_task_definition(td.name)
    )
    if reference is None:
        return ResourceChange(
            kind=td.kind,
            name=td.name,
            action=Action.CREATE,
            changes=(),
            origin=td.origin,
            details={"spec": td.spec},
        )
    arn = reference["taskDefinitionArn"]
    changes = diff(
        normalise_task_definition(td.spec, ignore_tag_keys=app.ignore_tag_keys),
        normalise_task_definition(reference, ignore_tag_keys=app.ignore_tag_keys),
        _ignores(app, td.kind, td.name),
    )
    return ResourceChange(
        kind=td.kind,
        name=td.name,
        action=Action.UPDATE if changes else Action.NOOP,
        changes=changes,
        origin=td.origin,
        details={"spec": td.spec, "arn": arn, "label": td_label(arn)},
    )


def _plan_service(
    app: AppConfig,
    svc: Resource,
    live: dict[str, Any] | None,
    td_changes: dict[str, ResourceChange],
) -> ResourceChange:
    family = str(svc.spec.get("taskDefinition", ""))
    td_change = td_changes.get(family)
    if td_change is None or td_change.action is not Action.NOOP:
        desired_td = f"{family}:{NEW_REVISION}"
    else:
        desired_td = str(td_change.details["label"])
    desired = dict(svc.spec, taskDefinition=desired_td)
    details: dict[str, Any] = {"spec": svc.spec, "family": family}
    if live is None:
        return ResourceChange(
            kind=svc.kind,
            name=svc.name,
            action=Action.CREATE,
            origin=svc.origin,
            details=details,
        )
    live_view = dict(live, taskDefinition=td_label(live.get("taskDefinition", "")))
    ignore = _ignores(app, svc.kind, svc.name)
    ignore.extend(unowned_service_pointers(svc.spec))  # e.g. desiredCount left to autoscaling
    desired_view = normalise_service(desired, ignore_tag_keys=app.ignore_tag_keys)
    raw = diff(
        desired_view,
        normalise_service(live_view, ignore_tag_keys=app.ignore_tag_keys),
        ignore,
    )
    immutable = immutable_service_fields()
    changes = tuple(
        FieldChange(c.path, c.before, c.after, "immutable: cannot change in place")
        if split_pointer(c.path)[0] in immutable
        else c
        for c in raw
    )
    details.update(
        arn=live.get("serviceArn", ""),
        live_tags={t["key"]: t["value"] for t in live.get("tags", [])},
        desired_view=desired_view,
        running=live.get("taskDefinition", ""),
    )
    return ResourceChange(
        kind=svc.kind,
        name=svc.name,
        action=Action.UPDATE if changes else Action.NOOP,
        changes=changes,
        origin=svc.origin,
        details=details,
    )
