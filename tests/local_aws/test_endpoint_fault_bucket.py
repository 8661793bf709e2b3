"""AWS-like throttling in the local endpoint: a fault rule with a token bucket.

ECS throttles each operation class with a token bucket (a burst, then a refill
rate); the benchmark's P2 and clients' pacing tests need the endpoint to do the
same, so a rule with ``bucket`` fires only for calls that find its bucket empty.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from gitopsd.local_aws.faults import Faults
from gitopsd.local_aws.testing import LocalAws, LocalAwsError


def test_a_bucket_lets_the_burst_through_then_the_refill_rate() -> None:
    now = [10.0]
    faults = Faults(monotonic=lambda: now[0])
    faults.arm(
        {"operation": ["CreateService", "UpdateService"], "bucket": {"burst": 3, "refill": 2}}
    )
    fired = [faults.match(op) is not None for op in ["CreateService", "UpdateService"] * 2]
    assert fired == [False, False, False, True]  # one bucket for the class: 3, then empty
    now[0] = 10.5  # half a second: one token back
    assert faults.match("UpdateService") is None
    assert faults.match("UpdateService") is not None
    assert faults.match("ListServices") is None  # not in the class
    now[0] = 100.0  # a long calm refills to the burst, not beyond
    assert [faults.match("UpdateService") is None for _ in range(4)] == [True, True, True, False]
    [rule] = faults.snapshot()["faults"]
    assert rule["error"] == "ThrottlingException"
    assert rule["bucket"] == {"burst": 3.0, "refill": 2.0}
    assert (rule["matched"], rule["injected"], rule["active"], rule["count"]) == (10, 3, True, None)


def test_the_endpoint_throttles_past_the_burst(local_aws: LocalAws, ecs: Any) -> None:
    local_aws.inject_faults(
        [{"operation": "ListClusters", "bucket": {"burst": 2, "refill": 0.001}}]
    )
    ecs.list_clusters()
    ecs.list_clusters()
    with pytest.raises(ClientError) as refused:
        ecs.list_clusters()
    assert refused.value.response["Error"]["Code"] == "ThrottlingException"
    ecs.list_task_definitions()  # another operation: its own budget
    assert [i["operation"] for i in local_aws.faults()["injected"]] == ["ListClusters"]


@pytest.mark.parametrize(
    "bucket", [{"burst": 0, "refill": 1}, {"burst": 5}, {"burst": 5, "refill": 0}, "fast"]
)
def test_bad_buckets_are_refused(local_aws: LocalAws, bucket: Any) -> None:
    with pytest.raises(LocalAwsError, match="HTTP 400") as info:
        local_aws.inject_faults([{"operation": "ListClusters", "bucket": bucket}])
    assert info.match("'bucket' must be")
