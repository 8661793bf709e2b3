"""BLUE_GREEN, LINEAR and CANARY over HTTP: stages, alarms from moto's CloudWatch, PAUSE hooks.

Manual clock (see conftest), pace 1 task per second, and one configured minute
lasting one simulated second (``minute_seconds=1``), so a bake of 3 "minutes"
is 3 ``advance(1)`` calls. Load balancer ARNs are plain strings: no ELBv2.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from gitopsd.local_aws.testing import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY, LocalAws

from .conftest import RegisterTaskDefinition

ALARM = "web-5xx"
LOAD_BALANCER = {
    "targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/blue/1",
    "containerName": "app",
    "containerPort": 80,
    "advancedConfiguration": {
        "alternateTargetGroupArn": (
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/green/2"
        ),
        "productionListenerRule": (
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/lb/1/2/3"
        ),
        "roleArn": "arn:aws:iam::123456789012:role/ecs-infrastructure",
    },
}
STAGES = [
    "RECONCILE_SERVICE",
    "PRE_SCALE_UP",
    "SCALE_UP",
    "POST_SCALE_UP",
    "TEST_TRAFFIC_SHIFT",
    "POST_TEST_TRAFFIC_SHIFT",
    "PRODUCTION_TRAFFIC_SHIFT",
    "POST_PRODUCTION_TRAFFIC_SHIFT",
    "BAKE_TIME",
    "CLEAN_UP",
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def minutes_are_seconds(local_aws: LocalAws) -> LocalAws:
    local_aws.configure(minute_seconds=1)
    return local_aws


def create(ecs: Any, cluster: str, td: str, config: dict[str, Any]) -> None:
    ecs.create_service(
        cluster=cluster,
        serviceName="web",
        taskDefinition=td,
        desiredCount=2,
        launchType="EC2",
        loadBalancers=[LOAD_BALANCER],
        deploymentConfiguration=config,
    )


def current(ecs: Any, cluster: str) -> dict[str, Any]:
    """The newest service deployment, described."""
    listed = ecs.list_service_deployments(cluster=cluster, service="web")
    arn = listed["serviceDeployments"][0]["serviceDeploymentArn"]
    described: dict[str, Any] = ecs.describe_service_deployments(serviceDeploymentArns=[arn])
    return dict(described["serviceDeployments"][0])


def settle_first(aws: LocalAws, ecs: Any, cluster: str) -> None:
    """Let the service's first deployment (the blue revision) finish."""
    for _ in range(60):
        if current(ecs, cluster)["status"] != "IN_PROGRESS":
            break
        aws.advance(1)
    assert current(ecs, cluster)["status"] == "SUCCESSFUL"


def until(aws: LocalAws, ecs: Any, cluster: str, stage: str) -> dict[str, Any]:
    for _ in range(60):
        deployment = current(ecs, cluster)
        if deployment.get("lifecycleStage") == stage:
            return deployment
        aws.advance(1)
    raise AssertionError(f"never reached {stage}")


def test_linear_deployment_reports_every_stage_in_order_until_successful(
    minutes_are_seconds: LocalAws, ecs: Any, cluster: str, register: RegisterTaskDefinition
) -> None:
    aws = minutes_are_seconds
    config = {
        "strategy": "LINEAR",
        "linearConfiguration": {"stepPercent": 50.0, "stepBakeTimeInMinutes": 2},
        "bakeTimeInMinutes": 3,
    }
    create(ecs, cluster, register("app:1"), config)
    settle_first(aws, ecs, cluster)
    ecs.update_service(cluster=cluster, service="web", taskDefinition=register("app:2"))
    seen: list[tuple[str, float, float]] = []
    for _ in range(60):
        deployment = current(ecs, cluster)
        target = deployment["targetServiceRevision"]
        row = (
            deployment["lifecycleStage"],
            target["requestedProductionTrafficWeight"],
            target["requestedTestTrafficWeight"],
        )
        if not seen or seen[-1] != row:
            seen.append(row)
        source = deployment["sourceServiceRevisions"][0]
        assert source["requestedProductionTrafficWeight"] == 100.0 - row[1]
        if deployment["status"] != "IN_PROGRESS":
            break
        aws.advance(1)
    assert deployment["status"] == "SUCCESSFUL"
    assert list(dict.fromkeys(stage for stage, _, _ in seen)) == STAGES
    assert [w for stage, w, _ in seen if stage == "PRODUCTION_TRAFFIC_SHIFT"] == [50.0, 100.0]
    assert [t for stage, _, t in seen if stage == "TEST_TRAFFIC_SHIFT"] == [100.0]
    service = ecs.describe_services(cluster=cluster, services=["web"])["services"][0]
    assert service["taskDefinition"].endswith("web:2")
    assert [d["status"] for d in service["deployments"]] == ["PRIMARY"]


