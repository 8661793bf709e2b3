"""Rollout verdicts from ``deployments[]`` alone (an endpoint without the service
deployments API): what ECS says decides, never "a newer deployment completed"."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gitopsd.backends.ecs.rollout import RolloutWatcher, Target
from gitopsd.config import AppConfig

APP = AppConfig(name="a", source="s", cluster="c")
T0 = 1_700_000_000.0
OURS, OLD, OTHER = "arn:td/svc:2", "arn:td/svc:1", "arn:td/svc:3"


def deployment(
    id_: str, td: str, status: str, state: str, *, at: float, reason: str = ""
) -> dict[str, Any]:
    return {
        "id": id_,
        "taskDefinition": td,
        "status": status,
        "rolloutState": state,
        "rolloutStateReason": reason,
        "createdAt": datetime.fromtimestamp(at, UTC),
        "desiredCount": 2,
        "runningCount": 0,
    }


def service(*deployments: dict[str, Any], breaker_rollback: bool = True) -> dict[str, Any]:
    return {
        "serviceName": "svc",
        "deployments": list(deployments),
        "events": [],
        "deploymentConfiguration": {
            "deploymentCircuitBreaker": {"enable": breaker_rollback, "rollback": breaker_rollback}
        },
    }


def watcher() -> RolloutWatcher:
    target = Target("svc", "Service/svc", OURS, "ecs-svc/2", since=T0)
    return RolloutWatcher(APP, target, None)


def test_a_newer_completed_deployment_by_someone_else_is_replaced() -> None:
    w = watcher()
    assert (
        w.observe(service(deployment("ecs-svc/2", OURS, "PRIMARY", "IN_PROGRESS", at=T0)), None)
        is None
    )
    verdict = w.observe(
        service(deployment("ecs-svc/3", OTHER, "PRIMARY", "COMPLETED", at=T0 + 5)), None
    )
    assert verdict is not None
    assert verdict.state == "REPLACED"
    assert "svc:3" in verdict.message


def test_a_failed_primary_with_breaker_rollback_waits_for_ecs() -> None:
    w = watcher()
    failed = deployment("ecs-svc/2", OURS, "PRIMARY", "FAILED", at=T0)
    assert w.observe(service(failed), None) is None  # ECS's rollback comes next
    rollback = deployment(
        "ecs-svc/9", OLD, "PRIMARY", "IN_PROGRESS", at=T0 + 3,
        reason="ECS deployment circuit breaker: rolling back to deploymentId ecs-svc/1.",
    )  # fmt: skip
    failed_active = dict(failed, status="ACTIVE")
    assert w.observe(service(rollback, failed_active), None) is None
    verdict = w.observe(service(dict(rollback, rolloutState="COMPLETED")), None)
    assert verdict is not None
    assert (verdict.state, verdict.by_ecs) == ("ROLLED_BACK", True)
    assert "ECS rolled back to svc:1" in verdict.message


def test_a_failed_primary_without_breaker_rollback_is_failed_for_gitopsd_to_handle() -> None:
    w = watcher()
    failed = deployment("ecs-svc/2", OURS, "PRIMARY", "FAILED", at=T0, reason="tasks failed")
    verdict = w.observe(service(failed, breaker_rollback=False), None)
    assert verdict is not None
    assert (verdict.state, verdict.by_ecs) == ("FAILED", False)


def test_a_new_deployment_of_the_same_revision_is_followed() -> None:
    w = watcher()
    again = deployment("ecs-svc/5", OURS, "PRIMARY", "IN_PROGRESS", at=T0 + 2)
    assert w.observe(service(again), None) is None
    assert w.target.deployment_id == "ecs-svc/5"
    verdict = w.observe(service(dict(again, rolloutState="COMPLETED")), None)
    assert verdict is not None
    assert verdict.state == "COMPLETED"
