"""An app's deployment history from what ECS keeps (the service deployments API and the
``gitopsd:revision`` tags), against the local ECS endpoint; and the rollback targets in it.

Nothing comes from gitopsd's state directory: a fresh client (a new machine) sees the
same history. The endpoint's clock is manual, so every rollout runs to its end in one
``advance`` and nothing sleeps.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest

from gitopsd.backends.ecs.backend import EcsBackend
from gitopsd.backends.ecs.client import EcsClient
from gitopsd.backends.ecs.history import (
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    ROLLED_BACK,
    HistoryEntry,
    app_history,
    last_completed,
    last_completed_commit,
    revision_task_definitions,
)
from gitopsd.backends.ecs.ownership import APP_TAG, REVISION_TAG
from gitopsd.config import AppConfig, AwsConfig
from gitopsd.errors import PlanError
from gitopsd.local_aws.testing import LocalAws
from gitopsd.state import StateDir

from .conftest import CLUSTER

T = TypeVar("T")

APP = AppConfig(name="shop", source="deploy", cluster=CLUSTER)
SERVICES = ["svc", "api"]
# C2 and C3 share their first 7 hex digits: a 7-digit prefix of either is ambiguous.
C1 = "a1b2c3d" + "1" * 33
C2 = "c0ffee0" + "2" * 33
C3 = "c0ffee0" + "3" * 33


@dataclass
class Shop:
    svc1: str
    svc2: str
    svc3: str
    api1: str


def register(ecs: Any, family: str, image: str, commit: str) -> str:
    out = ecs.register_task_definition(
        family=family,
        containerDefinitions=[{"name": "app", "image": image, "memory": 64}],
        tags=[{"key": APP_TAG, "value": APP.name}, {"key": REVISION_TAG, "value": commit}],
    )
    return str(out["taskDefinition"]["taskDefinitionArn"])


def create(ecs: Any, name: str, td: str, count: int) -> None:
    ecs.create_service(
        cluster=CLUSTER,
        serviceName=name,
        taskDefinition=td,
        desiredCount=count,
        deploymentConfiguration={"deploymentCircuitBreaker": {"enable": True, "rollback": True}},
    )


@pytest.fixture
def shop(aws: LocalAws) -> Shop:
    """C1 creates svc and api; C2 gives svc an image that cannot start (ECS rolls it
    back); C3 gives svc a good image. api keeps C1's revision throughout."""
    aws.configure(clock="manual", pace=1.0)
    ecs = aws.boto3_client()
    svc1, api1 = register(ecs, "svc", "nginx:1", C1), register(ecs, "api", "nginx:1", C1)
    create(ecs, "svc", svc1, 2)
    create(ecs, "api", api1, 1)
    aws.advance(30)
    svc2 = register(ecs, "svc", "nginx:broken", C2)
    ecs.update_service(cluster=CLUSTER, service="svc", taskDefinition=svc2)
    aws.advance(60)
    svc3 = register(ecs, "svc", "nginx:3", C3)
    ecs.update_service(cluster=CLUSTER, service="svc", taskDefinition=svc3)
    aws.advance(30)
    aws.clear_calls()
    return Shop(svc1, svc2, svc3, api1)


def config(aws: LocalAws) -> AwsConfig:
    return AwsConfig(region="us-east-1", endpoint_url=aws.endpoint_url, max_attempts=1)


def with_client(aws: LocalAws, func: Callable[[EcsClient], Awaitable[T]]) -> T:
    """``func`` on a fresh client: a new process, on a new machine, with no cache."""

    async def main() -> T:
        async with EcsClient(config(aws)) as client:
            return await func(client)

    return anyio.run(main)


def history(aws: LocalAws) -> list[HistoryEntry]:
    return with_client(aws, lambda c: app_history(c, APP, SERVICES))