def test_canary_rolled_back_by_an_alarm_set_during_bake(
    minutes_are_seconds: LocalAws, ecs: Any, cluster: str, register: RegisterTaskDefinition
) -> None:
    aws = minutes_are_seconds
    cloudwatch = aws.boto3_client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName=ALARM,
        MetricName="HTTPCode_Target_5XX_Count",
        Namespace="AWS/ApplicationELB",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    config = {
        "strategy": "CANARY",
        "canaryConfiguration": {"canaryPercent": 10.0, "canaryBakeTimeInMinutes": 1},
        "bakeTimeInMinutes": 30,
        "alarms": {"alarmNames": [ALARM], "enable": True, "rollback": True},
    }
    blue = register("app:1")
    create(ecs, cluster, blue, config)
    settle_first(aws, ecs, cluster)
    ecs.update_service(cluster=cluster, service="web", taskDefinition=register("app:2"))
    baking = until(aws, ecs, cluster, "BAKE_TIME")
    assert baking["alarms"] == {"status": "MONITORING", "alarmNames": [ALARM]}
    cloudwatch.set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="5xx")
    rolled = current(ecs, cluster)  # no time passed: the read itself sees the alarm
    assert rolled["status"] == "ROLLBACK_REQUESTED"
    assert rolled["alarms"]["status"] == "TRIGGERED"
    assert rolled["alarms"]["triggeredAlarmNames"] == [ALARM]
    assert ALARM in rolled["rollback"]["reason"]
    assert ALARM in rolled["statusReason"]
    aws.advance(1)
    assert current(ecs, cluster)["status"] == "ROLLBACK_IN_PROGRESS"
    aws.advance(1)
    done = current(ecs, cluster)
    assert done["status"] == "ROLLBACK_SUCCESSFUL"
    assert done["targetServiceRevision"]["requestedProductionTrafficWeight"] == 0.0
    assert done["sourceServiceRevisions"][0]["requestedProductionTrafficWeight"] == 100.0
    service = ecs.describe_services(cluster=cluster, services=["web"])["services"][0]
    assert service["taskDefinition"] == blue


def test_alarm_already_in_alarm_when_the_deployment_starts_is_ignored(
    minutes_are_seconds: LocalAws, ecs: Any, cluster: str, register: RegisterTaskDefinition
) -> None:
    aws = minutes_are_seconds
    cloudwatch = aws.boto3_client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName=ALARM,
        MetricName="Errors",
        Namespace="App",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    cloudwatch.set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="before")
    config = {
        "strategy": "BLUE_GREEN",
        "bakeTimeInMinutes": 1,
        "alarms": {"alarmNames": [ALARM], "enable": True, "rollback": True},
    }
    create(ecs, cluster, register("app:1"), config)
    settle_first(aws, ecs, cluster)
    assert current(ecs, cluster)["alarms"]["status"] == "MONITORING_COMPLETE"


@pytest.mark.anyio
async def test_pause_hook_continued_and_rejected_with_continue_service_deployment(
    minutes_are_seconds: LocalAws, cluster: str, register: RegisterTaskDefinition
) -> None:
    aws = minutes_are_seconds
    ecs_sync = aws.boto3_client("ecs")
    hook = {
        "targetType": "PAUSE",
        "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"],
        "timeoutConfiguration": {"timeoutInMinutes": 60},
    }
    config = {"strategy": "BLUE_GREEN", "lifecycleHooks": [hook]}
    blue = register("app:1")
    create(ecs_sync, cluster, blue, config)
    first = until(aws, ecs_sync, cluster, "POST_TEST_TRAFFIC_SHIFT")
    session = get_session()
    async with session.create_client(
        "ecs",
        region_name=aws.region,
        endpoint_url=aws.endpoint_url,
        aws_access_key_id=DUMMY_ACCESS_KEY,
        aws_secret_access_key=DUMMY_SECRET_KEY,
        config=AioConfig(retries={"total_max_attempts": 1}),
    ) as ecs:
        [detail] = first["lifecycleHookDetails"]
        assert (detail["targetType"], detail["status"]) == ("PAUSE", "AWAITING_ACTION")
        assert detail["timeoutAction"] == "ROLLBACK"
        aws.advance(30)  # waits: nothing moves before the hook is answered
        assert current(ecs_sync, cluster)["lifecycleStage"] == "POST_TEST_TRAFFIC_SHIFT"
        answer = await ecs.continue_service_deployment(
            serviceDeploymentArn=first["serviceDeploymentArn"],
            hookId=detail["hookId"],
            action="CONTINUE",
        )
        assert answer["serviceDeploymentArn"] == first["serviceDeploymentArn"]
        assert current(ecs_sync, cluster)["lifecycleStage"] == "PRODUCTION_TRAFFIC_SHIFT"
        with pytest.raises(ClientError) as again:
            await ecs.continue_service_deployment(
                serviceDeploymentArn=first["serviceDeploymentArn"], hookId=detail["hookId"]
            )
        assert again.value.response["Error"]["Code"] == "InvalidParameterException"
        with pytest.raises(ClientError) as missing:
            await ecs.continue_service_deployment(
                serviceDeploymentArn=first["serviceDeploymentArn"] + "x", hookId=detail["hookId"]
            )
        assert missing.value.response["Error"]["Code"] == "ServiceDeploymentNotFoundException"
        settle_first(aws, ecs_sync, cluster)

        # the next deployment: rejected at the same hook (a fresh hook id)
        await ecs.update_service(cluster=cluster, service="web", taskDefinition=register("app:2"))
        second = until(aws, ecs_sync, cluster, "POST_TEST_TRAFFIC_SHIFT")
        [detail2] = second["lifecycleHookDetails"]
        assert detail2["hookId"] != detail["hookId"]
        await ecs.continue_service_deployment(
            serviceDeploymentArn=second["serviceDeploymentArn"],
            hookId=detail2["hookId"],
            action="ROLLBACK",
        )
    rolled = current(ecs_sync, cluster)
    assert rolled["status"] == "ROLLBACK_REQUESTED"
    assert "ContinueServiceDeployment" in rolled["rollback"]["reason"]
    aws.advance(2)
    assert current(ecs_sync, cluster)["status"] == "ROLLBACK_SUCCESSFUL"
    service = ecs_sync.describe_services(cluster=cluster, services=["web"])["services"][0]
    assert service["taskDefinition"] == blue


