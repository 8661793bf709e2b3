"""Plan: compare rendered ECS resources with live state, read-only.

Task definitions are immutable and versioned, so "update" means "register a
new revision". The reference a rendered task definition is compared with is
the revision the app's service runs (or, with no service yet, the family's
latest); a new revision is planned only when they differ after
normalisation, and an existing identical revision (the family's latest) is
reused rather than registered again. A change of tags alone retags the
revision in place. A service's ``taskDefinition`` is compared as
``family:revision`` on both sides.

Task definitions come from the client's cache by ARN (their content never
changes); when the one compared with differs from the manifest, a write may
follow, so its tags (owner, retag) are read afresh before the plan is final.
A no-op pass on a warm cache describes no task definition at all. The fresh
read is one DescribeTaskDefinition by family name: the family's newest ACTIVE
revision is, as a rule, the one the service runs, so that one call is both the
fresh copy and the identical-revision check (a planned change costs one read,
not a describe plus a ListTaskDefinitions).

The plan also refuses, up front, what cannot be applied: services or families
another app owns, fields ECS cannot change in place, fields that cannot be
removed in place, and changes an external deployment controller must make.

Planning is read-only, also towards gitopsd's own state: it writes no record.
It reads each live service's health (is a rollout still running, or did it
fail?), so a pass that finds nothing to change still notices a rollout that an
interrupted run left behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import anyio
import structlog

from gitopsd.backends.ecs.client import EcsClient
from gitopsd.backends.ecs.normalise import (
    immutable_service_fields,
    normalise_service,
    normalise_task_definition,
    service_reset_value,
    unowned_service_pointers,
)
from gitopsd.backends.ecs.ownership import owner_of
from gitopsd.backends.ecs.validate import check_create_service
from gitopsd.config import AppConfig
from gitopsd.errors import BackendRejected, PlanError
from gitopsd.model import (
    MISSING,
    Action,
    ChangeSet,
    FieldChange,
    Health,
    HealthState,
    Resource,
    ResourceChange,
    Revision,
)
from gitopsd.plan.diff import diff
from gitopsd.plan.keep import keep_ignored
from gitopsd.plan.memo import ComparisonMemo
from gitopsd.pointer import split_pointer

log = structlog.get_logger(__name__)

NEW_REVISION = "(new revision)"

#: What UpdateService may change on a service whose deployments another controller
#: makes (CODE_DEPLOY blue/green, EXTERNAL): per the UpdateService API reference.
EXTERNAL_CONTROLLER_FIELDS = frozenset(
    {
        "desiredCount",
        "deploymentConfiguration",
        "healthCheckGracePeriodSeconds",
        "placementConstraints",
        "placementStrategy",
        "enableECSManagedTags",
        "propagateTags",
        "enableExecuteCommand",
        "tags",
    }
)

NOTE_IMMUTABLE = "immutable: cannot change in place"
NOTE_NOT_REMOVABLE = "cannot be removed in place: set it explicitly, or recreate the service"
NOTE_CONTROLLER = "needs a deployment by the service's deployment controller ({})"


def td_label(arn: str) -> str:
    """``family:revision`` from a task-definition ARN (or the input when it is no ARN)."""
    return arn.rsplit("/", 1)[-1]


def td_family(arn: str) -> str:
    return td_label(arn).split(":", 1)[0]


def primary_deployment(service: dict[str, Any]) -> dict[str, Any] | None:
    return next((d for d in service.get("deployments", []) if d.get("status") == "PRIMARY"), None)


def blocking(change: FieldChange) -> bool:
    """Whether a field change is one the applier must refuse."""
    return change.note.startswith(("immutable", "cannot be removed", "needs a deployment"))


def _ignores(app: AppConfig, kind: str, name: str) -> list[str]:
    return [p for rule in app.ignore if rule.matches(kind, name) for p in rule.pointers]


def _check_owner(app: AppConfig, key: str, tags: Sequence[dict[str, str]], where: str) -> None:
    owner = owner_of(tags)
    if owner is not None and owner != app.name:
        raise PlanError(
            f"{key} {where} belongs to app {owner!r} (tag gitopsd:app); two apps must not "
            f"declare the same resource: remove it from one of them"
        )


async def plan_app(
    client: EcsClient,
    app: AppConfig,
    resources: Sequence[Resource],
    revision: Revision | None,
) -> ChangeSet:
    """The change set that brings the app's live resources to ``resources``."""
    tds = [r for r in resources if r.kind == "TaskDefinition"]
    services = [r for r in resources if r.kind == "Service"]
    live_services = await client.describe_services(app.cluster, [s.name for s in services])
    for svc in services:
        if svc.name in live_services:
            live = live_services[svc.name]
            where = f"in cluster {app.cluster!r}"
            _check_owner(app, svc.key, live.get("tags", []), where)

    running = _running_revisions(services, live_services)
    td_changes: dict[str, ResourceChange] = {}
    unsettled: list[Resource] = []
    for td in tds:  # in sync by what is known already: no call, no task
        known = _plan_td_from_memory(client, app, td, running.get(td.name, ""))
        if known is None:
            unsettled.append(td)
        else:
            td_changes[td.name] = known

    async def plan_td(td: Resource) -> None:
        td_changes[td.name] = await _plan_task_definition(client, app, td, running.get(td.name, ""))

    if unsettled:
        async with anyio.create_task_group() as tg:
            for td in unsettled:
                tg.start_soon(plan_td, td)

    changes: list[ResourceChange] = [td_changes[td.name] for td in tds]
    for svc in services:
        found = live_services.get(svc.name)
        changes.append(_plan_service(client.td_cache.in_sync, app, svc, found, td_changes))
    return ChangeSet(app=app.name, revision=revision, resources=tuple(changes))


