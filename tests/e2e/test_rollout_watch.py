"""The rollout watcher against the local ECS endpoint: outcomes judged by the deployment
gitopsd started, and temporary API errors while watching cost only a poll."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio

from gitopsd.backends.base import Applied, RolloutStatus
from gitopsd.backends.ecs.client import EcsClient
from gitopsd.backends.ecs.rollout import watch_rollouts
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
    return Applied("Service/svc", "updated", svc["serviceArn"], "", arn, at, primary["id"])


def watch(aws: LocalAws, applied: Applied, record: JsonRecord) -> list[RolloutStatus]:
    app = AppConfig(name="a", source="s", cluster=CLUSTER)
    config = AwsConfig(region="us-east-1", endpoint_url=aws.endpoint_url, max_attempts=1)

    async def main() -> list[RolloutStatus]:
        async with EcsClient(config) as client:
            return await watch_rollouts(
                client, app, [applied], timeout=20, poll_interval=0.05, last_good=record
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
