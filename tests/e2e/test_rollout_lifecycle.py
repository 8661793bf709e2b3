"""Blue/green-family rollouts against the local ECS endpoint, watched in lock step with its
manual clock: a LINEAR deployment's stages and traffic steps reported in order until it
succeeds; a CANARY deployment rolled back by an alarm during bake, reported with the alarm's
name; a failing CloudWatch gate and a failing plugin gate each stop the deployment with
StopServiceDeployment(ROLLBACK), and the verdict names the gate and its values."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from aiobotocore.session import AioSession

from gitopsd.backends.base import Applied, RolloutProgress, RolloutStatus
from gitopsd.backends.ecs.client import EcsClient
from gitopsd.backends.ecs.rollout import Target, watch_rollouts
from gitopsd.config import AppConfig, AwsConfig, GateConfig
from gitopsd.gates import Gate, GateContext, GateResult, build_gates
from gitopsd.gates.cloudwatch import CloudWatchGate
from gitopsd.local_aws.testing import LocalAws
from gitopsd.plugins import PluginRegistry, hookimpl
from gitopsd.state import JsonRecord

from .conftest import CLUSTER

TG = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup"
RULE = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/shop/1/2"
ROLE = "arn:aws:iam::123456789012:role/ecs-infrastructure"
LOAD_BALANCERS = [
    {
        "targetGroupArn": f"{TG}/blue/1",
        "containerName": "app",
        "containerPort": 80,
        "advancedConfiguration": {
            "alternateTargetGroupArn": f"{TG}/green/1",
            "productionListenerRule": f"{RULE}/3",
            "roleArn": ROLE,
        },
    }
]
ALARM = "svc-5xx"


def register(ecs: Any, image: str) -> str:
    out = ecs.register_task_definition(
        family="svc",
        containerDefinitions=[
            {"name": "app", "image": image, "memory": 64, "portMappings": [{"containerPort": 80}]}
        ],
    )
    return str(out["taskDefinition"]["taskDefinitionArn"])


def started(aws: LocalAws, config: dict[str, Any], image: str = "nginx:2") -> Target:
    """A service on nginx:1 (its first deployment done), then ``image`` deployed with
    ``config`` on the manual clock."""
    ecs = aws.boto3_client()
    aws.configure(clock="manual", pace=1.0, minute_seconds=2.0)
    ecs.create_service(
        cluster=CLUSTER,
        serviceName="svc",
        taskDefinition=register(ecs, "nginx:1"),
        desiredCount=2,
        launchType="EC2",
        loadBalancers=LOAD_BALANCERS,
        deploymentConfiguration={**config, "bakeTimeInMinutes": 0, "lifecycleHooks": []},
    )
    for _ in range(200):  # the first deployment (nothing to roll back to) completes
        sd = newest(aws)
        if sd["status"] == "SUCCESSFUL":
            break
        aws.advance(1.0)
    else:
        raise AssertionError(f"the first deployment never completed: {newest(aws)}")
    at = time.time()
    svc = ecs.update_service(
        cluster=CLUSTER,
        service="svc",
        taskDefinition=register(ecs, image),
        deploymentConfiguration=config,
    )["service"]
    primary = next(d for d in svc["deployments"] if d["status"] == "PRIMARY")
    applied = Applied(
        "Service/svc", "updated", svc["serviceArn"], "", primary["taskDefinition"], at,
        primary["id"], svc.get("currentServiceDeployment", ""),
    )  # fmt: skip
    assert applied.service_deployment, "the endpoint gave no service deployment ARN"
    return Target.of(applied)


def newest(aws: LocalAws) -> dict[str, Any]:
    ecs = aws.boto3_client()
    briefs = ecs.list_service_deployments(cluster=CLUSTER, service="svc")["serviceDeployments"]
    arns = [b["serviceDeploymentArn"] for b in briefs]
    found = ecs.describe_service_deployments(serviceDeploymentArns=arns)["serviceDeployments"]
    return dict(max(found, key=lambda sd: sd["createdAt"]))


def polls(aws: LocalAws) -> int:
    return aws.calls().count("DescribeServiceDeployments")


def watch(
    aws: LocalAws,
    tmp_path: Path,
    target: Target,
    *,
    gates: Sequence[tuple[GateConfig, Gate]] = (),
    app: AppConfig | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    timeout: float = 60,
) -> tuple[RolloutStatus, list[RolloutProgress]]:
    """Watch ``target`` while the clock moves one simulated second per two polls;
    ``on_step`` sees the newest service deployment before each second."""
    config = AwsConfig(region="us-east-1", endpoint_url=aws.endpoint_url, max_attempts=1)
    seen: list[RolloutProgress] = []

    async def main() -> list[RolloutStatus]:
        async with EcsClient(config) as client, anyio.create_task_group() as tg:

            async def drive() -> None:
                while True:
                    before = await anyio.to_thread.run_sync(polls, aws)
                    with anyio.fail_after(10):  # polling with a deadline
                        while True:
                            if await anyio.to_thread.run_sync(polls, aws) >= before + 2:
                                break
                            await anyio.sleep(0.01)
                    if on_step is not None:
                        on_step(await anyio.to_thread.run_sync(newest, aws))
                    await anyio.to_thread.run_sync(aws.advance, 1.0)

            tg.start_soon(drive)
            statuses = await watch_rollouts(
                client,
                app or AppConfig(name="a", source="s", cluster=CLUSTER),
                [target],
                timeout=timeout,
                poll_interval=0.01,
                last_good=JsonRecord(tmp_path / "last-good.json"),
                on_progress=seen.append,
                gates=gates,
            )
            tg.cancel_scope.cancel()
        return statuses

    (status,) = anyio.run(main)
    return status, seen


def test_a_linear_deployment_reports_its_stages_and_steps_in_order(
    aws: LocalAws, tmp_path: Path
) -> None:
    linear = {
        "strategy": "LINEAR",
        "bakeTimeInMinutes": 1,
        "linearConfiguration": {"stepPercent": 50.0, "stepBakeTimeInMinutes": 1},
    }
    status, seen = watch(aws, tmp_path, started(aws, linear))
    assert status.state == "COMPLETED", status.message
    stages = [p.stage.lifecycle for p in seen if p.stage.status == "IN_PROGRESS"]
    order = [
        "RECONCILE_SERVICE", "PRE_SCALE_UP", "SCALE_UP", "POST_SCALE_UP", "TEST_TRAFFIC_SHIFT",
        "POST_TEST_TRAFFIC_SHIFT", "PRODUCTION_TRAFFIC_SHIFT", "POST_PRODUCTION_TRAFFIC_SHIFT",
        "BAKE_TIME", "CLEAN_UP",
    ]  # fmt: skip
    assert [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s] == order
    assert seen[-1].stage.status == "SUCCESSFUL"
    shifting = [p for p in seen if p.stage.lifecycle == "PRODUCTION_TRAFFIC_SHIFT"]
    weights = [dict(p.details)["production_traffic"] for p in shifting]
    assert weights[-2:] == ["50", "100"], weights
    assert any(
        p.message.endswith("LINEAR: PRODUCTION_TRAFFIC_SHIFT 50% production traffic, baking")
        for p in shifting
    )
    bake = next(p for p in seen if p.stage.lifecycle == "BAKE_TIME")
    assert dict(bake.details)["bake_remaining"] == "60"
    assert bake.message == "Service/svc: svc:2: LINEAR: BAKE_TIME, 1m left"
    assert {p.strategy for p in seen} == {"LINEAR"}
    assert "StopServiceDeployment" not in aws.calls()


def test_a_canary_rolled_back_by_an_alarm_during_bake_names_the_alarm(
    aws: LocalAws, tmp_path: Path
) -> None:
    cloudwatch = aws.boto3_client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName=ALARM, MetricName="Errors", Namespace="Web", Statistic="Sum", Period=60,
        EvaluationPeriods=1, Threshold=1.0, ComparisonOperator="GreaterThanThreshold",
    )  # fmt: skip
    canary = {
        "strategy": "CANARY",
        "bakeTimeInMinutes": 5,
        "canaryConfiguration": {"canaryPercent": 10.0, "canaryBakeTimeInMinutes": 1},
        "alarms": {"alarmNames": [ALARM], "enable": True, "rollback": True},
    }
    fired: list[str] = []

    def fire_during_bake(sd: dict[str, Any]) -> None:
        if sd.get("lifecycleStage") == "BAKE_TIME" and not fired:
            cloudwatch.set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="test")
            fired.append(ALARM)

    status, seen = watch(aws, tmp_path, started(aws, canary), on_step=fire_during_bake)
    assert fired
    assert status.state == "ROLLED_BACK", status.message
    assert f"alarm {ALARM} in ALARM" in status.message
    assert "ECS rolled back to svc:1" in status.message
    statuses = [p.stage.status for p in seen]
    assert statuses.index("ROLLBACK_SUCCESSFUL") > statuses.index("IN_PROGRESS")
    assert any(p.stage.lifecycle == "BAKE_TIME" for p in seen)
    canary_steps = [dict(p.details).get("production_traffic") for p in seen]
    assert "10" in canary_steps
    assert "StopServiceDeployment" not in aws.calls()  # ECS rolled back on its own


BLUE_GREEN = {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 10}


def gate_config(**keys: Any) -> GateConfig:
    return GateConfig.model_validate(
        {"name": "errors", "interval": "100ms", "failure_limit": 1, **keys}
    )


def test_a_failing_cloudwatch_gate_stops_the_deployment_with_rollback(
    aws: LocalAws, tmp_path: Path
) -> None:
    metric = {"Namespace": "Web", "MetricName": "Errors"}
    aws.boto3_client("cloudwatch").put_metric_data(
        Namespace="Web",
        MetricData=[{"MetricName": "Errors", "Timestamp": datetime.now(UTC), "Value": 12.0}],
    )
    config = gate_config(
        cloudwatch={
            "queries": [{"Id": "errors", "MetricStat": {"Metric": metric, "Stat": "Sum"}}],
            "threshold": 5,
            "comparison": "GreaterThanThreshold",
            "lookback": "10m",
        },
        during=["bake"],
    )
    aws_config = AwsConfig(region="us-east-1", endpoint_url=aws.endpoint_url, max_attempts=1)
    gate = CloudWatchGate(config, AioSession(), aws_config, "us-east-1")
    status, seen = watch(aws, tmp_path, started(aws, BLUE_GREEN), gates=[(config, gate)])
    assert status.state == "ROLLED_BACK", status.message
    assert status.message.startswith(
        "svc:2 failed (gate errors failed 2 check(s) (failure_limit 1): query errors = 12 > 5); "
        "gitopsd stopped it with ROLLBACK and ECS rolled back to svc:1"
    ), status.message
    assert aws.calls().count("StopServiceDeployment") == 1
    assert aws.calls().count("GetMetricData") == 2  # failure_limit 1: the second failed check
    gated = [dict(p.details).get("gate_errors", "") for p in seen]
    assert "failed 1/2: query errors = 12 > 5" in gated
    assert any(p.stage.lifecycle == "BAKE_TIME" for p in seen)  # the gate ran during bake only
    assert seen[-1].stage.status == "ROLLBACK_SUCCESSFUL"


class FailingPlugin:
    """A third-party gate type: its check fails with the value it measured."""

    def __init__(self) -> None:
        self.contexts: list[GateContext] = []

    @hookimpl
    def gitopsd_gate(self, name: str, type: str, options: Mapping[str, Any]) -> object | None:
        if type != "latency":
            return None
        plugin = self

        class Latency:
            async def check(self, context: GateContext) -> GateResult:
                plugin.contexts.append(context)
                p99 = float(options["p99_ms"])
                return GateResult(
                    False, f"p99 {p99:g} ms > {options['max_ms']} ms", (("p99", p99),)
                )

        return Latency()


def test_a_failing_plugin_gate_stops_the_deployment_with_rollback(
    aws: LocalAws, tmp_path: Path
) -> None:
    plugin = FailingPlugin()
    registry = PluginRegistry.discover({}, extra={"latency": plugin})
    app = AppConfig.model_validate(
        {
            "name": "a", "source": "s", "cluster": CLUSTER,
            "gates": [{
                "name": "p99", "type": "latency", "interval": "100ms", "failure_limit": 0,
                "options": {"p99_ms": 900, "max_ms": 300},
            }],
        }
    )  # fmt: skip
    gates = build_gates(app, cloudwatch=lambda c: None, plugins=registry.gate)  # type: ignore[arg-type,return-value]
    status, _ = watch(aws, tmp_path, started(aws, BLUE_GREEN), gates=gates, app=app)
    assert status.state == "ROLLED_BACK", status.message
    assert "(gate p99 failed 1 check(s) (failure_limit 0): p99 900 ms > 300 ms)" in status.message
    assert aws.calls().count("StopServiceDeployment") == 1
    (context,) = plugin.contexts
    assert (context.app, context.service, context.phase) == ("a", "svc", "progressing")
    assert context.deployment.startswith("arn:aws:ecs:")


def test_a_native_deployment_still_going_at_the_deadline_is_stopped_with_rollback(
    aws: LocalAws, tmp_path: Path
) -> None:
    aws.configure(fail_images=["*:broken*"])
    target = started(aws, {**BLUE_GREEN, "bakeTimeInMinutes": 0}, "nginx:broken")
    # Green tasks keep failing in SCALE_UP (no circuit breaker for BLUE_GREEN): no verdict.
    status, seen = watch(aws, tmp_path, target, timeout=2)
    assert status.state == "ROLLED_BACK", status.message
    assert "(no steady state within 2s (sync.timeout)); gitopsd stopped it with ROLLBACK" in (
        status.message
    )
    assert aws.calls().count("StopServiceDeployment") == 1
    assert aws.calls().count("UpdateService") == 1  # the test's: ECS rolled back, not gitopsd
    assert seen[-1].stage.status == "ROLLBACK_SUCCESSFUL"


def test_time_waiting_at_a_pause_hook_does_not_count_against_the_deadline(
    aws: LocalAws, tmp_path: Path
) -> None:
    pausing = {
        **BLUE_GREEN,
        "bakeTimeInMinutes": 0,
        "lifecycleHooks": [
            {
                "targetType": "PAUSE",
                "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"],
                "timeoutConfiguration": {"timeoutInMinutes": 600, "action": "ROLLBACK"},
            }
        ],
    }
    target = started(aws, pausing)
    ecs = aws.boto3_client()
    since: list[float] = []

    def approve_after_a_while(sd: dict[str, Any]) -> None:
        waiting = [
            h for h in sd.get("lifecycleHookDetails") or [] if h["status"] == "AWAITING_ACTION"
        ]
        if not waiting:
            return
        since.append(since[0] if since else time.monotonic())
        if time.monotonic() - since[0] > 3:  # longer than the 2 s deadline
            ecs.continue_service_deployment(
                serviceDeploymentArn=sd["serviceDeploymentArn"],
                hookId=waiting[0]["hookId"],
                action="CONTINUE",
            )

    status, seen = watch(aws, tmp_path, target, timeout=2, on_step=approve_after_a_while)
    assert since
    assert status.state == "COMPLETED", status.message
    asking = [p for p in seen if dict(p.details).get("approval") == "needed"]
    assert asking
    assert asking[0].message.startswith("Service/svc: svc:2: approval needed: PAUSE hook ")
    assert dict(asking[0].details)["hook_stage"] == "POST_TEST_TRAFFIC_SHIFT"
    assert "StopServiceDeployment" not in aws.calls()