def service_health(svc: dict[str, Any]) -> Health:
    """How a live service's deployments stand: steady, rolling out, or failed."""
    deployments = svc.get("deployments", [])
    primary = primary_deployment(svc)
    if primary is None:
        return Health(HealthState.PROGRESSING, "no PRIMARY deployment yet")
    state = primary.get("rolloutState")
    label = td_label(str(primary.get("taskDefinition", "")))
    counts = (
        f"{primary.get('runningCount', 0)}/{primary.get('desiredCount', 0)} running, "
        f"{primary.get('failedTasks', 0)} failed"
    )
    if state == "FAILED":
        reason = primary.get("rolloutStateReason") or "rollout FAILED"
        return Health(HealthState.DEGRADED, f"rollout of {label} FAILED ({reason}); {counts}")
    if state == "COMPLETED" and len(deployments) == 1:
        return Health(HealthState.HEALTHY, f"{label} steady; {counts}")
    steady = primary.get("runningCount") == primary.get("desiredCount")
    if state in (None, "") and len(deployments) == 1 and steady:
        return Health(HealthState.HEALTHY, f"{label} steady; {counts}")
    return Health(HealthState.PROGRESSING, f"rollout of {label} IN_PROGRESS; {counts}")


def _rollout_details(svc: dict[str, Any]) -> dict[str, Any]:
    """What verify needs to follow the rollout a service is in (for an interrupted run's)."""
    primary = primary_deployment(svc) or {}
    created = primary.get("createdAt")
    return {
        "deployment": str(primary.get("id", "")),
        "deployment_td": str(primary.get("taskDefinition", "")),
        "deployment_created": created.timestamp() if isinstance(created, datetime) else 0.0,
        "service_deployment": str(svc.get("currentServiceDeployment") or ""),
    }


def _running_revisions(
    services: Sequence[Resource], live_services: dict[str, dict[str, Any]]
) -> dict[str, str]:
    """Family -> the ARN of the revision of it that the first of the app's services naming
    that family runs (the revision a task definition is compared with)."""
    running: dict[str, str] = {}
    for svc in services:
        family = svc.spec.get("taskDefinition")
        live = live_services.get(svc.name)
        if not isinstance(family, str) or family in running or live is None:
            continue
        arn = str(live.get("taskDefinition", ""))
        if td_family(arn) == family:
            running[family] = arn
    return running


def _plan_td_from_memory(
    client: EcsClient, app: AppConfig, td: Resource, running: str
) -> ResourceChange | None:
    """The no-op plan of ``td`` when the revision its service runs is cached and matches
    (no call needed); None when the full plan must decide."""
    reference = client.td_cache.get(running) if running else None
    if reference is None:
        return None
    spec, changes = _compare_td(client.td_cache.in_sync, app, td, reference)
    if changes:
        return None
    _check_owner(app, td.key, reference.get("tags", []), f"({td_label(running)})")
    details = {"spec": spec, "arn": running, "label": td_label(running)}
    return ResourceChange(td.kind, td.name, Action.NOOP, origin=td.origin, details=details)


