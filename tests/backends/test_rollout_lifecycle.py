"""The watcher on recorded DescribeServiceDeployments answers of blue/green-family
deployments: stages, traffic weights and hooks reported in order, bake time left,
approval needed at a PAUSE hook, the cause of an ECS rollback, ECS's timers and the
deadline, and a gate that fails stopping the deployment with ROLLBACK."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import anyio

from gitopsd.backends.base import RolloutProgress
from gitopsd.backends.ecs.lifecycle import bake_allowance, duration, read
from gitopsd.backends.ecs.rollout import RolloutWatcher, Target, _Run, _tend
from gitopsd.config import AppConfig, GateConfig
from gitopsd.gates import Gate, GateContext, GateResult, GateRunner

APP = AppConfig(name="a", source="s", cluster="c")
OURS, OLD = "arn:aws:ecs:us-east-1:1:task-definition/svc:2", "arn:aws:ecs:r:1:task-definition/svc:1"
SD = "arn:aws:ecs:us-east-1:123456789012:service-deployment/c/svc/abc"
LINEAR = {
    "strategy": "LINEAR",
    "bakeTimeInMinutes": 10,
    "linearConfiguration": {"stepPercent": 30.0, "stepBakeTimeInMinutes": 2},
}
EXPIRES = datetime(2026, 12, 6, 3, 0, 0, tzinfo=UTC)


def sd(
    status: str,
    stage: str = "",
    *,
    prod: float | None = None,
    test: float | None = None,
    hooks: list[dict[str, Any]] | None = None,
    config: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    target: dict[str, Any] = {"arn": "arn:rev/2", "requestedTaskCount": 2}
    if prod is not None:
        target["requestedProductionTrafficWeight"] = prod
    if test is not None:
        target["requestedTestTrafficWeight"] = test
    out = {
        "serviceDeploymentArn": SD,
        "status": status,
        "targetServiceRevision": target,
        "deploymentConfiguration": config or LINEAR,
        "lifecycleHookDetails": hooks or [],
        **extra,
    }
    if stage:
        out["lifecycleStage"] = stage
    return out


def service(td: str = OURS) -> dict[str, Any]:
    primary = {"id": "ecs-svc/2", "taskDefinition": td, "status": "PRIMARY", "desiredCount": 2}
    return {"serviceName": "svc", "deployments": [primary], "events": []}


def watcher(seen: list[RolloutProgress]) -> RolloutWatcher:
    target = Target("svc", "Service/svc", OURS, "ecs-svc/2", SD, since=time.time())
    return RolloutWatcher(APP, target, None, seen.append)


def pause(status: str = "AWAITING_ACTION") -> dict[str, Any]:
    return {
        "hookId": "hook-1",
        "targetType": "PAUSE",
        "status": status,
        "expiresAt": EXPIRES,
        "timeoutAction": "ROLLBACK",
    }


def test_a_linear_deployment_reports_stages_and_weights_in_order() -> None:
    seen: list[RolloutProgress] = []
    w = watcher(seen)
    answers = [
        sd("PENDING"),
        sd("IN_PROGRESS", "RECONCILE_SERVICE", prod=0),
        sd("IN_PROGRESS", "SCALE_UP", prod=0),
        sd("IN_PROGRESS", "SCALE_UP", prod=0),  # task counts only: nothing to report
        sd("IN_PROGRESS", "TEST_TRAFFIC_SHIFT", prod=0, test=100),
        sd("IN_PROGRESS", "PRODUCTION_TRAFFIC_SHIFT", prod=30, test=100),
        sd("IN_PROGRESS", "PRODUCTION_TRAFFIC_SHIFT", prod=30, test=100),
        sd("IN_PROGRESS", "PRODUCTION_TRAFFIC_SHIFT", prod=60, test=100),
        sd("IN_PROGRESS", "PRODUCTION_TRAFFIC_SHIFT", prod=90, test=100),
        sd("IN_PROGRESS", "PRODUCTION_TRAFFIC_SHIFT", prod=100, test=100),
        sd("IN_PROGRESS", "BAKE_TIME", prod=100, test=100),
        sd("IN_PROGRESS", "CLEAN_UP", prod=100, test=100),
        sd("SUCCESSFUL", "CLEAN_UP", prod=100, test=100),
    ]
    verdicts = [w.observe(service(), a) for a in answers]
    assert verdicts[:-1] == [None] * (len(answers) - 1)
    assert verdicts[-1] is not None
    assert verdicts[-1].state == "COMPLETED"
    assert [str(p.stage) for p in seen] == [
        "PENDING",
        "IN_PROGRESS/RECONCILE_SERVICE",
        "IN_PROGRESS/SCALE_UP",
        "IN_PROGRESS/TEST_TRAFFIC_SHIFT",
        "IN_PROGRESS/PRODUCTION_TRAFFIC_SHIFT",
        "IN_PROGRESS/PRODUCTION_TRAFFIC_SHIFT",
        "IN_PROGRESS/PRODUCTION_TRAFFIC_SHIFT",
        "IN_PROGRESS/PRODUCTION_TRAFFIC_SHIFT",
        "IN_PROGRESS/BAKE_TIME",
        "IN_PROGRESS/CLEAN_UP",
        "SUCCESSFUL/CLEAN_UP",
    ]
    weights = [dict(p.details).get("production_traffic") for p in seen]
    assert weights == [None, "0", "0", "0", "30", "60", "90", "100", "100", "100", "100"]
    assert {p.strategy for p in seen} == {"LINEAR"}
    messages = [p.message for p in seen]
    assert (
        messages[4]
        == "Service/svc: svc:2: LINEAR: PRODUCTION_TRAFFIC_SHIFT 30% production traffic, baking"
    )
    assert (
        messages[7]
        == "Service/svc: svc:2: LINEAR: PRODUCTION_TRAFFIC_SHIFT 100% production traffic"
    )
    assert messages[8] == "Service/svc: svc:2: LINEAR: BAKE_TIME, 10m left"
    assert dict(seen[8].details)["bake_remaining"] == "600"
    assert dict(seen[9].details)["bake_remaining"] == ""
    assert dict(seen[3].details)["test_traffic"] == "100"
    assert messages[-1] == "Service/svc: svc:2: IN_PROGRESS/CLEAN_UP -> SUCCESSFUL/CLEAN_UP"
    assert messages[0] == "Service/svc: svc:2: (none) -> PENDING"


def test_bake_time_left_follows_the_watchers_clock() -> None:
    seen: list[RolloutProgress] = []
    w = watcher(seen)
    now = [500.0]
    w.clock = lambda: now[0]
    w.observe(service(), sd("IN_PROGRESS", "BAKE_TIME", prod=100))
    now[0] += 250
    assert w.bake_remaining() == 350
    assert duration(350) == "5m50s"
    now[0] += 1000
    assert w.bake_remaining() == 0


def test_a_pause_hook_awaiting_action_asks_for_approval() -> None:
    seen: list[RolloutProgress] = []
    w = watcher(seen)
    w.observe(service(), sd("IN_PROGRESS", "POST_TEST_TRAFFIC_SHIFT", prod=0, test=100))
    w.observe(
        service(), sd("IN_PROGRESS", "POST_TEST_TRAFFIC_SHIFT", prod=0, test=100, hooks=[pause()])
    )
    w.observe(
        service(),
        sd("IN_PROGRESS", "POST_TEST_TRAFFIC_SHIFT", prod=0, test=100, hooks=[pause("SUCCEEDED")]),
    )
    _, asking, done = seen
    details = dict(asking.details)
    assert details["approval"] == "needed"
    assert details["hook_id"] == "hook-1"
    assert details["hook_stage"] == "POST_TEST_TRAFFIC_SHIFT"
    assert details["hook_expires"] == "2026-12-06T03:00:00Z"
    assert details["hooks"] == "PAUSE:AWAITING_ACTION"
    assert asking.message == (
        "Service/svc: svc:2: approval needed: PAUSE hook hook-1 at POST_TEST_TRAFFIC_SHIFT, "
        "expires 2026-12-06T03:00:00Z"
    )
    assert asking.previous == asking.stage  # the hook changed, not the stage
    assert "approval" not in dict(done.details)
    assert dict(done.details)["hooks"] == "PAUSE:SUCCEEDED"


def rolled_back(**extra: Any) -> dict[str, Any]:
    return sd("ROLLBACK_SUCCESSFUL", "CLEAN_UP", prod=0, **extra)


def test_an_alarm_rollback_names_the_alarm() -> None:
    w = watcher([])
    w.observe(service(), sd("IN_PROGRESS", "BAKE_TIME", prod=100))
    w.observe(service(), sd("ROLLBACK_IN_PROGRESS", "BAKE_TIME", prod=100))
    alarms = {"status": "TRIGGERED", "alarmNames": ["web-5xx"], "triggeredAlarmNames": ["web-5xx"]}
    verdict = w.observe(
        service(OLD),
        rolled_back(alarms=alarms, statusReason="Service deployment rolled back because of alarm"),
    )
    assert verdict is not None
    assert (verdict.state, verdict.by_ecs) == ("ROLLED_BACK", True)
    assert verdict.message == "svc:2 failed (alarm web-5xx in ALARM); ECS rolled back to svc:1"


def test_a_failed_hook_is_the_cause_even_when_gone_from_the_answer() -> None:
    w = watcher([])
    lam = {
        "hookId": "h2",
        "targetType": "AWS_LAMBDA",
        "targetArn": "arn:aws:lambda:us-east-1:1:function:smoke",
        "status": "FAILED",
    }
    w.observe(service(), sd("IN_PROGRESS", "POST_SCALE_UP", hooks=[lam]))
    verdict = w.observe(service(OLD), rolled_back(statusReason="hook failed"))
    assert verdict is not None
    hook = "lifecycle hook AWS_LAMBDA arn:aws:lambda:us-east-1:1:function:smoke"
    assert f"({hook} FAILED at POST_SCALE_UP)" in verdict.message


def test_without_a_known_cause_ecss_reason_is_given() -> None:
    w = watcher([])
    verdict = w.observe(
        service(OLD), rolled_back(rollback={"reason": "ContinueServiceDeployment action ROLLBACK"})
    )
    assert verdict is not None
    assert "(approval rejected (ContinueServiceDeployment action ROLLBACK))" in verdict.message
    verdict = watcher([]).observe(service(OLD), rolled_back(statusReason="stopped by a user"))
    assert verdict is not None
    assert "(stopped by a user)" in verdict.message


def test_bake_allowance_counts_ecss_own_waits() -> None:
    assert bake_allowance(LINEAR) == 10 * 60 + 3 * 2 * 60  # 30%: steps at 30, 60, 90, 100
    assert bake_allowance({"strategy": "CANARY", "bakeTimeInMinutes": 5}) == 15 * 60  # default 10m
    assert bake_allowance({"strategy": "LINEAR"}) == 9 * 6 * 60  # 10% steps, 6 minutes
    assert bake_allowance({"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 0}) == 0
    assert bake_allowance({}) == 0
    assert read(sd("IN_PROGRESS", "BAKE_TIME")).baking


def test_the_deadline_grows_by_the_bake_and_by_time_at_a_pause_hook() -> None:
    w = watcher([])
    run = _Run(w, deadline=time.monotonic() + 60)
    before = run.deadline
    w.observe(service(), sd("IN_PROGRESS", "SCALE_UP"))
    anyio.run(_tend, None, run, 60.0)  # type: ignore[arg-type]  # no gate, no call
    assert run.deadline == before + bake_allowance(LINEAR)
    w.observe(service(), sd("IN_PROGRESS", "POST_TEST_TRAFFIC_SHIFT", hooks=[pause()]))
    anyio.run(_tend, None, run, 60.0)  # type: ignore[arg-type]
    assert run.paused_at is not None
    run.paused_at -= 100  # 100 s at the hook since the last poll
    extended = run.deadline
    anyio.run(_tend, None, run, 60.0)  # type: ignore[arg-type]
    assert run.deadline >= extended + 100
    w.observe(service(), sd("IN_PROGRESS", "PRODUCTION_TRAFFIC_SHIFT", prod=30))
    anyio.run(_tend, None, run, 60.0)  # type: ignore[arg-type]
    assert run.paused_at is None


class FakeClient:
    def __init__(self) -> None:
        self.stopped: list[str] = []

    async def stop_service_deployment(self, arn: str) -> str:
        self.stopped.append(arn)
        return arn


class Failing:
    async def check(self, context: GateContext) -> GateResult:
        return GateResult(False, f"query e = 9 > 5 ({context.phase})", (("e", 9.0),))


def test_a_failing_gate_stops_the_deployment_and_the_verdict_names_it() -> None:
    seen: list[RolloutProgress] = []
    w = watcher(seen)
    config = GateConfig.model_validate({"name": "errors", "type": "x", "failure_limit": 0})
    gates: list[tuple[GateConfig, Gate]] = [(config, Failing())]
    w.gates = GateRunner.of(gates, "svc")
    run = _Run(w, deadline=time.monotonic() + 60)
    client = FakeClient()
    w.observe(service(), sd("IN_PROGRESS", "BAKE_TIME", prod=100))
    anyio.run(_tend, client, run, 60.0)  # type: ignore[arg-type]
    assert client.stopped == [SD]
    assert w.stopped_by == "gate errors failed 1 check(s) (failure_limit 0): query e = 9 > 5 (bake)"
    assert dict(seen[-1].details)["gate_errors"] == "failed 1/1: query e = 9 > 5 (bake)"
    assert run.verdict is None
    # ECS's rollback is followed; no gate runs on it.
    w.observe(service(), sd("ROLLBACK_IN_PROGRESS", "BAKE_TIME", prod=100))
    anyio.run(_tend, client, run, 60.0)  # type: ignore[arg-type]
    assert client.stopped == [SD]
    verdict = w.observe(service(OLD), rolled_back())
    assert verdict is not None
    assert (verdict.state, verdict.by_ecs) == ("ROLLED_BACK", True)
    assert verdict.message == (
        "svc:2 failed (gate errors failed 1 check(s) (failure_limit 0): query e = 9 > 5 (bake)); "
        "gitopsd stopped it with ROLLBACK and ECS rolled back to svc:1"
    )
    assert messages_of(w)[-1].startswith("service deployment ROLLBACK_SUCCESSFUL")


def messages_of(w: RolloutWatcher) -> list[str]:
    return list(w.events)


def test_a_pause_that_timed_out_into_rollback_is_the_cause_one_that_continued_is_not() -> None:
    w = watcher([])
    w.observe(service(), sd("IN_PROGRESS", "POST_TEST_TRAFFIC_SHIFT", hooks=[pause("TIMED_OUT")]))
    verdict = w.observe(service(OLD), rolled_back(statusReason="hook timed out"))
    assert verdict is not None
    assert "(lifecycle hook PAUSE hook-1 TIMED_OUT at POST_TEST_TRAFFIC_SHIFT)" in verdict.message
    w = watcher([])
    went_on = dict(pause("TIMED_OUT"), timeoutAction="CONTINUE")
    w.observe(service(), sd("IN_PROGRESS", "POST_TEST_TRAFFIC_SHIFT", hooks=[went_on]))
    verdict = w.observe(service(OLD), rolled_back(statusReason="stopped by a user"))
    assert verdict is not None
    assert "(stopped by a user)" in verdict.message
