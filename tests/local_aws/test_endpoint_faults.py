"""Injected throttling and server errors, as AWS answers them on the wire."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from gitopsd.local_aws.testing import LocalAws, LocalAwsError


def test_armed_fault_fails_that_many_calls_then_passes(local_aws: LocalAws, ecs: Any) -> None:
    local_aws.inject_fault("ListClusters", "ThrottlingException", count=2)
    for _ in range(2):
        with pytest.raises(ClientError) as info:
            ecs.list_clusters()
        assert info.value.response["Error"]["Code"] == "ThrottlingException"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert ecs.list_clusters()["clusterArns"] == []
    # Other operations are never affected, and failed calls are in the call log too.
    assert local_aws.calls() == ["ListClusters"] * 3


def test_server_error_has_a_5xx_status(local_aws: LocalAws, ecs: Any) -> None:
    local_aws.inject_fault("ListClusters", "ServiceUnavailableException")
    with pytest.raises(ClientError) as info:
        ecs.list_clusters()
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503


def test_reset_disarms_faults_and_bad_requests_are_refused(local_aws: LocalAws, ecs: Any) -> None:
    local_aws.inject_fault("ListClusters", count=5)
    local_aws.reset()
    assert ecs.list_clusters()["clusterArns"] == []
    with pytest.raises(LocalAwsError, match=r"HTTP 400.*error"):
        local_aws.inject_fault("ListClusters", error="Nope")
    with pytest.raises(LocalAwsError, match=r"HTTP 400.*count"):
        local_aws.inject_fault("ListClusters", count=0)
