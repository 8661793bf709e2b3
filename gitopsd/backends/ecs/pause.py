"""PAUSE hooks: which of an app's service deployments wait for approval, and acting on one.

ECS (since 2026) lets a blue/green, linear or canary deployment stop at a
``PAUSE`` lifecycle hook until ``ContinueServiceDeployment(serviceDeploymentArn,
hookId, action)`` says CONTINUE or ROLLBACK, or the hook's timeout passes and
ECS takes its ``timeoutAction``. ``gitopsd approve`` (and approver plugins, see
:mod:`gitopsd.engine.approvals`) need the hooks awaiting action, found with the
API floor in mind:

- ListServiceDeployments(status IN_PROGRESS) per service of the app (one page:
  a service has at most one deployment in progress);
- DescribeServiceDeployments of those, 20 per call, all services together;
- DescribeServiceRevisions of the targets of the paused ones (20 per call), for
  the task definition being rolled out. Nothing more when nothing is paused.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gitopsd.backends.base import PausedHook
from gitopsd.backends.ecs.client import EcsClient, cause_code, gather
from gitopsd.config import AppConfig
from gitopsd.errors import BackendRejected, PlanError

#: The actions ContinueServiceDeployment takes.
ACTIONS = ("CONTINUE", "ROLLBACK")
#: Service deployment statuses in which a hook can still await action.
_ONGOING = ("PENDING", "IN_PROGRESS")


async def paused_hooks(
    client: EcsClient, app: AppConfig, services: Sequence[str]
) -> list[PausedHook]:
    """The PAUSE hooks awaiting action in ``services``' deployments in progress, in the
    order of ``services``."""
    names = list(dict.fromkeys(services))
    briefs: dict[str, list[str]] = {}

    async def one(name: str) -> None:
        try:
            found = await client.list_service_deployments(app.cluster, name, list(_ONGOING))
        except BackendRejected as exc:
            if cause_code(exc) == "ServiceNotFoundException":
                return  # not created yet: nothing of it can be paused
            raise
        briefs[name] = [
            str(b.get("serviceDeploymentArn", "")) for b in found if b.get("serviceDeploymentArn")
        ]

    await gather(one, names)
    arns = [a for n in names for a in briefs.get(n, [])]
    if not arns:
        return []
    described = await client.describe_service_deployments(arns)
    waiting: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for name in names:
        for arn in briefs.get(name, []):
            sd = described.get(arn)
            if sd is None or str(sd.get("status", "")) not in _ONGOING:
                continue
            for hook in sd.get("lifecycleHookDetails") or []:
                if hook.get("targetType") == "PAUSE" and hook.get("status") == "AWAITING_ACTION":
                    waiting.append((name, sd, hook))
    if not waiting:
        return []
    targets = [_target_revision(sd) for _, sd, _ in waiting]
    revisions = await client.describe_service_revisions([t for t in dict.fromkeys(targets) if t])
    return [
        PausedHook(
            key=f"Service/{name}",
            service=name,
            deployment=str(sd.get("serviceDeploymentArn", "")),
            hook_id=str(hook.get("hookId", "")),
            stage=str(sd.get("lifecycleStage", "")),
            expires_at=_ts(hook.get("expiresAt")),
            timeout_action=str(hook.get("timeoutAction", "")),
            target_revision=target,
            target=str((revisions.get(target) or {}).get("taskDefinition", "")),
        )
        for (name, sd, hook), target in zip(waiting, targets, strict=True)
    ]


async def continue_service_deployment(
    client: EcsClient, deployment: str, hook_id: str, action: str
) -> None:
    """ContinueServiceDeployment: ``action`` CONTINUE or ROLLBACK on ``hook_id``."""
    if action not in ACTIONS:
        raise PlanError(f"unknown hook action {action!r}: use {' or '.join(ACTIONS)}")
    await client.call(
        "ContinueServiceDeployment",
        serviceDeploymentArn=deployment,
        hookId=hook_id,
        action=action,
    )


def _target_revision(sd: dict[str, Any]) -> str:
    return str((sd.get("targetServiceRevision") or {}).get("arn", ""))


def _ts(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return None