async def _reference_task_definition(
    client: EcsClient, td: Resource, running: str
) -> tuple[dict[str, Any] | None, bool, dict[str, Any] | None]:
    """The revision to compare with (``running``: the one a service runs, "" when none
    does), whether it came from the cache (its tags may be old), and the family's newest
    ACTIVE revision when it was described meanwhile (None: not asked, or none)."""
    if running:
        found = client.td_cache.get(running)
        if found is not None:
            return found, True, None
        # Not seen yet: the family's newest revision is, as a rule, the one the service
        # runs; described by family name, it also serves the checks of a write.
        latest = await _latest_fresh(client, td.name)
        if latest is not None and latest["taskDefinitionArn"] == running:
            return latest, False, latest
        return await client.task_definition(running, fresh=True), False, latest
    arn = await client.latest_task_definition_arn(td.name)
    if arn is None:
        return None, False, None
    found, cached = await _describe(client, arn)
    return found, cached, None


async def _describe(client: EcsClient, arn: str) -> tuple[dict[str, Any], bool]:
    """The task definition ``arn``, and whether it came from the cache."""
    cached = client.td_cache.get(arn)
    if cached is not None:
        return cached, True
    return await client.task_definition(arn, fresh=True), False


async def _latest_fresh(client: EcsClient, family: str) -> dict[str, Any] | None:
    """The family's newest ACTIVE revision, described now with its tags (one call:
    DescribeTaskDefinition by family name), or None when the family has no ACTIVE one."""
    try:
        latest = await client.task_definition(family, fresh=True)
    except BackendRejected:  # ClientException: no ACTIVE revision (every one deregistered)
        return None
    return latest if latest.get("status", "ACTIVE") == "ACTIVE" else None


def _compare_td(
    memo: ComparisonMemo, app: AppConfig, td: Resource, live: dict[str, Any]
) -> tuple[dict[str, Any], tuple[FieldChange, ...]]:
    """The spec to register (ignored places kept from ``live``) and its differences.

    A comparison that finds none is remembered in ``memo`` (gitopsd.plan.memo)."""
    ignore = _ignores(app, td.kind, td.name)
    key = memo.key("TaskDefinition", td.spec, live, ignore, sorted(app.ignore_tag_keys))
    remembered = memo.get(key)
    if remembered is not None:
        return remembered, ()
    live_view = normalise_task_definition(live, ignore_tag_keys=app.ignore_tag_keys)
    spec, _ = keep_ignored(td.spec, live, live_view, ignore)
    desired_view = normalise_task_definition(spec, ignore_tag_keys=app.ignore_tag_keys)
    changes = diff(desired_view, live_view, ignore)
    if not changes:
        memo.put(key, spec)
    return spec, changes


async def _plan_task_definition(
    client: EcsClient, app: AppConfig, td: Resource, running: str
) -> ResourceChange:
    reference, cached, latest = await _reference_task_definition(client, td, running)
    if reference is None:
        return ResourceChange(
            td.kind, td.name, Action.CREATE, origin=td.origin, details={"spec": td.spec}
        )
    arn = reference["taskDefinitionArn"]
    spec, changes = _compare_td(client.td_cache.in_sync, app, td, reference)
    if changes and cached:
        # A write may follow, decided on the revision's tags (its owner, a retag), which can
        # change after a revision was cached: they are read afresh first. For a revision a
        # service runs, one call serves that and the identical-revision check below: the
        # family's newest revision (described by family name) is the one the service runs,
        # unless a newer one was registered since (a rollout that was rolled back).
        if running:
            latest = await _latest_fresh(client, td.name)
        if latest is not None and latest["taskDefinitionArn"] == arn:
            reference = latest
        else:
            reference = await client.task_definition(arn, fresh=True)
        spec, changes = _compare_td(client.td_cache.in_sync, app, td, reference)
    _check_owner(app, td.key, reference.get("tags", []), f"({td_label(arn)})")
    details: dict[str, Any] = {"spec": spec, "arn": arn, "label": td_label(arn)}
    if not changes:
        return ResourceChange(td.kind, td.name, Action.NOOP, origin=td.origin, details=details)
    if all(split_pointer(c.path)[0] == "tags" for c in changes):
        # Tags are not part of a revision's content: retag it, register nothing.
        details["retag"] = True
        details["live_tags"] = {t["key"]: t.get("value", "") for t in reference.get("tags", [])}
        return ResourceChange(td.kind, td.name, Action.UPDATE, changes, td.origin, details)
    if latest is not None and latest["taskDefinitionArn"] != arn:
        # The service runs an older revision, and an identical newer one exists already
        # (a revision registered by an earlier sync that was rolled back, for example).
        latest_spec, latest_changes = _compare_td(client.td_cache.in_sync, app, td, latest)
        if not latest_changes:
            latest_arn = latest["taskDefinitionArn"]
            return ResourceChange(
                td.kind,
                td.name,
                Action.NOOP,
                origin=td.origin,
                details={"spec": latest_spec, "arn": latest_arn, "label": td_label(latest_arn)},
            )
    return ResourceChange(td.kind, td.name, Action.UPDATE, changes, td.origin, details)


