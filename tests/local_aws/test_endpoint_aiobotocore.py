"""aiobotocore (what gitopsd itself uses) against the local endpoint."""

from __future__ import annotations

from typing import Any

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from gitopsd.local_aws.testing import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY, LocalAws


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_rollout_seen_through_aiobotocore(local_aws: LocalAws) -> None:
    local_aws.create_cluster("c")
    session = get_session()
    async with session.create_client(
        "ecs",
        region_name="us-east-1",
        endpoint_url=local_aws.endpoint_url,
        aws_access_key_id=DUMMY_ACCESS_KEY,
        aws_secret_access_key=DUMMY_SECRET_KEY,
        config=AioConfig(retries={"total_max_attempts": 1}),
    ) as ecs:
        registered: dict[str, Any] = await ecs.register_task_definition(
            family="web",
            containerDefinitions=[{"name": "app", "image": "app:1", "memory": 64}],
        )
        td = registered["taskDefinition"]["taskDefinitionArn"]
        await ecs.create_service(cluster="c", serviceName="web", taskDefinition=td, desiredCount=2)
        local_aws.advance(2)
        described = await ecs.describe_services(cluster="c", services=["web"])
        [deployment] = described["services"][0]["deployments"]
        assert (deployment["rolloutState"], deployment["runningCount"]) == ("COMPLETED", 2)
        listed = await ecs.list_service_deployments(cluster="c", service="web")
        assert [d["status"] for d in listed["serviceDeployments"]] == ["SUCCESSFUL"]
    assert local_aws.calls()[-4:] == [
        "RegisterTaskDefinition",
        "CreateService",
        "DescribeServices",
        "ListServiceDeployments",
    ]
