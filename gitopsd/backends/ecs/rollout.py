"""Verify: follow rollouts until each is steady, failed, rolled back, replaced, or out of time.

The ``services_stable`` waiter is not enough (ecs-facts.md section 2): after a
circuit-breaker rollback the service is "stable" again, on the OLD task
definition. The outcome is judged by the deployment gitopsd started (its id
and service deployment ARN come from the UpdateService answer), or, when an
earlier run was interrupted, by the deployment the service is in now. What
ECS itself says decides the verdict:

- the service deployments API (DescribeServiceDeployments) when the endpoint
  has it: SUCCESSFUL, ROLLBACK_REQUESTED / ROLLBACK_IN_PROGRESS (ECS is rolling
  back: wait for it, never start a second rollback), ROLLBACK_SUCCESSFUL,
  ROLLBACK_FAILED, STOPPED (the circuit breaker without rollback, or superseded
  by a newer deployment);
- else ``deployments[]``: the deployment's ``rolloutState`` and the reason ECS
  gives a circuit-breaker rollback deployment ("circuit breaker: rolling back").

A newer deployment that neither ECS's circuit breaker nor gitopsd started
(another writer: CI, the console) is reported as REPLACED, not as a rollback.
A FAILED or timed-out rollout that ECS does not roll back is rolled back by
gitopsd to the last task definition known good (gitopsd's record, else the
newest SUCCESSFUL service deployment ECS keeps), when the app's sync policy
asks for it, and that rollback is itself verified.

Each stage change of a watched rollout (the service deployment's ``status`` and
``lifecycleStage``, else the deployment's ``rolloutState``; never the task counts)
is reported once through the ``on_progress`` callback as a
:class:`~gitopsd.events.RolloutProgress`, for the engine's ``rollout_progressed``
event and the agent's status. A blue/green, linear or canary deployment also
reports each change of its traffic split and hook states, with the details
:mod:`gitopsd.backends.ecs.lifecycle` reads (traffic, bake time left, a PAUSE
hook awaiting approval), and a rollback by ECS names its cause (the triggered
alarms, a failed hook, ECS's reason).

ECS's own timers are not gitopsd's timeout: the deadline (``sync.timeout``) is
extended by the bake times the deployment configuration asks for, and time spent
at a PAUSE hook awaiting action does not count (ECS enforces the hook's timeout).

Metric gates (:mod:`gitopsd.gates`) run on the polls while a watched service
deployment moves forward; a gate that fails, and a native-strategy deployment
still going at the deadline, are stopped with ``StopServiceDeployment(ROLLBACK)``
and ECS's rollback is followed to its outcome. gitopsd's own UpdateService
rollback stays for a ROLLING deployment that failed or timed out, and for when
the stop is refused.

All services of an app are polled together (one DescribeServices per 10
services and one DescribeServiceDeployments per 20 per poll), and a temporary
API error only costs one poll.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio
import structlog
from opentelemetry.trace import Span, Status, StatusCode

from gitopsd.backends.base import (
    Applied,
    OnProgress,
    RolloutProgress,
    RolloutStage,
    RolloutStatus,
)
from gitopsd.backends.ecs.client import EcsClient
from gitopsd.backends.ecs.lifecycle import FORWARD, Lifecycle, bake_allowance, read, rollback_cause
from gitopsd.backends.ecs.planner import primary_deployment, td_label
from gitopsd.config import AppConfig, GateConfig
from gitopsd.errors import BackendRejected, BackendUnavailable, GitopsdError
from gitopsd.gates import Gate, GateContext, GateFailure, GateRunner
from gitopsd.state import JsonRecord
from gitopsd.telemetry import instruments as ins

log = structlog.get_logger(__name__)

Progress = Callable[[str, str], None]  # (service key, message)

#: Events older than the write (minus this slack for clock skew) are earlier rollouts'.
EVENT_CLOCK_SLACK = 2.0

#: Service deployment statuses while ECS is rolling back on its own.
ECS_ROLLING_BACK = frozenset({"ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS"})
#: ... and while the deployment is still going.
SD_ONGOING = frozenset({"PENDING", "IN_PROGRESS", "STOP_REQUESTED"}) | ECS_ROLLING_BACK

BREAKER_ROLLBACK_MARK = "rolling back"


@dataclass
class Verdict:
    state: str  # COMPLETED | FAILED | ROLLED_BACK | TIMED_OUT | REPLACED
    message: str
    #: Whether ECS is already rolling back (or did): gitopsd must not roll back on top.
    by_ecs: bool = False


@dataclass
class Target:
    """One rollout to follow."""

    service: str
    key: str
    td_arn: str
    deployment_id: str
    service_deployment: str = ""
    #: Epoch seconds the rollout started (the write, or the deployment's creation).
    since: float = 0.0
    #: Found in progress by this run rather than started by it (an interrupted run's).
    adopted: bool = False
    #: Whether ``td_arn`` is what Git asks for, so its success may be recorded as good.
    desired: bool = True

    @classmethod
    def of(cls, applied: Applied, service_deployment: str = "") -> Target:
        return cls(
            service=applied.key.split("/", 1)[1],
            key=applied.key,
            td_arn=applied.rollout,
            deployment_id=applied.deployment,
            service_deployment=service_deployment or applied.service_deployment,
            since=applied.at,
        )


def _created(d: dict[str, Any]) -> float:
    created = d.get("createdAt")
    return created.timestamp() if isinstance(created, datetime) else 0.0


def _breaker_rolls_back(svc: dict[str, Any]) -> bool:
    config = svc.get("deploymentConfiguration") or {}
    breaker = config.get("deploymentCircuitBreaker") or {}
    return bool(breaker.get("enable")) and bool(breaker.get("rollback"))


class RolloutWatcher:
    """Follows one service's rollout from successive DescribeServices answers.

    ``rollback``: the rollout is gitopsd's own rollback (reported as such in progress).
    """

    def __init__(
        self,
        app: AppConfig,
        target: Target,
        progress: Progress | None,
        on_progress: OnProgress | None = None,
        *,
        rollback: bool = False,
    ) -> None:
        self.app = app
        self.target = target
        self.service = target.service
        self.key = target.key
        self.since = target.since - EVENT_CLOCK_SLACK if target.since else 0.0
        self.progress = progress
        self.on_progress = on_progress
        self.rollback = rollback
        #: The stage last reported (the empty stage before the first observation).
        self.stage = RolloutStage()
        self._sd_seen = False
        self.events: list[str] = []
        self._seen_events: set[str] = set()
        self._last_line = ""
        self._seen_ours = False
        self._ours_failed = ""
        #: The id of the circuit breaker's rollback deployment, once seen (its
        #: ``rolloutStateReason`` says "rolling back" only until it completes).
        self._breaker_id = ""
        self._last_status = ""
        #: ECS has been seen rolling back this rollout: gitopsd must never roll back on top.
        self.ecs_rolling_back = False
        #: The rollout's span while it is watched (see :func:`watch_rollouts`).
        self.span: Span | None = None
        #: The gates that watch this rollout (None: none).
        self.gates: GateRunner | None = None
        #: The service deployment last seen, read (None without the API).
        self.lifecycle: Lifecycle | None = None
        #: Its deployment configuration (bake times), once seen.
        self.config: dict[str, Any] = {}
        #: Hooks seen failing or timing out (they may be gone from the answer after it).
        self.hook_problem = ""
        #: Why gitopsd stopped the deployment with ROLLBACK ("" while it has not).
        self.stopped_by = ""
        self.clock: Callable[[], float] = time.monotonic
        self._bake_since: float | None = None
        self._reported: tuple[object, ...] = ()
        self._printed = ""  # the last step line given to ``progress`` (no repeats)
        self._gate_said: dict[str, str] = {}  # each gate's last result said
        self._view: tuple[
            dict[str, Any], dict[str, Any] | None, dict[str, Any], dict[str, Any] | None
        ] = ({}, None, {}, None)

    def start_span(self) -> None:
        t = self.target
        self.span = ins.tracer.start_span(
            "rollout",
            attributes={
                ins.APP: self.app.name,
                ins.SERVICE: t.service,
                ins.CLUSTER: self.app.cluster,
                "aws.ecs.task_definition.arn": t.td_arn,
                "gitopsd.deployment.id": t.deployment_id,
                "gitopsd.rollout.adopted": t.adopted,
            },
        )

    def end_span(self, verdict: Verdict) -> None:
        if self.span is None:
            return
        t = self.target
        self.span.set_attributes(
            {
                ins.SERVICE_DEPLOYMENT: t.service_deployment,
                "gitopsd.deployment.id": t.deployment_id,
                ins.RESULT: verdict.state,
                "gitopsd.rollout.by_ecs": verdict.by_ecs,
            }
        )
        if verdict.state != "COMPLETED":
            self.span.set_status(Status(StatusCode.ERROR, f"{verdict.state}: {verdict.message}"))
        self.span.end()
        self.span = None

    @property
    def td_arn(self) -> str:
        return self.target.td_arn

    def say(self, message: str) -> None:
        """Record one progress line and pass it on."""
        self.events.append(message)
        if self.span is not None:
            self.span.add_event("rollout.progress", {"message": message})
        log.info("rollout.progress", app=self.app.name, service=self.service, message=message)
        if self.progress is not None:
            self.progress(self.key, message)

    def _report(self, svc: dict[str, Any]) -> None:
        for event in reversed(svc.get("events", [])):  # ECS lists newest first
            event_id = str(event.get("id") or event.get("message"))
            if _created(event) and _created(event) < self.since:
                continue
            if event_id not in self._seen_events:
                self._seen_events.add(event_id)
                text = str(event.get("message", ""))
                self.say(f"event: {text}")
                # "(service web) (deployment ecs-svc/123) deployment failed: <reason>."
                if self.target.deployment_id and self.target.deployment_id in text:
                    _, found, reason = text.partition("deployment failed: ")
                    if found:
                        self._ours_failed = reason.rstrip(".") or "rollout FAILED"
                # "(service web) rolling back to deployment ecs-svc/456."
                _, found, rest = text.partition(f"{BREAKER_ROLLBACK_MARK} to deployment ")
                if found and self._ours_failed and rest.split():
                    self._breaker_id = rest.split()[0].rstrip(".")
        primary = primary_deployment(svc)
        if primary is not None:
            line = (
                f"{td_label(primary.get('taskDefinition', ''))}: "
                f"{primary.get('runningCount', 0)}/{primary.get('desiredCount', 0)} running, "
                f"{primary.get('pendingCount', 0)} pending, "
                f"{primary.get('failedTasks', 0)} failed, "
                f"rollout {primary.get('rolloutState', 'unknown')}"
            )
            if line != self._last_line:
                self._last_line = line
                self.say(line)

    def _is_ours(self, d: dict[str, Any]) -> bool:
        if self.target.deployment_id:
            return d.get("id") == self.target.deployment_id
        return d.get("taskDefinition") == self.td_arn

    def _follow(self, svc: dict[str, Any], primary: dict[str, Any]) -> None:
        """Another deployment on the same task definition took over (forceNewDeployment)."""
        self.say(f"now following deployment {primary.get('id')} (same task definition)")
        self.target.deployment_id = str(primary.get("id", ""))
        self.target.service_deployment = str(svc.get("currentServiceDeployment") or "")
        self._ours_failed = ""

    def observe(self, svc: dict[str, Any] | None, sd: dict[str, Any] | None) -> Verdict | None:
        """The outcome once there is one; None while the rollout goes on.

        ``sd`` is the service deployment of the watched rollout from
        DescribeServiceDeployments, or None when the endpoint does not have it.
        """
        if not svc:
            return Verdict("REPLACED", "the service was deleted during the rollout", by_ecs=True)
        self._report(svc)
        primary = primary_deployment(svc) or {}
        ours = next((d for d in svc.get("deployments", []) if self._is_ours(d)), None)
        if ours is not None:
            self._seen_ours = True
            if ours.get("rolloutState") == "FAILED":
                self._ours_failed = str(ours.get("rolloutStateReason", "")) or "rollout FAILED"
        if sd is not None:
            self.lifecycle = read(sd)
            self.config = (
                sd.get("deploymentConfiguration") or svc.get("deploymentConfiguration") or {}
            )
            if self.lifecycle.hook_problem:
                self.hook_problem = self.lifecycle.hook_problem
        self._view = (svc, sd, primary, ours)
        self._moved(self._stage_of(sd, primary, ours))
        if sd is not None:
            return self._by_service_deployment(svc, sd, primary, ours)
        return self._by_deployments(svc, primary, ours)

    # -- stage changes -------------------------------------------------------------------

    def _stage_of(
        self, sd: dict[str, Any] | None, primary: dict[str, Any], ours: dict[str, Any] | None
    ) -> RolloutStage:
        """The rollout's stage in this answer (the last one when this answer cannot tell)."""
        if sd is not None:
            self._sd_seen = True
            return RolloutStage(str(sd.get("status") or ""), str(sd.get("lifecycleStage") or ""))
        if self._sd_seen:
            return self.stage  # never mix the two vocabularies for one rollout
        if primary and primary is not ours and self._breaker_rollback(primary):
            return RolloutStage("ROLLBACK_" + str(primary.get("rolloutState") or "IN_PROGRESS"))
        if ours is not None:
            return RolloutStage(str(ours.get("rolloutState") or ""))
        return self.stage

    def _breaker_rollback(self, d: dict[str, Any]) -> bool:
        """``d`` is the circuit breaker's rollback deployment of this rollout (remembered)."""
        if self._breaker_id and d.get("id") == self._breaker_id:
            return True
        marked = BREAKER_ROLLBACK_MARK in str(d.get("rolloutStateReason", "")).lower()
        if marked and (not self.since or _created(d) >= self.since):
            self._breaker_id = str(d.get("id", ""))
            return True
        return False

    def bake_remaining(self) -> float | None:
        """Seconds of BAKE_TIME left (from when this watcher saw it start), None if not baking."""
        life = self.lifecycle
        if life is None or life.stage != "BAKE_TIME" or life.status not in FORWARD:
            self._bake_since = None
            return None
        now = self.clock()
        if self._bake_since is None:
            self._bake_since = now
        total = float(self.config.get("bakeTimeInMinutes") or 0) * 60.0
        return max(0.0, total - (now - self._bake_since))

    def _moved(self, stage: RolloutStage) -> None:
        """Report ``stage`` when it, the traffic split, the hook or the gate states changed."""
        if not stage.status:
            return
        life = self.lifecycle if self._sd_seen else None
        gates = tuple(v.split(":", 1)[0] for _, v in self.gates.details()) if self.gates else ()
        key = (stage, life.key() if life is not None else (), gates)
        if key == self._reported:
            return
        self._reported = key
        previous, self.stage = self.stage, stage
        svc, sd, primary, ours = self._view
        t = self.target
        counts = ours if ours is not None else primary
        pairs = [
            (name, str(counts.get(field_, 0)))
            for name, field_ in (
                ("desired", "desiredCount"),
                ("failed", "failedTasks"),
                ("pending", "pendingCount"),
                ("running", "runningCount"),
            )
        ]
        why = str((sd or {}).get("statusReason") or "")
        label = td_label(self.td_arn)
        what = f"rollback to {label}" if self.rollback else label
        message = f"{self.key}: {what}: {previous if previous.status else '(none)'} -> {stage}" + (
            f": {why}" if why else ""
        )
        if life is not None and life.native:
            bake = self.bake_remaining()
            pairs += life.details(bake)
            if life.status in FORWARD:
                message = f"{self.key}: {what}: {life.summary(bake)}"
        if self.gates is not None:
            pairs += self.gates.details()
        config = (
            (sd or {}).get("deploymentConfiguration") or svc.get("deploymentConfiguration") or {}
        )
        progress = RolloutProgress(
            key=self.key,
            stage=stage,
            previous=previous,
            deployment=t.service_deployment or t.deployment_id,
            target=self.td_arn,
            message=message,
            rollback=self.rollback,
            strategy=str(config.get("strategy") or "ROLLING"),
            details=tuple(sorted(pairs)),
        )
        if self.span is not None:
            self.span.add_event(
                "rollout.stage",
                {"gitopsd.stage.from": str(previous), "gitopsd.stage.to": str(stage)},
            )
        log.info(
            "rollout.stage",
            app=self.app.name,
            service=self.service,
            deployment=progress.deployment,
            stage_from=str(previous),
            stage_to=str(stage),
            message=message,
        )
        if (
            self.progress is not None
            and life is not None
            and life.native
            and life.status in FORWARD
            and message != self._printed  # a gate's state alone changed: said by the gate
        ):
            # The command's own output (``gitopsd sync``): the step, split, bake and approval.
            self._printed = message
            line = message.removeprefix(f"{self.key}: ")
            if life.approval is not None:  # and how to give it (``gitopsd rollback`` too)
                approve = f"gitopsd approve {self.app.name} --service {self.service}"
                line += f": `{approve}` continues it, `{approve} --reject` rolls it back"
            self.progress(self.key, line)
        if self.on_progress is not None:
            try:
                self.on_progress(progress)
            except Exception:  # a listener must not raise; if one does, the watch goes on
                log.exception("rollout.progress_listener_failed", app=self.app.name)

    async def check_gates(self) -> GateFailure | None:
        """Run the gates due while the deployment moves forward; the first failure, if any."""
        life = self.lifecycle
        if self.gates is None or life is None or self.stopped_by or life.status not in FORWARD:
            return None
        t = self.target
        context = GateContext(
            app=self.app.name,
            service=self.service,
            deployment=t.service_deployment,
            target=self.td_arn,
            phase="bake" if life.baking else "progressing",
            stage=str(self.stage),
            production_traffic=life.production,
            started=t.since,
            now=time.time(),
        )
        done = len(self.gates.checks)
        failure = await self.gates.run(context)
        for check in self.gates.checks[done:]:
            if self.span is not None:
                self.span.add_event(
                    "gate.check", {"gitopsd.gate": check.gate, "gitopsd.gate.result": check.summary}
                )
            if self._gate_said.get(check.gate) != check.summary:  # a line per change, not check
                self._gate_said[check.gate] = check.summary
                self.say(f"gate {check.gate}: {check.summary}")
        if failure is not None and self.span is not None:
            self.span.set_attribute("gitopsd.gate.failed", failure.gate)
        self._moved(self.stage)  # a gate's state changed: reported with the stage
        return failure

    # -- with the service deployments API ----------------------------------------------

    def _by_service_deployment(
        self,
        svc: dict[str, Any],
        sd: dict[str, Any],
        primary: dict[str, Any],
        ours: dict[str, Any] | None,
    ) -> Verdict | None:
        status = str(sd.get("status", ""))
        reason = str(sd.get("statusReason") or "")
        if status != self._last_status:
            self._last_status = status
            self.say(f"service deployment {status}" + (f": {reason}" if reason else ""))
        label = td_label(self.td_arn)
        if status == "SUCCESSFUL":
            return Verdict("COMPLETED", f"{label} rolled out")
        if status in ECS_ROLLING_BACK:
            self.ecs_rolling_back = True
            return None  # ECS's circuit breaker or alarms are rolling back: wait for it
        if status in SD_ONGOING:
            return None
        back = td_label(str(primary.get("taskDefinition", "")))
        why = rollback_cause(sd, self.hook_problem or self._ours_failed, self.stopped_by) or reason
        if self.stopped_by and status in ("ROLLBACK_SUCCESSFUL", "STOPPED"):
            return Verdict(
                "ROLLED_BACK",
                f"{label} failed ({why}); gitopsd stopped it with ROLLBACK and ECS rolled back "
                f"to {back}",
                by_ecs=True,
            )
        if status == "ROLLBACK_SUCCESSFUL":
            return Verdict(
                "ROLLED_BACK", f"{label} failed ({why}); ECS rolled back to {back}", by_ecs=True
            )
        if status == "ROLLBACK_FAILED":
            return Verdict("FAILED", f"{label} failed and ECS's rollback failed too ({why})", True)
        # STOPPED: the circuit breaker stopped it (rollback off), or a newer deployment did.
        if self._ours_failed or (ours is not None and ours.get("rolloutState") == "FAILED"):
            return Verdict("FAILED", self._ours_failed or why or "rollout FAILED")
        return self._replaced(svc, primary, why)

    # -- with deployments[] only -------------------------------------------------------

    def _by_deployments(
        self, svc: dict[str, Any], primary: dict[str, Any], ours: dict[str, Any] | None
    ) -> Verdict | None:
        state = primary.get("rolloutState")
        label = td_label(self.td_arn)
        if ours is not None and ours is primary:
            if state == "COMPLETED" and primary.get("taskDefinition") == self.td_arn:
                return Verdict("COMPLETED", f"{label} rolled out")
            if state == "FAILED":
                if _breaker_rolls_back(svc):
                    self.ecs_rolling_back = True
                    return None  # the circuit breaker rolls back: its deployment comes next
                return Verdict("FAILED", self._ours_failed)
            return None
        # Another deployment is PRIMARY. It replaced ours only if it is newer than
        # the write (otherwise DescribeServices may simply lag behind UpdateService).
        replaced = self._ours_failed or (self._seen_ours and ours is None)
        newer = _created(primary) >= self.since if self.since else self._seen_ours
        if not (replaced or newer) or not primary:
            return None
        breaker = BREAKER_ROLLBACK_MARK in str(primary.get("rolloutStateReason", "")).lower()
        if breaker or (self._breaker_id and primary.get("id") == self._breaker_id):
            if state == "COMPLETED":
                back = td_label(primary.get("taskDefinition", ""))
                reason = f" ({self._ours_failed})" if self._ours_failed else ""
                return Verdict(
                    "ROLLED_BACK", f"{label} failed{reason}; ECS rolled back to {back}", True
                )
            if state == "FAILED":
                return Verdict("FAILED", f"{label} failed and ECS's rollback failed too", True)
            self.ecs_rolling_back = True
            return None  # ECS's rollback is under way
        return self._replaced(svc, primary, "")

    def _replaced(self, svc: dict[str, Any], primary: dict[str, Any], why: str) -> Verdict | None:
        if primary and primary.get("taskDefinition") == self.td_arn:
            if primary.get("id") != self.target.deployment_id:
                self._follow(svc, primary)
            return None
        other = td_label(str(primary.get("taskDefinition", ""))) or "another task definition"
        detail = f" ({why})" if why else ""
        return Verdict(
            "REPLACED",
            f"{td_label(self.td_arn)} was replaced by a deployment gitopsd did not start, "
            f"on {other}{detail}: another writer changed the service",
        )


