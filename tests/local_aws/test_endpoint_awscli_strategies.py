"""docs/local-aws.md's AWS CLI recipes for strategies: approve a PAUSE hook, fire an alarm.

Set-up goes through boto3 (fast); only the documented commands run the real CLI.
"""

from __future__ import annotations

from typing import Any

from gitopsd.local_aws.testing import LocalAws

from .conftest import RegisterTaskDefinition
from .test_endpoint_awscli import aws

AWAITING = "serviceDeployments[0].lifecycleHookDetails[?status=='AWAITING_ACTION'].hookId | [0]"
CONFIG = {
    "strategy": "CANARY",
    "bakeTimeInMinutes": 10,
    "alarms": {"alarmNames": ["web-5xx"], "enable": True, "rollback": True},
    "lifecycleHooks": [{"targetType": "PAUSE", "lifecycleStages": ["POST_SCALE_UP"]}],
}


def test_cli_approves_a_pause_hook_and_an_alarm_rolls_back(
    local_aws: LocalAws, ecs: Any, cluster: str, register: RegisterTaskDefinition
) -> None:
    local_aws.configure(minute_seconds=1)
    local_aws.boto3_client("cloudwatch").put_metric_alarm(
        AlarmName="web-5xx",
        MetricName="HTTPCode_Target_5XX_Count",
        Namespace="AWS/ApplicationELB",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    ecs.create_service(
        cluster=cluster,
        serviceName="web",
        taskDefinition=register("nginx:1"),
        desiredCount=1,
        launchType="EC2",
    )
    local_aws.advance(1)
    ecs.update_service(
        cluster=cluster,
        service="web",
        taskDefinition=register("nginx:2"),
        deploymentConfiguration=CONFIG,
    )
    local_aws.advance(4)  # RECONCILE_SERVICE, PRE_SCALE_UP, SCALE_UP (1 task), POST_SCALE_UP

    arn = str(
        aws(local_aws, "ecs", "list-service-deployments", "--cluster", cluster, "--service",
            "web", "--query", "serviceDeployments[0].serviceDeploymentArn")
    )  # fmt: skip
    stage, hook = aws(local_aws, "ecs", "describe-service-deployments",
                      "--service-deployment-arns", arn,
                      "--query", f"[serviceDeployments[0].lifecycleStage, {AWAITING}]")  # fmt: skip
    assert stage == "POST_SCALE_UP"
    aws(local_aws, "ecs", "continue-service-deployment", "--service-deployment-arn", arn,
        "--hook-id", hook, "--action", "CONTINUE")  # fmt: skip

    described = ecs.describe_service_deployments(serviceDeploymentArns=[arn])
    assert described["serviceDeployments"][0]["lifecycleStage"] == "TEST_TRAFFIC_SHIFT"
    for _ in range(40):
        described = ecs.describe_service_deployments(serviceDeploymentArns=[arn])
        if described["serviceDeployments"][0]["lifecycleStage"] == "BAKE_TIME":
            break
        local_aws.advance(1)
    aws(local_aws, "cloudwatch", "set-alarm-state", "--alarm-name", "web-5xx",
        "--state-value", "ALARM", "--state-reason", "demo")  # fmt: skip
    query = "serviceDeployments[0].[status, alarms.triggeredAlarmNames, rollback.reason]"
    answer: list[Any] = aws(local_aws, "ecs", "describe-service-deployments",
                            "--service-deployment-arns", arn, "--query", query)  # fmt: skip
    assert answer[:2] == ["ROLLBACK_REQUESTED", ["web-5xx"]]
    assert "web-5xx" in answer[2]
