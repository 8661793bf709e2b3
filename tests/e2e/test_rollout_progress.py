"""Rollout stage changes against the local ECS endpoint: each one reported once, in order.

The watcher is driven in lock step with the endpoint's manual clock (advance one
simulated second, then wait until the watcher has polled twice), so every stage the
simulation passes through is seen, and the test can show that a poll which sees
the same stage, or only task counts moving, reports nothing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio

from gitopsd.backends.base import Applied, RolloutProgress, RolloutStage, RolloutStatus
from gitopsd.backends.ecs.client import EcsClient
from gitopsd.backends.ecs.rollout import Target, watch_rollouts
from gitopsd.config import AppConfig, AwsConfig
from gitopsd.local_aws.testing import LocalAws
from gitopsd.state import JsonRecord

from .conftest import CLUSTER
from .test_rollout_watch import deploy, register, watch

APP = AppConfig(name="a", source="s", cluster=CLUSTER)


def transitions(seen: list[RolloutProgress]) -> list[tuple[str, str]]:
    return [(str(p.previous), str(p.stage)) for p in seen]


def assert_chained(seen: list[RolloutProgress]) -> None:
    """Each report starts where the previous one of its deployment ended; none repeats."""
    last: dict[str, RolloutStage] = {}
    for p in seen:
        assert p.stage != p.previous, p
        assert p.previous == last.get(p.deployment, RolloutStage()), (p, last)
        last[p.deployment] = p.stage
    steps = [(p.deployment, str(p.previous), str(p.stage)) for p in seen]
    assert len(set(steps)) == len(steps), steps


def polls(aws: LocalAws) -> int:
    return aws.calls().count("DescribeServices")


def watch_in_lock_step(
    aws: LocalAws, target: Target, record: JsonRecord, *, api: bool = True, timeout: float = 30
) -> tuple[RolloutStatus, list[RolloutProgress]]:
    """Watch ``target`` while the clock moves one simulated second per two polls."""
    config = AwsConfig(region="us-east-1", endpoint_url=aws.endpoint_url, max_attempts=1)
    seen: list[RolloutProgress] = []

    async def main() -> list[RolloutStatus]:
        statuses: list[RolloutStatus] = []
        async with EcsClient(config) as client, anyio.create_task_group() as tg:
            if not api:
                client.service_deployments_supported = False  # deployments[] only

            async def drive() -> None:
                while True:
                    before = await anyio.to_thread.run_sync(polls, aws)
                    with anyio.fail_after(10):  # polling with a deadline
                        while True:
                            if await anyio.to_thread.run_sync(polls, aws) >= before + 2:
                                break
                            await anyio.sleep(0.01)
                    await anyio.to_thread.run_sync(aws.advance, 1.0)

            tg.start_soon(drive)
            statuses = await watch_rollouts(
                client,
                APP,
                [target],
                timeout=timeout,
                poll_interval=0.01,
                last_good=record,
                on_progress=seen.append,
            )
            tg.cancel_scope.cancel()
        return statuses

    (status,) = anyio.run(main)
    return status, seen


def started(aws: LocalAws, tmp_path: Path, image: str) -> tuple[Any, JsonRecord, Target]:
    """A service COMPLETED on nginx:1 (circuit breaker with rollback), then ``image`` deployed
    with the clock stopped."""
    ecs = aws.boto3_client()
    record = JsonRecord(tmp_path / "last-good.json")
    assert watch(aws, deploy(ecs, register(ecs, "nginx:1"), create=True), record)[0].ok
    aws.configure(clock="manual", pace=1.0)
    return ecs, record, Target.of(deploy(ecs, register(ecs, image)))


def test_a_good_rollout_reports_in_progress_then_successful_once_each(
    aws: LocalAws, tmp_path: Path
) -> None:
    _, record, target = started(aws, tmp_path, "nginx:2")
    status, seen = watch_in_lock_step(aws, target, record)
    assert status.state == "COMPLETED"
    assert transitions(seen) == [("", "IN_PROGRESS"), ("IN_PROGRESS", "SUCCESSFUL")]
    assert_chained(seen)
    # Tasks started one per simulated second: counts moved on polls that reported nothing.
    assert sum("running" in e for e in status.events) > len(seen)
    first, last = seen
    assert first.key == "Service/svc"
    assert first.deployment == target.service_deployment
    assert first.deployment.startswith("arn:aws:ecs:")
    assert first.target == target.td_arn
    assert first.strategy == "ROLLING"
    assert not first.rollback
    # The counts of the poll that saw the change (DescribeServices may lag the service
    # deployment by a step).
    assert dict(last.details)["desired"] == "2"
    assert {k for k, _ in last.details} == {"desired", "failed", "pending", "running"}
    assert last.message == "Service/svc: svc:2: IN_PROGRESS -> SUCCESSFUL"


def test_a_failing_rollout_reports_ecss_rollback_stage_by_stage(
    aws: LocalAws, tmp_path: Path
) -> None:
    _, record, target = started(aws, tmp_path, "nginx:broken")
    status, seen = watch_in_lock_step(aws, target, record)
    assert status.state == "ROLLED_BACK"
    assert transitions(seen) == [
        ("", "IN_PROGRESS"),
        ("IN_PROGRESS", "ROLLBACK_REQUESTED"),
        ("ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS"),
        ("ROLLBACK_IN_PROGRESS", "ROLLBACK_SUCCESSFUL"),
    ]
    assert_chained(seen)
    assert {p.deployment for p in seen} == {target.service_deployment}
    assert not any(p.rollback for p in seen)  # ECS's rollback, not gitopsd's


def test_without_the_service_deployments_api_stages_come_from_deployments(
    aws: LocalAws, tmp_path: Path
) -> None:
    _, record, target = started(aws, tmp_path, "nginx:broken")
    aws.clear_calls()
    status, seen = watch_in_lock_step(aws, target, record, api=False)
    assert status.state == "ROLLED_BACK"
    assert transitions(seen) == [
        ("", "IN_PROGRESS"),
        ("IN_PROGRESS", "FAILED"),
        ("FAILED", "ROLLBACK_IN_PROGRESS"),
        ("ROLLBACK_IN_PROGRESS", "ROLLBACK_COMPLETED"),
    ]
    assert_chained(seen)
    assert "DescribeServiceDeployments" not in aws.calls()


def test_gitopsds_own_rollback_reports_its_deployment_as_a_rollback(
    aws: LocalAws, tmp_path: Path
) -> None:
    ecs = aws.boto3_client()
    record = JsonRecord(tmp_path / "last-good.json")
    good = register(ecs, "nginx:1")
    svc = ecs.create_service(
        cluster=CLUSTER, serviceName="svc", taskDefinition=good, desiredCount=2
    )["service"]  # no circuit breaker: ECS never gives up, gitopsd rolls back at the timeout
    first = Applied(
        "Service/svc", "created", svc["serviceArn"], "", good, time.time(),
        svc["deployments"][0]["id"],
    )  # fmt: skip
    assert watch(aws, first, record)[0].ok
    aws.configure(clock="manual", pace=1.0)
    target = Target.of(deploy(ecs, register(ecs, "nginx:broken")))
    # No verdict within 3 (wall) seconds: gitopsd rolls back to svc:1 and follows that too.
    status, seen = watch_in_lock_step(aws, target, record, timeout=3)
    assert status.state == "ROLLED_BACK", status.message
    ours = [p for p in seen if not p.rollback]
    back = [p for p in seen if p.rollback]
    assert transitions(ours) == [("", "IN_PROGRESS")]  # failing tasks are replaced: no verdict
    assert transitions(back) == [("", "IN_PROGRESS"), ("IN_PROGRESS", "SUCCESSFUL")]
    assert {p.target for p in back} == {good}
    assert back[0].deployment != ours[0].deployment
    assert back[-1].message == "Service/svc: rollback to svc:1: IN_PROGRESS -> SUCCESSFUL"
    assert_chained(seen)
