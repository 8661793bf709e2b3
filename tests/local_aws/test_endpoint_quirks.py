"""moto quirks that would hide agent bugs, made to behave as AWS does."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from gitopsd.local_aws.testing import LocalAws

from .conftest import RegisterTaskDefinition


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = exc.value.response["Error"]
    return str(error["Code"]), str(error["Message"])


def test_create_service_keeps_what_moto_dropped(
    ecs: Any, cluster: str, register: RegisterTaskDefinition
) -> None:
    td = register("app:1")
    created = ecs.create_service(
        cluster=cluster,
        serviceName="web",
        taskDefinition=td,
        desiredCount=1,
        deploymentConfiguration={"deploymentCircuitBreaker": {"enable": True, "rollback": True}},
        enableExecuteCommand=True,
        healthCheckGracePeriodSeconds=30,
        capacityProviderStrategy=[{"capacityProvider": "spot", "weight": 1, "base": 0}],
        placementConstraints=[{"type": "distinctInstance"}],
        placementStrategy=[{"type": "spread", "field": "attribute:ecs.availability-zone"}],
        enableECSManagedTags=True,
    )["service"]
    service = ecs.describe_services(cluster=cluster, services=["web"])["services"][0]
    for view in (created, service):
        assert view["deploymentConfiguration"] == {
            "maximumPercent": 200,
            "minimumHealthyPercent": 100,
            "deploymentCircuitBreaker": {"enable": True, "rollback": True},
        }
        assert view["enableExecuteCommand"] is True
        assert view["healthCheckGracePeriodSeconds"] == 30
        assert view["capacityProviderStrategy"] == [
            {"capacityProvider": "spot", "weight": 1, "base": 0}
        ]
        assert "launchType" not in view
        assert view["placementConstraints"] == [{"type": "distinctInstance"}]
        assert view["enableECSManagedTags"] is True
        assert view["taskDefinition"] == td
        assert "createdAt" in view
    assert service["deployments"][0]["capacityProviderStrategy"][0]["capacityProvider"] == "spot"


def test_defaults_are_reported_and_update_replaces_the_configuration(
    ecs: Any, cluster: str, register: RegisterTaskDefinition
) -> None:
    td = register("app:1")
    created = ecs.create_service(cluster=cluster, serviceName="web", taskDefinition=td)["service"]
    assert created["deploymentConfiguration"]["deploymentCircuitBreaker"] == {
        "enable": False,
        "rollback": False,
    }
    assert created["enableExecuteCommand"] is False
    assert created["desiredCount"] == 0
    updated = ecs.update_service(
        cluster=cluster,
        service="web",
        deploymentConfiguration={"maximumPercent": 150},
        enableExecuteCommand=True,
    )["service"]
    assert updated["deploymentConfiguration"] == {
        "maximumPercent": 150,
        "minimumHealthyPercent": 100,
        "deploymentCircuitBreaker": {"enable": False, "rollback": False},
    }
    assert updated["enableExecuteCommand"] is True
    assert len(updated["deployments"]) == 1  # configuration alone starts no deployment


def test_creating_an_active_service_again_is_refused(
    ecs: Any, cluster: str, register: RegisterTaskDefinition
) -> None:
    td = register("app:1")
    ecs.create_service(cluster=cluster, serviceName="web", taskDefinition=td, desiredCount=1)
    with pytest.raises(ClientError) as exc:
        ecs.create_service(cluster=cluster, serviceName="web", taskDefinition=td, desiredCount=1)
    assert error_of(exc) == (
        "InvalidParameterException",
        "Creation of service was not idempotent.",
    )


def test_client_token_makes_create_idempotent_for_identical_parameters(
    ecs: Any, cluster: str, register: RegisterTaskDefinition
) -> None:
    td = register("app:1")
    params = {
        "cluster": cluster,
        "serviceName": "web",
        "taskDefinition": td,
        "desiredCount": 1,
        "clientToken": "token-1",
    }
    first = ecs.create_service(**params)["service"]
    again = ecs.create_service(**params)["service"]
    assert again["serviceArn"] == first["serviceArn"]
    assert again["deployments"][0]["id"] == first["deployments"][0]["id"]
    with pytest.raises(ClientError) as changed:
        ecs.create_service(**{**params, "desiredCount": 2})
    assert error_of(changed)[1] == "Creation of service was not idempotent."
    with pytest.raises(ClientError):
        ecs.create_service(**{**params, "clientToken": "token-2"})


def test_deleted_services_leave_list_services_and_can_be_created_again(
    ecs: Any, cluster: str, register: RegisterTaskDefinition
) -> None:
    td = register("app:1")
    ecs.create_service(cluster=cluster, serviceName="web", taskDefinition=td, desiredCount=1)
    ecs.create_service(cluster=cluster, serviceName="api", taskDefinition=td, desiredCount=0)
    with pytest.raises(ClientError) as scaled:
        ecs.delete_service(cluster=cluster, service="web")
    assert "scaled above 0" in error_of(scaled)[1]
    deleted = ecs.delete_service(cluster=cluster, service="web", force=True)["service"]
    assert deleted["status"] == "INACTIVE"
    arns = ecs.list_services(cluster=cluster)["serviceArns"]
    assert [a.rsplit("/", 1)[1] for a in arns] == ["api"]
    described = ecs.describe_services(cluster=cluster, services=["web"])["services"][0]
    assert (described["status"], described["runningCount"]) == ("INACTIVE", 0)
    with pytest.raises(ClientError) as inactive:
        ecs.update_service(cluster=cluster, service="web", desiredCount=2)
    assert error_of(inactive)[0] == "ServiceNotActiveException"
    ecs.create_service(cluster=cluster, serviceName="web", taskDefinition=td, desiredCount=1)
    assert len(ecs.list_services(cluster=cluster)["serviceArns"]) == 2


def test_list_services_paginates_like_aws(
    ecs: Any, cluster: str, register: RegisterTaskDefinition
) -> None:
    td = register("app:1")
    names = [f"svc-{i:02d}" for i in range(23)]
    for name in names:
        ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=td, desiredCount=0)
    first = ecs.list_services(cluster=cluster)
    assert len(first["serviceArns"]) == 10  # the default page size
    assert "nextToken" in first
    pages = ecs.get_paginator("list_services").paginate(
        cluster=cluster, PaginationConfig={"PageSize": 7}
    )
    arns = [arn for p in pages for arn in p["serviceArns"]]
    assert sorted(a.rsplit("/", 1)[1] for a in arns) == names
    with pytest.raises(ClientError) as too_big:
        ecs.list_services(cluster=cluster, maxResults=101)
    assert error_of(too_big)[0] == "InvalidParameterException"


def test_describe_services_tags_and_limit(
    ecs: Any, cluster: str, register: RegisterTaskDefinition
) -> None:
    td = register("app:1")
    tags = [{"key": "owner", "value": "gitopsd"}]
    ecs.create_service(
        cluster=cluster, serviceName="web", taskDefinition=td, desiredCount=0, tags=tags
    )
    with_tags = ecs.describe_services(cluster=cluster, services=["web"], include=["TAGS"])
    assert with_tags["services"][0]["tags"] == tags
    without = ecs.describe_services(cluster=cluster, services=["web"])
    assert "tags" not in without["services"][0]
    with pytest.raises(ClientError) as too_many:
        ecs.describe_services(cluster=cluster, services=[f"s{i}" for i in range(11)])
    assert error_of(too_many)[0] == "InvalidParameterException"
    missing = ecs.describe_services(cluster=cluster, services=["nope"])
    assert missing["failures"][0]["reason"] == "MISSING"


def test_launch_type_and_capacity_provider_strategy_conflict(
    ecs: Any, cluster: str, register: RegisterTaskDefinition
) -> None:
    with pytest.raises(ClientError) as exc:
        ecs.create_service(
            cluster=cluster,
            serviceName="web",
            taskDefinition=register("app:1"),
            launchType="EC2",
            capacityProviderStrategy=[{"capacityProvider": "spot", "weight": 1}],
        )
    assert error_of(exc)[0] == "InvalidParameterException"


def test_awsvpc_needs_a_network_configuration(ecs: Any, cluster: str) -> None:
    td = ecs.register_task_definition(
        family="vpc",
        networkMode="awsvpc",
        containerDefinitions=[{"name": "app", "image": "app:1", "memory": 128}],
    )["taskDefinition"]["taskDefinitionArn"]
    with pytest.raises(ClientError) as exc:
        ecs.create_service(cluster=cluster, serviceName="web", taskDefinition=td)
    assert "Network Configuration must be provided" in error_of(exc)[1]


def test_update_with_a_family_stores_the_full_arn(
    local_aws: LocalAws, ecs: Any, cluster: str, register: RegisterTaskDefinition
) -> None:
    first = register("app:1")
    ecs.create_service(cluster=cluster, serviceName="web", taskDefinition=first, desiredCount=1)
    second = register("app:2")
    updated = ecs.update_service(cluster=cluster, service="web", taskDefinition="web")["service"]
    assert updated["taskDefinition"] == second
    assert updated["deployments"][0]["taskDefinition"] == second


def test_fargate_awsvpc_service_without_security_groups(
    local_aws: LocalAws, ecs: Any, cluster: str
) -> None:
    subnets = [s["SubnetId"] for s in local_aws.boto3_client("ec2").describe_subnets()["Subnets"]]
    td = ecs.register_task_definition(
        family="fg",
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="512",
        containerDefinitions=[{"name": "app", "image": "app:1"}],
    )["taskDefinition"]["taskDefinitionArn"]
    network = {"awsvpcConfiguration": {"subnets": subnets[:1], "assignPublicIp": "DISABLED"}}
    service = ecs.create_service(
        cluster=cluster,
        serviceName="fg",
        taskDefinition=td,
        desiredCount=1,
        launchType="FARGATE",
        networkConfiguration=network,
    )["service"]
    assert service["networkConfiguration"] == network
    assert service["platformVersion"] == "LATEST"
    [deployment] = service["deployments"]
    assert (deployment["platformVersion"], deployment["platformFamily"]) == ("1.4.0", "Linux")
    assert deployment["networkConfiguration"] == network
    local_aws.advance(1)
    moved = {"awsvpcConfiguration": {"subnets": subnets[1:2], "assignPublicIp": "DISABLED"}}
    updated = ecs.update_service(cluster=cluster, service="fg", networkConfiguration=moved)
    assert [d["status"] for d in updated["service"]["deployments"]] == ["PRIMARY", "ACTIVE"]