@dataclass
class _Run:
    watcher: RolloutWatcher
    deadline: float
    verdict: Verdict | None = None
    extra: list[str] = field(default_factory=list)
    #: The deadline was extended by the deployment's bake times.
    extended: bool = False
    #: Since when (monotonic) the deployment waits at a PAUSE hook (None: it does not).
    paused_at: float | None = None


async def _stop(client: EcsClient, run: _Run, cause: str, timeout: float) -> None:
    """StopServiceDeployment(ROLLBACK) for ``cause``; ECS's rollback gets ``timeout`` to end.
    A refused stop is a FAILED verdict (gitopsd's UpdateService rollback then applies)."""
    w = run.watcher
    try:
        with anyio.CancelScope(shield=True):  # a write is never cut off half-way
            await client.stop_service_deployment(w.target.service_deployment)
    except GitopsdError as exc:
        run.verdict = Verdict("FAILED", f"{cause}; stopping the deployment failed: {exc}")
        return
    w.stopped_by = cause
    w.say(f"gitopsd stopped the deployment (StopServiceDeployment ROLLBACK): {cause}")
    run.deadline = time.monotonic() + timeout
    run.paused_at = None


async def _tend(client: EcsClient, run: _Run, timeout: float) -> None:
    """After a poll: move the deadline for ECS's own timers, and run the gates."""
    w = run.watcher
    life = w.lifecycle
    if life is None or run.verdict is not None:
        return
    now = time.monotonic()
    if not run.extended and w.config:
        run.deadline += bake_allowance(w.config)
        run.extended = True
    if life.paused:
        if run.paused_at is not None:
            run.deadline += now - run.paused_at
        run.paused_at = now
    else:
        run.paused_at = None
    failure = await w.check_gates()
    if failure is not None:
        await _stop(client, run, failure.message, timeout)


