"""Progressive delivery as a user meets it: the cases a first review found broken.

The real CLI against the local endpoint and a git daemon (tests/e2e/conftest.py).
Each test names the user's step and what went wrong before the fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gitopsd.config import GateConfig
from gitopsd.errors import TemporaryError
from gitopsd.gates import GateContext, GateResult
from gitopsd.local_aws.testing import LocalAws

from .conftest import CLUSTER, Env
from .test_approvals import advance_until, blue_green, paused
from .test_rollout_lifecycle import started, watch

SERVICE = "apps/web/base/service.yaml"
TG = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup"
RULE = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/shop/1/2"
ROLE = "arn:aws:iam::123456789012:role/ecs-infrastructure"
FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:smoke"
ALARM = "web-5xx"

HEAD = f"""\
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
      roleArn: {ROLE}
"""

BLUE_GREEN_WITH_HOOK_AND_ALARM = f"""\
deploymentConfiguration:
  strategy: BLUE_GREEN
  lifecycleHooks:
    - targetType: AWS_LAMBDA
      hookTargetArn: {FUNCTION}
      roleArn: {ROLE}
      lifecycleStages: [POST_SCALE_UP]
  alarms:
    alarmNames: [{ALARM}]
    enable: true
    rollback: true
"""


def put_alarm(aws: LocalAws, name: str) -> None:
    aws.boto3_client("cloudwatch").put_metric_alarm(
        AlarmName=name,
        MetricName="HTTPCode_Target_5XX_Count",
        Namespace="AWS/ApplicationELB",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=5,
        ComparisonOperator="GreaterThanThreshold",
    )


def live_configuration(env: Env) -> dict[str, Any]:
    return dict(env.service("web")["deploymentConfiguration"])


@pytest.mark.parametrize(
    "rolling",
    [
        pytest.param("deploymentConfiguration:\n  strategy: ROLLING\n", id="kept-block"),
        pytest.param("", id="dropped-block"),
    ],
)
def test_back_to_rolling_clears_hooks_and_alarms_and_converges(env: Env, rolling: str) -> None:
    """A BLUE_GREEN service with a hook and an alarm, switched back to ROLLING in Git.

    ECS keeps the hooks and alarms an UpdateService leaves out, so a plain "send what
    the manifest says" left them on the service and every later diff showed them again.
    """
    put_alarm(env.aws, ALARM)
    env.repo.write(SERVICE, HEAD + BLUE_GREEN_WITH_HOOK_AND_ALARM)
    env.commit("web: blue/green with a smoke test and an alarm")
    run = env.gitopsd("sync", "web")
    assert run.code == 0, run.out + run.err
    assert live_configuration(env)["lifecycleHooks"]

    env.repo.write(SERVICE, HEAD + rolling)
    env.commit("web: back to rolling")
    run = env.gitopsd("sync", "web")
    assert run.code == 0, run.out + run.err

    live = live_configuration(env)
    assert live["strategy"] == "ROLLING"
    assert not live.get("lifecycleHooks"), live
    assert not (live.get("alarms") or {}).get("enable"), live
    run = env.gitopsd("diff", "web")
    assert run.code == 0, run.out + run.err
    assert "in sync" in run.out
    assert env.service("web")["clusterArn"].endswith(f"/{CLUSTER}")


def test_status_json_without_an_agent_is_one_json_document(env: Env) -> None:
    """``gitopsd status -o json | jq``: with no agent running, stdout held an error
    object and then the status document, which no JSON reader accepts."""
    run = env.gitopsd("sync", "web")
    assert run.code == 0, run.out + run.err
    status = env.gitopsd("status", "-o", "json")
    assert status.code == 0, status.out + status.err
    document = json.loads(status.out)
    assert document["agent"] is False
    assert [row["app"] for row in document["apps"]] == ["web", "worker"]
    assert "no gitopsd agent is running" in status.err


LINEAR_IN_TWO_STEPS = """\
deploymentConfiguration:
  strategy: LINEAR
  linearConfiguration:
    stepPercent: 50
    stepBakeTimeInMinutes: 1
  bakeTimeInMinutes: 1
