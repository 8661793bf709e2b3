"""Native deployment strategies end to end: pre-flight refusals with zero writes, round trips.

The real CLI against the local endpoint and a git daemon (tests/e2e/conftest.py).
Writes are counted on the server side (its call log), so "nothing was written" is
what AWS saw; the local endpoint may refuse bad strategies itself, so these checks
must (and do) fire before any request reaches it. The round trips compare a
manifest with what the endpoint reports after CreateService/UpdateService.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from plan.strategy_configs import load_balancers, service_specs

from gitopsd.backends.ecs.normalise import normalise_service, unowned_service_pointers
from gitopsd.local_aws.testing import LocalAws
from gitopsd.plan.diff import diff

from .conftest import CLUSTER, Env

SERVICE = "apps/web/base/service.yaml"
TG = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup"
RULE = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/shop/1/2"
ROLE = "arn:aws:iam::123456789012:role/ecs-infrastructure"
FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:smoke"

#: The example web service with every native-strategy field (CANARY, hooks, alarms, ...).
EVERY_FIELD = f"""\
kind: Service
serviceName: web
taskDefinition: web
desiredCount: 2
launchType: EC2
loadBalancers:
  - targetGroupArn: {TG}/blue/1
    containerName: web
    containerPort: 80
    advancedConfiguration:
      alternateTargetGroupArn: {TG}/green/1
      productionListenerRule: {RULE}/3
      testListenerRule: {RULE}/4
      roleArn: {ROLE}
deploymentConfiguration:
  strategy: CANARY
  bakeTimeInMinutes: 5
  canaryConfiguration:
    canaryPercent: 20
    canaryBakeTimeInMinutes: 2
  alarms:
    alarmNames: [web-latency, web-5xx]
    enable: true
    rollback: true
  lifecycleHooks:
    - targetType: PAUSE
      lifecycleStages: [POST_TEST_TRAFFIC_SHIFT, PRE_SCALE_UP]
      timeoutConfiguration:
        timeoutInMinutes: 60
    - hookTargetArn: {FUNCTION}
      roleArn: {ROLE}
      lifecycleStages: [TEST_TRAFFIC_SHIFT]
      hookDetails:
        suite: smoke
tags:
  - key: team
    value: storefront
