"""Fault rules: after-phase errors, dropped connections, rates with seeds, latency, expiry."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, HTTPClientError

from gitopsd.local_aws.faults import Faults
from gitopsd.local_aws.testing import LocalAws, LocalAwsError


def register(ecs: Any, family: str = "web") -> dict[str, Any]:
    response: dict[str, Any] = ecs.register_task_definition(
        family=family,
        networkMode="bridge",
        containerDefinitions=[{"name": "app", "image": "app:1", "memory": 128}],
    )
    return response


def families(ecs: Any) -> list[str]:
    arns = ecs.list_task_definitions()["taskDefinitionArns"]
    return [arn.rsplit("/", 1)[1] for arn in arns]


def outcome(call: Any) -> str:
    """ "ok", or the error code of the call."""
    try:
        call()
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return "ok"


def test_after_phase_error_keeps_the_write(local_aws: LocalAws, ecs: Any) -> None:
    rule = local_aws.arm_fault("RegisterTaskDefinition", "ServerException", phase="after")
    assert (rule["count"], rule["phase"], rule["active"]) == (1, "after", True)
    with pytest.raises(ClientError) as info:
        register(ecs)
    assert info.value.response["Error"]["Code"] == "ServerException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert families(ecs) == ["web:1"]  # the client saw an error, yet the revision exists
    register(ecs)  # the rule is used up: the retry registers one more revision
    assert families(ecs) == ["web:1", "web:2"]
    snapshot = local_aws.faults()
    [listed] = snapshot["faults"]
    assert (listed["matched"], listed["injected"], listed["active"]) == (1, 1, False)
    assert snapshot["injected"] == [
        {
            "operation": "RegisterTaskDefinition",
            "error": "ServerException",
            "phase": "after",
            "latency": None,
            "rule": listed["id"],
        }
    ]


def test_after_phase_503_on_a_service_write(local_aws: LocalAws, ecs: Any) -> None:
    local_aws.create_cluster("c")
    td = register(ecs)["taskDefinition"]["taskDefinitionArn"]
    local_aws.arm_fault("CreateService", "ServiceUnavailableException", phase="after")
    with pytest.raises(ClientError) as info:
        ecs.create_service(cluster="c", serviceName="web", taskDefinition=td, desiredCount=1)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    [service] = ecs.describe_services(cluster="c", services=["web"])["services"]
    assert service["status"] == "ACTIVE"


@pytest.mark.parametrize(("phase", "written"), [("after", ["web:1"]), ("before", [])])
def test_drop_closes_the_connection_without_an_answer(
    local_aws: LocalAws, ecs: Any, phase: str, written: list[str]
) -> None:
    local_aws.arm_fault("RegisterTaskDefinition", "drop", phase=phase)
    with pytest.raises(HTTPClientError) as info:  # a transport error, not a parsed answer
        register(ecs)
    assert isinstance(info.value, ConnectionClosedError)
    assert families(ecs) == written
    assert local_aws.faults()["injected"][0]["error"] == "drop"
    ecs.list_clusters()  # the server is fine afterwards


def test_rate_with_seed_replays_the_same_failures(local_aws: LocalAws, ecs: Any) -> None:
    def run() -> list[str]:
        local_aws.clear_faults()
        rule = local_aws.arm_fault("ListClusters", "ThrottlingException", rate=0.5, seed=7)
        assert (rule["count"], rule["seed"]) == (None, 7)
        return [outcome(ecs.list_clusters) for _ in range(24)]

    first = run()
    assert first == run()
    draws = random.Random(7)
    assert first == ["ThrottlingException" if draws.random() < 0.5 else "ok" for _ in range(24)]
    assert 0 < first.count("ok") < 24
    [rule] = local_aws.faults()["faults"]
    assert (rule["matched"], rule["injected"]) == (24, first.count("ThrottlingException"))


def test_rate_with_count_caps_failures_and_a_seed_is_chosen(local_aws: LocalAws, ecs: Any) -> None:
    rule = local_aws.arm_fault("ListClusters", "ServerException", rate=1.0, count=2)
    assert isinstance(rule["seed"], int)  # shown, so a run can be replayed
    assert [outcome(ecs.list_clusters) for _ in range(4)] == ["ServerException"] * 2 + ["ok"] * 2


def test_wildcard_and_lists_of_operations(local_aws: LocalAws, ecs: Any) -> None:
    local_aws.arm_fault("*", "ServiceUnavailableException", count=2)
    assert outcome(ecs.list_clusters) == "ServiceUnavailableException"
    assert outcome(ecs.list_task_definitions) == "ServiceUnavailableException"
    assert outcome(ecs.list_clusters) == "ok"

    local_aws.clear_faults()
    local_aws.arm_fault(["ListClusters", "DescribeClusters"], count=None, duration=60)
    assert outcome(ecs.list_task_definitions) == "ok"
    assert outcome(ecs.list_clusters) == "ThrottlingException"
    assert outcome(ecs.describe_clusters) == "ThrottlingException"
    assert outcome(ecs.list_clusters) == "ThrottlingException"
    [rule] = local_aws.faults()["faults"]
    assert rule["operation"] == ["ListClusters", "DescribeClusters"]
    assert (rule["matched"], rule["injected"], rule["active"]) == (3, 3, True)


def test_several_rules_first_that_fires_wins(local_aws: LocalAws, ecs: Any) -> None:
    local_aws.inject_faults(
        [
            {"operation": "ListClusters", "error": "AccessDeniedException"},
            {"operation": "*", "error": "ServerException", "count": 2},
        ]
    )
    assert [outcome(ecs.list_clusters) for _ in range(4)] == [
        "AccessDeniedException",
        "ServerException",
        "ServerException",
        "ok",
    ]
    snapshot = local_aws.faults()
    assert [(r["matched"], r["injected"]) for r in snapshot["faults"]] == [(1, 1), (2, 2)]
    assert [i["error"] for i in snapshot["injected"]] == [
        "AccessDeniedException",
        "ServerException",
        "ServerException",
    ]
    assert local_aws.calls() == ["ListClusters"] * 4  # faulted calls are logged too


def test_latency_delays_the_answer(local_aws: LocalAws, ecs: Any) -> None:
    local_aws.arm_fault("ListClusters", None, latency=0.3)  # just slow, once
    started = time.monotonic()
    assert ecs.list_clusters()["clusterArns"] == []
    assert time.monotonic() - started >= 0.3

    local_aws.arm_fault("RegisterTaskDefinition", "ServerException", phase="after", latency=0.2)
    started = time.monotonic()
    assert outcome(lambda: register(ecs)) == "ServerException"
    assert time.monotonic() - started >= 0.2
    assert families(ecs) == ["web:1"]
    assert [i["latency"] for i in local_aws.faults()["injected"]] == [0.3, 0.2]


def test_duration_expires_the_rule(local_aws: LocalAws, ecs: Any) -> None:
    rule = local_aws.arm_fault("ListClusters", "ThrottlingException", duration=0.2)
    assert rule["count"] is None
    assert 0 < rule["expires_in"] <= 0.2
    assert outcome(ecs.list_clusters) == "ThrottlingException"
    deadline = time.monotonic() + 10
    while outcome(ecs.list_clusters) != "ok":  # a throttling storm, until it expires
        assert time.monotonic() < deadline
        time.sleep(0.02)
    [listed] = local_aws.faults()["faults"]
    assert listed["active"] is False
    assert listed["expires_in"] == 0
    assert listed["injected"] >= 1


def test_duration_on_a_fake_clock() -> None:
    now = [100.0]
    faults = Faults(monotonic=lambda: now[0])
    faults.arm({"operation": "*", "error": "ServerException", "duration": 5})
    assert faults.match("ListClusters") is not None
    now[0] = 104.9
    assert faults.match("ListClusters") is not None
    now[0] = 105.0
    assert faults.match("ListClusters") is None
    [rule] = faults.snapshot()["faults"]
    assert (rule["matched"], rule["injected"], rule["active"]) == (2, 2, False)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"operation": "ListClusters", "colour": "red"}, r"unknown key.*colour"),
        ({"operation": "ListClusters", "rate": 1.5}, r"'rate' must be a number from 0 to 1"),
        ({"operation": "ListClusters", "rate": "half"}, r"'rate'"),
        ({"operation": "ListClusters", "phase": "during"}, r"'phase' must be one of"),
        ({"operation": "ListClusters", "latency": 61}, r"'latency' must be at most 60"),
        ({"operation": "ListClusters", "latency": -1}, r"'latency'"),
        ({"operation": "ListClusters", "error": "Nope"}, r"'error' must be one of"),
        ({"operation": "ListClusters", "error": None}, r"needs an 'error' or a 'latency'"),
        ({"operation": "ListClusters", "seed": 3}, r"'seed' needs a 'rate'"),
        ({"operation": "ListClusters", "rate": 0.5, "seed": "x"}, r"'seed' must be an integer"),
        ({"operation": "ListClusters", "duration": 0}, r"'duration'"),
        ({"operation": "ListClusters", "count": 0}, r"'count'"),
        ({"operation": "ListClusters", "count": True}, r"'count'"),
        ({"operation": []}, r"'operation'"),
        ({"error": "ServerException"}, r"'operation'"),
        ({"rules": []}, r"'rules' must be a non-empty list"),
        ({"rules": [{"operation": "ListClusters"}, {"operation": 1}]}, r"rules\[1\]: 'operation'"),
    ],
)
def test_bad_rules_are_refused_with_400(
    local_aws: LocalAws, rule: dict[str, Any], message: str
) -> None:
    with pytest.raises(LocalAwsError, match="HTTP 400") as info:
        local_aws._control("POST", "faults", rule)
    assert info.match(message)
    assert local_aws.faults()["faults"] == []  # nothing armed, not even the good rules


def test_delete_and_reset_clear_rules_and_log(local_aws: LocalAws, ecs: Any) -> None:
    local_aws.arm_fault("ListClusters", count=1)
    assert outcome(ecs.list_clusters) == "ThrottlingException"
    local_aws.arm_fault("ListClusters", count=3)
    assert len(local_aws.faults()["injected"]) == 1
    local_aws.clear_faults()
    assert local_aws.faults() == {"faults": [], "injected": []}
    assert outcome(ecs.list_clusters) == "ok"
    local_aws.arm_fault("ListClusters", count=1)
    assert outcome(ecs.list_clusters) == "ThrottlingException"
    local_aws.reset()
    assert local_aws.faults() == {"faults": [], "injected": []}