"""


def test_sync_prints_each_stage_and_the_traffic_split(env: Env) -> None:
    """``gitopsd sync`` of a LINEAR service, as in docs/progressive-delivery.md ("What you
    see while ECS deploys"): the stage lines went to the log only, so the command's own
    output showed task counts and nothing of the stages, traffic split or bake."""
    env.aws.configure(minute_seconds=0.2)  # a configured "minute" is 0.2 s
    env.repo.write(SERVICE, HEAD + LINEAR_IN_TWO_STEPS)
    env.commit("web: linear")
    run = env.gitopsd("sync", "web")
    assert run.code == 0, run.out + run.err
    env.edit("apps/web/base/task-definition.yaml", "nginx:1.27", "nginx:1.28")
    env.commit("web: nginx 1.28")
    run = env.gitopsd("sync", "web")
    assert run.code == 0, run.out + run.err
    lines = [line.strip() for line in run.out.splitlines()]
    prefix = "Service/web: web:2: LINEAR: "  # the 100% step lasts less than a poll here
    shown = [line for line in lines if line.startswith(prefix)]
    baking = next(i for i, line in enumerate(shown) if line.startswith(f"{prefix}BAKE_TIME, "))
    assert shown.index(f"{prefix}PRODUCTION_TRAFFIC_SHIFT 50% production traffic, baking") < baking


class ThrottledGate:
    """A gate whose every check meets throttling (CloudWatch's, or a plugin's backend)."""

    def __init__(self) -> None:
        self.calls = 0

    async def check(self, context: GateContext) -> GateResult:
        self.calls += 1
        raise TemporaryError("ThrottlingException: Rate exceeded")


def test_a_gate_never_checked_is_said_in_the_verdict(aws: LocalAws, tmp_path: Path) -> None:
    """A gate throttled for the whole rollout: every check skipped (temporary), ECS
    finished, and the verdict read "COMPLETED: svc:2 rolled out" as if the gate had
    watched it. It now says the gate never checked anything."""
    gate = ThrottledGate()
    config = GateConfig.model_validate({"name": "errors", "type": "metrics", "interval": "100ms"})
    target = started(aws, {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 1})
    status, _ = watch(aws, tmp_path, target, gates=[(config, gate)])
    assert gate.calls >= 2
    assert status.state == "COMPLETED", status.message
    assert status.message == (
        "svc:2 rolled out; gate errors never checked it (every check met a temporary error: "
        "ThrottlingException: Rate exceeded)"
    )


def test_status_without_an_agent_says_approval_needed(env: Env) -> None:
    """The agent was stopped (or never ran: a CI sync with --no-wait) while a deployment
    waits at a PAUSE hook: ``gitopsd status`` read live state and said "Progressing"
    with no message, nothing about the approval it waits for nor how to give it."""
    blue_green(env)
    run = env.gitopsd("sync", "web", "--no-wait")
    assert run.code == 0, run.out + run.err
    sd = advance_until(env, paused)
    (hook,) = [h for h in sd["lifecycleHookDetails"] if h["status"] == "AWAITING_ACTION"]

    status = env.gitopsd("status", "-o", "json")
    assert status.code == 0, status.out + status.err
    (web,) = [row for row in json.loads(status.out)["apps"] if row["app"] == "web"]
    assert web["health"] == "Progressing"
    ready = next(c for c in web["conditions"] if c["type"] == "Ready")
    assert ready["message"].startswith(
        f"approval needed: Service/web waits at a PAUSE hook ({hook['hookId']}) in "
        "POST_TEST_TRAFFIC_SHIFT"
    ), ready["message"]
    assert "`gitopsd approve web` continues it" in ready["message"]
    text = env.gitopsd("status")
    assert "approval needed: Service/web" in text.out
