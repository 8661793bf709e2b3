"""One blue/green-family service deployment walking its lifecycle stages over simulated time.

:class:`StagedRun` is the state of one BLUE_GREEN, LINEAR or CANARY service
deployment of a :class:`~gitopsd.local_aws.deployments.ServiceSim`: which
phase of :func:`gitopsd.local_aws.strategies.plan` it is in, since when, and
the hooks of that phase. The service simulation calls :meth:`StagedRun.step`
at each due time; the run moves the record (stage, traffic weights, hook
states, status) and the two deployments (green = the PRIMARY one it starts,
blue = the last completed revision, left running until CLEAN_UP).

Rules (what ECS documents, simplified):

- A phase lasts at least one step (``1 / pace``); it ends when its hooks are
  SUCCEEDED (or TIMED_OUT with action CONTINUE), its wait (bake time, step or
  canary bake) has passed and, for SCALE_UP, the green revision runs its desired
  count. Green tasks start at ``pace`` from SCALE_UP on; a failing image fails
  again and again (no circuit breaker for these strategies).
- AWS_LAMBDA hooks are IN_PROGRESS for one step, then SUCCEEDED, or FAILED when
  their target matches ``fail_hooks`` (the deployment rolls back). PAUSE hooks
  are AWAITING_ACTION until ContinueServiceDeployment or ``expiresAt``
  (TIMED_OUT, then the timeout action).
- Rollback (alarm, hook failure or timeout, ContinueServiceDeployment ROLLBACK,
  StopServiceDeployment): ROLLBACK_REQUESTED, then at the next step
  ROLLBACK_IN_PROGRESS (traffic back on blue, green tasks stop, blue is PRIMARY
  again), then ROLLBACK_SUCCESSFUL. Hooks that had not answered are dropped
  from ``lifecycleHookDetails``.
- CLEAN_UP ends with the blue tasks stopping; the record is SUCCESSFUL.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from gitopsd.local_aws.records import (
    ACTION_CONTINUE,
    ACTION_ROLLBACK,
    HOOK_AWAITING_ACTION,
    HOOK_FAILED,
    HOOK_IN_PROGRESS,
    HOOK_LAMBDA,
    HOOK_PAUSE,
    HOOK_SUCCEEDED,
    HOOK_TIMED_OUT,
    INACTIVE,
    MONITOR_COMPLETE,
    MONITOR_MONITORING,
    PRIMARY,
    ROLLOUT_COMPLETED,
    ROLLOUT_FAILED,
    SD_IN_PROGRESS,
    SD_ROLLBACK_FAILED,
    SD_ROLLBACK_IN_PROGRESS,
    SD_ROLLBACK_REQUESTED,
    SD_ROLLBACK_SUCCESSFUL,
    CompletedRef,
    Deployment,
    HookRun,
    RollbackInfo,
    ServiceDeploymentRecord,
    SimTask,
    SimulationError,
    StartProbe,
)
from gitopsd.local_aws.strategies import (
    RECONCILE_SERVICE,
    SCALE_UP,
    HookSpec,
    Phase,
    hook_specs,
    plan,
)

if TYPE_CHECKING:
    from gitopsd.local_aws.deployments import ServiceSim

NO_ROLLBACK_TARGET = " No completed service revision to roll back to."


class StagedRun:
    """The progress of one staged (blue/green-family) service deployment."""

    def __init__(
        self,
        sim: ServiceSim,
        record: ServiceDeploymentRecord,
        green: Deployment,
        blue: Deployment | None,
    ) -> None:
        self.sim = sim
        self.record = record
        self.green = green
        self.blue = blue
        self.phases: list[Phase] = plan(record.deployment_configuration)
        self.hooks = hook_specs(record.deployment_configuration)
        self.index = -1
        self.entered_at = record.started_at
        self.scale_up_index = next(i for i, p in enumerate(self.phases) if p.stage == SCALE_UP)
        record.production_weight = 0.0
        record.test_weight = 0.0
        record.blue_revision_arn = blue.revision.arn if blue is not None else None

    # ----------------------------------------------------------------- queries

    @property
    def phase(self) -> Phase:
        """The current phase."""
        return self.phases[max(self.index, 0)]

    @property
    def walking(self) -> bool:
        """True while the run moves the service (IN_PROGRESS or rolling back)."""
        return self.record.ongoing

    @property
    def forward(self) -> bool:
        """True while the deployment goes forward (not rolling back, not finished)."""
        return self.record.status == SD_IN_PROGRESS

    @property
    def green_started(self) -> bool:
        """Green tasks launch from SCALE_UP on."""
        return self.index >= self.scale_up_index

    def next_due(self, at: datetime, interval: timedelta) -> datetime:
        """When the next step is due after one at ``at``: the next step, or a deadline."""
        step = at + interval
        if not self.forward or self.green.pending:
            return step
        runs = self.record.hook_runs
        if at < self.entered_at + interval or any(r.status == HOOK_IN_PROGRESS for r in runs):
            return step
        deadlines = [r.due_at for r in runs if r.status == HOOK_AWAITING_ACTION]
        wait_end = self.entered_at + self.sim.minute * self.phase.wait_minutes
        if wait_end > at:
            deadlines.append(wait_end)
        return max(step, min(deadlines)) if deadlines else step

    # ------------------------------------------------------------------- steps

    def start(self, now: datetime, interval: timedelta) -> None:
        """Enter the first phase."""
        self._enter(0, now, interval)

    def step(self, now: datetime, interval: timedelta, probe: StartProbe) -> None:
        """One step of the run at ``now``."""
        record = self.record
        if record.status == SD_ROLLBACK_REQUESTED:
            self._begin_rollback(now)
            return
        if record.status == SD_ROLLBACK_IN_PROGRESS:
            self.sim.finish_record(record, SD_ROLLBACK_SUCCESSFUL, now, None)
            return
        if not self.forward:
            return
        green = self.green
        if green.pending:
            task = green.pending.pop(0)
            green.updated_at = now
            if probe(green.revision) is None:
                green.running.append(task)
            else:
                self.sim.task_failed(green, now, breaker=False)
        for run in record.hook_runs:
            if run.status == HOOK_IN_PROGRESS and run.due_at <= now:
                run.status = HOOK_FAILED if run.will_fail else HOOK_SUCCEEDED
                record.updated_at = now
                if run.will_fail:
                    self.request_rollback(
                        f"Lifecycle hook {run.target_arn} ({HOOK_LAMBDA}) returned FAILED at "
                        f"{run.stage}.",
                        now,
                    )
                    return
            elif run.status == HOOK_AWAITING_ACTION and run.due_at <= now:
                run.status = HOOK_TIMED_OUT
                record.updated_at = now
                if run.timeout_action != ACTION_CONTINUE:
                    self.request_rollback(
                        f"Lifecycle hook {run.hook_id} ({HOOK_PAUSE}) timed out at {run.stage}; "
                        f"timeout action {ACTION_ROLLBACK}.",
                        now,
                    )
                    return
        if self._phase_done(now, interval):
            if self.phase.clean_up:
                self._finish(now)
            else:
                self._enter(self.index + 1, now, interval)

    def continue_hook(self, hook_id: str, action: str, now: datetime) -> None:
        """ContinueServiceDeployment on one of the current phase's PAUSE hooks."""
        record = self.record
        run = next((r for r in record.hook_runs if r.hook_id == hook_id), None)
        if not self.forward:
            raise SimulationError(
                f"The service deployment {record.arn} is {record.status}; only a service "
                "deployment that is IN_PROGRESS can be continued."
            )
        if run is None:
            raise SimulationError(
                f"The lifecycle hook {hook_id} was not found in the current lifecycle stage of "
                f"service deployment {record.arn}."
            )
        if run.target_type != HOOK_PAUSE or run.status != HOOK_AWAITING_ACTION:
            raise SimulationError(
                f"The lifecycle hook {hook_id} is in {run.status} status; only a PAUSE hook "
                f"in {HOOK_AWAITING_ACTION} status can be continued or rolled back."
            )
        record.updated_at = now
        if action == ACTION_ROLLBACK:
            run.status = HOOK_FAILED
            self.request_rollback(
                f"Rolled back by ContinueServiceDeployment (action {ACTION_ROLLBACK}) on "
                f"lifecycle hook {hook_id} at {run.stage}.",
                now,
            )
        else:
            run.status = HOOK_SUCCEEDED

    def request_rollback(self, reason: str, now: datetime, *, at_once: bool = False) -> None:
        """Roll back to blue: ROLLBACK_REQUESTED now (``at_once``: straight to IN_PROGRESS)."""
        record = self.record
        if not self.forward:
            return
        record.hook_runs = [
            r for r in record.hook_runs if r.status not in (HOOK_AWAITING_ACTION, HOOK_IN_PROGRESS)
        ]
        if self.blue is None or self.sim.last_completed is None:
            self._fail_green(now, reason)
            self.sim.finish_record(record, SD_ROLLBACK_FAILED, now, reason + NO_ROLLBACK_TARGET)
            return
        record.status = SD_ROLLBACK_REQUESTED
        record.status_reason = reason
        record.updated_at = now
        record.rollback = RollbackInfo(reason, now, self.blue.revision.arn)
        if at_once:
            self._begin_rollback(now)

    def stop_without_rollback(self, reason: str, now: datetime, status: str) -> None:
        """End the run where it is (an alarm without rollback): green FAILED, record final."""
        self._fail_green(now, reason)
        self.record.hook_runs = [
            r
            for r in self.record.hook_runs
            if r.status not in (HOOK_AWAITING_ACTION, HOOK_IN_PROGRESS)
        ]
        self.sim.finish_record(self.record, status, now, reason)
        self.record.stopped_at = now

    # -------------------------------------------------------------- internals

    def _phase_done(self, now: datetime, interval: timedelta) -> bool:
        phase = self.phase
        if now < self.entered_at + interval:
            return False
        if now < self.entered_at + self.sim.minute * phase.wait_minutes:
            return False
        if not all(r.settled for r in self.record.hook_runs):
            return False
        green = self.green
        return not (phase.scale_up and (green.pending or len(green.running) < green.desired_count))

    def _enter(self, index: int, now: datetime, interval: timedelta) -> None:
        phase = self.phases[index]
        record = self.record
        self.index = index
        self.entered_at = now
        record.lifecycle_stage = phase.stage
        record.updated_at = now
        if phase.production_weight is not None:
            record.production_weight = phase.production_weight
        if phase.test_weight is not None:
            record.test_weight = phase.test_weight
        record.hook_runs = [
            self._hook_run(spec, phase.hook_stage, now, interval)
            for spec in self.hooks
            if phase.hook_stage is not None and phase.hook_stage in spec.stages
        ]
        if phase.stage == RECONCILE_SERVICE:
            keep = {id(self.green), id(self.blue)}
            self.sim.stop_tasks([d for d in self.sim.deployments if id(d) not in keep], now)

    def _hook_run(self, spec: HookSpec, stage: str, now: datetime, interval: timedelta) -> HookRun:
        """A fresh run (new hook id) of one configured hook at the start of a phase."""
        hook_id = self.sim.ids.hook_id()
        if spec.target_type == HOOK_PAUSE:
            return HookRun(
                hook_id,
                HOOK_PAUSE,
                None,
                stage,
                HOOK_AWAITING_ACTION,
                now,
                now + self.sim.minute * spec.timeout_minutes,
                timeout_action=spec.timeout_action,
            )
        return HookRun(
            hook_id,
            HOOK_LAMBDA,
            spec.target_arn,
            stage,
            HOOK_IN_PROGRESS,
            now,
            now + interval,
            will_fail=self.sim.hook_fails(spec.target_arn),
        )

    def _fail_green(self, now: datetime, reason: str) -> None:
        green = self.green
        green.rollout_state = ROLLOUT_FAILED
        green.rollout_state_reason = reason
        green.pending.clear()
        green.updated_at = now

    def _begin_rollback(self, now: datetime) -> None:
        """Traffic back on blue, green tasks stop, blue is PRIMARY again."""
        record, green, blue = self.record, self.green, self.blue
        record.status = SD_ROLLBACK_IN_PROGRESS
        record.production_weight = 0.0
        record.test_weight = 0.0
        record.updated_at = now
        self._fail_green(now, f"ECS deployment {green.id} rolled back: {record.status_reason}")
        if blue is None:  # request_rollback checks; kept for type narrowing
            return
        self.sim.stop_tasks([green], now)
        blue.status = PRIMARY
        blue.updated_at = now
        self.sim.deployments = [blue, *(d for d in self.sim.deployments if d is not blue)]
        self.sim.event(now, f"rolling back to deployment {blue.id}.")

    def _finish(self, now: datetime) -> None:
        """CLEAN_UP ends: blue tasks stop, green is the only deployment, COMPLETED."""
        green, record = self.green, self.record
        self.sim.stop_tasks([d for d in self.sim.deployments if d is not green], now)
        green.rollout_state = ROLLOUT_COMPLETED
        green.rollout_state_reason = f"ECS deployment {green.id} completed."
        green.updated_at = now
        self.sim.event(now, f"(deployment {green.id}) deployment completed.")
        if record.alarm_status == MONITOR_MONITORING:
            record.alarm_status = MONITOR_COMPLETE
        self.sim.finish_record(record, "SUCCESSFUL", now, None)
        self.sim.last_completed = CompletedRef(green.id, green.revision)


def launch_green(sim: ServiceSim, green: Deployment, now: datetime) -> list[SimTask]:
    """Start the green tasks still missing (all at once; they resolve at ``pace``)."""
    need = green.desired_count - len(green.running) - len(green.pending)
    if need <= 0:
        return []
    tasks = [SimTask(sim.ids.task_id(), now) for _ in range(need)]
    green.pending.extend(tasks)
    green.updated_at = now
    return tasks


def drop_empty(sim: ServiceSim, keep: Deployment) -> None:
    """Forget deployments other than ``keep`` that have no task left (INACTIVE)."""
    kept = []
    for d in sim.deployments:
        if d is keep or d.running or d.pending:
            kept.append(d)
        else:
            d.status = INACTIVE
    sim.deployments = kept
