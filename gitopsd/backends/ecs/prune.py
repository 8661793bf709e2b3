"""Prune: remove what an app deployed to ECS and no longer declares.

Plan and apply only ever touch what the app declares, so a service deleted from
Git keeps running, and the revisions of a family nobody declares pile up. With
``[apps.sync].prune = true`` the engine asks for a :class:`PrunePlan` and, when
it agrees, for the prune itself. What is pruned is decided by gitopsd's
ownership tag (``gitopsd:app``, see :mod:`ownership`), never by a name:

- a service of the app's cluster that is ACTIVE, carries the app's tag and is
  not a declared ``Service`` is scaled to zero and deleted;
- an ACTIVE task-definition revision that carries the app's tag, of a family
  the app does not declare and whose newest ACTIVE revision carries the app's
  tag, is deregistered, unless a service of the cluster that stays still uses
  it (its ``taskDefinition``, any of its ``deployments[]`` or ``taskSets[]``).

ListTaskDefinitionFamilies would list every family of the account, so the
families looked at are only those the app's tagged services run or drain (the
services being pruned included) and those the caller knows the app used (the
backend passes the families of its last-good record). A family no service
references any more and that no record names is not found.

Planning is read-only: ceil(N/100) ListServices and ceil(N/10) DescribeServices
(with tags) for N services in the cluster, plus, per candidate family, the
ListTaskDefinitions pages and one DescribeTaskDefinition per revision not seen
before (cached by ARN). Writes go through :class:`EcsClient` (retried, paced)
one at a time, each reported to the journal as soon as it is made and finished
(shielded, within ``grace``) before a cancellation takes effect; a failing
write stops the prune with :class:`ApplyError` carrying what was written.
A second DeleteService of a deleted service is refused, so after an answer that
was lost (DeleteService or DeregisterTaskDefinition) the resource is looked at
before the write is sent again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import anyio
import anyio.lowlevel
import structlog

from gitopsd.backends.base import Applied, ApplyResult, Journal, PruneItem, PrunePlan
from gitopsd.backends.ecs.applier import write_once
from gitopsd.backends.ecs.client import EcsClient
from gitopsd.backends.ecs.ownership import APP_TAG, owner_of
from gitopsd.backends.ecs.planner import td_family, td_label
from gitopsd.config import AppConfig
from gitopsd.errors import PlanError, leaf_error
from gitopsd.model import Resource
from gitopsd.state import JsonRecord

log = structlog.get_logger(__name__)

SERVICE = "Service"
TASK_DEFINITION = "TaskDefinition"

#: Page size of the List* calls (the most ECS allows; the local endpoint defaults to 10).
LIST_PAGE_SIZE = 100


# -- reads ------------------------------------------------------------------------------


async def list_service_arns(client: EcsClient, cluster: str) -> list[str]:
    """Every service ARN ListServices gives for ``cluster``, following ``nextToken``."""
    arns: list[str] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {"cluster": cluster, "maxResults": LIST_PAGE_SIZE}
        if token:
            params["nextToken"] = token
        out = await client.call("ListServices", **params)
        arns += [str(a) for a in out.get("serviceArns", [])]
        token = out.get("nextToken")
        if not token:
            return arns


async def list_active_revisions(client: EcsClient, family: str) -> list[str]:
    """The ARNs of the ACTIVE revisions of ``family`` (exactly that family), oldest first."""
    arns: list[str] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {
            "familyPrefix": family,
            "status": "ACTIVE",
            "sort": "ASC",
            "maxResults": LIST_PAGE_SIZE,
        }
        if token:
            params["nextToken"] = token
        out = await client.call("ListTaskDefinitions", **params)
        arns += [str(a) for a in out.get("taskDefinitionArns", []) if td_family(str(a)) == family]
        token = out.get("nextToken")
        if not token:
            return sorted(set(arns), key=_revision)


def task_definitions_of(service: dict[str, Any]) -> set[str]:
    """Every task definition a live service runs or drains, as ECS names them."""
    refs = {str(service.get("taskDefinition") or "")}
    refs |= {str(d.get("taskDefinition") or "") for d in service.get("deployments", [])}
    refs |= {str(t.get("taskDefinition") or "") for t in service.get("taskSets", [])}
    return {r for r in refs if r}


def _revision(arn: str) -> int:
    try:
        return int(td_label(arn).rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return -1


def _owned_by(app: AppConfig, item: dict[str, Any]) -> bool:
    return owner_of(item.get("tags", [])) == app.name


# -- plan -------------------------------------------------------------------------------


async def plan_prune(
    client: EcsClient,
    app: AppConfig,
    resources: Sequence[Resource],
    *,
    known_families: Iterable[str] = (),
) -> PrunePlan:
    """What :func:`prune` would remove for ``app``, whose rendered documents are ``resources``.

    ``known_families``: more families the app is known to have used (hints; each is
    still checked like the others). Read-only.
    """
    declared_services = {r.name for r in resources if r.kind == SERVICE}
    declared_families = {r.name for r in resources if r.kind == TASK_DEFINITION}
    arns = await list_service_arns(client, app.cluster)
    live = await client.describe_services(app.cluster, arns)  # ACTIVE and DRAINING, by name
    owned = {n: s for n, s in live.items() if s.get("status") == "ACTIVE" and _owned_by(app, s)}
    doomed = sorted(n for n in owned if n not in declared_services)
    reason = f"no longer declared in app {app.name!r} (tag {APP_TAG}={app.name})"
    services = tuple(
        PruneItem(
            f"{SERVICE}/{name}",
            SERVICE,
            name,
            str(owned[name].get("serviceArn", "")),
            reason,
            counted=True,
        )
        for name in doomed
    )

    # What stays in use: every task definition of every service that is not pruned.
    used_by: dict[str, str] = {}  # family:revision -> a service that uses it
    whole_family: dict[str, str] = {}  # family -> a service naming it without a revision
    for name in sorted(live):
        if name in doomed:
            continue
        for ref in task_definitions_of(live[name]):
            label = td_label(ref)
            if ":" in label:
                used_by.setdefault(label, name)
            else:
                whole_family.setdefault(label, name)

    families = {td_family(ref) for svc in owned.values() for ref in task_definitions_of(svc)}
    families |= {f for f in known_families if f}
    families -= declared_families
    found: dict[str, tuple[list[PruneItem], list[PruneItem]]] = {}

    async def one(family: str) -> None:
        found[family] = await _plan_family(client, app, family, used_by, whole_family)

    try:
        async with anyio.create_task_group() as tg:
            for family in sorted(families):
                tg.start_soon(one, family)
    except BaseExceptionGroup as group:
        raise leaf_error(group) from group

    items = list(services)
    kept: list[PruneItem] = []
    for family in sorted(found):
        gone, stay = found[family]
        items += gone
        kept += stay
    return PrunePlan(
        app=app.name,
        items=tuple(items),
        kept=tuple(kept),
        declared=len(declared_services),
        owned=len(owned),
    )


async def _plan_family(
    client: EcsClient,
    app: AppConfig,
    family: str,
    used_by: dict[str, str],
    whole_family: dict[str, str],
) -> tuple[list[PruneItem], list[PruneItem]]:
    """The revisions of an undeclared ``family`` to deregister, and those kept in use."""
    latest = await client.latest_task_definition(family, fresh=True)  # tags decide
    if latest is None or not _owned_by(app, latest):
        return [], []  # no ACTIVE revision, or the family is not the app's (any more)
    revisions = await list_active_revisions(client, family)
    tds: dict[str, dict[str, Any]] = {}

    async def describe(arn: str) -> None:
        tds[arn] = await client.task_definition(arn, fresh=True)  # its owner, now

    async with anyio.create_task_group() as tg:
        for arn in revisions:
            tg.start_soon(describe, arn)

    gone: list[PruneItem] = []
    kept: list[PruneItem] = []
    for arn in revisions:
        if not _owned_by(app, tds[arn]):
            continue  # not tagged for the app: never touched
        label = td_label(arn)
        user = used_by.get(label) or whole_family.get(family)
        if user is not None:
            why = f"still used by service {user!r} of cluster {app.cluster!r}"
            kept.append(PruneItem(f"{TASK_DEFINITION}/{label}", TASK_DEFINITION, label, arn, why))
            continue
        why = (
            f"family {family!r} is no longer declared in app {app.name!r} "
            f"(tag {APP_TAG}={app.name}) and no service of cluster {app.cluster!r} uses it"
        )
        gone.append(PruneItem(f"{TASK_DEFINITION}/{label}", TASK_DEFINITION, label, arn, why))
    return gone, kept


# -- prune ------------------------------------------------------------------------------


async def prune(
    client: EcsClient,
    app: AppConfig,
    plan: PrunePlan,
    journal: Journal | None = None,
    *,
    grace: float = 60.0,
    last_good: JsonRecord | None = None,
) -> ApplyResult:
    """Remove the plan's items in order: services (scaled to 0, then deleted), then revisions.

    Each service is described again first (one call per 10): one that is gone already
    or no longer carries the app's tag is skipped, and so are the revisions a skipped
    service runs. ``grace`` bounds a write finished
    after a cancellation. A deleted service leaves ``last_good`` (also when a later write
    fails), so a service created later under its name is never rolled back to a revision
    that prune deregistered.
    """
    deleted: set[str] = set()
    try:
        return await _prune(client, app, plan, journal, grace, deleted)
    finally:
        if last_good is not None and deleted:
            with anyio.CancelScope(shield=True):
                await _forget(last_good, deleted)


async def _prune(
    client: EcsClient,
    app: AppConfig,
    plan: PrunePlan,
    journal: Journal | None,
    grace: float,
    deleted: set[str],
) -> ApplyResult:
    unknown = sorted({i.kind for i in plan.items} - {SERVICE, TASK_DEFINITION})
    if unknown:
        raise PlanError(f"the ECS backend cannot prune {', '.join(unknown)}; nothing was changed")
    names = [i.name for i in plan.items if i.kind == SERVICE]
    live = await client.describe_services(app.cluster, names) if names else {}
    applied: list[Applied] = []

    async def write(item: PruneItem, op: str, send: Callable[[], Awaitable[Applied]]) -> None:
        await write_once(
            send,
            key=item.key,
            op=op,
            where=item.key,
            grace=grace,
            journal=journal,
            written=lambda: ApplyResult(app=app.name, applied=tuple(_merge(applied))),
            done=applied,
        )

    spared: dict[str, str] = {}  # family:revision -> the skipped service that runs it
    for item in plan.items:
        if item.kind != SERVICE:
            continue
        svc = live.get(item.name)
        if svc is None or svc.get("status") != "ACTIVE":
            log.info("prune.service_gone", app=app.name, service=item.name)
            continue
        if not _owned_by(app, svc):
            spared.update(dict.fromkeys(map(td_label, task_definitions_of(svc)), item.name))
            log.warning(
                "prune.service_skipped",
                app=app.name,
                service=item.name,
                owner=owner_of(svc.get("tags", [])),
                hint=f"its {APP_TAG} tag changed since the plan; it is left alone",
            )
            continue
        arn = str(svc.get("serviceArn") or item.arn)
        # DeleteService refuses a REPLICA service scaled above 0 unless forced; scaling to 0
        # first lets ECS drain its tasks the usual way, and an unforced delete is refused if
        # something scaled the service up again in between (a human, or autoscaling).
        if svc.get("schedulingStrategy", "REPLICA") != "DAEMON" and svc.get("desiredCount", 0):
            await write(item, "UpdateService", partial(_scale_to_zero, client, app, item.name))
        await write(item, "DeleteService", partial(_delete, client, app, item.name, arn))
        deleted.add(item.name)

    for item in plan.items:
        if item.kind != TASK_DEFINITION:
            continue
        user = spared.get(item.name) or spared.get(td_family(item.name))
        if user is not None:
            log.warning(
                "prune.revision_skipped",
                app=app.name,
                revision=item.name,
                hint=f"service {user!r}, which runs it, was left alone",
            )
            continue
        await write(item, "DeregisterTaskDefinition", partial(_deregister, client, item))
    return ApplyResult(app=app.name, applied=tuple(_merge(applied)))


async def _scale_to_zero(client: EcsClient, app: AppConfig, name: str) -> Applied:
    svc = await client.update_service({"cluster": app.cluster, "service": name, "desiredCount": 0})
    log.info("prune.scaled", app=app.name, service=name)
    return Applied(
        f"{SERVICE}/{name}", "scaled", str(svc.get("serviceArn", "")), "scaled to 0 to delete it"
    )


async def _delete(client: EcsClient, app: AppConfig, name: str, arn: str) -> Applied:
    async def recover() -> dict[str, Any] | None:
        """After a lost answer: deleted already when it is INACTIVE, DRAINING or gone."""
        out = await client.call("DescribeServices", cluster=app.cluster, services=[name])
        found = out.get("services", [])
        if found and found[0].get("status") == "ACTIVE":
            return None
        return {"service": found[0] if found else {"serviceArn": arn}}

    out = await client.call(
        "DeleteService", recover=recover, cluster=app.cluster, service=name, force=False
    )
    log.info("prune.deleted", app=app.name, service=name)
    done_arn = str(out.get("service", {}).get("serviceArn") or arn)
    return Applied(f"{SERVICE}/{name}", "deleted", done_arn, "deleted")


async def _deregister(client: EcsClient, item: PruneItem) -> Applied:
    async def recover() -> dict[str, Any] | None:
        """After a lost answer: deregistered already when the revision is not ACTIVE."""
        out = await client.call("DescribeTaskDefinition", taskDefinition=item.arn)
        td = out.get("taskDefinition", {})
        return None if td.get("status") == "ACTIVE" else {"taskDefinition": td}

    await client.call("DeregisterTaskDefinition", recover=recover, taskDefinition=item.arn)
    log.info("prune.deregistered", arn=item.arn)
    return Applied(item.key, "deregistered", item.arn, f"deregistered {item.name}")


async def _forget(record: JsonRecord, services: set[str]) -> None:
    """Drop deleted services from the last-good record (the caller holds the app's lock)."""

    def drop() -> None:
        data = record.load()
        if services & data.keys():
            record.save({k: v for k, v in data.items() if k not in services})

    try:
        await anyio.to_thread.run_sync(drop)
    except OSError as exc:
        log.warning("state.write_failed", path=str(record.path), error=str(exc))


def _merge(applied: list[Applied]) -> list[Applied]:
    """One entry per resource: a service scaled to 0 and deleted reads as one deletion."""
    out: dict[str, Applied] = {}
    for a in applied:
        prev = out.get(a.key)
        if prev is not None and prev.action == "scaled" and a.action == "deleted":
            out[a.key] = replace(a, message="scaled to 0 and deleted")
        else:
            out[a.key] = a
    return list(out.values())