def test_history_lists_each_deployment_newest_first_with_its_outcome_and_commit(
    aws: LocalAws, shop: Shop
) -> None:
    entries = history(aws)
    assert [(e.service, e.commit, e.outcome) for e in entries[:2]] == [
        ("svc", C3, COMPLETED),
        ("svc", C2, ROLLED_BACK),
    ]
    assert {(e.service, e.commit, e.outcome) for e in entries[2:]} == {
        ("svc", C1, COMPLETED),
        ("api", C1, COMPLETED),
    }
    assert len(entries) == 4
    newest, broken = entries[0], entries[1]
    assert newest.status == "SUCCESSFUL"
    assert newest.task_definition == shop.svc3
    assert newest.source_task_definitions == (shop.svc1,)  # ECS had rolled C2 back to svc:1
    assert broken.status == "ROLLBACK_SUCCESSFUL"
    assert broken.task_definition == shop.svc2
    assert broken.source_task_definitions == (shop.svc1,)
    assert "ECS rolled back to svc:1" in broken.reason
    tds = {(e.service, e.commit): e.task_definition for e in entries}
    assert tds[("svc", C1)] == shop.svc1
    assert tds[("api", C1)] == shop.api1
    for e in entries:
        assert e.service_deployment_arn.startswith("arn:aws:ecs:")
        assert e.started_at is not None
        assert e.finished_at is not None
        assert e.duration == e.finished_at - e.started_at
        assert e.duration >= 0
    assert newest.duration is not None
    assert newest.duration > 0
    starts = [e.started_at or 0.0 for e in entries]
    assert starts == sorted(starts, reverse=True)


def test_a_new_machine_sees_the_same_history_within_the_api_budget(
    aws: LocalAws, shop: Shop, tmp_path: Path
) -> None:
    first = history(aws)
    aws.clear_calls()
    assert history(aws) == first  # a fresh client: nothing cached, same answer
    assert Counter(aws.calls()) == {
        "ListServiceDeployments": 2,  # one page per service
        "DescribeServiceDeployments": 1,  # 4 deployments of both services, in one call
        "DescribeServiceRevisions": 1,
        "DescribeTaskDefinition": 4,  # svc:1, svc:2, svc:3, api:1
    }

    async def twice(client: EcsClient) -> None:
        await app_history(client, APP, SERVICES)
        aws.clear_calls()
        assert await app_history(client, APP, SERVICES) == first

    with_client(aws, twice)
    assert "DescribeTaskDefinition" not in aws.calls()  # task definitions cached by ARN

    async def through_backend() -> list[HistoryEntry]:
        async with EcsBackend(config(aws), StateDir(tmp_path / "fresh-state")) as backend:
            return await backend.history(APP, SERVICES)

    assert anyio.run(through_backend) == first
    # History writes no state; only the task definitions it described are cached.
    written = [p for p in (tmp_path / "fresh-state").rglob("*") if p.is_file()]
    assert [p.relative_to(tmp_path / "fresh-state").parts[0] for p in written] == ["cache"]


def test_revision_task_definitions_finds_each_services_revision_for_a_commit(
    aws: LocalAws, shop: Shop
) -> None:
    def at(commit: str) -> dict[str, str]:
        return with_client(aws, lambda c: revision_task_definitions(c, APP, SERVICES, commit))

    expected = {"svc": shop.svc1, "api": shop.api1}
    assert at(C1) == expected
    assert at(C1[:7]) == expected
    assert at(C1[:7].upper()) == expected
    # C3 changed svc only: api runs what it ran when C3 was deployed (C1's revision).
    assert at(C3[:8]) == {"svc": shop.svc3, "api": shop.api1}
    assert at(C2) == {"svc": shop.svc2, "api": shop.api1}

    with pytest.raises(PlanError, match="is ambiguous"):
        at(C3[:7])
    with pytest.raises(PlanError, match="at least 7 hex digits"):
        at(C1[:6])
    with pytest.raises(PlanError, match="no task definition tagged gitopsd:revision=ffffff"):
        at("f" * 40)

    async def ghost(client: EcsClient) -> dict[str, str]:
        return await revision_task_definitions(client, APP, [*SERVICES, "ghost"], C1)

    with pytest.raises(PlanError, match="no revision of ghost for commit a1b2c3d1111"):
        with_client(aws, ghost)


