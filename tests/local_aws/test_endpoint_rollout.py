"""The local endpoint against ECS's documented deployment behaviour, over boto3.

Every test runs on the manual clock (see conftest): pace 1 task per second, so
``advance(1)`` lets one task of the PRIMARY deployment start or fail.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from gitopsd.local_aws.testing import LocalAws

from .conftest import RegisterTaskDefinition

BREAKER_ROLLBACK = {"deploymentCircuitBreaker": {"enable": True, "rollback": True}}


def describe(ecs: Any, cluster: str, name: str = "web") -> dict[str, Any]:
    service: dict[str, Any] = ecs.describe_services(cluster=cluster, services=[name])["services"][0]
    return service


def rows(service: dict[str, Any]) -> list[tuple[str, str, int, int, int, int, str]]:
    """(status, family:revision, desired, running, pending, failed, rolloutState) per deployment."""
    return [
        (
            d["status"],
            d["taskDefinition"].rsplit("/", 1)[1],
            d["desiredCount"],
            d["runningCount"],
            d["pendingCount"],
            d["failedTasks"],
            d["rolloutState"],
        )
        for d in service["deployments"]
    ]


def messages(service: dict[str, Any]) -> list[str]:
    """Event messages, oldest first."""
    return [e["message"] for e in reversed(service["events"])]


def create(ecs: Any, cluster: str, task_definition: str, desired: int = 2, **extra: Any) -> None:
    ecs.create_service(
        cluster=cluster,
        serviceName="web",
        taskDefinition=task_definition,
        desiredCount=desired,
        launchType="EC2",
        **extra,
    )


def test_new_service_rolls_out_at_the_configured_pace(
    local_aws: LocalAws, ecs: Any, cluster: str, register: RegisterTaskDefinition
) -> None:
    td = register("nginx:1.27")
    create(ecs, cluster, td, desired=2)
    service = describe(ecs, cluster)
    assert (service["runningCount"], service["pendingCount"]) == (0, 2)
    assert rows(service) == [("PRIMARY", "web:1", 2, 0, 2, 0, "IN_PROGRESS")]
    deployment = service["deployments"][0]
    assert deployment["id"].startswith("ecs-svc/")
    assert deployment["rolloutStateReason"] == f"ECS deployment {deployment['id']} in progress."
    assert deployment["createdAt"] <= deployment["updatedAt"]

    local_aws.advance(1)
    assert rows(describe(ecs, cluster)) == [("PRIMARY", "web:1", 2, 1, 1, 0, "IN_PROGRESS")]
    local_aws.advance(1)
    service = describe(ecs, cluster)
    assert rows(service) == [("PRIMARY", "web:1", 2, 2, 0, 0, "COMPLETED")]
    assert service["runningCount"] == 2
    assert messages(service)[0].startswith("(service web) has started 2 tasks: (task ")
    assert messages(service)[-1] == "(service web) has reached a steady state."


def test_task_definition_change_gives_a_new_primary_that_completes(
    local_aws: LocalAws, ecs: Any, cluster: str, register: RegisterTaskDefinition
) -> None:
    old, new = register("nginx:1.27"), register("nginx:1.28")
    create(ecs, cluster, old)
    local_aws.advance(2)
    updated = ecs.update_service(cluster=cluster, service="web", taskDefinition=new)["service"]
    assert updated["taskDefinition"] == new
    assert rows(updated) == [
        ("PRIMARY", "web:2", 2, 0, 2, 0, "IN_PROGRESS"),
        ("ACTIVE", "web:1", 2, 2, 0, 0, "COMPLETED"),
    ]
    local_aws.advance(1)
    assert rows(describe(ecs, cluster)) == [
        ("PRIMARY", "web:2", 2, 1, 1, 0, "IN_PROGRESS"),
        ("ACTIVE", "web:1", 1, 1, 0, 0, "COMPLETED"),
    ]
    local_aws.advance(1)
    service = describe(ecs, cluster)
    assert rows(service) == [("PRIMARY", "web:2", 2, 2, 0, 0, "COMPLETED")]
    primary = service["deployments"][0]
    assert f"(service web) (deployment {primary['id']}) deployment completed." in messages(service)
    ecs.get_waiter("services_stable").wait(
        cluster=cluster, services=["web"], WaiterConfig={"Delay": 1, "MaxAttempts": 1}
    )


def test_failing_image_with_circuit_breaker_rolls_back(
    local_aws: LocalAws, ecs: Any, cluster: str, register: RegisterTaskDefinition
) -> None:
    local_aws.configure(fail_images=["*:broken"])
    good, bad = register("app:1"), register("app:broken")
    create(ecs, cluster, good, deploymentConfiguration=BREAKER_ROLLBACK)
    local_aws.advance(2)
    ecs.update_service(cluster=cluster, service="web", taskDefinition=bad)
    failed_id = describe(ecs, cluster)["deployments"][0]["id"]
    local_aws.advance(2)
    assert rows(describe(ecs, cluster)) == [
        ("PRIMARY", "web:2", 2, 0, 2, 2, "IN_PROGRESS"),
        ("ACTIVE", "web:1", 2, 2, 0, 0, "COMPLETED"),
    ]
    local_aws.advance(1)  # third failed task: the threshold is max(3, ceil(2 / 2))
    assert rows(describe(ecs, cluster))[0] == ("PRIMARY", "web:2", 2, 0, 0, 3, "FAILED")
    local_aws.advance(1)  # the rollback deployment starts one step after the trip
    service = describe(ecs, cluster)
    assert service["taskDefinition"] == good
    assert rows(service)[0] == ("PRIMARY", "web:1", 2, 0, 2, 0, "IN_PROGRESS")
    assert service["deployments"][0]["rolloutStateReason"].startswith(
        "ECS deployment circuit breaker: rolling back to deploymentId ecs-svc/"
    )
    assert (
        f"(service web) (deployment {failed_id}) deployment failed: tasks failed to start."
        in messages(service)
    )
    local_aws.advance(2)
    service = describe(ecs, cluster)
    assert service["taskDefinition"] == good
    assert rows(service) == [("PRIMARY", "web:1", 2, 2, 0, 0, "COMPLETED")]
    # The waiter's trap: stable again, but on the OLD task definition.
    ecs.get_waiter("services_stable").wait(
        cluster=cluster, services=["web"], WaiterConfig={"Delay": 1, "MaxAttempts": 1}
    )

    # DescribeServiceDeployments tells the same story.
    listed = ecs.list_service_deployments(cluster=cluster, service="web")["serviceDeployments"]
    assert [d["status"] for d in listed] == ["ROLLBACK_SUCCESSFUL", "SUCCESSFUL"]
    described = ecs.describe_service_deployments(
        serviceDeploymentArns=[d["serviceDeploymentArn"] for d in listed]
    )
    assert described["failures"] == []
    failed, first = described["serviceDeployments"]
    assert failed["status"] == "ROLLBACK_SUCCESSFUL"
    assert failed["deploymentCircuitBreaker"] == {
        "status": "TRIGGERED",
        "failureCount": 3,
        "threshold": 3,
    }
    assert failed["rollback"]["serviceRevisionArn"] == first["targetServiceRevision"]["arn"]
    assert failed["rollback"]["reason"]
    assert failed["sourceServiceRevisions"][0]["arn"] == first["targetServiceRevision"]["arn"]
    assert failed["finishedAt"] >= failed["rollback"]["startedAt"] >= failed["startedAt"]
    assert service["currentServiceDeployment"] == failed["serviceDeploymentArn"]
    revisions = ecs.describe_service_revisions(
        serviceRevisionArns=[failed["targetServiceRevision"]["arn"]]
    )["serviceRevisions"]
    assert revisions[0]["taskDefinition"] == bad
    assert revisions[0]["containerImages"] == [{"containerName": "app", "image": "app:broken"}]


def test_circuit_breaker_trip_shows_rollback_requested_for_one_step(
    local_aws: LocalAws, ecs: Any, cluster: str, register: RegisterTaskDefinition
) -> None:
    local_aws.configure(fail_images=["*:broken"])
    good, bad = register("app:1"), register("app:broken")
    create(ecs, cluster, good, deploymentConfiguration=BREAKER_ROLLBACK)
    local_aws.advance(2)
    ecs.update_service(cluster=cluster, service="web", taskDefinition=bad)
    failed_id = describe(ecs, cluster)["deployments"][0]["id"]
    local_aws.advance(3)  # the third failed task trips the breaker

    service = describe(ecs, cluster)
    assert service["taskDefinition"] == bad
    assert rows(service) == [
        ("PRIMARY", "web:2", 2, 0, 0, 3, "FAILED"),
        ("ACTIVE", "web:1", 2, 2, 0, 0, "COMPLETED"),
    ]
    primary = service["deployments"][0]
    assert primary["id"] == failed_id
    assert primary["rolloutStateReason"] == "ECS deployment circuit breaker: tasks failed to start."
    arn = service["currentServiceDeployment"]
    [record] = ecs.describe_service_deployments(serviceDeploymentArns=[arn])["serviceDeployments"]
    assert record["status"] == "ROLLBACK_REQUESTED"
    assert "circuit breaker" in record["statusReason"].lower()
    assert record["deploymentCircuitBreaker"]["status"] == "TRIGGERED"
    assert "rollback" not in record
    assert not any("rolling back" in m for m in messages(service))

    local_aws.advance(1)  # one step interval (1 / pace) later
    service = describe(ecs, cluster)
    assert service["taskDefinition"] == good
    assert rows(service)[0] == ("PRIMARY", "web:1", 2, 0, 2, 0, "IN_PROGRESS")
    assert service["deployments"][0]["id"] != failed_id
    assert [d["id"] for d in service["deployments"]].count(failed_id) == 0  # it had no task
    [record] = ecs.describe_service_deployments(serviceDeploymentArns=[arn])["serviceDeployments"]
    assert record["status"] == "ROLLBACK_IN_PROGRESS"
    assert record["rollback"]["serviceRevisionArn"]
    local_aws.advance(2)
    [record] = ecs.describe_service_deployments(serviceDeploymentArns=[arn])["serviceDeployments"]
    assert record["status"] == "ROLLBACK_SUCCESSFUL"


def test_circuit_breaker_trip_window_on_the_real_clock(
    local_aws: LocalAws, ecs: Any, cluster: str, register: RegisterTaskDefinition
) -> None:
    local_aws.configure(fail_images=["*:broken"], clock="real", pace=20.0)
    good, bad = register("app:1"), register("app:broken")
    create(ecs, cluster, good, desired=1, deploymentConfiguration=BREAKER_ROLLBACK)
    deadline = time.monotonic() + 10
    while rows(describe(ecs, cluster))[0][-1] != "COMPLETED":  # poll with a deadline
        assert time.monotonic() < deadline
        time.sleep(0.01)
    ecs.update_service(cluster=cluster, service="web", taskDefinition=bad)
    arn = describe(ecs, cluster)["currentServiceDeployment"]
    seen: list[str] = []
    while not seen or seen[-1] not in ("ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED"):
        assert time.monotonic() < deadline, seen
        [record] = ecs.describe_service_deployments(serviceDeploymentArns=[arn])[
            "serviceDeployments"
        ]
        if not seen or seen[-1] != record["status"]:
            seen.append(record["status"])
        time.sleep(0.005)
    # No idle step is skipped on the real clock: the rollback starts on its own.
    assert seen[-1] == "ROLLBACK_SUCCESSFUL"
    assert describe(ecs, cluster)["taskDefinition"] == good


def test_failing_image_without_circuit_breaker_stays_in_progress(
    local_aws: LocalAws, ecs: Any, cluster: str, register: RegisterTaskDefinition
) -> None:
    good, bad = register("app:1"), register("app:2")
    create(ecs, cluster, good)
    local_aws.advance(2)
    local_aws.configure(fail_images=["app:2"])
    ecs.update_service(cluster=cluster, service="web", taskDefinition=bad)
    local_aws.advance(12)
    service = describe(ecs, cluster)
    assert service["taskDefinition"] == bad
    assert rows(service) == [
        ("PRIMARY", "web:2", 2, 0, 2, 12, "IN_PROGRESS"),
        ("ACTIVE", "web:1", 2, 2, 0, 0, "COMPLETED"),
    ]
    statuses = ecs.list_service_deployments(cluster=cluster, service="web")["serviceDeployments"]
    assert statuses[0]["status"] == "IN_PROGRESS"
    with pytest.raises(Exception, match="Max attempts exceeded"):
        ecs.get_waiter("services_stable").wait(
            cluster=cluster, services=["web"], WaiterConfig={"Delay": 1, "MaxAttempts": 1}
        )


def test_force_new_deployment_and_scaling(
    local_aws: LocalAws, ecs: Any, cluster: str, register: RegisterTaskDefinition
) -> None:
    td = register("app:1")
    create(ecs, cluster, td, desired=1)
    local_aws.advance(1)
    first_id = describe(ecs, cluster)["deployments"][0]["id"]

    scaled = ecs.update_service(cluster=cluster, service="web", desiredCount=3)["service"]
    assert rows(scaled) == [("PRIMARY", "web:1", 3, 1, 2, 0, "COMPLETED")]
    assert scaled["deployments"][0]["id"] == first_id  # scaling is not a deployment

    same = ecs.update_service(cluster=cluster, service="web", taskDefinition=td)["service"]
    assert same["deployments"][0]["id"] == first_id  # unchanged task definition: no deployment
    local_aws.advance(2)

    forced = ecs.update_service(cluster=cluster, service="web", forceNewDeployment=True)
    assert rows(forced["service"]) == [
        ("PRIMARY", "web:1", 3, 0, 3, 0, "IN_PROGRESS"),
        ("ACTIVE", "web:1", 3, 3, 0, 0, "COMPLETED"),
    ]
    local_aws.advance(3)
    assert rows(describe(ecs, cluster)) == [("PRIMARY", "web:1", 3, 3, 0, 0, "COMPLETED")]
    listed = ecs.list_service_deployments(cluster=cluster, service="web")["serviceDeployments"]
    assert [d["status"] for d in listed] == ["SUCCESSFUL", "SUCCESSFUL"]


def test_circuit_breaker_without_rollback_ends_failed(
    local_aws: LocalAws, ecs: Any, cluster: str, register: RegisterTaskDefinition
) -> None:
    local_aws.configure(fail_images=["re:broken$"])
    good, bad = register("app:1"), register("app:broken")
    breaker = {"deploymentCircuitBreaker": {"enable": True, "rollback": False}}
    create(ecs, cluster, good, deploymentConfiguration=breaker)
    local_aws.advance(2)
    ecs.update_service(cluster=cluster, service="web", taskDefinition=bad)
    local_aws.advance(10)
    service = describe(ecs, cluster)
    assert service["taskDefinition"] == bad
    assert rows(service) == [
        ("PRIMARY", "web:2", 2, 0, 0, 3, "FAILED"),
        ("ACTIVE", "web:1", 2, 2, 0, 0, "COMPLETED"),
    ]
    assert service["deployments"][0]["rolloutStateReason"] == (
        "ECS deployment circuit breaker: tasks failed to start."
    )
    listed = ecs.list_service_deployments(cluster=cluster, service="web")["serviceDeployments"]
    assert listed[0]["status"] == "STOPPED"


def test_stop_service_deployment_rolls_back(
    local_aws: LocalAws, ecs: Any, cluster: str, register: RegisterTaskDefinition
) -> None:
    good, slow = register("app:1"), register("app:2")
    create(ecs, cluster, good)
    local_aws.advance(2)
    ecs.update_service(cluster=cluster, service="web", taskDefinition=slow)
    arn = ecs.describe_services(cluster=cluster, services=["web"])["services"][0][
        "currentServiceDeployment"
    ]
    stopped = ecs.stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")
    assert stopped["serviceDeploymentArn"] == arn
    service = describe(ecs, cluster)
    assert service["taskDefinition"] == good
    [record] = ecs.describe_service_deployments(serviceDeploymentArns=[arn])["serviceDeployments"]
    assert record["status"] == "ROLLBACK_IN_PROGRESS"
    local_aws.advance(2)
    [record] = ecs.describe_service_deployments(serviceDeploymentArns=[arn])["serviceDeployments"]
    assert record["status"] == "ROLLBACK_SUCCESSFUL"
    with pytest.raises(ClientError) as conflict:
        ecs.stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")
    assert conflict.value.response["Error"]["Code"] == "ConflictException"
    with pytest.raises(ClientError) as missing:
        ecs.stop_service_deployment(serviceDeploymentArn=arn[:-3] + "zzz", stopType="ROLLBACK")
    assert missing.value.response["Error"]["Code"] == "ServiceDeploymentNotFoundException"


def test_service_deployment_api_filters_and_pages(
    local_aws: LocalAws, ecs: Any, cluster: str, register: RegisterTaskDefinition
) -> None:
    td = register("app:1")
    create(ecs, cluster, td, desired=1)
    for _ in range(4):
        local_aws.advance(1)
        ecs.update_service(cluster=cluster, service="web", forceNewDeployment=True)
    listed = ecs.list_service_deployments(cluster=cluster, service="web")["serviceDeployments"]
    assert [d["status"] for d in listed] == ["IN_PROGRESS"] + ["SUCCESSFUL"] * 4
    assert listed[0]["createdAt"] > listed[-1]["createdAt"]  # newest first
    only = ecs.list_service_deployments(cluster=cluster, service="web", status=["IN_PROGRESS"])
    assert len(only["serviceDeployments"]) == 1
    window = ecs.list_service_deployments(
        cluster=cluster, service="web", createdAt={"after": listed[2]["createdAt"]}
    )
    assert [d["serviceDeploymentArn"] for d in window["serviceDeployments"]] == [
        d["serviceDeploymentArn"] for d in listed[:2]
    ]
    first = ecs.list_service_deployments(cluster=cluster, service="web", maxResults=2)
    assert len(first["serviceDeployments"]) == 2
    second = ecs.list_service_deployments(
        cluster=cluster, service="web", maxResults=2, nextToken=first["nextToken"]
    )
    assert second["serviceDeployments"] == listed[2:4]
    missing = ecs.describe_service_deployments(serviceDeploymentArns=["arn:aws:ecs:nope"])
    assert missing["failures"] == [{"arn": "arn:aws:ecs:nope", "reason": "MISSING"}]
    with pytest.raises(ClientError) as unknown:
        ecs.list_service_deployments(cluster=cluster, service="nope")
    assert unknown.value.response["Error"]["Code"] == "ServiceNotFoundException"


def test_real_clock_rollout_completes_on_its_own(
    local_aws: LocalAws, ecs: Any, cluster: str, register: RegisterTaskDefinition
) -> None:
    local_aws.configure(clock="real", pace=50.0)
    create(ecs, cluster, register("app:1"), desired=3)
    deadline = time.monotonic() + 10
    while rows(describe(ecs, cluster))[0][-1] != "COMPLETED":  # poll with a deadline
        assert time.monotonic() < deadline, rows(describe(ecs, cluster))
        time.sleep(0.02)
    assert describe(ecs, cluster)["runningCount"] == 3