"""


def line_of(env: Env, rel: str, text: str) -> int:
    lines = (env.repo.path / rel).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def put_alarm(aws: LocalAws, name: str, state: str = "OK") -> None:
    cloudwatch = aws.boto3_client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        MetricName="TargetResponseTime",
        Namespace="AWS/ApplicationELB",
        Statistic="Average",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanThreshold",
    )
    if state != "OK":
        cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason="test")


def sync_web(env: Env) -> Any:
    env.aws.clear_calls()
    return env.gitopsd("sync", "web", "--no-wait")


def test_blue_green_without_advanced_configuration_fails_before_any_write(env: Env) -> None:
    canary = "CANARY\n  bakeTimeInMinutes: 5\n  canaryConfiguration:\n    canaryPercent: 20\n"
    text = EVERY_FIELD.replace(canary + "    canaryBakeTimeInMinutes: 2\n", "BLUE_GREEN\n")
    start = text.index("    advancedConfiguration:")
    end = text.index("deploymentConfiguration:")
    assert "BLUE_GREEN" in text
    env.repo.write(SERVICE, text[:start] + text[end:])
    env.commit("web: blue/green, no advancedConfiguration")
    line = line_of(env, SERVICE, "targetGroupArn")
    expected = (
        f"{SERVICE}:{line}: loadBalancers[0]: strategy BLUE_GREEN needs advancedConfiguration "
        "on each load balancer"
    )

    run = env.gitopsd("validate", "web")
    assert run.code != 0
    assert expected in run.out + run.err
    assert env.aws.calls() == []  # validate never calls AWS

    run = sync_web(env)
    assert run.code != 0
    assert expected in run.out + run.err
    assert env.writes() == []


def test_an_illegal_hook_stage_fails_before_any_write(env: Env) -> None:
    text = EVERY_FIELD.replace(
        "lifecycleStages: [POST_TEST_TRAFFIC_SHIFT, PRE_SCALE_UP]",
        "lifecycleStages: [POST_TEST_TRAFFIC_SHIFT,\n        PRODUCTION_TRAFFIC_SHIFT]",
    )
    env.repo.write(SERVICE, text)
    env.commit("web: a PAUSE hook on the production traffic shift")
    line = line_of(env, SERVICE, "PRODUCTION_TRAFFIC_SHIFT]")
    expected = (
        f"{SERVICE}:{line}: deploymentConfiguration.lifecycleHooks[0].lifecycleStages[1]: "
        "a PAUSE hook cannot run at PRODUCTION_TRAFFIC_SHIFT"
    )
    run = sync_web(env)
    assert run.code != 0
    assert expected in run.out + run.err
    assert env.writes() == []


def test_a_missing_alarm_fails_before_any_write(env: Env) -> None:
    put_alarm(env.aws, "web-latency")
    env.repo.write(SERVICE, EVERY_FIELD)
    env.commit("web: canary with alarms, one of which does not exist")
    line = line_of(env, SERVICE, "kind: Service")
    run = sync_web(env)
    assert run.code != 0
    assert (
        f"{SERVICE}:{line}: deploymentConfiguration.alarms.alarmNames[1]: alarm 'web-5xx' does "
        "not exist in CloudWatch"
    ) in run.out + run.err
    assert "web-latency" not in run.out + run.err  # the alarm that exists is no problem
    assert "DescribeAlarms" in env.aws.calls()
    assert env.writes() == []
    run = env.gitopsd("diff", "web")  # diff runs the same check, AWS reachable
    assert "alarm 'web-5xx' does not exist in CloudWatch" in run.out + run.err


def test_an_alarm_already_in_alarm_warns_and_the_sync_goes_on(env: Env) -> None:
    put_alarm(env.aws, "web-latency", state="ALARM")
    put_alarm(env.aws, "web-5xx")
    env.repo.write(SERVICE, EVERY_FIELD)
    env.commit("web: canary with alarms, one already firing")
    run = sync_web(env)
    assert run.code == 0, run.out + run.err
    assert (
        "deploymentConfiguration.alarms.alarmNames[0]: alarm 'web-latency' is already in "
        "ALARM: ECS ignores it for this deployment"
    ) in run.out + run.err
    assert "CreateService" in env.writes()


def test_every_native_strategy_field_round_trips_without_a_diff(env: Env) -> None:
    put_alarm(env.aws, "web-latency")
    put_alarm(env.aws, "web-5xx")
    env.repo.write(SERVICE, EVERY_FIELD)
    env.commit("web: canary with every native-strategy field")
    run = sync_web(env)
    assert run.code == 0, run.out + run.err
    live = env.service("web")["deploymentConfiguration"]
    assert live["strategy"] == "CANARY"
    assert live["canaryConfiguration"]["canaryPercent"] == 20.0  # a Double on the live side

    env.aws.clear_calls()
    run = env.gitopsd("diff", "web")
    assert run.code == 0, run.out + run.err
    assert "deploymentConfiguration" not in run.out
    assert env.writes() == []


def test_no_alarm_named_means_no_cloudwatch_call(env: Env) -> None:
    text = EVERY_FIELD.replace(
        "  alarms:\n    alarmNames: [web-latency, web-5xx]\n    enable: true\n    rollback: true\n",
        "",
    )
    env.repo.write(SERVICE, text)
    env.commit("web: canary without alarms")
    run = sync_web(env)
    assert run.code == 0, run.out + run.err
    assert "DescribeAlarms" not in env.aws.calls()


# --- applied, then planned again: no change (a property over generated configurations) ----------

#: Examples: bounded like the fuzz tests (GITOPSD_FUZZ_EXAMPLES), at most 25 by default.
EXAMPLES = min(25, int(os.environ.get("GITOPSD_FUZZ_EXAMPLES", "25")))


@pytest.fixture(scope="module")
def endpoint() -> Iterator[LocalAws]:
    with LocalAws(clock="manual", pace=1.0) as server:
        server.reset()
        server.create_cluster(CLUSTER)
        server.boto3_client("ecs").register_task_definition(
            family="web",
            containerDefinitions=[
                {
                    "name": "web",
                    "image": "nginx",
                    "memory": 128,
                    "portMappings": [{"containerPort": 80}],
                }
            ],
        )
        yield server


def _create_input(spec: dict[str, Any], name: str) -> dict[str, Any]:
    body = copy.deepcopy(spec)
    body.update(serviceName=name, cluster=CLUSTER)
    return body


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=service_specs())
def test_a_configuration_applied_then_planned_again_gives_no_change(
    endpoint: LocalAws, spec: dict[str, Any]
) -> None:
    ecs = endpoint.boto3_client("ecs")
    name = f"web-{abs(hash(repr(spec))) % 10**9}"
    try:
        live = ecs.create_service(**_create_input(spec, name))["service"]
        assert live["serviceName"] == name
        live = ecs.describe_services(cluster=CLUSTER, services=[name])["services"][0]
        live = dict(live, taskDefinition="web")  # the planner compares family:revision itself
        found = diff(
            normalise_service(dict(spec, serviceName=name)),
            normalise_service(live),
            unowned_service_pointers(spec),
        )
        assert found == (), found
    finally:
        ecs.delete_service(cluster=CLUSTER, service=name, force=True)


def test_the_generated_load_balancers_match_the_rules() -> None:
    assert "advancedConfiguration" in load_balancers("LINEAR", with_test_rule=True)[0]
    assert "advancedConfiguration" not in load_balancers("ROLLING", with_test_rule=True)[0]
