"""The deployment state machine on its own: explicit timestamps, no server, no moto."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitopsd.local_aws.deployments import MAX_EVENTS, ServiceSim
from gitopsd.local_aws.ids import RandomIds
from gitopsd.local_aws.policy import normalize_deployment_configuration
from gitopsd.local_aws.records import (
    ACTIVE,
    PRIMARY,
    ROLLOUT_COMPLETED,
    ROLLOUT_FAILED,
    ROLLOUT_IN_PROGRESS,
    SD_ROLLBACK_FAILED,
    SD_ROLLBACK_IN_PROGRESS,
    SD_ROLLBACK_REQUESTED,
    SD_ROLLBACK_SUCCESSFUL,
    SD_STOPPED,
    SD_SUCCESSFUL,
    Revision,
    ServiceDeploymentConflict,
    ServiceDeploymentNotFound,
    ServiceIdentity,
)

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
SEC = timedelta(seconds=1)
GOOD = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:1"
GOOD2 = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:2"
BAD = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:3"

BREAKER_ROLLBACK = {"deploymentCircuitBreaker": {"enable": True, "rollback": True}}
BREAKER_ONLY = {"deploymentCircuitBreaker": {"enable": True, "rollback": False}}

Row = tuple[str, str, int, int, int, int, str]


class Probe:
    """Fails every task of a task definition listed in ``failing``."""

    def __init__(self, *failing: str) -> None:
        self.failing = set(failing)

    def __call__(self, revision: Revision) -> str | None:
        return "CannotPullContainerError" if revision.task_definition in self.failing else None


class Harness:
    """A ServiceSim with its own manual time."""

    def __init__(self, desired: int = 2, config: dict[str, Any] | None = None) -> None:
        identity = ServiceIdentity(
            name="web",
            cluster_name="c",
            service_arn="arn:aws:ecs:us-east-1:123456789012:service/c/web",
            cluster_arn="arn:aws:ecs:us-east-1:123456789012:cluster/c",
            arn_prefix="arn:aws:ecs:us-east-1:123456789012",
        )
        self.now = T0
        self.probe: Callable[[Revision], str | None] = Probe(BAD)
        self.sim = ServiceSim(
            identity,
            desired_count=desired,
            deployment_configuration=normalize_deployment_configuration(config),
            ids=RandomIds(seed=7),
        )

    def deploy(self, task_definition: str) -> Any:
        revision = self.sim.new_revision(task_definition, [("app", task_definition)], self.now)
        return self.sim.start_deployment(revision, self.now, SEC)

    def tick(self, seconds: float = 1.0) -> None:
        self.now += timedelta(seconds=seconds)
        self.sim.advance_to(self.now, SEC, self.probe)

    def rows(self) -> list[Row]:
        return [
            (
                d.status,
                d.task_definition[-5:],
                d.desired_count,
                len(d.running),
                len(d.pending),
                d.failed_tasks,
                d.rollout_state,
            )
            for d in self.sim.deployments
        ]

    def messages(self) -> list[str]:
        """Event messages, oldest first, without the service prefix."""
        return [e.message.removeprefix("(service web) ") for e in reversed(self.sim.events)]


def test_new_service_starts_tasks_at_pace_and_completes() -> None:
    h = Harness(desired=3)
    record = h.deploy(GOOD)
    assert h.rows() == [(PRIMARY, "web:1", 3, 0, 3, 0, ROLLOUT_IN_PROGRESS)]
    h.tick()
    assert h.rows() == [(PRIMARY, "web:1", 3, 1, 2, 0, ROLLOUT_IN_PROGRESS)]
    h.tick()
    assert h.rows() == [(PRIMARY, "web:1", 3, 2, 1, 0, ROLLOUT_IN_PROGRESS)]
    h.tick()
    assert h.rows() == [(PRIMARY, "web:1", 3, 3, 0, 0, ROLLOUT_COMPLETED)]
    primary = h.sim.primary
    assert primary.id.startswith("ecs-svc/")
    assert primary.rollout_state_reason == f"ECS deployment {primary.id} completed."
    assert record.status == SD_SUCCESSFUL
    assert record.finished_at == T0 + 3 * SEC
    messages = h.messages()
    assert messages[0].startswith("has started 3 tasks: (task ")
    assert messages[-2:] == [
        f"(deployment {primary.id}) deployment completed.",
        "has reached a steady state.",
    ]
    assert h.sim.next_step_at is None  # nothing left to do: no further steps


def test_time_between_requests_is_replayed_step_by_step() -> None:
    h = Harness(desired=3)
    h.deploy(GOOD)
    h.tick(10)  # one late request sees the whole rollout, events carry step times
    assert h.rows() == [(PRIMARY, "web:1", 3, 3, 0, 0, ROLLOUT_COMPLETED)]
    assert h.sim.events[0].created_at == T0 + 3 * SEC


def test_rolling_update_drains_the_old_deployment() -> None:
    h = Harness(desired=2)
    h.deploy(GOOD)
    h.tick(2)
    record = h.deploy(GOOD2)
    assert h.sim.task_definition == GOOD2
    assert h.rows() == [
        (PRIMARY, "web:2", 2, 0, 2, 0, ROLLOUT_IN_PROGRESS),
        (ACTIVE, "web:1", 2, 2, 0, 0, ROLLOUT_COMPLETED),
    ]
    assert [r.task_definition for r in record.sources] == [GOOD]
    h.tick()
    assert h.rows() == [
        (PRIMARY, "web:2", 2, 1, 1, 0, ROLLOUT_IN_PROGRESS),
        (ACTIVE, "web:1", 1, 1, 0, 0, ROLLOUT_COMPLETED),
    ]
    h.tick()
    assert h.rows() == [(PRIMARY, "web:2", 2, 2, 0, 0, ROLLOUT_COMPLETED)]
    assert record.status == SD_SUCCESSFUL
    assert h.messages()[-4:-2] == [
        "has stopped 1 running tasks: " + h.messages()[-4].split(": ", 1)[1],
        "has stopped 1 running tasks: " + h.messages()[-3].split(": ", 1)[1],
    ]


def test_minimum_healthy_percent_lets_old_tasks_stop_first() -> None:
    h = Harness(desired=4, config={"maximumPercent": 100, "minimumHealthyPercent": 50})
    h.deploy(GOOD)
    h.tick(4)
    h.deploy(GOOD2)
    # 50 % of 4 must stay healthy, 100 % caps the total: stop 2 old, start 2 new.
    assert h.rows() == [
        (PRIMARY, "web:2", 4, 0, 2, 0, ROLLOUT_IN_PROGRESS),
        (ACTIVE, "web:1", 2, 2, 0, 0, ROLLOUT_COMPLETED),
    ]
    h.tick(10)
    assert h.rows() == [(PRIMARY, "web:2", 4, 4, 0, 0, ROLLOUT_COMPLETED)]


def test_minimum_and_maximum_100_percent_never_progresses() -> None:
    h = Harness(desired=2, config={"maximumPercent": 100, "minimumHealthyPercent": 100})
    h.deploy(GOOD)
    h.tick(2)
    h.deploy(GOOD2)
    h.tick(60)
    assert h.rows()[0] == (PRIMARY, "web:2", 2, 0, 0, 0, ROLLOUT_IN_PROGRESS)  # as on ECS


def test_circuit_breaker_fails_and_rolls_back_to_last_completed() -> None:
    h = Harness(desired=2, config=BREAKER_ROLLBACK)
    first = h.deploy(GOOD)
    h.tick(2)
    completed_id = h.sim.primary.id
    record = h.deploy(BAD)
    failed_id = h.sim.primary.id
    h.tick()
    assert h.rows() == [
        (PRIMARY, "web:3", 2, 0, 2, 1, ROLLOUT_IN_PROGRESS),
        (ACTIVE, "web:1", 2, 2, 0, 0, ROLLOUT_COMPLETED),
    ]
    h.tick()
    assert h.rows()[0] == (PRIMARY, "web:3", 2, 0, 2, 2, ROLLOUT_IN_PROGRESS)
    h.tick()  # third failure: threshold max(3, ceil(0.5 * 2)) = 3
    # The window ECS shows: the FAILED deployment is still PRIMARY, the rollback requested.
    assert h.rows() == [
        (PRIMARY, "web:3", 2, 0, 0, 3, ROLLOUT_FAILED),
        (ACTIVE, "web:1", 2, 2, 0, 0, ROLLOUT_COMPLETED),
    ]
    assert h.sim.task_definition == BAD
    assert record.status == SD_ROLLBACK_REQUESTED
    assert record.status_reason == "Circuit breaker triggered: tasks failed to start."
    assert record.rollback is None
    assert h.sim.next_step_at == h.now + SEC  # the rollback is due at the next step
    h.tick()
    assert h.sim.task_definition == GOOD  # the service moved back
    rollback = h.sim.primary
    assert rollback.is_rollback
    assert rollback.rollout_state_reason == (
        f"ECS deployment circuit breaker: rolling back to deploymentId {completed_id}."
    )
    assert h.rows() == [
        (PRIMARY, "web:1", 2, 0, 2, 0, ROLLOUT_IN_PROGRESS),
        (ACTIVE, "web:1", 2, 2, 0, 0, ROLLOUT_COMPLETED),
    ]
    assert record.status == SD_ROLLBACK_IN_PROGRESS
    assert record.rollback is not None
    assert record.rollback.service_revision_arn == first.target.arn
    assert record.breaker_status == "TRIGGERED"
    assert record.breaker_failure_count == 3
    h.tick(2)
    assert h.rows() == [(PRIMARY, "web:1", 2, 2, 0, 0, ROLLOUT_COMPLETED)]
    assert record.status == SD_ROLLBACK_SUCCESSFUL
    assert record.finished_at == h.now
    messages = h.messages()
    assert f"(deployment {failed_id}) deployment failed: tasks failed to start." in messages
    assert f"rolling back to deployment {rollback.id}." in messages
    assert messages[-1] == "has reached a steady state."
    assert any(m.startswith("is unable to consistently start tasks") for m in messages)


def test_rollback_window_replays_step_by_step_and_a_new_deployment_supersedes_it() -> None:
    h = Harness(desired=1, config=BREAKER_ROLLBACK)
    h.deploy(GOOD)
    h.tick(1)
    record = h.deploy(BAD)
    tripped_at = h.now + 3 * SEC
    h.tick(10)  # one late request replays trip, window and rollback
    rollback = h.sim.primary
    assert rollback.is_rollback
    assert rollback.created_at == tripped_at + SEC  # one step after the trip
    assert record.rollback is not None
    assert record.rollback.started_at == tripped_at + SEC
    assert record.status == SD_ROLLBACK_SUCCESSFUL

    h = Harness(desired=1, config=BREAKER_ROLLBACK)
    h.deploy(GOOD)
    h.tick(1)
    record = h.deploy(BAD)
    h.tick(3)
    assert record.status == SD_ROLLBACK_REQUESTED
    newer = h.deploy(GOOD2)  # a change in the window stops the requested rollback
    assert record.status == SD_STOPPED
    h.tick(5)
    assert newer.status == SD_SUCCESSFUL
    assert not any(d.is_rollback for d in h.sim.deployments)
    assert h.rows() == [(PRIMARY, "web:2", 1, 1, 0, 0, ROLLOUT_COMPLETED)]


def test_without_circuit_breaker_a_failing_deployment_stays_in_progress() -> None:
    h = Harness(desired=2)
    h.deploy(GOOD)
    h.tick(2)
    record = h.deploy(BAD)
    h.tick(25)
    assert h.rows() == [
        (PRIMARY, "web:3", 2, 0, 2, 25, ROLLOUT_IN_PROGRESS),
        (ACTIVE, "web:1", 2, 2, 0, 0, ROLLOUT_COMPLETED),
    ]
    assert record.status == "IN_PROGRESS"
    assert record.breaker_status == "DISABLED"
    assert h.sim.task_definition == BAD
    assert h.sim.next_step_at is not None  # keeps trying, as ECS does


def test_circuit_breaker_without_rollback_stops_launching() -> None:
    h = Harness(desired=2, config=BREAKER_ONLY)
    h.deploy(GOOD)
    h.tick(2)
    record = h.deploy(BAD)
    h.tick(3)
    assert h.rows() == [
        (PRIMARY, "web:3", 2, 0, 0, 3, ROLLOUT_FAILED),
        (ACTIVE, "web:1", 2, 2, 0, 0, ROLLOUT_COMPLETED),
    ]
    assert h.sim.primary.rollout_state_reason == (
        "ECS deployment circuit breaker: tasks failed to start."
    )
    assert record.status == SD_STOPPED
    h.tick(30)
    assert h.rows()[0][5] == 3  # a FAILED deployment launches no new tasks
    assert h.sim.next_step_at is None


def test_rollback_needs_a_completed_revision() -> None:
    h = Harness(desired=1, config=BREAKER_ROLLBACK)
    record = h.deploy(BAD)
    h.tick(3)
    assert h.rows() == [(PRIMARY, "web:3", 1, 0, 0, 3, ROLLOUT_FAILED)]
    assert record.status == SD_ROLLBACK_FAILED
    assert record.status_reason is not None
    assert "No completed service revision" in record.status_reason


def test_a_failing_rollback_ends_rollback_failed() -> None:
    h = Harness(desired=1, config=BREAKER_ROLLBACK)
    h.deploy(GOOD)
    h.tick(1)
    record = h.deploy(BAD)
    h.probe = Probe(BAD, GOOD)  # from now on the old image cannot start either
    h.tick(3)
    assert record.status == SD_ROLLBACK_REQUESTED
    h.tick()
    assert h.sim.primary.is_rollback
    assert record.status == SD_ROLLBACK_IN_PROGRESS
    h.tick(3)
    assert h.sim.primary.rollout_state == ROLLOUT_FAILED
    assert record.status == SD_ROLLBACK_FAILED
    assert len(h.sim.deployments) == 2  # the old task keeps running
    h.tick(10)
    assert record.status == SD_ROLLBACK_FAILED  # no rollback of the rollback


def test_failure_count_resets_on_a_healthy_task_unless_disabled() -> None:
    flaky = iter([None, "x", "x", None, "x", "x", None, "x", "x", None] * 3)

    def alternating(_: Revision) -> str | None:
        return next(flaky)

    h = Harness(desired=3, config=BREAKER_ROLLBACK)
    h.probe = alternating
    h.deploy(GOOD)
    h.tick(9)  # never two failures... three in a row: completes despite 4 failures
    assert h.sim.primary.rollout_state == ROLLOUT_COMPLETED
    assert h.sim.primary.failed_tasks == 4

    flaky = iter([None, "x", "x", None, "x", "x", None] * 3)
    no_reset = {
        "deploymentCircuitBreaker": {"enable": True, "rollback": False, "resetOnHealthyTask": False}
    }
    h = Harness(desired=3, config=no_reset)
    h.probe = alternating
    h.deploy(GOOD)
    h.tick(5)
    assert h.sim.primary.rollout_state == ROLLOUT_FAILED


def test_stop_service_deployment_rolls_back() -> None:
    h = Harness(desired=2)
    first = h.deploy(GOOD)
    h.tick(2)
    second = h.deploy(GOOD2)
    h.tick(1)
    h.sim.stop_deployment(second.arn, h.now, SEC)
    assert second.status == SD_ROLLBACK_IN_PROGRESS
    assert second.rollback is not None
    assert second.rollback.service_revision_arn == first.target.arn
    assert h.sim.task_definition == GOOD
    h.tick(5)
    assert second.status == SD_ROLLBACK_SUCCESSFUL
    assert h.rows() == [(PRIMARY, "web:1", 2, 2, 0, 0, ROLLOUT_COMPLETED)]
    # Finished deployments cannot be stopped; unknown ones are not found.
    with pytest.raises(ServiceDeploymentConflict):
        h.sim.stop_deployment(first.arn, h.now, SEC)
    with pytest.raises(ServiceDeploymentNotFound):
        h.sim.stop_deployment(first.arn + "x", h.now, SEC)


def test_stop_without_completed_revision_is_a_conflict() -> None:
    h = Harness(desired=2)
    record = h.deploy(BAD)
    with pytest.raises(ServiceDeploymentConflict, match="no completed service revision"):
        h.sim.stop_deployment(record.arn, h.now, SEC)


def test_a_newer_deployment_stops_the_ongoing_one() -> None:
    h = Harness(desired=2)
    h.deploy(GOOD)
    h.tick(2)
    second = h.deploy(BAD)
    h.tick(1)
    third = h.deploy(GOOD2)
    assert second.status == SD_STOPPED
    assert second.stopped_at == h.now
    assert third.status == "IN_PROGRESS"
    assert {r.task_definition for r in third.sources} == {GOOD}  # BAD never ran a task
    h.tick(2)
    assert h.rows() == [(PRIMARY, "web:2", 2, 2, 0, 0, ROLLOUT_COMPLETED)]


def test_scaling_changes_counts_without_a_new_deployment() -> None:
    h = Harness(desired=1)
    h.deploy(GOOD)
    h.tick(1)
    h.sim.set_desired_count(3, h.now, SEC)
    assert h.rows() == [(PRIMARY, "web:1", 3, 1, 2, 0, ROLLOUT_COMPLETED)]
    assert len(h.sim.records) == 1
    h.tick(2)
    assert h.rows() == [(PRIMARY, "web:1", 3, 3, 0, 0, ROLLOUT_COMPLETED)]
    assert h.messages()[-1] == "has reached a steady state."
    h.sim.set_desired_count(1, h.now, SEC)
    assert h.rows() == [(PRIMARY, "web:1", 1, 1, 0, 0, ROLLOUT_COMPLETED)]
    assert h.messages()[-1].startswith("has stopped 2 running tasks: (task ")


def test_desired_zero_completes_at_once() -> None:
    h = Harness(desired=0)
    record = h.deploy(GOOD)
    assert h.rows() == [(PRIMARY, "web:1", 0, 0, 0, 0, ROLLOUT_COMPLETED)]
    assert record.status == SD_SUCCESSFUL


def test_events_keep_the_latest_hundred() -> None:
    h = Harness(desired=1)
    h.deploy(GOOD)
    h.tick(1)
    h.deploy(BAD)
    h.tick(150)
    assert len(h.sim.events) == MAX_EVENTS
    assert h.sim.events[0].created_at == h.now


def test_deleted_service_stops_everything() -> None:
    h = Harness(desired=2)
    h.deploy(GOOD)
    h.tick(1)
    h.sim.deactivate(h.now)
    assert h.sim.running_count == 0
    assert h.sim.pending_count == 0
    assert h.sim.records == []
    h.tick(5)
    assert h.sim.running_count == 0


@settings(max_examples=60, deadline=None)
@given(
    desired=st.integers(min_value=0, max_value=12),
    maximum=st.sampled_from([100, 125, 150, 200]),
    minimum=st.sampled_from([0, 50, 75, 100]),
)
def test_rolling_update_respects_the_deployment_configuration(
    desired: int, maximum: int, minimum: int
) -> None:
    config = {"maximumPercent": maximum, "minimumHealthyPercent": minimum}
    h = Harness(desired=desired, config=config)
    h.deploy(GOOD)
    h.tick(desired + 1)
    assert h.sim.steady
    h.deploy(GOOD2)
    policy = h.sim.policy
    stuck = policy.max_in_flight(desired) <= desired and policy.min_healthy(desired) >= desired
    for _ in range(3 * desired + 3):
        running = h.sim.running_count
        in_flight = running + h.sim.pending_count
        assert running >= policy.min_healthy(desired)
        assert in_flight <= max(policy.max_in_flight(desired), desired)
        h.tick()
    if stuck and desired > 0:
        assert h.sim.primary.rollout_state == ROLLOUT_IN_PROGRESS
    else:
        assert h.rows() == [(PRIMARY, "web:2", desired, desired, 0, 0, ROLLOUT_COMPLETED)]


def test_identifiers_have_ecs_formats_and_seeds_repeat() -> None:
    ids = RandomIds(seed=1)
    assert re.fullmatch(r"ecs-svc/\d{19}", ids.deployment_id())
    assert re.fullmatch(r"[0-9a-f]{32}", ids.task_id())
    assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", ids.event_id())
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", ids.record_id())
    assert re.fullmatch(r"\d{19}", ids.revision_id())
    assert RandomIds(seed=3).deployment_id() == RandomIds(seed=3).deployment_id()
