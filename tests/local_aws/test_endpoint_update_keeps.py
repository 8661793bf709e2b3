"""UpdateService keeps lifecycle hooks and deployment alarms it is not sent, as ECS does.

ECS replaces ``deploymentConfiguration`` member by member: a request that leaves out
``lifecycleHooks`` or ``alarms`` keeps the service's old ones; an explicit empty hook
list, or alarms with ``enable`` false, clear them (Terraform's aws_ecs_service and
Copilot both had to learn to send them). A client that only leaves them out never
converges, so the endpoint must behave the same way for gitopsd's tests to see it.
"""

from __future__ import annotations

from typing import Any

from gitopsd.local_aws.testing import LocalAws

from .conftest import RegisterTaskDefinition
from .test_endpoint_strategies import LOAD_BALANCER

HOOK = {"targetType": "PAUSE", "lifecycleStages": ["POST_SCALE_UP"]}
ALARMS = {"alarmNames": ["web-5xx"], "enable": True, "rollback": True}
NO_ALARMS = {"alarmNames": [], "enable": False, "rollback": False}


def configuration(ecs: Any, cluster: str) -> dict[str, Any]:
    service = ecs.describe_services(cluster=cluster, services=["web"])["services"][0]
    return dict(service["deploymentConfiguration"])


def test_hooks_and_alarms_left_out_are_kept_sent_empty_are_cleared(
    local_aws: LocalAws, ecs: Any, cluster: str, register: RegisterTaskDefinition
) -> None:
    local_aws.boto3_client("cloudwatch").put_metric_alarm(
        AlarmName="web-5xx",
        MetricName="5xx",
        Namespace="test",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=5,
        ComparisonOperator="GreaterThanThreshold",
    )
    ecs.create_service(
        cluster=cluster,
        serviceName="web",
        taskDefinition=register("app:1"),
        desiredCount=1,
        launchType="EC2",
        loadBalancers=[LOAD_BALANCER],
        deploymentConfiguration={
            "strategy": "BLUE_GREEN",
            "lifecycleHooks": [HOOK],
            "alarms": ALARMS,
        },
    )

    ecs.update_service(
        cluster=cluster,
        service="web",
        deploymentConfiguration={"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 3},
    )
    kept = configuration(ecs, cluster)
    assert kept["bakeTimeInMinutes"] == 3
    assert kept["lifecycleHooks"] == [HOOK]
    assert kept["alarms"] == ALARMS

    ecs.update_service(
        cluster=cluster,
        service="web",
        deploymentConfiguration={"strategy": "ROLLING", "lifecycleHooks": [], "alarms": NO_ALARMS},
    )
    cleared = configuration(ecs, cluster)
    assert not cleared.get("lifecycleHooks")
    assert cleared["alarms"] == NO_ALARMS