async def _poll(
    client: EcsClient,
    app: AppConfig,
    runs: Sequence[_Run],
    poll_interval: float,
    timeout: float = 0.0,
) -> None:
    """Poll until every run has a verdict or its deadline (monotonic) passed."""
    while True:
        now = time.monotonic()
        for r in runs:
            if r.verdict is None and now >= r.deadline and r.paused_at is None:
                r.verdict = Verdict("TIMED_OUT", "no steady state in time")
        pending = [r for r in runs if r.verdict is None]
        if not pending:
            return
        try:
            live = await client.describe_services(app.cluster, [r.watcher.service for r in pending])
            sds = await _service_deployments(client, pending)
        except BackendUnavailable as exc:
            log.warning("rollout.poll_failed", app=app.name, error=str(exc))
            for r in pending:  # a pause nobody can see any more counts against the deadline
                r.paused_at = None
        else:
            for r in pending:
                arn = r.watcher.target.service_deployment
                r.verdict = r.watcher.observe(live.get(r.watcher.service), sds.get(arn))
                await _tend(client, r, timeout)
        if any(r.verdict is None for r in runs):
            wake = min(r.deadline for r in runs if r.verdict is None)
            await anyio.sleep(max(0.0, min(poll_interval, wake - time.monotonic())))


async def _service_deployments(
    client: EcsClient, runs: Sequence[_Run]
) -> dict[str, dict[str, Any]]:
    """The watched service deployments, or {} when the endpoint lacks the API."""
    arns = [
        r.watcher.target.service_deployment for r in runs if r.watcher.target.service_deployment
    ]
    if not arns or client.service_deployments_supported is False:
        return {}
    try:
        found = await client.describe_service_deployments(arns)
    except BackendRejected as exc:
        log.info("rollout.service_deployments_unsupported", error=str(exc))
        client.service_deployments_supported = False
        return {}
    except BackendUnavailable:
        if client.service_deployments_supported is None:
            # moto answers HTTP 500 for the API it lacks; a real outage is retried above.
            client.service_deployments_supported = False
            return {}
        raise
    client.service_deployments_supported = True
    return found


