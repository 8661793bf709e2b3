"""Prune through the ECS backend against the local endpoint: only what carries the app's
tag and is no longer declared goes; revisions a service still uses, untagged resources and
another app's resources stay; lost answers and failing writes are reported honestly."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest

from gitopsd.backends.base import Applied, ApplyResult, PrunePlan
from gitopsd.backends.ecs import prune as ecs_prune
from gitopsd.backends.ecs.backend import EcsBackend
from gitopsd.config import AppConfig, AwsConfig, SyncPolicy
from gitopsd.errors import ApplyError
from gitopsd.local_aws.testing import LocalAws
from gitopsd.model import Origin, Resource
from gitopsd.state import StateDir

from .conftest import CLUSTER

T = TypeVar("T")
APP = AppConfig(name="web", source="s", cluster=CLUSTER, sync=SyncPolicy(prune=True))
WEB = [{"key": "gitopsd:app", "value": "web"}]
OTHER = [{"key": "gitopsd:app", "value": "other"}]
WRITES = ("UpdateService", "DeleteService", "DeregisterTaskDefinition", "CreateService")


class RecordingJournal:
    def __init__(self) -> None:
        self.writes: list[Applied] = []
        self.unsure_writes: list[str] = []

    def wrote(self, applied: Applied) -> None:
        self.writes.append(applied)

    def unsure(self, key: str, message: str) -> None:
        self.unsure_writes.append(f"{key}: {message}")


def register(ecs: Any, family: str, tags: list[dict[str, str]] | None = None) -> str:
    extra: dict[str, Any] = {"tags": tags} if tags else {}
    out = ecs.register_task_definition(
        family=family,
        containerDefinitions=[{"name": "app", "image": "nginx:1", "memory": 64}],
        **extra,
    )
    return str(out["taskDefinition"]["taskDefinitionArn"])


def service(ecs: Any, name: str, td: str, tags: list[dict[str, str]] | None = None) -> None:
    extra: dict[str, Any] = {"tags": tags} if tags else {}
    ecs.create_service(
        cluster=CLUSTER, serviceName=name, taskDefinition=td, desiredCount=1, **extra
    )


def declared(*names: tuple[str, str]) -> list[Resource]:
    return [Resource(kind, name, {}, Origin(f"{name}.yaml", 1)) for kind, name in names]


RESOURCES = declared(("TaskDefinition", "api"), ("Service", "api"))


def run(
    aws: LocalAws, tmp_path: Path, body: Callable[[EcsBackend], Awaitable[T]], attempts: int = 2
) -> T:
    config = AwsConfig(region="us-east-1", endpoint_url=aws.endpoint_url, max_attempts=attempts)

    async def main() -> T:
        async with EcsBackend(config, StateDir(tmp_path / "state")) as backend:
            return await body(backend)

    return anyio.run(main)


def status(ecs: Any, arn: str) -> str:
    return str(ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]["status"])


def listed(ecs: Any) -> set[str]:
    names: set[str] = set()
    for page in ecs.get_paginator("list_services").paginate(cluster=CLUSTER):
        names |= {arn.rsplit("/", 1)[-1] for arn in page["serviceArns"]}
    return names


def writes(aws: LocalAws) -> list[str]:
    return [c for c in aws.calls() if c in WRITES]


@pytest.fixture
def world(aws: LocalAws) -> dict[str, str]:
    """An app ``web`` that declares ``api`` and once had ``old-api``, beside others' services."""
    ecs = aws.boto3_client()
    arns = {
        "api:1": register(ecs, "api", WEB),
        "old-api:1": register(ecs, "old-api"),  # registered by hand: untagged
        "old-api:2": register(ecs, "old-api", WEB),
        "old-api:3": register(ecs, "old-api", WEB),
        "old-api:4": register(ecs, "old-api", WEB),
        "other:1": register(ecs, "other", OTHER),
        "manual:1": register(ecs, "manual"),
        "worker:1": register(ecs, "worker", WEB),  # no service runs it
    }
    service(ecs, "api", arns["api:1"], WEB)  # declared
    service(ecs, "old-api", arns["old-api:3"], WEB)  # no longer declared: pruned
    service(ecs, "shared", arns["old-api:2"])  # untagged, runs an old-api revision
    service(ecs, "manual", arns["manual:1"])  # untagged
    service(ecs, "other", arns["other:1"], OTHER)  # another app's
    for i in range(8):  # more than one ListServices page
        service(ecs, f"filler-{i}", arns["manual:1"])
    return arns


