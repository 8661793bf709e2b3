"""The state records of a simulated ECS service, and the names ECS gives their states.

Plain dataclasses: a service revision, the entries of ``deployments[]`` and
``events[]``, a service deployment (what ListServiceDeployments and
DescribeServiceDeployments report) and its rollback. The rules that move them
live in :mod:`gitopsd.local_aws.deployments`; their API shapes in
:mod:`gitopsd.local_aws.shapes`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

PRIMARY = "PRIMARY"
ACTIVE = "ACTIVE"
INACTIVE = "INACTIVE"

ROLLOUT_IN_PROGRESS = "IN_PROGRESS"
ROLLOUT_COMPLETED = "COMPLETED"
ROLLOUT_FAILED = "FAILED"

# ServiceDeployment statuses (ECS API enum ServiceDeploymentStatus).
SD_PENDING = "PENDING"
SD_IN_PROGRESS = "IN_PROGRESS"
SD_SUCCESSFUL = "SUCCESSFUL"
SD_STOPPED = "STOPPED"
SD_STOP_REQUESTED = "STOP_REQUESTED"
SD_ROLLBACK_REQUESTED = "ROLLBACK_REQUESTED"
SD_ROLLBACK_IN_PROGRESS = "ROLLBACK_IN_PROGRESS"
SD_ROLLBACK_SUCCESSFUL = "ROLLBACK_SUCCESSFUL"
SD_ROLLBACK_FAILED = "ROLLBACK_FAILED"
SD_ONGOING = frozenset(
    {SD_PENDING, SD_IN_PROGRESS, SD_STOP_REQUESTED, SD_ROLLBACK_REQUESTED, SD_ROLLBACK_IN_PROGRESS}
)

# Circuit breaker / alarm monitor statuses (ServiceDeploymentRollbackMonitorsStatus).
MONITOR_TRIGGERED = "TRIGGERED"
MONITOR_MONITORING = "MONITORING"
MONITOR_COMPLETE = "MONITORING_COMPLETE"
MONITOR_DISABLED = "DISABLED"

# deploymentConfiguration.strategy (DeploymentStrategy).
ROLLING = "ROLLING"
BLUE_GREEN = "BLUE_GREEN"
LINEAR = "LINEAR"
CANARY = "CANARY"
#: The strategies that walk lifecycle stages and shift traffic (the blue/green family).
STAGED_STRATEGIES = frozenset({BLUE_GREEN, LINEAR, CANARY})

# Lifecycle hook types, statuses and actions (DeploymentLifecycleHook*).
HOOK_LAMBDA = "AWS_LAMBDA"
HOOK_PAUSE = "PAUSE"
HOOK_AWAITING_ACTION = "AWAITING_ACTION"
HOOK_IN_PROGRESS = "IN_PROGRESS"
HOOK_SUCCEEDED = "SUCCEEDED"
HOOK_FAILED = "FAILED"
HOOK_TIMED_OUT = "TIMED_OUT"
ACTION_CONTINUE = "CONTINUE"
ACTION_ROLLBACK = "ROLLBACK"


class SimulationError(Exception):
    """A request the simulated ECS refuses; ``code`` is the ECS error name."""

    code = "InvalidParameterException"


class ServiceDeploymentNotFound(SimulationError):
    """No service deployment with that ARN (ECS: ServiceDeploymentNotFoundException)."""

    code = "ServiceDeploymentNotFoundException"


class ServiceDeploymentConflict(SimulationError):
    """The service deployment cannot be stopped in its state (ECS: ConflictException)."""

    code = "ConflictException"


@dataclass
class HookRun:
    """One run of a lifecycle hook (an entry of ``lifecycleHookDetails``); fresh id per run."""

    hook_id: str
    target_type: str
    #: ``hookTargetArn`` (AWS_LAMBDA only; ECS leaves it unset for PAUSE).
    target_arn: str | None
    #: The configured stage that fired it (``PRE_PRODUCTION_TRAFFIC_SHIFT`` included).
    stage: str
    status: str
    started_at: datetime
    #: AWS_LAMBDA: when it answers; PAUSE: ``expiresAt``.
    due_at: datetime
    #: ``timeoutConfiguration.action`` (PAUSE only).
    timeout_action: str | None = None
    #: AWS_LAMBDA: whether its answer will be FAILED.
    will_fail: bool = False

    @property
    def settled(self) -> bool:
        """True once the hook lets the deployment go on (SUCCEEDED, or timed out to CONTINUE)."""
        return self.status == HOOK_SUCCEEDED or (
            self.status == HOOK_TIMED_OUT and self.timeout_action == ACTION_CONTINUE
        )


@dataclass(frozen=True)
class ServiceIdentity:
    """The names and ARNs of one service; builds the ARNs of its deployments."""

    name: str
    cluster_name: str
    service_arn: str
    cluster_arn: str
    #: ``arn:<partition>:ecs:<region>:<account>``
    arn_prefix: str

    def service_deployment_arn(self, record_id: str) -> str:
        """ARN of a service deployment of this service."""
        return f"{self.arn_prefix}:service-deployment/{self.cluster_name}/{self.name}/{record_id}"

    def service_revision_arn(self, revision_id: str) -> str:
        """ARN of a service revision of this service."""
        return f"{self.arn_prefix}:service-revision/{self.cluster_name}/{self.name}/{revision_id}"


@dataclass(frozen=True)
class Revision:
    """A service revision: the immutable workload configuration a deployment runs."""

    arn: str
    task_definition: str
    #: ``(containerName, image)`` of each container of the task definition.
    images: tuple[tuple[str, str], ...]
    created_at: datetime
    #: Other ServiceRevision fields in API spelling (launchType, networkConfiguration ...).
    config: Mapping[str, Any] = field(default_factory=dict)


#: Decides whether a task of a revision starts: None if it does, else why it stopped.
StartProbe = Callable[[Revision], str | None]


@dataclass
class SimTask:
    """One task of a deployment (only PENDING and RUNNING tasks are kept)."""

    id: str
    launched_at: datetime


@dataclass
class RollbackInfo:
    """The ``rollback`` member of a service deployment."""

    reason: str
    started_at: datetime
    service_revision_arn: str


@dataclass(frozen=True)
class RevisionCounts:
    """Requested/running/pending task counts of one revision (ServiceRevisionSummary)."""

    requested: int
    running: int
    pending: int


@dataclass
class ServiceDeploymentRecord:
    """One service deployment: from one service change to its outcome."""

    id: str
    arn: str
    target: Revision
    sources: list[Revision]
    status: str
    created_at: datetime
    started_at: datetime
    updated_at: datetime
    deployment_configuration: dict[str, Any]
    breaker_status: str
    breaker_threshold: int
    breaker_failure_count: int = 0
    status_reason: str | None = None
    finished_at: datetime | None = None
    stopped_at: datetime | None = None
    rollback: RollbackInfo | None = None
    #: Counts per revision ARN, frozen when the record finished.
    final_counts: dict[str, RevisionCounts] | None = None
    #: ``deploymentConfiguration.strategy`` when the deployment started.
    strategy: str = ROLLING
    #: ``lifecycleStage`` (blue/green family only).
    lifecycle_stage: str | None = None
    #: The hook runs of the current stage (``lifecycleHookDetails``).
    hook_runs: list[HookRun] = field(default_factory=list)
    #: The target revision's requested production / test traffic weight (blue/green family).
    production_weight: float | None = None
    test_weight: float | None = None
    #: The blue revision (blue/green family): the source that holds the rest of the traffic.
    blue_revision_arn: str | None = None
    #: Deployment alarms: names watched, whether they roll back, and what they did.
    alarm_names: tuple[str, ...] = ()
    alarm_rollback: bool = False
    alarm_status: str = MONITOR_DISABLED
    #: Alarms in ALARM when the deployment started: ignored until they leave ALARM.
    ignored_alarms: set[str] = field(default_factory=set)
    triggered_alarms: list[str] = field(default_factory=list)

    @property
    def staged(self) -> bool:
        """True for the blue/green family (lifecycle stages, traffic shifting)."""
        return self.strategy in STAGED_STRATEGIES

    @property
    def ongoing(self) -> bool:
        """True until the record reached a final status."""
        return self.status in SD_ONGOING


@dataclass
class Deployment:
    """One entry of a service's ``deployments[]``."""

    id: str
    revision: Revision
    record: ServiceDeploymentRecord
    desired_count: int
    created_at: datetime
    updated_at: datetime
    status: str = PRIMARY
    rollout_state: str = ROLLOUT_IN_PROGRESS
    rollout_state_reason: str = ""
    pending: list[SimTask] = field(default_factory=list)
    running: list[SimTask] = field(default_factory=list)
    failed_tasks: int = 0
    #: Failures the circuit breaker counts (reset by a healthy task when so configured).
    breaker_failures: int = 0
    is_rollback: bool = False
    reported_start_failures: bool = False

    @property
    def task_definition(self) -> str:
        """The task definition ARN this deployment runs."""
        return self.revision.task_definition


@dataclass(frozen=True)
class CompletedRef:
    """The last deployment that reached COMPLETED: what a rollback returns to."""

    deployment_id: str
    revision: Revision


@dataclass(frozen=True)
class ServiceEvent:
    """One entry of a service's ``events[]``."""

    id: str
    created_at: datetime
    message: str