def _deadline(target: Target, timeout: float, poll_interval: float) -> float:
    """When to stop waiting (monotonic): ``timeout`` after the rollout began, polled twice."""
    now = time.monotonic()
    if target.adopted and target.since:
        left = target.since + timeout - time.time()
        return now + max(left, 2 * poll_interval)
    return now + timeout


async def watch_rollouts(
    client: EcsClient,
    app: AppConfig,
    targets: Sequence[Target],
    *,
    timeout: float,
    poll_interval: float,
    last_good: JsonRecord,
    progress: Progress | None = None,
    on_progress: OnProgress | None = None,
    roll_back: bool = True,
    gates: Sequence[tuple[GateConfig, Gate]] = (),
) -> list[RolloutStatus]:
    """Follow every target to a verdict; roll back failed ones the app's policy lets gitopsd.

    ``roll_back=False`` (``gitopsd rollback`` itself) only follows and reports, and runs
    no gates. ``progress`` hears every progress line (the CLI prints them); ``on_progress``
    each stage change, once. ``gates``: the app's gates (:func:`gitopsd.gates.build_gates`).
    """
    runs = [
        _Run(RolloutWatcher(app, t, progress, on_progress), _deadline(t, timeout, poll_interval))
        for t in targets
    ]
    for r in runs:
        if roll_back:
            r.watcher.gates = GateRunner.of(gates, r.watcher.service)
    for r in runs:
        r.watcher.start_span()
    try:
        await _judge(client, app, runs, timeout, poll_interval, last_good, roll_back)
    finally:
        for r in runs:
            r.watcher.end_span(r.verdict or Verdict("TIMED_OUT", "not judged (cancelled)"))
    statuses = []
    for r in sorted(runs, key=lambda r: r.watcher.service):
        assert r.verdict is not None
        state = r.verdict.state
        log.info("rollout.outcome", app=app.name, service=r.watcher.service, state=state)
        ins.rollouts.add(1, {ins.APP: app.name, ins.RESULT: state})
        t = r.watcher.target
        statuses.append(
            RolloutStatus(
                r.watcher.key,
                state,
                r.verdict.message,
                tuple(r.watcher.events),
                t.service_deployment or t.deployment_id,
            )
        )
    return statuses


