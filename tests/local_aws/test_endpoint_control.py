"""The ``/_gitopsd/`` control plane and the call log, through :class:`LocalAws`."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from botocore.exceptions import ClientError

from gitopsd.local_aws.testing import LocalAws, LocalAwsError

from .conftest import RegisterTaskDefinition


def test_calls_are_logged_by_operation_name(
    local_aws: LocalAws, ecs: Any, register: RegisterTaskDefinition
) -> None:
    assert local_aws.calls() == []
    local_aws.create_cluster("c")
    register("app:1")
    ecs.list_clusters()
    local_aws.boto3_client("sts").get_caller_identity()  # query protocol: Action form field
    assert local_aws.calls() == [
        "CreateCluster",
        "RegisterTaskDefinition",
        "ListClusters",
        "GetCallerIdentity",
    ]
    local_aws.clear_calls()
    ecs.list_clusters()
    assert local_aws.calls() == ["ListClusters"]


def test_configure_validates_and_reset_restores_startup_settings(local_aws: LocalAws) -> None:
    assert local_aws.settings() == {
        "pace": 1.0,
        "fail_images": [],
        "clock": "manual",
        "minute_seconds": 60.0,
        "fail_hooks": [],
    }
    local_aws.configure(pace=4, fail_images=["*:bad"])
    assert local_aws.settings() == {
        "pace": 4.0,
        "fail_images": ["*:bad"],
        "clock": "manual",
        "minute_seconds": 60.0,
        "fail_hooks": [],
    }
    with pytest.raises(LocalAwsError, match=r"HTTP 400.*pace"):
        local_aws.configure(pace=0)
    with pytest.raises(LocalAwsError, match=r"HTTP 400.*regex"):
        local_aws.configure(fail_images=["re:("])
    local_aws.reset()
    assert local_aws.settings() == {
        "pace": 1.0,
        "fail_images": [],
        "clock": "manual",
        "minute_seconds": 60.0,
        "fail_hooks": [],
    }


def test_advance_needs_the_manual_clock(local_aws: LocalAws) -> None:
    local_aws.configure(clock="real")
    with pytest.raises(LocalAwsError, match="HTTP 409"):
        local_aws.advance(1)
    local_aws.configure(clock="manual")
    local_aws.advance(1)
    with pytest.raises(LocalAwsError, match="HTTP 400"):
        local_aws.advance(-1)


def test_reset_forgets_resources_but_moto_reset_keeps_settings(
    local_aws: LocalAws, ecs: Any, register: RegisterTaskDefinition
) -> None:
    local_aws.create_cluster("c")
    register("app:1")
    local_aws.configure(pace=3)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    opener.open(urllib.request.Request(f"{local_aws.endpoint_url}/moto-api/reset", method="POST"))
    assert ecs.list_clusters()["clusterArns"] == []
    assert local_aws.settings()["pace"] == 3.0
    local_aws.create_cluster("c")
    local_aws.reset()
    assert ecs.list_clusters()["clusterArns"] == []
    assert local_aws.calls() == ["ListClusters"]


def test_unknown_control_endpoint_is_404_with_the_list(local_aws: LocalAws) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as exc:
        opener.open(f"{local_aws.endpoint_url}/_gitopsd/nope")
    assert exc.value.code == 404
    assert "/_gitopsd/advance" in json.loads(exc.value.read())["error"]


def test_other_moto_services_still_answer(local_aws: LocalAws) -> None:
    ddb = local_aws.boto3_client("dynamodb")
    ddb.create_table(
        TableName="leases",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.put_item(TableName="leases", Item={"id": {"S": "a"}})
    with pytest.raises(ClientError) as exc:
        ddb.put_item(
            TableName="leases",
            Item={"id": {"S": "a"}},
            ConditionExpression="attribute_not_exists(id)",
        )
    assert exc.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
