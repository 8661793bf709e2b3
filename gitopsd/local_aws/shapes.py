"""The simulation's state in the ECS API's response shapes.

One function per shape of botocore's ECS model (Deployment, ServiceEvent,
ServiceDeployment, ServiceDeploymentBrief, ServiceRevision,
ServiceCurrentRevisionSummary), returning plain dicts in API spelling that
moto's serializer writes out as they are. Keeping this apart from
:mod:`gitopsd.local_aws.deployments` lets the state machine stay free of wire
details, and lets tests check shapes without a server.
"""

from __future__ import annotations

from typing import Any

from gitopsd.local_aws.deployments import ServiceSim
from gitopsd.local_aws.records import (
    HOOK_PAUSE,
    MONITOR_DISABLED,
    MONITOR_TRIGGERED,
    Deployment,
    HookRun,
    Revision,
    RevisionCounts,
    ServiceDeploymentRecord,
    ServiceEvent,
)

#: Revision config keys that a Deployment entry repeats.
DEPLOYMENT_CONFIG_KEYS = (
    "capacityProviderStrategy",
    "launchType",
    "platformVersion",
    "platformFamily",
    "networkConfiguration",
    "serviceConnectConfiguration",
    "volumeConfigurations",
)

#: Revision config keys that a ServiceRevision reports.
REVISION_CONFIG_KEYS = (
    "capacityProviderStrategy",
    "launchType",
    "platformVersion",
    "platformFamily",
    "loadBalancers",
    "serviceRegistries",
    "networkConfiguration",
    "serviceConnectConfiguration",
    "volumeConfigurations",
)


def _copy_present(target: dict[str, Any], source: Any, keys: tuple[str, ...]) -> None:
    for key in keys:
        value = source.get(key)
        if value is not None and value != [] and value != {}:
            target[key] = value


def deployment_shape(deployment: Deployment) -> dict[str, Any]:
    """A ``Deployment`` (an entry of ``Service.deployments``)."""
    out: dict[str, Any] = {
        "id": deployment.id,
        "status": deployment.status,
        "taskDefinition": deployment.task_definition,
        "desiredCount": deployment.desired_count,
        "pendingCount": len(deployment.pending),
        "runningCount": len(deployment.running),
        "failedTasks": deployment.failed_tasks,
        "createdAt": deployment.created_at,
        "updatedAt": deployment.updated_at,
        "rolloutState": deployment.rollout_state,
        "rolloutStateReason": deployment.rollout_state_reason,
    }
    _copy_present(out, deployment.revision.config, DEPLOYMENT_CONFIG_KEYS)
    return out


def event_shape(event: ServiceEvent) -> dict[str, Any]:
    """A ``ServiceEvent``."""
    return {"id": event.id, "createdAt": event.created_at, "message": event.message}


def revision_summary(
    sim: ServiceSim, record: ServiceDeploymentRecord, revision_arn: str
) -> dict[str, Any]:
    """A ``ServiceRevisionSummary`` of one revision within a service deployment.

    Blue/green family: the target carries the requested production and test
    traffic weights, the blue source the rest (other sources 0).
    """
    out = _revision_counts(revision_arn, sim.record_counts(record, revision_arn))
    if record.production_weight is not None and record.test_weight is not None:
        if revision_arn == record.target.arn:
            production, test = record.production_weight, record.test_weight
        elif revision_arn == record.blue_revision_arn:
            production, test = 100.0 - record.production_weight, 100.0 - record.test_weight
        else:
            production = test = 0.0
        out["requestedProductionTrafficWeight"] = production
        out["requestedTestTrafficWeight"] = test
    return out


def current_service_revisions(sim: ServiceSim) -> list[dict[str, Any]]:
    """``Service.currentServiceRevisions``: every revision with a deployment in the list."""
    seen: list[str] = []
    for deployment in sim.deployments:
        if deployment.revision.arn not in seen:
            seen.append(deployment.revision.arn)
    return [_revision_counts(arn, sim.revision_counts(arn)) for arn in seen]


def _revision_counts(arn: str, counts: RevisionCounts) -> dict[str, Any]:
    """The members ServiceRevisionSummary and ServiceCurrentRevisionSummary share."""
    return {
        "arn": arn,
        "requestedTaskCount": counts.requested,
        "runningTaskCount": counts.running,
        "pendingTaskCount": counts.pending,
    }