async def _judge(
    client: EcsClient,
    app: AppConfig,
    runs: list[_Run],
    timeout: float,
    poll_interval: float,
    last_good: JsonRecord,
    roll_back: bool,
) -> None:
    """Poll every run to a verdict, then roll back the failed ones the policy allows."""
    await _poll(client, app, runs, poll_interval, timeout)
    for r in runs:
        verdict = r.verdict or Verdict("TIMED_OUT", "no steady state in time")
        life = r.watcher.lifecycle
        if (
            verdict.state == "TIMED_OUT"
            and roll_back
            and app.sync.rollback
            and life is not None
            and life.native
            and life.status in FORWARD
            and not r.watcher.stopped_by
        ):
            # A blue/green-family deployment still going: ECS rolls it back (traffic first).
            r.verdict = None
            await _stop(client, r, f"no steady state within {timeout:g}s (sync.timeout)", timeout)
            if r.verdict is None:
                await _poll(client, app, [r], poll_interval, timeout)
            verdict = r.verdict or Verdict("TIMED_OUT", "no steady state in time")
            if verdict.state == "TIMED_OUT":
                verdict = Verdict(
                    "TIMED_OUT",
                    f"gitopsd stopped the deployment with ROLLBACK after {timeout:g}s "
                    f"(sync.timeout) and ECS's rollback did not finish within {timeout:g}s",
                    by_ecs=True,
                )
        if verdict.state == "TIMED_OUT" and not verdict.by_ecs:
            if r.watcher.ecs_rolling_back:
                verdict = Verdict(
                    "TIMED_OUT",
                    f"ECS's rollback did not finish within {timeout:g}s (sync.timeout)",
                    by_ecs=True,
                )
            else:
                verdict = Verdict(
                    "TIMED_OUT", f"no steady state within {timeout:g}s (sync.timeout)"
                )
        if verdict.state == "COMPLETED" and r.watcher.gates is not None:
            verdict = _unguarded(r.watcher, verdict, r.watcher.gates.never_checked())
        if verdict.state == "COMPLETED" and r.watcher.target.desired:
            await _remember(last_good, r.watcher.service, r.watcher.td_arn)
        elif verdict.state in ("FAILED", "TIMED_OUT") and not verdict.by_ecs and roll_back:
            verdict = await _roll_back(
                client, app, r.watcher, verdict, last_good, timeout, poll_interval
            )
        r.verdict = verdict