def test_failing_lambda_hook_and_stop_roll_back(
    minutes_are_seconds: LocalAws, ecs: Any, cluster: str, register: RegisterTaskDefinition
) -> None:
    aws = minutes_are_seconds
    aws.configure(fail_hooks=["smoke-fails"])
    lambda_arn = "arn:aws:lambda:us-east-1:123456789012:function:smoke-fails"
    hook = {
        "targetType": "AWS_LAMBDA",
        "hookTargetArn": lambda_arn,
        "roleArn": "arn:aws:iam::123456789012:role/hooks",
        "lifecycleStages": ["POST_PRODUCTION_TRAFFIC_SHIFT"],
    }
    linear = {"stepPercent": 50.0, "stepBakeTimeInMinutes": 0}
    create(ecs, cluster, register("app:1"), {"strategy": "LINEAR", "linearConfiguration": linear})
    settle_first(aws, ecs, cluster)
    ecs.update_service(
        cluster=cluster,
        service="web",
        taskDefinition=register("app:2"),
        deploymentConfiguration={"strategy": "BLUE_GREEN", "lifecycleHooks": [hook]},
    )
    until(aws, ecs, cluster, "POST_PRODUCTION_TRAFFIC_SHIFT")
    aws.advance(1)
    failed = current(ecs, cluster)
    assert failed["status"] == "ROLLBACK_REQUESTED"
    assert failed["lifecycleHookDetails"][0]["status"] == "FAILED"
    assert lambda_arn in failed["rollback"]["reason"]
    aws.advance(2)
    assert current(ecs, cluster)["status"] == "ROLLBACK_SUCCESSFUL"

    ecs.update_service(cluster=cluster, service="web", taskDefinition=register("app:3"))
    aws.advance(3)
    arn = current(ecs, cluster)["serviceDeploymentArn"]
    ecs.stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")
    stopped = current(ecs, cluster)
    assert stopped["status"] == "ROLLBACK_IN_PROGRESS"
    assert "StopServiceDeployment" in stopped["rollback"]["reason"]


@pytest.mark.parametrize(
    ("config", "balancer", "message"),
    [
        (
            {"strategy": "BLUE_GREEN"},
            {k: v for k, v in LOAD_BALANCER.items() if k != "advancedConfiguration"},
            "advancedConfiguration must be specified",
        ),
        (
            {
                "strategy": "CANARY",
                "lifecycleHooks": [
                    {"targetType": "PAUSE", "lifecycleStages": ["PRODUCTION_TRAFFIC_SHIFT"]}
                ],
            },
            LOAD_BALANCER,
            "PAUSE hooks cannot be configured at the PRODUCTION_TRAFFIC_SHIFT stage",
        ),
    ],
)
def test_create_service_refuses_what_ecs_refuses(
    ecs: Any,
    cluster: str,
    register: RegisterTaskDefinition,
    config: dict[str, Any],
    balancer: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(ClientError) as error:
        ecs.create_service(
            cluster=cluster,
            serviceName="web",
            taskDefinition=register("app:1"),
            desiredCount=1,
            launchType="EC2",
            loadBalancers=[balancer],
            deploymentConfiguration=config,
        )
    assert error.value.response["Error"]["Code"] == "InvalidParameterException"
    assert message in error.value.response["Error"]["Message"]
    assert ecs.list_services(cluster=cluster)["serviceArns"] == []