def _deployment_members(sim: ServiceSim, record: ServiceDeploymentRecord) -> dict[str, Any]:
    """The members ServiceDeployment and ServiceDeploymentBrief share."""
    out: dict[str, Any] = {
        "serviceDeploymentArn": record.arn,
        "serviceArn": sim.identity.service_arn,
        "clusterArn": sim.identity.cluster_arn,
        "createdAt": record.created_at,
        "startedAt": record.started_at,
        "status": record.status,
    }
    if record.finished_at is not None:
        out["finishedAt"] = record.finished_at
    if record.status_reason:
        out["statusReason"] = record.status_reason
    return out


def service_deployment_shape(sim: ServiceSim, record: ServiceDeploymentRecord) -> dict[str, Any]:
    """A ``ServiceDeployment`` (DescribeServiceDeployments)."""
    out: dict[str, Any] = {
        **_deployment_members(sim, record),
        "updatedAt": record.updated_at,
        "sourceServiceRevisions": [revision_summary(sim, record, r.arn) for r in record.sources],
        "targetServiceRevision": revision_summary(sim, record, record.target.arn),
        "deploymentConfiguration": record.deployment_configuration,
        "deploymentCircuitBreaker": {
            "status": record.breaker_status,
            "failureCount": record.breaker_failure_count,
            "threshold": record.breaker_threshold,
        },
        "alarms": _alarms(record),
    }
    if record.lifecycle_stage is not None:
        out["lifecycleStage"] = record.lifecycle_stage
    if record.hook_runs:
        out["lifecycleHookDetails"] = [hook_detail(run) for run in record.hook_runs]
    if record.stopped_at is not None:
        out["stoppedAt"] = record.stopped_at
    if record.rollback is not None:
        out["rollback"] = {
            "reason": record.rollback.reason,
            "startedAt": record.rollback.started_at,
            "serviceRevisionArn": record.rollback.service_revision_arn,
        }
    return out


def hook_detail(run: HookRun) -> dict[str, Any]:
    """A ``DeploymentLifecycleHookDetail`` (PAUSE hooks carry expiry and timeout action)."""
    out: dict[str, Any] = {
        "hookId": run.hook_id,
        "targetType": run.target_type,
        "status": run.status,
    }
    if run.target_arn:
        out["targetArn"] = run.target_arn
    if run.target_type == HOOK_PAUSE:
        out["expiresAt"] = run.due_at
        if run.timeout_action:
            out["timeoutAction"] = run.timeout_action
    return out


def _alarms(record: ServiceDeploymentRecord) -> dict[str, Any]:
    """``ServiceDeploymentAlarms``: DISABLED, MONITORING, TRIGGERED or MONITORING_COMPLETE."""
    if record.alarm_status == MONITOR_DISABLED:
        return {"status": MONITOR_DISABLED}
    out: dict[str, Any] = {"status": record.alarm_status, "alarmNames": list(record.alarm_names)}
    if record.alarm_status == MONITOR_TRIGGERED:
        out["triggeredAlarmNames"] = list(record.triggered_alarms)
    return out


def service_deployment_brief(sim: ServiceSim, record: ServiceDeploymentRecord) -> dict[str, Any]:
    """A ``ServiceDeploymentBrief`` (ListServiceDeployments)."""
    return {**_deployment_members(sim, record), "targetServiceRevisionArn": record.target.arn}


def service_revision_shape(sim: ServiceSim, revision: Revision) -> dict[str, Any]:
    """A ``ServiceRevision`` (DescribeServiceRevisions)."""
    out: dict[str, Any] = {
        "serviceRevisionArn": revision.arn,
        "serviceArn": sim.identity.service_arn,
        "clusterArn": sim.identity.cluster_arn,
        "taskDefinition": revision.task_definition,
        "containerImages": [
            {"containerName": name, "image": image} for name, image in revision.images
        ],
        "guardDutyEnabled": False,
        "createdAt": revision.created_at,
    }
    _copy_present(out, revision.config, REVISION_CONFIG_KEYS)
    return out