def test_rollback_without_a_revision_skips_the_commit_ecs_rolled_back(
    aws: LocalAws, shop: Shop, tmp_path: Path
) -> None:
    assert with_client(aws, lambda c: last_completed_commit(c, APP, SERVICES)) == C1

    async def targets(commit: str | None) -> tuple[str, dict[str, str]]:
        async with EcsBackend(config(aws), StateDir(tmp_path / "state")) as backend:
            return await backend.rollback_targets(APP, SERVICES, commit)

    assert anyio.run(targets, None) == (C1, {"svc": shop.svc1, "api": shop.api1})
    assert anyio.run(targets, C3[:8]) == (C3, {"svc": shop.svc3, "api": shop.api1})
    assert not [c for c in aws.calls() if not c.startswith(("Describe", "List"))]  # read-only


def test_an_endpoint_without_the_service_deployments_api_falls_back_to_deployments(
    aws: LocalAws, shop: Shop
) -> None:
    aws.arm_fault("ListServiceDeployments", "ServerException")  # as plain moto answers

    async def main(client: EcsClient) -> tuple[list[HistoryEntry], list[HistoryEntry]]:
        first = await app_history(client, APP, SERVICES)
        assert client.service_deployments_supported is False
        aws.clear_calls()
        return first, await app_history(client, APP, SERVICES)

    first, again = with_client(aws, main)
    assert "ListServiceDeployments" not in aws.calls()  # asked once per client
    assert [replace(e, reason="") for e in first] == [replace(e, reason="") for e in again]
    assert all("the endpoint has no service deployments API" in e.reason for e in again)
    assert {(e.service, e.commit, e.outcome, e.task_definition) for e in first} == {
        ("svc", C3, COMPLETED, shop.svc3),
        ("api", C1, COMPLETED, shop.api1),
    }
    for e in first:
        assert e.service_deployment_arn == ""
        assert "only the service's current deployments are known" in e.reason
        assert "the service deployments API is not available" in e.reason


def entry(service: str, commit: str, outcome: str, at: float) -> HistoryEntry:
    return HistoryEntry(
        service=service,
        service_deployment_arn="",
        status="",
        outcome=outcome,
        task_definition=f"arn:aws:ecs:us-east-1:1:task-definition/{service}:{int(at)}",
        source_task_definitions=(),
        commit=commit,
        started_at=at,
        finished_at=at + 1,
        duration=1.0,
        reason="",
    )


def test_last_completed_is_the_newest_fully_completed_commit_before_the_current_one() -> None:
    def newest_first(*entries: HistoryEntry) -> list[HistoryEntry]:
        return sorted(entries, key=lambda e: e.started_at or 0.0, reverse=True)

    good = [entry("svc", C1, COMPLETED, 1), entry("svc", C2, COMPLETED, 2)]
    assert last_completed(newest_first(*good, entry("svc", C3, COMPLETED, 3))) == C2
    # The current commit failed and ECS rolled it back: still the one before it.
    assert last_completed(newest_first(*good, entry("svc", C3, ROLLED_BACK, 3))) == C2
    # ... also after gitopsd redeployed C2's revision: C2 does not become "current".
    redeployed = newest_first(*good, entry("svc", C3, FAILED, 3), entry("svc", C2, COMPLETED, 4))
    assert last_completed(redeployed) == C2
    # One service of C2 did not complete: C2 is skipped.
    partial = [*good, entry("api", C2, FAILED, 2), entry("svc", C3, COMPLETED, 3)]
    assert last_completed(newest_first(*partial)) == C1
    # Untagged deployments (not gitopsd's) are ignored; one commit alone has no earlier one.
    assert last_completed([entry("svc", "", COMPLETED, 5), entry("svc", C1, COMPLETED, 1)]) is None
    assert last_completed([entry("svc", C2, IN_PROGRESS, 2), entry("svc", C1, COMPLETED, 1)]) == C1