def _unguarded(
    watcher: RolloutWatcher, verdict: Verdict, unchecked: list[tuple[str, str]]
) -> Verdict:
    """A completed rollout whose gates never got a result (throttled every time) says so:
    "COMPLETED" alone reads as if they had watched it."""
    if not unchecked:
        return verdict
    for name, error in unchecked:
        log.warning(
            "gate.never_checked",
            app=watcher.app.name,
            service=watcher.service,
            gate=name,
            error=error,
        )
    said = "; ".join(
        f"gate {name} never checked it (every check met a temporary error: {error})"
        for name, error in unchecked
    )
    return Verdict(verdict.state, f"{verdict.message}; {said}", verdict.by_ecs)


async def _remember(record: JsonRecord, service: str, td_arn: str) -> None:
    try:
        await record.aupdate(**{service: td_arn})
    except OSError as exc:
        log.warning("state.write_failed", path=str(record.path), error=str(exc))


async def last_good_task_definition(
    client: EcsClient, app: AppConfig, service: str, failing: str, record: JsonRecord
) -> str | None:
    """The task definition to roll back to: gitopsd's record, else what ECS keeps.

    ECS's record is the newest SUCCESSFUL service deployment of the service
    (the service deployments API keeps 90 days), so a fresh state directory
    still knows a revision that reached steady state.
    """
    good = (await record.aload()).get(service)
    if isinstance(good, str) and good and good != failing:
        return good
    if client.service_deployments_supported is False:
        return None
    try:
        briefs = await client.list_service_deployments(app.cluster, service, ["SUCCESSFUL"])
        targets = [str(b.get("targetServiceRevisionArn", "")) for b in briefs]
        revisions = await client.describe_service_revisions([t for t in targets if t][:20])
    except GitopsdError as exc:
        log.info("rollout.history_unavailable", app=app.name, service=service, error=str(exc))
        return None
    for arn in targets:  # newest first
        td = str((revisions.get(arn) or {}).get("taskDefinition", ""))
        if td and td != failing:
            return td
    return None


