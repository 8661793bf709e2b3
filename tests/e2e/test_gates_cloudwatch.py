"""The built-in cloudwatch gate against the local endpoint's CloudWatch (moto): data points
put with PutMetricData are read back with GetMetricData and compared with the threshold;
throttling is a temporary error, a refusal (access denied) a permanent one naming the gate.
(moto evaluates no metric math: expressions are covered by the configuration tests.)"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from aiobotocore.session import AioSession

from gitopsd.config import AwsConfig, GateConfig
from gitopsd.errors import PermanentError, TemporaryError
from gitopsd.gates import GateContext, GateResult
from gitopsd.gates.cloudwatch import CloudWatchGate
from gitopsd.local_aws.testing import LocalAws

METRIC = {
    "Namespace": "Web",
    "MetricName": "Errors",
    "Dimensions": [{"Name": "Service", "Value": "svc"}],
}


def put(aws: LocalAws, *values: float) -> None:
    cloudwatch = aws.boto3_client("cloudwatch")
    now = datetime.now(UTC)
    cloudwatch.put_metric_data(
        Namespace="Web",
        MetricData=[
            {
                "MetricName": "Errors",
                "Dimensions": METRIC["Dimensions"],
                "Timestamp": now,
                "Value": v,
            }
            for v in values
        ],
    )


def gate(aws: LocalAws, queries: list[dict[str, Any]], threshold: float = 5.0) -> CloudWatchGate:
    config = GateConfig.model_validate(
        {
            "name": "errors",
            "cloudwatch": {
                "queries": queries,
                "threshold": threshold,
                "comparison": "GreaterThanThreshold",
                "lookback": "10m",
            },
        }
    )
    aws_config = AwsConfig(region="us-east-1", endpoint_url=aws.endpoint_url, max_attempts=1)
    return CloudWatchGate(config, AioSession(), aws_config, "us-east-1")


def check(g: CloudWatchGate) -> GateResult:
    context = GateContext("a", "svc", "arn:sd", "arn:td", "bake", now=time.time() + 1)
    return anyio.run(g.check, context)


STAT = {"Id": "errors", "MetricStat": {"Metric": METRIC, "Stat": "Sum"}}


def test_a_metric_above_the_threshold_fails_the_check(aws: LocalAws) -> None:
    g = gate(aws, [STAT])
    assert check(g) == GateResult(True, "no data", ())
    put(aws, 2.0)
    ok = check(g)
    assert ok.ok
    assert ok.values == (("errors", 2.0),)
    put(aws, 10.0)  # the same minute: the Sum is 12
    failed = check(g)
    assert not failed.ok
    assert failed.message == "query errors = 12 > 5"
    assert "GetMetricData" in aws.calls()


def test_throttling_is_temporary_a_refusal_permanent(aws: LocalAws) -> None:
    g = gate(aws, [STAT])
    aws.inject_fault("GetMetricData", "ThrottlingException", count=1)
    with pytest.raises(TemporaryError, match=r"^gate errors: CloudWatch GetMetricData: Throttl"):
        check(g)
    aws.inject_fault("GetMetricData", "AccessDeniedException", count=1)
    with pytest.raises(
        PermanentError, match=r"^gate errors: CloudWatch GetMetricData: AccessDenied"
    ):
        check(g)
    assert check(g).ok  # faults spent: the query itself is fine