def _plan_service(
    memo: ComparisonMemo,
    app: AppConfig,
    svc: Resource,
    live: dict[str, Any] | None,
    td_changes: dict[str, ResourceChange],
) -> ResourceChange:
    family = str(svc.spec.get("taskDefinition", ""))
    td_change = td_changes[family]
    new_revision = td_change.action is Action.CREATE or (
        td_change.action is Action.UPDATE and not td_change.details.get("retag")
    )
    desired_td = f"{family}:{NEW_REVISION}" if new_revision else str(td_change.details["label"])
    details: dict[str, Any] = {"spec": svc.spec, "family": family}
    if live is None:
        check_create_service(svc.spec, svc.origin)
        return ResourceChange(svc.kind, svc.name, Action.CREATE, origin=svc.origin, details=details)
    details.update(_rollout_details(live))
    details["td_in_sync"] = not new_revision and td_change.details.get("arn") == live.get(
        "taskDefinition"
    )

    live_raw = dict(live, taskDefinition=td_label(live.get("taskDefinition", "")))
    ignore = _ignores(app, svc.kind, svc.name) + list(unowned_service_pointers(svc.spec))
    controller = str((live.get("deploymentController") or {}).get("type", "ECS"))
    # The key leaves out the service's events (no rule reads them; they grow over time).
    compared = {k: v for k, v in live_raw.items() if k != "events"}
    key = memo.key("Service", svc.spec, desired_td, compared, ignore, sorted(app.ignore_tag_keys))
    remembered = memo.get(key)
    changes: tuple[FieldChange, ...] = ()
    if remembered is not None:
        kept = remembered
    else:
        live_view = normalise_service(live_raw, ignore_tag_keys=app.ignore_tag_keys)
        desired = dict(svc.spec, taskDefinition=desired_td)
        kept, _ = keep_ignored(desired, live_raw, live_view, ignore)
        desired_view = normalise_service(kept, ignore_tag_keys=app.ignore_tag_keys)
        changes = tuple(
            _annotate(c, kept, svc.spec, controller) for c in diff(desired_view, live_view, ignore)
        )
        if not changes:
            memo.put(key, kept)
    details.update(
        spec=dict(kept, taskDefinition=family),
        arn=live.get("serviceArn", ""),
        live_tags={t["key"]: t.get("value", "") for t in live.get("tags", [])},
        controller=controller,
    )
    action = Action.UPDATE if changes else Action.NOOP
    return ResourceChange(
        svc.kind, svc.name, action, changes, svc.origin, details, health=service_health(live)
    )


def _annotate(
    change: FieldChange, kept: dict[str, Any], spec: dict[str, Any], controller: str
) -> FieldChange:
    top = split_pointer(change.path)[0]
    note = ""
    if top in immutable_service_fields():
        note = NOTE_IMMUTABLE
    elif controller != "ECS" and top not in EXTERNAL_CONTROLLER_FIELDS:
        note = NOTE_CONTROLLER.format(controller)
    elif top != "tags" and top not in kept and service_reset_value(top, spec) is MISSING:
        note = NOTE_NOT_REMOVABLE
    if not note:
        return change
    return FieldChange(change.path, change.before, change.after, note)
