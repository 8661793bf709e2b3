"""The rollout watcher against the local ECS endpoint: outcomes judged by the deployment
gitopsd started, and temporary API errors while watching cost only a poll."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio

from gitopsd.backends.base import Applied, RolloutStatus
from gitopsd.backends.ecs.client import EcsClient
from gitopsd.backends.ecs.rollout import Target, watch_rollouts
from gitopsd.config import AppConfig, AwsConfig
from gitopsd.local_aws.testing import LocalAws
from gitopsd.state import JsonRecord

from .conftest import CLUSTER


def register(ecs: Any, image: str) -> str:
    out = ecs.register_task_definition(
        family="svc", containerDefinitions=[{"name": "app", "image": image, "memory": 64}]
    )
    return str(out["taskDefinition"]["taskDefinitionArn"])


def deploy(ecs: Any, arn: str, *, create: bool = False) -> Applied:
    at = time.time()
    if create:
        svc = ecs.create_service(
            cluster=CLUSTER,
            serviceName="svc",
            taskDefinition=arn,
            desiredCount=2,
            deploymentConfiguration={
                "deploymentCircuitBreaker": {"enable": True, "rollback": True}
            },
        )["service"]
    else:
        svc = ecs.update_service(cluster=CLUSTER, service="svc", taskDefinition=arn)["service"]
    primary = next(d for d in svc["deployments"] if d["status"] == "PRIMARY")
    return Applied(
        "Service/svc",
        "updated",
        svc["serviceArn"],
        "",
        arn,
        at,
        primary["id"],
        svc.get("currentServiceDeployment", ""),
    )


def watch(aws: LocalAws, applied: Applied, record: JsonRecord) -> list[RolloutStatus]:
    app = AppConfig(name="a", source="s", cluster=CLUSTER)
    config = AwsConfig(region="us-east-1", endpoint_url=aws.endpoint_url, max_attempts=1)

    async def main() -> list[RolloutStatus]:
        async with EcsClient(config) as client:
            return await watch_rollouts(
                client, app, [Target.of(applied)], timeout=20, poll_interval=0.05, last_good=record
            )

    return anyio.run(main)


def test_rollback_by_ecs_is_reported_through_api_errors(aws: LocalAws, tmp_path: Path) -> None:
    ecs = aws.boto3_client()
    record = JsonRecord(tmp_path / "last-good.json")
    good = register(ecs, "nginx:1")
    (status,) = watch(aws, deploy(ecs, good, create=True), record)
    assert status.state == "COMPLETED"
    assert record.load() == {"svc": good}

    bad = register(ecs, "nginx:broken")
    applied = deploy(ecs, bad)
    aws.inject_fault("DescribeServices", "ServerException", count=3)
    (status,) = watch(aws, applied, record)
    assert status.state == "ROLLED_BACK"
    assert status.message == "svc:2 failed (tasks failed to start); ECS rolled back to svc:1"
    assert any("deployment failed: tasks failed to start" in e for e in status.events)
    assert record.load() == {"svc": good}  # a failed revision is never recorded as good
    primary = next(
        d
        for d in ecs.describe_services(cluster=CLUSTER, services=["svc"])["services"][0][
            "deployments"
        ]
        if d["status"] == "PRIMARY"
    )
    assert primary["taskDefinition"] == good


def test_a_deployment_by_another_writer_is_replaced_not_rolled_back(
    aws: LocalAws, tmp_path: Path
) -> None:
    ecs = aws.boto3_client()
    record = JsonRecord(tmp_path / "last-good.json")
    good = register(ecs, "nginx:1")
    watch(aws, deploy(ecs, good, create=True), record)
    aws.configure(clock="manual")  # nothing moves until the test says so
    ours = deploy(ecs, register(ecs, "nginx:2"))
    theirs = register(ecs, "nginx:3")  # CI or the console deploys something else meanwhile
    ecs.update_service(cluster=CLUSTER, service="svc", taskDefinition=theirs)
    aws.configure(clock="real")
    (status,) = watch(aws, ours, record)
    assert status.state == "REPLACED"
    assert "replaced by a deployment gitopsd did not start, on svc:3" in status.message
    assert "rolled back" not in status.message
    assert status.temporary
    assert record.load() == {"svc": good}


def test_gitopsd_waits_for_the_circuit_breakers_rollback_instead_of_starting_its_own(
    aws: LocalAws, tmp_path: Path
) -> None:
    """ECS shows the FAILED deployment (ROLLBACK_REQUESTED) for a while before its rollback
    deployment appears; a second rollback by gitopsd in that window would race ECS."""
    ecs = aws.boto3_client()
    record = JsonRecord(tmp_path / "last-good.json")
    good = register(ecs, "nginx:1")
    watch(aws, deploy(ecs, good, create=True), record)
    aws.configure(clock="manual", pace=1.0)
    applied = deploy(ecs, register(ecs, "nginx:broken"))
    aws.clear_calls()
    app = AppConfig(name="a", source="s", cluster=CLUSTER)
    config = AwsConfig(region="us-east-1", endpoint_url=aws.endpoint_url, max_attempts=1)
    seen_window: list[str] = []

    async def main() -> list[RolloutStatus]:
        statuses: list[RolloutStatus] = []
        async with EcsClient(config) as client, anyio.create_task_group() as tg:

            async def drive() -> None:  # one simulated second per poll: every step is seen
                while True:
                    await anyio.sleep(0.03)
                    await anyio.to_thread.run_sync(aws.advance, 1.0)
                    svc = ecs.describe_services(cluster=CLUSTER, services=["svc"])["services"][0]
                    primary = next(d for d in svc["deployments"] if d["status"] == "PRIMARY")
                    if primary["rolloutState"] == "FAILED":
                        seen_window.append(primary["id"])

            tg.start_soon(drive)
            statuses = await watch_rollouts(
                client, app, [Target.of(applied)], timeout=30, poll_interval=0.01, last_good=record
            )
            tg.cancel_scope.cancel()
        return statuses

    (status,) = anyio.run(main)
    assert seen_window, "the simulation showed no FAILED PRIMARY window"
    assert status.state == "ROLLED_BACK"
    assert "ECS rolled back to svc:1" in status.message
    assert "UpdateService" not in aws.calls()  # gitopsd never rolled back on top of ECS
    assert env_td(ecs) == good


def env_td(ecs: Any) -> str:
    svc = ecs.describe_services(cluster=CLUSTER, services=["svc"])["services"][0]
    return str(svc["taskDefinition"])


def test_gitopsds_own_rollback_is_verified_and_a_failing_target_is_reported(
    aws: LocalAws, tmp_path: Path
) -> None:
    ecs = aws.boto3_client()
    record = JsonRecord(tmp_path / "last-good.json")
    good = register(ecs, "nginx:1")
    svc = ecs.create_service(
        cluster=CLUSTER, serviceName="svc", taskDefinition=good, desiredCount=2
    )["service"]  # no circuit breaker: ECS never gives up on its own
    first = Applied(
        "Service/svc",
        "created",
        svc["serviceArn"],
        "",
        good,
        time.time(),
        svc["deployments"][0]["id"],
    )
    assert watch(aws, first, record)[0].state == "COMPLETED"
    aws.configure(fail_images=["*:broken*", "nginx:1"])  # the last good revision breaks too
    applied = deploy(ecs, register(ecs, "nginx:broken"))

    app = AppConfig(name="a", source="s", cluster=CLUSTER)
    config = AwsConfig(region="us-east-1", endpoint_url=aws.endpoint_url, max_attempts=1)

    async def main() -> list[RolloutStatus]:
        async with EcsClient(config) as client:
            return await watch_rollouts(
                client, app, [Target.of(applied)], timeout=1, poll_interval=0.05, last_good=record
            )

    (status,) = anyio.run(main)
    assert status.state == "FAILED"
    assert "gitopsd's rollback to svc:1 failed too" in status.message
    assert "the service needs a human" in status.message
