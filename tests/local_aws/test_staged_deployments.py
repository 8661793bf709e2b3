"""BLUE_GREEN, LINEAR and CANARY deployments, hooks and alarms: the state machine on its own.

Explicit timestamps, no server, no moto: pace 1 task per second (one step a
second) and, unless a test says otherwise, one configured minute lasting 2
simulated seconds, so bake times and hook timeouts stay short.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gitopsd.local_aws.deployments import ServiceSim
from gitopsd.local_aws.ids import RandomIds
from gitopsd.local_aws.policy import normalize_deployment_configuration
from gitopsd.local_aws.records import (
    HOOK_AWAITING_ACTION,
    HOOK_FAILED,
    HOOK_SUCCEEDED,
    HOOK_TIMED_OUT,
    MONITOR_COMPLETE,
    MONITOR_MONITORING,
    MONITOR_TRIGGERED,
    PRIMARY,
    ROLLOUT_COMPLETED,
    SD_IN_PROGRESS,
    SD_ROLLBACK_FAILED,
    SD_ROLLBACK_IN_PROGRESS,
    SD_ROLLBACK_REQUESTED,
    SD_ROLLBACK_SUCCESSFUL,
    SD_STOPPED,
    SD_SUCCESSFUL,
    Revision,
    ServiceDeploymentNotFound,
    ServiceDeploymentRecord,
    ServiceIdentity,
    SimulationError,
)
from gitopsd.local_aws.shapes import service_deployment_shape

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
SEC = timedelta(seconds=1)
GOOD = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:1"
GOOD2 = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:2"
BAD = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:3"
FAILING_LAMBDA = "arn:aws:lambda:us-east-1:123456789012:function:check-fails"
GOOD_LAMBDA = "arn:aws:lambda:us-east-1:123456789012:function:check"
ALARM = "web-5xx"

Trace = list[tuple[str, str | None, float | None, float | None]]


class Harness:
    """A ServiceSim with a staged strategy, its own manual time, and alarms in a set."""

    def __init__(self, config: dict[str, Any], desired: int = 2, minute: float = 2.0) -> None:
        identity = ServiceIdentity(
            name="web",
            cluster_name="c",
            service_arn="arn:aws:ecs:us-east-1:123456789012:service/c/web",
            cluster_arn="arn:aws:ecs:us-east-1:123456789012:cluster/c",
            arn_prefix="arn:aws:ecs:us-east-1:123456789012",
        )
        self.now = T0
        self.in_alarm: set[str] = set()
        self.sim = ServiceSim(
            identity,
            desired_count=desired,
            deployment_configuration=normalize_deployment_configuration(config),
            ids=RandomIds(seed=11),
        )
        self.sim.minute = timedelta(seconds=minute)
        self.sim.hook_fails = lambda target: bool(target) and "fails" in str(target)

    def probe(self, revision: Revision) -> str | None:
        return "CannotPullContainerError" if revision.task_definition == BAD else None

    def deploy(
        self, task_definition: str, in_alarm: Collection[str] = ()
    ) -> ServiceDeploymentRecord:
        revision = self.sim.new_revision(task_definition, [("app", task_definition)], self.now)
        return self.sim.start_deployment(revision, self.now, SEC, in_alarm=in_alarm)

    def tick(self, seconds: float = 1.0) -> None:
        """Time passes; the service is read (alarms looked at, steps replayed)."""
        self.now += timedelta(seconds=seconds)
        self.read()

    def read(self) -> None:
        if self.sim.alarm_names():
            self.sim.observe_alarms(self.in_alarm, SEC)
        self.sim.advance_to(self.now, SEC, self.probe)

    def run_until_final(self, record: ServiceDeploymentRecord, limit: int = 400) -> Trace:
        """Tick a second at a time until the record is final; the distinct states seen."""
        trace: Trace = [state(record)]
        for _ in range(limit):
            if not record.ongoing:
                return trace
            self.tick()
            if state(record) != trace[-1]:
                trace.append(state(record))
        raise AssertionError(f"still {record.status} after {limit} s: {trace}")

    def run_until_stage(
        self, record: ServiceDeploymentRecord, stage: str, limit: int = 400
    ) -> None:
        for _ in range(limit):
            if record.lifecycle_stage == stage:
                return
            self.tick()
        raise AssertionError(f"never reached {stage}; at {record.lifecycle_stage}")

    def baseline(self) -> None:
        """A first deployment of GOOD that completes (no hooks, alarms, bake): the blue one."""
        config = self.sim.deployment_configuration
        plain = {k: v for k, v in config.items() if k not in ("lifecycleHooks", "alarms")}
        self.sim.set_deployment_configuration({**plain, "bakeTimeInMinutes": 0})
        record = self.deploy(GOOD)
        self.run_until_final(record)
        assert record.status == SD_SUCCESSFUL
        self.sim.set_deployment_configuration(config)


def state(record: ServiceDeploymentRecord) -> tuple[str, str | None, float | None, float | None]:
    return (record.status, record.lifecycle_stage, record.production_weight, record.test_weight)


def stages(trace: Trace) -> list[str | None]:
    seen: list[str | None] = []
    for _, stage, _, _ in trace:
        if not seen or seen[-1] != stage:
            seen.append(stage)
    return seen


ALL_STAGES = [
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


def pause(stage: str, minutes: int = 5, action: str | None = None) -> dict[str, Any]:
    timeout: dict[str, Any] = {"timeoutInMinutes": minutes}
    if action is not None:
        timeout["action"] = action
    return {"targetType": "PAUSE", "lifecycleStages": [stage], "timeoutConfiguration": timeout}


def lambda_hook(stage: str, arn: str = GOOD_LAMBDA) -> dict[str, Any]:
    return {
        "targetType": "AWS_LAMBDA",
        "hookTargetArn": arn,
        "roleArn": "arn:aws:iam::123456789012:role/hooks",
        "lifecycleStages": [stage],
    }


# ------------------------------------------------------------ stages, weights


def test_blue_green_walks_every_stage_in_order_with_one_step_each() -> None:
    h = Harness({"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 1})
    h.baseline()
    record = h.deploy(GOOD2)
    assert record.sources[0].task_definition == GOOD
    trace = h.run_until_final(record)
    assert stages(trace) == ALL_STAGES
    assert trace[-1][0] == SD_SUCCESSFUL
    # production 0 -> 100 in one step; test 100 from TEST_TRAFFIC_SHIFT on
    weights = {stage: (prod, test) for _, stage, prod, test in trace if _ == SD_IN_PROGRESS}
    assert weights["POST_SCALE_UP"] == (0.0, 0.0)
    assert weights["TEST_TRAFFIC_SHIFT"] == (0.0, 100.0)
    assert weights["PRODUCTION_TRAFFIC_SHIFT"] == (100.0, 100.0)
    # one step per stage, SCALE_UP 2 (one task a step), BAKE_TIME 1 minute = 2 s
    assert record.finished_at is not None
    assert record.finished_at - record.started_at == timedelta(seconds=12)
    assert h.sim.task_definition == GOOD2
    assert [d.status for d in h.sim.deployments] == [PRIMARY]
    assert h.sim.primary.rollout_state == ROLLOUT_COMPLETED
    assert h.sim.last_completed is not None
    assert h.sim.last_completed.revision.task_definition == GOOD2


def test_blue_keeps_running_until_clean_up() -> None:
    h = Harness({"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 1})
    h.baseline()
    record = h.deploy(GOOD2)
    h.run_until_stage(record, "BAKE_TIME")
    running = [(d.task_definition[-5:], len(d.running)) for d in h.sim.deployments]
    assert running == [("web:2", 2), ("web:1", 2)]
    h.run_until_stage(record, "CLEAN_UP")
    assert len(h.sim.deployments) == 2
    h.tick()
    assert [(d.task_definition[-5:], len(d.running)) for d in h.sim.deployments] == [("web:2", 2)]
    assert record.status == SD_SUCCESSFUL


def test_shape_reports_stage_and_weights_of_target_and_blue_source() -> None:
    h = Harness({"strategy": "CANARY", "canaryConfiguration": {"canaryPercent": 20.0}})
    h.baseline()
    record = h.deploy(GOOD2)
    h.run_until_stage(record, "PRODUCTION_TRAFFIC_SHIFT")
    shape = service_deployment_shape(h.sim, record)
    assert shape["lifecycleStage"] == "PRODUCTION_TRAFFIC_SHIFT"
    target = shape["targetServiceRevision"]
    assert (target["requestedProductionTrafficWeight"], target["requestedTestTrafficWeight"]) == (
        20.0,
        100.0,
    )
    source = shape["sourceServiceRevisions"][0]
    assert (source["requestedProductionTrafficWeight"], source["requestedTestTrafficWeight"]) == (
        80.0,
        0.0,
    )
    assert shape["deploymentCircuitBreaker"]["status"] == "DISABLED"


def test_linear_shifts_in_steps_waiting_between_them_but_not_after_100() -> None:
    config = {
        "strategy": "LINEAR",
        "linearConfiguration": {"stepPercent": 25.0, "stepBakeTimeInMinutes": 1},
    }
    h = Harness(config)
    h.baseline()
    record = h.deploy(GOOD2)
    trace = h.run_until_final(record)
    shifts = [prod for _, stage, prod, _ in trace if stage == "PRODUCTION_TRAFFIC_SHIFT"]
    assert shifts == [25.0, 50.0, 75.0, 100.0]
    assert stages(trace) == ALL_STAGES


def test_linear_step_bake_lasts_the_configured_minutes() -> None:
    config = {
        "strategy": "LINEAR",
        "linearConfiguration": {"stepPercent": 50.0, "stepBakeTimeInMinutes": 3},
    }
    h = Harness(config, minute=10.0)  # 3 minutes = 30 s
    h.baseline()
    record = h.deploy(GOOD2)
    h.run_until_stage(record, "PRODUCTION_TRAFFIC_SHIFT")
    assert record.production_weight == 50.0
    entered = h.now
    while record.production_weight == 50.0:
        h.tick()
    assert h.now - entered == timedelta(seconds=30)
    h.tick()
    assert record.lifecycle_stage == "POST_PRODUCTION_TRAFFIC_SHIFT"  # no wait after 100


def test_linear_default_is_ten_percent_steps() -> None:
    h = Harness({"strategy": "LINEAR", "linearConfiguration": {"stepBakeTimeInMinutes": 0}})
    h.baseline()
    record = h.deploy(GOOD2)
    trace = h.run_until_final(record)
    shifts = [prod for _, stage, prod, _ in trace if stage == "PRODUCTION_TRAFFIC_SHIFT"]
    assert shifts == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0]


def test_canary_shifts_the_canary_then_the_rest_after_its_bake() -> None:
    h = Harness({"strategy": "CANARY"}, minute=1.0)  # defaults: 5 %, 10 minutes
    h.baseline()
    record = h.deploy(GOOD2)
    h.run_until_stage(record, "PRODUCTION_TRAFFIC_SHIFT")
    assert record.production_weight == 5.0
    entered = h.now
    while record.production_weight == 5.0:
        h.tick()
    assert (h.now - entered, record.production_weight) == (timedelta(seconds=10), 100.0)
    assert h.run_until_final(record)[-1][0] == SD_SUCCESSFUL


def test_long_waits_are_not_replayed_second_by_second() -> None:
    h = Harness({"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 1440}, minute=60.0)
    h.baseline()
    record = h.deploy(GOOD2)
    h.run_until_stage(record, "BAKE_TIME")
    entered = h.now
    h.tick()  # a stage lasts at least one step; then nothing is due before the bake's end
    assert h.sim.next_step_at == entered + timedelta(days=1)
    h.tick(86_400)
    assert record.lifecycle_stage == "CLEAN_UP"


def test_failing_green_image_keeps_failing_in_scale_up_without_a_breaker() -> None:
    config = {
        "strategy": "BLUE_GREEN",
        "deploymentCircuitBreaker": {"enable": True, "rollback": True},
    }
    h = Harness(config)
    h.baseline()
    record = h.deploy(BAD)
    h.run_until_stage(record, "SCALE_UP")
    h.tick(20)
    assert (record.status, record.lifecycle_stage) == (SD_IN_PROGRESS, "SCALE_UP")
    assert h.sim.primary.failed_tasks >= 10
    assert record.breaker_status == "DISABLED"


# ------------------------------------------------------------------- hooks


def test_pre_production_hooks_get_a_fresh_id_at_every_linear_step() -> None:
    config = {
        "strategy": "LINEAR",
        "linearConfiguration": {"stepPercent": 50.0, "stepBakeTimeInMinutes": 0},
        "lifecycleHooks": [lambda_hook("PRE_PRODUCTION_TRAFFIC_SHIFT")],
    }
    h = Harness(config)
    h.baseline()
    record = h.deploy(GOOD2)
    seen: dict[str, tuple[str | None, float | None]] = {}
    while record.ongoing:
        for run in record.hook_runs:
            seen.setdefault(run.hook_id, (record.lifecycle_stage, record.production_weight))
            assert run.stage == "PRE_PRODUCTION_TRAFFIC_SHIFT"
        h.tick()
    # one run per step, shown while lifecycleStage reads PRODUCTION_TRAFFIC_SHIFT and the
    # traffic has not moved yet
    assert list(seen.values()) == [
        ("PRODUCTION_TRAFFIC_SHIFT", 0.0),
        ("PRODUCTION_TRAFFIC_SHIFT", 50.0),
    ]
    assert record.status == SD_SUCCESSFUL


def test_lambda_hook_succeeds_after_one_step() -> None:
    h = Harness({"strategy": "BLUE_GREEN", "lifecycleHooks": [lambda_hook("POST_SCALE_UP")]})
    h.baseline()
    record = h.deploy(GOOD2)
    h.run_until_stage(record, "POST_SCALE_UP")
    [run] = record.hook_runs
    assert (run.target_type, run.status, run.target_arn) == (
        "AWS_LAMBDA",
        "IN_PROGRESS",
        GOOD_LAMBDA,
    )
    shape = service_deployment_shape(h.sim, record)["lifecycleHookDetails"]
    assert shape == [
        {
            "hookId": run.hook_id,
            "targetType": "AWS_LAMBDA",
            "status": "IN_PROGRESS",
            "targetArn": GOOD_LAMBDA,
        }
    ]
    h.tick()
    assert run.status == HOOK_SUCCEEDED
    assert record.lifecycle_stage == "TEST_TRAFFIC_SHIFT"


def test_failing_lambda_hook_rolls_back_to_blue() -> None:
    config = {
        "strategy": "BLUE_GREEN",
        "lifecycleHooks": [lambda_hook("POST_TEST_TRAFFIC_SHIFT", FAILING_LAMBDA)],
    }
    h = Harness(config)
    h.baseline()
    record = h.deploy(GOOD2)
    h.run_until_stage(record, "POST_TEST_TRAFFIC_SHIFT")
    h.tick()
    assert record.status == SD_ROLLBACK_REQUESTED
    assert [r.status for r in record.hook_runs] == [HOOK_FAILED]
    assert record.rollback is not None
    assert FAILING_LAMBDA in record.rollback.reason
    assert record.status_reason == record.rollback.reason
    h.tick()
    assert record.status == SD_ROLLBACK_IN_PROGRESS
    assert (record.production_weight, record.test_weight) == (0.0, 0.0)
    assert h.sim.task_definition == GOOD
    assert [(d.status, len(d.running)) for d in h.sim.deployments] == [(PRIMARY, 2)]
    h.tick()
    assert record.status == SD_ROLLBACK_SUCCESSFUL
    assert record.lifecycle_stage == "POST_TEST_TRAFFIC_SHIFT"  # where it was rolled back
    assert h.sim.last_completed is not None
    assert h.sim.last_completed.revision.task_definition == GOOD


def pause_harness(
    hook: dict[str, Any], minute: float = 2.0
) -> tuple[Harness, ServiceDeploymentRecord]:
    h = Harness({"strategy": "CANARY", "lifecycleHooks": [hook]}, minute=minute)
    h.baseline()
    record = h.deploy(GOOD2)
    h.run_until_stage(record, "POST_TEST_TRAFFIC_SHIFT")
    return h, record


def test_pause_hook_waits_for_continue() -> None:
    h, record = pause_harness(pause("POST_TEST_TRAFFIC_SHIFT", minutes=5))
    [run] = record.hook_runs
    assert (run.target_type, run.status, run.target_arn) == ("PAUSE", HOOK_AWAITING_ACTION, None)
    assert run.due_at == h.now + timedelta(seconds=10)  # 5 minutes of 2 s
    detail = service_deployment_shape(h.sim, record)["lifecycleHookDetails"][0]
    assert detail["expiresAt"] == run.due_at
    assert detail["timeoutAction"] == "ROLLBACK"  # AWS's default
    h.tick(9)
    assert (record.lifecycle_stage, run.status) == ("POST_TEST_TRAFFIC_SHIFT", HOOK_AWAITING_ACTION)
    h.sim.continue_deployment(record.arn, run.hook_id, "CONTINUE", h.now, SEC, h.probe)
    assert run.status == HOOK_SUCCEEDED
    assert record.lifecycle_stage == "PRODUCTION_TRAFFIC_SHIFT"  # at once
    assert h.run_until_final(record)[-1][0] == SD_SUCCESSFUL


def test_pause_hook_rollback_by_continue_service_deployment() -> None:
    h, record = pause_harness(pause("POST_TEST_TRAFFIC_SHIFT"))
    [run] = record.hook_runs
    h.sim.continue_deployment(record.arn, run.hook_id, "ROLLBACK", h.now, SEC, h.probe)
    assert record.status == SD_ROLLBACK_REQUESTED
    assert record.rollback is not None
    assert "ContinueServiceDeployment" in record.rollback.reason
    assert run.hook_id in record.rollback.reason
    assert run.status == HOOK_FAILED
    h.tick()
    assert record.status == SD_ROLLBACK_IN_PROGRESS
    h.tick()
    assert record.status == SD_ROLLBACK_SUCCESSFUL
    assert h.sim.task_definition == GOOD


def test_pause_hook_timeout_rolls_back_by_default() -> None:
    h, record = pause_harness(pause("POST_TEST_TRAFFIC_SHIFT", minutes=3))
    [run] = record.hook_runs
    expires = run.due_at
    h.tick(100)
    assert run.status == HOOK_TIMED_OUT
    assert record.rollback is not None
    assert record.rollback.started_at == expires
    assert "timed out" in record.rollback.reason
    assert record.status == SD_ROLLBACK_SUCCESSFUL


def test_pause_hook_timeout_with_continue_goes_on() -> None:
    h, record = pause_harness(pause("POST_TEST_TRAFFIC_SHIFT", minutes=3, action="CONTINUE"))
    [run] = record.hook_runs
    h.tick(6)
    assert run.status == HOOK_TIMED_OUT
    assert record.lifecycle_stage == "PRODUCTION_TRAFFIC_SHIFT"
    assert h.run_until_final(record)[-1][0] == SD_SUCCESSFUL


def test_continue_refuses_unknown_deployments_and_hooks_not_awaiting_action() -> None:
    hooks = [pause("POST_TEST_TRAFFIC_SHIFT"), lambda_hook("POST_TEST_TRAFFIC_SHIFT")]
    h = Harness({"strategy": "BLUE_GREEN", "lifecycleHooks": hooks})
    h.baseline()
    record = h.deploy(GOOD2)
    h.run_until_stage(record, "POST_TEST_TRAFFIC_SHIFT")
    paused, lam = record.hook_runs
    with pytest.raises(ServiceDeploymentNotFound):
        h.sim.continue_deployment(record.arn + "x", paused.hook_id, "CONTINUE", h.now, SEC, h.probe)
    for hook_id in (lam.hook_id, "no-such-hook"):
        with pytest.raises(SimulationError) as error:
            h.sim.continue_deployment(record.arn, hook_id, "CONTINUE", h.now, SEC, h.probe)
        assert error.value.code == "InvalidParameterException"
    h.sim.continue_deployment(record.arn, paused.hook_id, "CONTINUE", h.now, SEC, h.probe)
    with pytest.raises(SimulationError, match="SUCCEEDED status"):  # twice
        h.sim.continue_deployment(record.arn, paused.hook_id, "CONTINUE", h.now, SEC, h.probe)


def test_the_deployment_does_not_move_while_a_hook_of_its_stage_waits() -> None:
    hooks = [pause("PRE_SCALE_UP", minutes=60)]
    h = Harness({"strategy": "BLUE_GREEN", "lifecycleHooks": hooks})
    h.baseline()
    record = h.deploy(GOOD2)
    h.tick(50)
    assert record.lifecycle_stage == "PRE_SCALE_UP"
    assert len(h.sim.primary.running) + len(h.sim.primary.pending) == 0  # green not started


# ------------------------------------------------------------------- alarms

ALARMS = {"alarms": {"alarmNames": [ALARM], "enable": True, "rollback": True}}


def test_alarm_during_bake_rolls_back_with_the_alarm_named() -> None:
    h = Harness({"strategy": "CANARY", "bakeTimeInMinutes": 10, **ALARMS})
    h.baseline()
    record = h.deploy(GOOD2)
    assert record.alarm_status == MONITOR_MONITORING
    h.run_until_stage(record, "BAKE_TIME")
    h.tick(5)
    assert record.status == SD_IN_PROGRESS
    h.in_alarm.add(ALARM)
    h.read()  # the next read sees it
    assert record.status == SD_ROLLBACK_REQUESTED
    assert (record.alarm_status, record.triggered_alarms) == (MONITOR_TRIGGERED, [ALARM])
    assert record.rollback is not None
    assert ALARM in record.rollback.reason
    assert record.status_reason is not None
    assert ALARM in record.status_reason
    alarms = service_deployment_shape(h.sim, record)["alarms"]
    assert alarms == {"status": "TRIGGERED", "alarmNames": [ALARM], "triggeredAlarmNames": [ALARM]}
    h.tick()
    assert record.status == SD_ROLLBACK_IN_PROGRESS
    assert record.production_weight == 0.0
    h.tick()
    assert record.status == SD_ROLLBACK_SUCCESSFUL
    assert h.sim.task_definition == GOOD


def test_alarm_already_in_alarm_at_start_is_ignored() -> None:
    h = Harness({"strategy": "BLUE_GREEN", **ALARMS})
    h.baseline()
    h.in_alarm.add(ALARM)
    record = h.deploy(GOOD2, in_alarm=h.in_alarm)
    trace = h.run_until_final(record)
    assert trace[-1][0] == SD_SUCCESSFUL
    assert (record.alarm_status, record.triggered_alarms) == (MONITOR_COMPLETE, [])


def test_ignored_alarm_counts_again_once_it_left_alarm() -> None:
    h = Harness({"strategy": "BLUE_GREEN", **ALARMS})
    h.baseline()
    h.in_alarm.add(ALARM)
    record = h.deploy(GOOD2, in_alarm=h.in_alarm)
    h.tick(3)
    h.in_alarm.clear()
    h.tick()
    assert record.status == SD_IN_PROGRESS
    h.in_alarm.add(ALARM)
    h.tick()
    assert record.triggered_alarms == [ALARM]
    assert record.status in (SD_ROLLBACK_REQUESTED, SD_ROLLBACK_IN_PROGRESS)


def test_alarm_without_rollback_stops_the_deployment() -> None:
    config = {"strategy": "BLUE_GREEN", "alarms": {"alarmNames": [ALARM], "enable": True}}
    h = Harness(config)
    h.baseline()
    record = h.deploy(GOOD2)
    h.run_until_stage(record, "TEST_TRAFFIC_SHIFT")
    h.in_alarm.add(ALARM)
    h.tick()
    assert (record.status, record.alarm_status) == (SD_STOPPED, MONITOR_TRIGGERED)
    assert record.rollback is None


def test_rolling_deployment_rolls_back_on_an_alarm() -> None:
    h = Harness({**ALARMS, "deploymentCircuitBreaker": {"enable": False, "rollback": False}})
    first = h.deploy(GOOD)
    h.tick(2)
    assert first.status == SD_SUCCESSFUL
    assert first.alarm_status == MONITOR_COMPLETE
    record = h.deploy(GOOD2)
    assert record.lifecycle_stage is None
    h.in_alarm.add(ALARM)
    h.read()
    assert record.status == SD_ROLLBACK_REQUESTED
    assert h.sim.primary.rollout_state == "FAILED"
    h.tick()
    assert record.status == SD_ROLLBACK_IN_PROGRESS
    assert h.sim.primary.rollout_state_reason.startswith("ECS deployment alarms: rolling back")
    h.tick(5)
    assert record.status == SD_ROLLBACK_SUCCESSFUL
    assert record.triggered_alarms == [ALARM]
    assert h.sim.task_definition == GOOD


def test_alarm_seen_late_acts_at_the_last_read_then_replays() -> None:
    """An alarm set between two reads rolls back from the state of the first one."""
    h = Harness({"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 10, **ALARMS})
    h.baseline()
    record = h.deploy(GOOD2)
    h.run_until_stage(record, "BAKE_TIME")
    seen_at = h.now
    h.in_alarm.add(ALARM)
    h.tick(1000)  # long after the bake would have ended
    assert record.status == SD_ROLLBACK_SUCCESSFUL
    assert record.rollback is not None
    assert record.rollback.started_at == seen_at


# --------------------------------------------------------------------- stop


@pytest.mark.parametrize("strategy", ["BLUE_GREEN", "LINEAR", "CANARY"])
@pytest.mark.parametrize(
    "stage", ["RECONCILE_SERVICE", "SCALE_UP", "PRODUCTION_TRAFFIC_SHIFT", "BAKE_TIME", "CLEAN_UP"]
)
def test_stop_rolls_back_in_any_stage(strategy: str, stage: str) -> None:
    h = Harness({"strategy": strategy, "bakeTimeInMinutes": 5})
    h.baseline()
    record = h.deploy(GOOD2)
    h.run_until_stage(record, stage)
    h.sim.stop_deployment(record.arn, h.now, SEC)
    assert record.status == SD_ROLLBACK_IN_PROGRESS
    assert record.rollback is not None
    assert "StopServiceDeployment" in record.rollback.reason
    assert h.sim.task_definition == GOOD
    assert (record.production_weight, record.test_weight) == (0.0, 0.0)
    h.tick()
    assert record.status == SD_ROLLBACK_SUCCESSFUL
    assert [(d.task_definition, len(d.running)) for d in h.sim.deployments] == [(GOOD, 2)]


def test_first_staged_deployment_cannot_roll_back() -> None:
    h = Harness(
        {"strategy": "BLUE_GREEN", "lifecycleHooks": [lambda_hook("POST_SCALE_UP", FAILING_LAMBDA)]}
    )
    record = h.deploy(GOOD)
    h.run_until_final(record)
    assert record.status == SD_ROLLBACK_FAILED
    assert record.status_reason is not None
    assert "No completed service revision" in record.status_reason


def test_a_new_deployment_supersedes_a_staged_one() -> None:
    h = Harness({"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 5})
    h.baseline()
    old = h.deploy(GOOD2)
    h.run_until_stage(old, "BAKE_TIME")
    record = h.deploy(GOOD2)
    assert old.status == SD_STOPPED
    trace = h.run_until_final(record)
    assert trace[-1][0] == SD_SUCCESSFUL
    assert [d.task_definition for d in h.sim.deployments] == [GOOD2]
