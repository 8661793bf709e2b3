"""ECS rolling deployments of one service, as a pure state machine driven by timestamps.

This is the part of the local ECS endpoint that behaves like ECS; the moto glue
(:mod:`gitopsd.local_aws.ecs_backend`) only feeds it requests and copies its
state into API responses. Nothing here sleeps, reads a clock or imports moto:
every method takes ``now``, and :meth:`ServiceSim.advance_to` replays the steps
that fell due since the last call, so state is computed lazily on each request.

The model, per service:

- ``deployments`` (newest first): the PRIMARY one launches tasks for the current
  service revision; older ones are ACTIVE and drain; a drained one disappears
  from the list. Each has desired/pending/running/failed counts and a
  ``rolloutState`` IN_PROGRESS -> COMPLETED | FAILED.
- A change (create, new task definition, forceNewDeployment ...) starts a new
  PRIMARY deployment and a new *service deployment* record (the object of
  ListServiceDeployments / DescribeServiceDeployments).
- Immediately (and after every step) the service reconciles: drain old tasks
  while at least ``minimumHealthyPercent`` keep running, cancel tasks of ACTIVE
  deployments that never started, launch PRIMARY tasks (PENDING) up to
  ``maximumPercent``.
- Every ``1 / pace`` seconds one PENDING task of the PRIMARY deployment resolves:
  it is RUNNING, or - when its image is configured to fail - it stops and
  counts in ``failedTasks``.
- With the circuit breaker on, ``failedTasks`` reaching the threshold makes the
  rollout FAILED. With rollback on, the service deployment goes
  ROLLBACK_REQUESTED at once while the FAILED deployment stays PRIMARY (the
  window real ECS shows too); at the next step (one ``1 / pace`` later) a new
  PRIMARY deployment of the last COMPLETED service revision starts (ECS creates
  no new revision for a rollback) and the service deployment goes
  ROLLBACK_IN_PROGRESS -> ROLLBACK_SUCCESSFUL (or ROLLBACK_FAILED).
  StopServiceDeployment (ROLLBACK) starts its rollback deployment at once.
  Without the breaker a failing deployment keeps replacing tasks and stays
  IN_PROGRESS, as ECS does.
- The PRIMARY deployment completes when it runs ``desiredCount`` tasks and no
  other deployment is left: events "(deployment X) deployment completed." and
  "has reached a steady state.".
- ``deploymentConfiguration.strategy`` BLUE_GREEN, LINEAR or CANARY: the service
  deployment walks lifecycle stages instead (:mod:`gitopsd.local_aws.staged`,
  the plan in :mod:`gitopsd.local_aws.strategies`): green tasks start, the old
  revision keeps running until CLEAN_UP, traffic weights move, hooks run.
- Deployment alarms (every strategy): :meth:`ServiceSim.observe_alarms` is told
  which alarms are in ALARM each time the service is read. An alarm already in
  ALARM when the deployment started is ignored until it leaves ALARM; one that
  goes to ALARM while the deployment is IN_PROGRESS triggers: with ``rollback``
  a rollback (ROLLBACK_REQUESTED first, as for the breaker), without it the
  deployment fails and is STOPPED where it is.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from gitopsd.local_aws.ids import IdSource, RandomIds
from gitopsd.local_aws.policy import DeploymentPolicy
from gitopsd.local_aws.records import (
    ACTIVE,
    INACTIVE,
    MONITOR_COMPLETE,
    MONITOR_DISABLED,
    MONITOR_MONITORING,
    MONITOR_TRIGGERED,
    ROLLOUT_COMPLETED,
    ROLLOUT_FAILED,
    ROLLOUT_IN_PROGRESS,
    SD_IN_PROGRESS,
    SD_ROLLBACK_FAILED,
    SD_ROLLBACK_IN_PROGRESS,
    SD_ROLLBACK_REQUESTED,
    SD_ROLLBACK_SUCCESSFUL,
    SD_STOP_REQUESTED,
    SD_STOPPED,
    SD_SUCCESSFUL,
    STAGED_STRATEGIES,
    CompletedRef,
    Deployment,
    Revision,
    RevisionCounts,
    RollbackInfo,
    ServiceDeploymentConflict,
    ServiceDeploymentNotFound,
    ServiceDeploymentRecord,
    ServiceEvent,
    ServiceIdentity,
    SimTask,
    SimulationError,
    StartProbe,
)
from gitopsd.local_aws.staged import StagedRun, drop_empty, launch_green
from gitopsd.local_aws.strategies import strategy_of

#: ECS keeps the latest 100 service events.
MAX_EVENTS = 100
#: A runaway replay (real clock, huge pace, tasks failing forever) gives up after this.
MAX_STEPS_PER_ADVANCE = 100_000

BREAKER_REASON = "ECS deployment circuit breaker: tasks failed to start."
BREAKER_ROLLBACK_REASON = "Circuit breaker triggered: tasks failed to start."
STOP_ROLLBACK_REASON = "Service deployment rolled back by a StopServiceDeployment request."
#: Simulated length of a configured minute unless the server says otherwise.
DEFAULT_MINUTE = timedelta(seconds=60)
UNABLE_TO_START = (
    "is unable to consistently start tasks successfully. For more information, "
    "see the Troubleshooting section of the Amazon ECS Developer Guide."
)


class ServiceSim:
    """The deployments, events and service deployments of one ECS service."""

    def __init__(
        self,
        identity: ServiceIdentity,
        *,
        desired_count: int,
        deployment_configuration: Mapping[str, Any],
        ids: IdSource | None = None,
    ) -> None:
        self.identity = identity
        self.ids: IdSource = ids or RandomIds()
        self.desired_count = desired_count
        self.deployment_configuration = dict(deployment_configuration)
        self.policy = DeploymentPolicy.from_configuration(deployment_configuration)
        self.deployments: list[Deployment] = []
        self.records: list[ServiceDeploymentRecord] = []
        self.revisions: dict[str, Revision] = {}
        self.events: list[ServiceEvent] = []
        self.last_completed: CompletedRef | None = None
        self.next_step_at: datetime | None = None
        self.active = True
        self._steady = False
        #: A service deployment in ROLLBACK_REQUESTED whose rollback starts at the next step.
        self.rollback_due: ServiceDeploymentRecord | None = None
        #: The staged (blue/green-family) service deployment being walked, if any.
        self.staged: StagedRun | None = None
        #: Simulated length of one configured minute (bake times, hook timeouts).
        self.minute = DEFAULT_MINUTE
        #: Whether an AWS_LAMBDA hook with this target answers FAILED.
        self.hook_fails: Callable[[str | None], bool] = lambda target: False
        #: The simulated time the state was last brought up to (alarms are seen then).
        self.clock_at: datetime | None = None

    # ----------------------------------------------------------------- queries

    @property
    def name(self) -> str:
        """The service name."""
        return self.identity.name

    @property
    def primary(self) -> Deployment:
        """The PRIMARY (newest) deployment."""
        if not self.deployments:
            raise SimulationError(f"service {self.name} has no deployment")
        return self.deployments[0]

    @property
    def task_definition(self) -> str | None:
        """The service's ``taskDefinition``: the PRIMARY deployment's (a rollback moves it)."""
        return self.deployments[0].task_definition if self.deployments else None

    @property
    def running_count(self) -> int:
        """Running tasks over all deployments."""
        return sum(len(d.running) for d in self.deployments)

    @property
    def pending_count(self) -> int:
        """Pending tasks over all deployments."""
        return sum(len(d.pending) for d in self.deployments)

    @property
    def current_record(self) -> ServiceDeploymentRecord | None:
        """The newest service deployment."""
        return self.records[-1] if self.records else None

    @property
    def steady(self) -> bool:
        """One deployment, running its desired count, nothing starting."""
        if len(self.deployments) != 1:
            return False
        p = self.deployments[0]
        return not p.pending and len(p.running) == p.desired_count

    def find_record(self, arn: str) -> ServiceDeploymentRecord | None:
        """The service deployment with this ARN, if it belongs to this service."""
        return next((r for r in self.records if r.arn == arn), None)

    def revision_counts(self, revision_arn: str) -> RevisionCounts:
        """Live requested/running/pending counts of the deployments of one revision."""
        requested = running = pending = 0
        for d in self.deployments:
            if d.revision.arn == revision_arn:
                requested += d.desired_count
                running += len(d.running)
                pending += len(d.pending)
        return RevisionCounts(requested, running, pending)

    def record_counts(self, record: ServiceDeploymentRecord, revision_arn: str) -> RevisionCounts:
        """Counts of a revision as a service deployment reports them (frozen once finished)."""
        if record.final_counts is not None:
            return record.final_counts.get(revision_arn, RevisionCounts(0, 0, 0))
        return self.revision_counts(revision_arn)

    # ---------------------------------------------------------------- changes

    def new_revision(
        self,
        task_definition: str,
        images: Iterable[tuple[str, str]],
        now: datetime,
        config: Mapping[str, Any] | None = None,
    ) -> Revision:
        """Record a new service revision (does not deploy it)."""
        arn = self.identity.service_revision_arn(self.ids.revision_id())
        revision = Revision(arn, task_definition, tuple(images), now, dict(config or {}))
        self.revisions[arn] = revision
        return revision

    def set_deployment_configuration(self, configuration: Mapping[str, Any]) -> None:
        """Apply a new (normalized) ``deploymentConfiguration``; no deployment starts."""
        self.deployment_configuration = dict(configuration)
        self.policy = DeploymentPolicy.from_configuration(configuration)

    def start_deployment(
        self,
        revision: Revision,
        now: datetime,
        interval: timedelta,
        *,
        in_alarm: Collection[str] = (),
    ) -> ServiceDeploymentRecord:
        """A change that needs a deployment: new PRIMARY deployment and service deployment.

        ``in_alarm``: the CloudWatch alarms in ALARM right now (ignored by this deployment
        until they leave ALARM).
        """
        self._require_active()
        self.clock_at = now
        self.rollback_due = None  # a requested rollback is superseded like the deployment
        self.staged = None
        strategy = strategy_of(self.deployment_configuration)
        staged = strategy in STAGED_STRATEGIES
        blue = self._blue() if staged else None
        sources = _unique_revisions(d.revision for d in self.deployments if d.running)
        for old in self.deployments:
            old.status = ACTIVE
            old.pending.clear()
            old.updated_at = now
            if old.record.ongoing:
                self.finish_record(
                    old.record, SD_STOPPED, now, "Superseded by a newer service deployment."
                )
                old.record.stopped_at = now
        record_id = self.ids.record_id()
        record = ServiceDeploymentRecord(
            id=record_id,
            arn=self.identity.service_deployment_arn(record_id),
            target=revision,
            sources=sources,
            status=SD_IN_PROGRESS,
            created_at=now,
            started_at=now,
            updated_at=now,
            deployment_configuration=dict(self.deployment_configuration),
            breaker_status=(
                MONITOR_MONITORING
                if self.policy.circuit_breaker and not staged
                else MONITOR_DISABLED
            ),
            breaker_threshold=self.policy.failure_threshold(self.desired_count),
            strategy=strategy,
        )
        alarms = self.deployment_configuration.get("alarms") or {}
        if alarms.get("enable"):
            record.alarm_names = tuple(str(n) for n in alarms.get("alarmNames") or ())
            record.alarm_rollback = bool(alarms.get("rollback"))
            record.alarm_status = MONITOR_MONITORING
            record.ignored_alarms = set(record.alarm_names) & set(in_alarm)
        self.records.append(record)
        deployment_id = self.ids.deployment_id()
        deployment = Deployment(
            id=deployment_id,
            revision=revision,
            record=record,
            desired_count=self.desired_count,
            created_at=now,
            updated_at=now,
            rollout_state_reason=f"ECS deployment {deployment_id} in progress.",
        )
        self.deployments.insert(0, deployment)
        if staged:
            self.staged = StagedRun(self, record, deployment, blue)
            self.staged.start(now, interval)
        self._settle_now(now, interval)
        return record

    def _blue(self) -> Deployment | None:
        """The deployment a staged deployment shifts traffic away from (the last completed)."""
        if self.last_completed is None:
            return None
        arn = self.last_completed.revision.arn
        return next((d for d in self.deployments if d.revision.arn == arn and d.running), None)

    def set_desired_count(self, count: int, now: datetime, interval: timedelta) -> None:
        """Scale: the PRIMARY deployment's desired count follows; no new deployment."""
        self._require_active()
        self.desired_count = count
        if self.deployments:
            primary = self.deployments[0]
            primary.desired_count = count
            primary.updated_at = now
            if primary.record.ongoing:
                primary.record.breaker_threshold = self.policy.failure_threshold(count)
            self._settle_now(now, interval)

    def stop_deployment(
        self, record_arn: str, now: datetime, interval: timedelta
    ) -> ServiceDeploymentRecord:
        """StopServiceDeployment with stopType ROLLBACK."""
        record = self.find_record(record_arn)
        if record is None:
            raise ServiceDeploymentNotFound(f"Service deployment {record_arn} was not found.")
        if record.status in (SD_ROLLBACK_REQUESTED, SD_ROLLBACK_IN_PROGRESS, SD_STOP_REQUESTED):
            return record
        if not record.ongoing or not self.deployments or self.primary.record is not record:
            raise ServiceDeploymentConflict(
                f"The service deployment {record_arn} is {record.status} and cannot be stopped."
            )
        if self.last_completed is None:
            raise ServiceDeploymentConflict(
                f"The service deployment {record_arn} cannot be rolled back: the service has no "
                "completed service revision to roll back to."
            )
        self.clock_at = now
        if self._staged_walking(record):
            assert self.staged is not None
            self.staged.request_rollback(STOP_ROLLBACK_REASON, now, at_once=True)
        else:
            self._start_rollback(record, STOP_ROLLBACK_REASON, now)
        self._settle_now(now, interval)
        return record

    def continue_deployment(
        self,
        record_arn: str,
        hook_id: str,
        action: str,
        now: datetime,
        interval: timedelta,
        probe: StartProbe,
    ) -> ServiceDeploymentRecord:
        """ContinueServiceDeployment: CONTINUE or ROLLBACK at a PAUSE hook awaiting action.

        CONTINUE takes effect at once (the stage may end at ``now``); ROLLBACK is
        requested now and starts at the next step.
        """
        record = self.find_record(record_arn)
        if record is None:
            raise ServiceDeploymentNotFound(f"Service deployment {record_arn} was not found.")
        staged = self.staged
        if staged is None or staged.record is not record:
            raise SimulationError(
                f"The service deployment {record_arn} has no lifecycle hook {hook_id} awaiting "
                "action."
            )
        self.clock_at = now
        staged.continue_hook(hook_id, action, now)
        if record.status == SD_IN_PROGRESS:
            self.next_step_at = now
            self.advance_to(now, interval, probe)
        else:
            self._settle_now(now, interval)
        return record

    def observe_alarms(self, in_alarm: Collection[str], interval: timedelta) -> bool:
        """Alarms in ALARM now; an ongoing deployment watching one of them fails or rolls back.

        Seen at :attr:`clock_at` (the time the state was last brought up to), so the
        steps that fell due since are replayed afterwards on the rollback path.
        True when an alarm triggered.
        """
        record = self.current_record
        if (
            record is None
            or record.status != SD_IN_PROGRESS
            or record.alarm_status != MONITOR_MONITORING
            or not self.deployments
        ):
            return False
        alarmed = set(in_alarm)
        record.ignored_alarms &= alarmed  # an ignored alarm that left ALARM counts again
        fired = [n for n in record.alarm_names if n in alarmed and n not in record.ignored_alarms]
        if not fired:
            return False
        at = self.clock_at or record.updated_at
        record.alarm_status = MONITOR_TRIGGERED
        record.triggered_alarms = fired
        record.updated_at = at
        reason = f"Deployment alarm(s) in ALARM state: {', '.join(fired)}."
        staged = self.staged if self._staged_walking(record) else None
        if staged is not None:
            if record.alarm_rollback:
                staged.request_rollback(reason, at)
            else:
                staged.stop_without_rollback(reason, at, SD_STOPPED)
        else:
            self._alarm_rolling(record, reason, at)
        self._settle_now(at, interval)
        return True

    def _alarm_rolling(self, record: ServiceDeploymentRecord, reason: str, now: datetime) -> None:
        """A deployment alarm fired during a rolling update: like the breaker, with the alarm."""
        primary = self.primary
        if primary.record is not record:
            return
        primary.rollout_state = ROLLOUT_FAILED
        primary.rollout_state_reason = reason
        primary.pending.clear()
        primary.updated_at = now
        self.event(now, f"(deployment {primary.id}) deployment failed: alarm(s) in ALARM state.")
        if not record.alarm_rollback:
            self.finish_record(record, SD_STOPPED, now, reason)
            record.stopped_at = now
        elif self.last_completed is None:
            self.finish_record(
                record,
                SD_ROLLBACK_FAILED,
                now,
                reason + " No completed service revision to roll back to.",
            )
        else:
            record.status = SD_ROLLBACK_REQUESTED
            record.status_reason = reason
            self.rollback_due = record

    def alarm_names(self) -> tuple[str, ...]:
        """The alarms the ongoing deployment watches (empty when none needs a look)."""
        record = self.current_record
        if record is None or record.status != SD_IN_PROGRESS:
            return ()
        if record.alarm_status != MONITOR_MONITORING:
            return ()
        return record.alarm_names

    def deactivate(self, now: datetime) -> None:
        """The service was deleted: its tasks stop and its service deployments go away."""
        self.active = False
        self.desired_count = 0
        for d in self.deployments:
            d.pending.clear()
            d.running.clear()
            d.desired_count = 0
            d.updated_at = now
        self.records.clear()
        self.rollback_due = None
        self.staged = None
        self.next_step_at = None

    # ------------------------------------------------------------------- time

    def advance_to(self, now: datetime, interval: timedelta, probe: StartProbe) -> bool:
        """Replay every step due up to ``now``; True if anything was due."""
        if interval <= timedelta(0):
            raise SimulationError("step interval must be positive")
        stepped = False
        steps = 0
        while self.active and self.next_step_at is not None and self.next_step_at <= now:
            at = self.next_step_at
            self._step(at, interval, probe)
            stepped = True
            steps += 1
            self.next_step_at = self._next_after(at, interval)
            if steps >= MAX_STEPS_PER_ADVANCE and self.next_step_at is not None:
                self.next_step_at = max(self.next_step_at, now + interval)
                break
        if self.clock_at is None or now > self.clock_at:
            self.clock_at = now
        return stepped

    # -------------------------------------------------------------- internals

    def _require_active(self) -> None:
        if not self.active:
            raise SimulationError(f"service {self.name} is not active")

    def _staged_walking(self, record: ServiceDeploymentRecord | None = None) -> bool:
        """True while a staged run moves the service (of ``record``, if given)."""
        staged = self.staged
        if staged is None or not staged.walking:
            return False
        return record is None or staged.record is record

    def _next_after(self, at: datetime, interval: timedelta) -> datetime | None:
        """When the step after one at ``at`` is due (None: nothing to do)."""
        if self.staged is not None and self._staged_walking():
            return self.staged.next_due(at, interval)
        return at + interval if self._has_due_work() else None

    def _has_due_work(self) -> bool:
        if not self.deployments:
            return False
        if self.rollback_due is not None or self._staged_walking():
            return True
        primary = self.deployments[0]
        return bool(primary.pending) and primary.rollout_state != ROLLOUT_FAILED

    def _settle_now(self, now: datetime, interval: timedelta) -> None:
        """Reconcile right after a change and (re)arm the step timer."""
        self._reconcile(now)
        self._check_steady(now)
        if not self._has_due_work():
            self.next_step_at = None
        elif self.staged is not None and self._staged_walking():
            due = self.staged.next_due(now, interval)
            if self.next_step_at is None or due < self.next_step_at:
                self.next_step_at = due
        elif self.next_step_at is None:
            self.next_step_at = now + interval

    def _step(self, now: datetime, interval: timedelta, probe: StartProbe) -> None:
        if self.rollback_due is not None:
            record, self.rollback_due = self.rollback_due, None
            if record.status == SD_ROLLBACK_REQUESTED and self.last_completed is not None:
                self._start_rollback(record, record.status_reason or BREAKER_ROLLBACK_REASON, now)
                self._reconcile(now)
                self._check_steady(now)
                return
        if self.staged is not None and self._staged_walking():
            self.staged.step(now, interval, probe)
            self._reconcile(now)
            self._check_steady(now)
            return
        primary = self.primary
        if primary.pending and primary.rollout_state != ROLLOUT_FAILED:
            task = primary.pending.pop(0)
            primary.updated_at = now
            failure = probe(primary.revision)
            if failure is None:
                primary.running.append(task)
                if self.policy.reset_on_healthy_task:
                    primary.breaker_failures = 0
            else:
                self.task_failed(primary, now)
        self._reconcile(now)
        self._check_steady(now)

    def task_failed(self, deployment: Deployment, now: datetime, *, breaker: bool = True) -> None:
        """A task of ``deployment`` failed to start (``breaker``: the circuit breaker counts it)."""
        deployment.failed_tasks += 1
        deployment.breaker_failures += 1
        record = deployment.record
        if not deployment.is_rollback:
            record.breaker_failure_count = deployment.failed_tasks
        record.updated_at = now
        if not deployment.reported_start_failures:
            deployment.reported_start_failures = True
            self.event(now, UNABLE_TO_START)
        threshold = self.policy.failure_threshold(deployment.desired_count)
        if (
            breaker
            and self.policy.circuit_breaker
            and deployment.rollout_state == ROLLOUT_IN_PROGRESS
            and deployment.breaker_failures >= threshold
        ):
            self._fail(deployment, now)

    def _fail(self, deployment: Deployment, now: datetime) -> None:
        """The circuit breaker tripped on the PRIMARY deployment."""
        deployment.rollout_state = ROLLOUT_FAILED
        deployment.rollout_state_reason = BREAKER_REASON
        deployment.pending.clear()
        deployment.updated_at = now
        self.event(now, f"(deployment {deployment.id}) deployment failed: tasks failed to start.")
        record = deployment.record
        record.breaker_status = MONITOR_TRIGGERED
        record.updated_at = now
        if not self.policy.rollback:
            self.finish_record(record, SD_STOPPED, now, BREAKER_REASON)
            record.stopped_at = now
        elif deployment.is_rollback:
            self.finish_record(
                record, SD_ROLLBACK_FAILED, now, "The rollback deployment failed: " + BREAKER_REASON
            )
        elif self.last_completed is None:
            self.finish_record(
                record,
                SD_ROLLBACK_FAILED,
                now,
                BREAKER_REASON + " No completed service revision to roll back to.",
            )
        else:
            # ECS shows the FAILED deployment (still PRIMARY) and ROLLBACK_REQUESTED
            # for a while; the rollback deployment starts at the next step.
            record.status = SD_ROLLBACK_REQUESTED
            record.status_reason = BREAKER_ROLLBACK_REASON
            self.rollback_due = record

    def _start_rollback(self, record: ServiceDeploymentRecord, reason: str, now: datetime) -> None:
        """New PRIMARY deployment of the last completed revision, for ``record``."""
        target = self.last_completed
        if target is None:  # callers check; kept for type narrowing
            raise ServiceDeploymentConflict("no completed service revision to roll back to")
        for old in self.deployments:
            old.status = ACTIVE
            old.pending.clear()
            old.updated_at = now
        deployment = Deployment(
            id=self.ids.deployment_id(),
            revision=target.revision,
            record=record,
            desired_count=self.desired_count,
            created_at=now,
            updated_at=now,
            rollout_state_reason=(
                f"{_rollback_cause(record)}: rolling back to deploymentId {target.deployment_id}."
            ),
            is_rollback=True,
        )
        self.deployments.insert(0, deployment)
        record.status = SD_ROLLBACK_IN_PROGRESS
        record.status_reason = reason
        record.updated_at = now
        record.rollback = RollbackInfo(reason, now, target.revision.arn)
        self.event(now, f"rolling back to deployment {deployment.id}.")

    def _reconcile(self, now: datetime) -> None:
        """Scale in, drain old deployments, launch PRIMARY tasks: what ECS does at once."""
        if not self.deployments or not self.active:
            return
        primary = self.deployments[0]
        if self.staged is not None and self.staged.walking and self.staged.green is primary:
            self._reconcile_staged(primary, now)
            return
        desired = primary.desired_count
        stopped: list[SimTask] = []

        excess = len(primary.running) + len(primary.pending) - desired
        if excess > 0:
            cancel = min(excess, len(primary.pending))
            del primary.pending[len(primary.pending) - cancel :]
            excess -= cancel
            if excess > 0:
                stopped.extend(primary.running[-excess:])
                del primary.running[-excess:]
            primary.updated_at = now

        others = self.deployments[1:]
        for old in others:
            if old.pending:
                old.pending.clear()
                old.updated_at = now
        min_healthy = self.policy.min_healthy(desired)
        total_running = sum(len(d.running) for d in self.deployments)
        for old in reversed(others):  # the oldest drains first
            while old.running and total_running - 1 >= min_healthy:
                stopped.append(old.running.pop(0))
                total_running -= 1
                old.updated_at = now
            if old.desired_count != len(old.running):
                old.desired_count = len(old.running)
                old.updated_at = now
        if stopped:
            self.event(now, f"has stopped {len(stopped)} running tasks: {_task_list(stopped)}.")
        kept = [d for d in others if d.running or d.pending]
        for gone in others:
            if gone not in kept:
                gone.status = INACTIVE
        self.deployments = [primary, *kept]

        if primary.rollout_state == ROLLOUT_FAILED:
            return
        in_flight = sum(len(d.running) + len(d.pending) for d in self.deployments)
        need = desired - len(primary.running) - len(primary.pending)
        launch = min(need, self.policy.max_in_flight(desired) - in_flight)
        if launch > 0:
            tasks = [SimTask(self.ids.task_id(), now) for _ in range(launch)]
            primary.pending.extend(tasks)
            primary.updated_at = now
            self.event(now, f"has started {launch} tasks: {_task_list(tasks)}.")

    def _reconcile_staged(self, green: Deployment, now: datetime) -> None:
        """Blue/green family: old revisions keep running, green starts from SCALE_UP on."""
        assert self.staged is not None
        excess = len(green.running) + len(green.pending) - green.desired_count
        if excess > 0:  # scaled in during the deployment
            del green.pending[max(0, len(green.pending) - excess) :]
        for old in self.deployments[1:]:
            if old.pending:
                old.pending.clear()
                old.updated_at = now
        drop_empty(self, green)
        if self.staged.forward and self.staged.green_started:
            tasks = launch_green(self, green, now)
            if tasks:
                self.event(now, f"has started {len(tasks)} tasks: {_task_list(tasks)}.")

    def stop_tasks(self, deployments: Iterable[Deployment], now: datetime) -> None:
        """Stop every task of these deployments at once (they leave the list)."""
        gone = list(deployments)
        stopped: list[SimTask] = []
        for d in gone:
            stopped.extend(d.running)
            d.running.clear()
            d.pending.clear()
            d.desired_count = 0
            d.updated_at = now
            d.status = INACTIVE
        gone_ids = {id(d) for d in gone}
        self.deployments = [d for d in self.deployments if id(d) not in gone_ids]
        if stopped:
            self.event(now, f"has stopped {len(stopped)} running tasks: {_task_list(stopped)}.")

    def _check_steady(self, now: datetime) -> None:
        if not self.deployments or self._staged_walking():
            return
        primary = self.deployments[0]
        steady = self.steady
        if steady and primary.rollout_state == ROLLOUT_IN_PROGRESS:
            primary.rollout_state = ROLLOUT_COMPLETED
            primary.rollout_state_reason = f"ECS deployment {primary.id} completed."
            primary.updated_at = now
            self.event(now, f"(deployment {primary.id}) deployment completed.")
            record = primary.record
            if record.ongoing:
                if record.breaker_status == MONITOR_MONITORING:
                    record.breaker_status = MONITOR_COMPLETE
                if primary.is_rollback:
                    self.finish_record(record, SD_ROLLBACK_SUCCESSFUL, now, None)
                else:
                    self.finish_record(record, SD_SUCCESSFUL, now, None)
            self.last_completed = CompletedRef(primary.id, primary.revision)
        if steady and not self._steady:
            self.event(now, "has reached a steady state.")
        self._steady = steady

    def finish_record(
        self, record: ServiceDeploymentRecord, status: str, now: datetime, reason: str | None
    ) -> None:
        record.status = status
        if reason is not None:
            record.status_reason = reason
        if record.alarm_status == MONITOR_MONITORING:
            record.alarm_status = MONITOR_COMPLETE
        record.finished_at = now
        record.updated_at = now
        arns = {record.target.arn, *(r.arn for r in record.sources)}
        if record.rollback is not None:
            arns.add(record.rollback.service_revision_arn)
        record.final_counts = {arn: self.revision_counts(arn) for arn in arns}

    def event(self, now: datetime, text: str) -> None:
        message = f"(service {self.name}) {text}"
        self.events.insert(0, ServiceEvent(self.ids.event_id(), now, message))
        del self.events[MAX_EVENTS:]


def _rollback_cause(record: ServiceDeploymentRecord) -> str:
    """Who rolls back, in a deployment's ``rolloutStateReason``."""
    return "ECS deployment alarms" if record.triggered_alarms else "ECS deployment circuit breaker"


def _task_list(tasks: Iterable[SimTask]) -> str:
    return " ".join(f"(task {t.id})" for t in tasks)


def _unique_revisions(revisions: Iterable[Revision]) -> list[Revision]:
    seen: dict[str, Revision] = {}
    for revision in revisions:
        seen.setdefault(revision.arn, revision)
    return list(seen.values())