async def _roll_back(
    client: EcsClient, app: AppConfig, watcher: RolloutWatcher, verdict: Verdict,
    record: JsonRecord, timeout: float, poll_interval: float,
) -> Verdict:  # fmt: skip
    message = f"{td_label(watcher.td_arn)} failed: {verdict.message}"
    if not app.sync.rollback:
        return Verdict(verdict.state, message + "; automatic rollback is off (sync.rollback)")
    good = await last_good_task_definition(client, app, watcher.service, watcher.td_arn, record)
    if not good:
        return Verdict(verdict.state, message + "; no earlier revision is known to be good")
    started = time.time()
    svc: dict[str, Any] = {}
    try:
        with anyio.CancelScope(shield=True):  # a write is never cut off half-way
            svc = await client.update_service(
                {"cluster": app.cluster, "service": watcher.service, "taskDefinition": good}
            )
    except GitopsdError as exc:
        return Verdict(verdict.state, message + f"; rolling back to {td_label(good)} failed: {exc}")
    watcher.say(f"gitopsd is rolling back to {td_label(good)}")
    primary = primary_deployment(svc) or {}
    target = Target(
        service=watcher.service,
        key=watcher.key,
        td_arn=good,
        deployment_id=str(primary.get("id", "")),
        service_deployment=str(svc.get("currentServiceDeployment") or ""),
        since=started,
    )
    back = RolloutWatcher(app, target, watcher.progress, watcher.on_progress, rollback=True)
    run = _Run(back, time.monotonic() + timeout)
    await _poll(client, app, [run], poll_interval)
    watcher.events.extend(back.events)
    outcome = run.verdict or Verdict("TIMED_OUT", "")
    if outcome.state == "COMPLETED":
        watcher.say(f"gitopsd rolled back to {td_label(good)}: COMPLETED")
        return Verdict("ROLLED_BACK", message + f"; gitopsd rolled back to {td_label(good)}")
    detail = outcome.message if outcome.state != "TIMED_OUT" else f"no steady state in {timeout:g}s"
    return Verdict(
        "FAILED",
        message + f"; gitopsd's rollback to {td_label(good)} failed too ({outcome.state}: "
        f"{detail}): the service needs a human",
    )
