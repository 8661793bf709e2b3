"""Cached task definitions and their tags: content from the cache, ownership read afresh.

A revision's content never changes, so a no-op plan takes it from the cache;
its tags can, so a plan that would write (a new revision, a retag) reads them
again first and refuses a revision another app took meanwhile. gitopsd's own
tag writes drop the cached copy at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import pytest

from gitopsd.backends.ecs.client import EcsClient
from gitopsd.backends.ecs.planner import plan_app
from gitopsd.backends.ecs.tdcache import TaskDefinitionCache
from gitopsd.config import AppConfig, AwsConfig
from gitopsd.errors import PlanError, leaf_error
from gitopsd.local_aws.testing import LocalAws
from gitopsd.model import Action, Origin, Resource

from .conftest import CLUSTER

T = TypeVar("T")
APP = AppConfig(name="web", source="git", path="app", cluster=CLUSTER)
CONTAINER = {"name": "main", "image": "busybox:1.36.1", "memory": 128}


def resources(image: str = "busybox:1.36.1") -> list[Resource]:
    td = {
        "family": "web",
        "requiresCompatibilities": ["EC2"],
        "containerDefinitions": [dict(CONTAINER, image=image)],
    }
    svc = {"serviceName": "web", "taskDefinition": "web", "desiredCount": 1, "launchType": "EC2"}
    return [
        Resource("TaskDefinition", "web", td, Origin("app/web.yaml", 1)),
        Resource("Service", "web", svc, Origin("app/web.yaml", 8)),
    ]


@pytest.fixture
def arn(aws: LocalAws) -> str:
    ecs = aws.boto3_client("ecs")
    tags = [{"key": "gitopsd:app", "value": "web"}]
    out = ecs.register_task_definition(
        family="web", requiresCompatibilities=["EC2"], containerDefinitions=[CONTAINER], tags=tags
    )
    ecs.create_service(
        cluster=CLUSTER, serviceName="web", taskDefinition="web", desiredCount=1, launchType="EC2"
    )
    found: str = out["taskDefinition"]["taskDefinitionArn"]
    return found


def with_client(
    aws: LocalAws, cache: TaskDefinitionCache, func: Callable[[EcsClient], Awaitable[T]]
) -> T:
    async def main() -> T:
        aws_config = AwsConfig(region="us-east-1", endpoint_url=aws.endpoint_url, max_attempts=2)
        async with EcsClient(aws_config, td_cache=cache) as client:
            return await func(client)

    return anyio.run(main)


def described(aws: LocalAws) -> int:
    return aws.calls().count("DescribeTaskDefinition")


def plan(aws: LocalAws, cache: TaskDefinitionCache, image: str = "busybox:1.36.1") -> Any:
    aws.clear_calls()
    try:
        return with_client(aws, cache, lambda c: plan_app(c, APP, resources(image), None))
    except BaseExceptionGroup as group:  # the planner's task group: the error it holds
        raise leaf_error(group) from group


def test_a_write_reads_the_owner_afresh(aws: LocalAws, arn: str) -> None:
    cache = TaskDefinitionCache()
    assert plan(aws, cache).resources[0].action is Action.NOOP
    assert described(aws) == 1
    assert plan(aws, cache).resources[0].action is Action.NOOP
    assert described(aws) == 0  # from the cache

    # Another app takes the family's revision (outside this process).
    aws.boto3_client("ecs").tag_resource(
        resourceArn=arn, tags=[{"key": "gitopsd:app", "value": "other"}]
    )
    assert plan(aws, cache).resources[0].action is Action.NOOP  # nothing to write: cached
    assert described(aws) == 0
    with pytest.raises(PlanError, match="belongs to app 'other'"):
        plan(aws, cache, image="busybox:1.36.2")  # a new revision would follow: read again
    assert described(aws) == 1
    with pytest.raises(PlanError, match="belongs to app 'other'"):
        plan(aws, cache)  # and the cache now holds the tags as they are


def test_gitopsd_s_own_tag_writes_drop_the_cached_copy(aws: LocalAws, arn: str) -> None:
    cache = TaskDefinitionCache()
    plan(aws, cache)
    assert cache.get(arn) is not None

    async def retag(client: EcsClient) -> None:
        await client.call("TagResource", resourceArn=arn, tags=[{"key": "team", "value": "a"}])

    with_client(aws, cache, retag)
    assert cache.get(arn) is None
    plan(aws, cache)
    assert described(aws) == 1
    cached = cache.get(arn)
    assert cached is not None
    assert {"key": "team", "value": "a"} in cached["tags"]


def test_a_new_revision_is_planned_on_one_fresh_read(aws: LocalAws, arn: str) -> None:
    # Warm cache, then a manifest change: the family's newest revision is described once
    # by family name; it is the revision the service runs, so that one read is both the
    # fresh owner check and the identical-latest check (no ListTaskDefinitions).
    cache = TaskDefinitionCache()
    plan(aws, cache)
    changed = plan(aws, cache, image="busybox:1.36.2")
    assert changed.resources[0].action is Action.UPDATE
    assert aws.calls().count("DescribeTaskDefinition") == 1
    assert "ListTaskDefinitions" not in aws.calls()
    # Cold cache: the same one read (the family's newest is the revision the service runs).
    cold = TaskDefinitionCache()
    changed = plan(aws, cold, image="busybox:1.36.2")
    assert changed.resources[0].action is Action.UPDATE
    assert aws.calls().count("DescribeTaskDefinition") == 1
    assert "ListTaskDefinitions" not in aws.calls()
    assert cold.get(arn) is not None  # cached by its ARN: the next no-op pass reads nothing
    assert plan(aws, cold).resources[0].action is Action.NOOP
    assert described(aws) == 0


def test_a_newer_revision_than_the_service_s_is_read_too(aws: LocalAws, arn: str) -> None:
    # A newer revision of the family exists (a rolled-back rollout): the service's own
    # revision is read as well, and the newer one is reused when it is what the manifest says.
    ecs = aws.boto3_client("ecs")
    newer = ecs.register_task_definition(
        family="web",
        requiresCompatibilities=["EC2"],
        containerDefinitions=[dict(CONTAINER, image="busybox:1.36.2")],
        tags=[{"key": "gitopsd:app", "value": "web"}],
    )["taskDefinition"]["taskDefinitionArn"]
    changed = plan(aws, TaskDefinitionCache(), image="busybox:1.36.2")
    td = changed.resources[0]
    assert td.action is Action.NOOP
    assert td.details["arn"] == newer
    assert described(aws) == 2
    assert "ListTaskDefinitions" not in aws.calls()


def test_a_steady_plan_is_answered_from_the_in_sync_memo(aws: LocalAws, arn: str) -> None:
    cache = TaskDefinitionCache()
    first = plan(aws, cache)
    assert [r.action for r in first.resources] == [Action.NOOP, Action.NOOP]
    assert len(cache.in_sync) == 2  # the task definition's comparison and the service's
    hits = cache.in_sync.hits
    second = plan(aws, cache)
    assert cache.in_sync.hits == hits + 2
    assert second.resources == first.resources  # the same change set, details and all
    # A difference is never answered from the memo.
    changed = plan(aws, cache, image="busybox:1.36.2")
    assert changed.resources[0].action is Action.UPDATE
    assert changed.resources[1].action is Action.UPDATE  # its task definition moves