def test_plan_lists_only_the_apps_undeclared_resources_and_prune_removes_them(
    aws: LocalAws, world: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ecs = aws.boto3_client()
    monkeypatch.setattr(ecs_prune, "LIST_PAGE_SIZE", 4)  # 13 services: 4 pages
    record = StateDir(tmp_path / "state").last_good("web")
    # The app's record names a family no service runs any more; "api" is declared.
    record.update(api=world["api:1"], **{"old-api": world["old-api:3"]})
    record.update(worker=world["worker:1"])
    aws.clear_calls()

    plan = run(aws, tmp_path, lambda b: b.plan_prune(APP, RESOURCES))

    assert [i.key for i in plan.items] == [
        "Service/old-api",
        "TaskDefinition/old-api:3",
        "TaskDefinition/old-api:4",
        "TaskDefinition/worker:1",
    ]
    assert [i.key for i in plan.kept] == ["TaskDefinition/old-api:2"]
    assert "still used by service 'shared'" in plan.kept[0].reason
    svc = plan.items[0]
    assert svc.arn.endswith("/old-api")
    assert svc.reason == "no longer declared in app 'web' (tag gitopsd:app=web)"
    assert [i.key for i in plan.counted] == ["Service/old-api"]
    assert (plan.declared, plan.owned, plan.share) == (1, 2, 0.5)
    calls = aws.calls()
    assert calls.count("ListServices") == 4
    assert calls.count("DescribeServices") == 2  # 13 services, 10 per call
    assert writes(aws) == []  # planning is read-only

    aws.clear_calls()
    journal = RecordingJournal()
    result = run(aws, tmp_path, lambda b: b.prune(APP, plan, journal))

    assert writes(aws) == [
        "UpdateService",
        "DeleteService",
        "DeregisterTaskDefinition",
        "DeregisterTaskDefinition",
        "DeregisterTaskDefinition",
    ]
    assert [(a.key, a.action) for a in journal.writes] == [
        ("Service/old-api", "scaled"),
        ("Service/old-api", "deleted"),
        ("TaskDefinition/old-api:3", "deregistered"),
        ("TaskDefinition/old-api:4", "deregistered"),
        ("TaskDefinition/worker:1", "deregistered"),
    ]
    assert [(a.key, a.action, a.message) for a in result.applied] == [
        ("Service/old-api", "deleted", "scaled to 0 and deleted"),
        ("TaskDefinition/old-api:3", "deregistered", "deregistered old-api:3"),
        ("TaskDefinition/old-api:4", "deregistered", "deregistered old-api:4"),
        ("TaskDefinition/worker:1", "deregistered", "deregistered worker:1"),
    ]
    assert all(not a.rollout for a in result.applied)  # nothing for verify to follow
    assert not journal.unsure_writes

    gone = ecs.describe_services(cluster=CLUSTER, services=["old-api"])["services"]
    assert all(s["status"] == "INACTIVE" for s in gone)
    assert all(s["desiredCount"] == 0 for s in gone)
    assert listed(ecs) == {"api", "shared", "manual", "other"} | {f"filler-{i}" for i in range(8)}
    for name in ("api", "shared", "manual", "other"):
        (live,) = ecs.describe_services(cluster=CLUSTER, services=[name])["services"]
        assert (live["status"], live["desiredCount"]) == ("ACTIVE", 1), name
    assert {label: status(ecs, arn) for label, arn in world.items()} == {
        "api:1": "ACTIVE",
        "old-api:1": "ACTIVE",  # untagged: never touched
        "old-api:2": "ACTIVE",  # still used by "shared"
        "old-api:3": "INACTIVE",
        "old-api:4": "INACTIVE",
        "other:1": "ACTIVE",
        "manual:1": "ACTIVE",
        "worker:1": "INACTIVE",
    }
    # A deleted service leaves the rollback record; the others stay.
    assert record.load() == {"api": world["api:1"], "worker": world["worker:1"]}

    aws.clear_calls()
    again = run(aws, tmp_path, lambda b: b.plan_prune(APP, RESOURCES))
    assert (again.items, again.kept, again.owned, again.share) == ((), (), 1, 0.0)
    empty = run(aws, tmp_path, lambda b: b.prune(APP, again))
    assert empty == ApplyResult(app="web")
    assert writes(aws) == []


def test_nothing_is_pruned_when_everything_is_declared_or_not_the_apps(
    aws: LocalAws, world: dict[str, str], tmp_path: Path
) -> None:
    resources = [*RESOURCES, *declared(("TaskDefinition", "old-api"), ("Service", "old-api"))]
    plan = run(aws, tmp_path, lambda b: b.plan_prune(APP, resources))
    assert plan == PrunePlan(app="web", declared=2, owned=2)
    # An app that declares nothing would lose every service it owns: the share says so.
    everything = run(aws, tmp_path, lambda b: b.plan_prune(APP, []))
    assert [i.key for i in everything.counted] == ["Service/api", "Service/old-api"]
    assert everything.share == 1.0
    assert "TaskDefinition/api:1" in {i.key for i in everything.items}
    other = AppConfig(name="nobody", source="s", cluster=CLUSTER)
    assert run(aws, tmp_path, lambda b: b.plan_prune(other, [])) == PrunePlan(app="nobody")


def test_lost_answers_are_checked_before_the_writes_are_sent_again(
    aws: LocalAws, world: dict[str, str], tmp_path: Path
) -> None:
    plan = run(aws, tmp_path, lambda b: b.plan_prune(APP, RESOURCES))
    aws.arm_fault("DeleteService", "ServerException", phase="after")
    aws.arm_fault("DeregisterTaskDefinition", "drop", phase="after")
    aws.clear_calls()
    result = run(aws, tmp_path, lambda b: b.prune(APP, plan), attempts=3)
    injected = [(f["operation"], f["error"]) for f in aws.faults()["injected"]]
    assert injected == [("DeleteService", "ServerException"), ("DeregisterTaskDefinition", "drop")]
    assert [a.key for a in result.applied] == [i.key for i in plan.items]
    assert writes(aws).count("DeleteService") == 1  # the lost answer was not sent again
    assert writes(aws).count("DeregisterTaskDefinition") == len(plan.items) - 1
    ecs = aws.boto3_client()
    assert "old-api" not in listed(ecs)
    assert status(ecs, world["old-api:3"]) == "INACTIVE"


def test_a_failing_write_stops_the_prune_and_says_what_was_written(
    aws: LocalAws, world: dict[str, str], tmp_path: Path
) -> None:
    record = StateDir(tmp_path / "state").last_good("web")
    record.update(**{"old-api": world["old-api:3"]})
    plan = run(aws, tmp_path, lambda b: b.plan_prune(APP, RESOURCES))
    aws.arm_fault("DeleteService", "AccessDeniedException")
    journal = RecordingJournal()

    with pytest.raises(ApplyError) as caught:
        run(aws, tmp_path, lambda b: b.prune(APP, plan, journal))

    assert str(caught.value).startswith("Service/old-api: ECS DeleteService failed")
    assert not caught.value.temporary
    partial = caught.value.partial
    assert isinstance(partial, ApplyResult)
    assert [(a.key, a.action) for a in partial.applied] == [("Service/old-api", "scaled")]
    assert [(a.key, a.action) for a in journal.writes] == [("Service/old-api", "scaled")]
    ecs = aws.boto3_client()
    assert "old-api" in listed(ecs)  # not deleted, and no revision was deregistered
    assert status(ecs, world["old-api:4"]) == "ACTIVE"
    assert record.load() == {"old-api": world["old-api:3"]}

    # The next pass finishes the job: the service is at 0 already, so no second scale.
    aws.clear_calls()
    again = run(aws, tmp_path, lambda b: b.plan_prune(APP, RESOURCES))
    assert [i.key for i in again.items] == [i.key for i in plan.items]
    run(aws, tmp_path, lambda b: b.prune(APP, again))
    assert writes(aws) == ["DeleteService", "DeregisterTaskDefinition", "DeregisterTaskDefinition"]
    assert record.load() == {}


def test_a_service_retagged_since_the_plan_is_left_alone(
    aws: LocalAws, world: dict[str, str], tmp_path: Path
) -> None:
    plan = run(aws, tmp_path, lambda b: b.plan_prune(APP, RESOURCES))
    ecs = aws.boto3_client()
    ecs.tag_resource(resourceArn=plan.items[0].arn, tags=OTHER)  # another app took it over
    aws.clear_calls()
    result = run(aws, tmp_path, lambda b: b.prune(APP, plan))
    assert "UpdateService" not in writes(aws)
    assert "DeleteService" not in writes(aws)
    assert "old-api" in listed(ecs)
    # The revision it runs stays too; the one nothing uses goes.
    assert [a.key for a in result.applied] == ["TaskDefinition/old-api:4"]
    assert status(ecs, world["old-api:3"]) == "ACTIVE"
