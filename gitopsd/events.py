"""Typed, frozen, backend-neutral event payloads that plugins receive.

Every hook (:mod:`gitopsd.plugins`) gets one :class:`Event`: what happened
(``kind``, one of the ``*`` constants below), to which app, at which commit,
how bad it is (:class:`Severity`), a machine-readable ``reason`` (the same
words as the Ready condition: ``ApplyFailed``, ``RolledBack``...) and a human
``message``. Events carry strings only, never backend objects, so a plugin
does not depend on the ECS backend or on the engine's classes.

The engine builds them (:mod:`gitopsd.engine.announce` from a finished pass,
the reconciler for each rollout stage change, the agent for drift and condition
changes) and hands them to an :class:`EventSink` (the plugin event bus), which
never blocks the pass.

A ``rollout_progressed`` event carries a :class:`RolloutProgress`: the stage a
watched rollout left and the one it reached (:class:`RolloutStage`, the
platform's status plus, where the platform has one, the step inside it). The
backend reports it through the callback of ``Backend.verify``.
"""

from __future__ import annotations

import enum
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

# Event kinds.
RECONCILE_STARTED = "reconcile_started"
RECONCILE_FINISHED = "reconcile_finished"
CHANGES_APPLIED = "changes_applied"
ROLLOUT_PROGRESSED = "rollout_progressed"
ROLLOUT_COMPLETED = "rollout_completed"
ROLLOUT_FAILED = "rollout_failed"
ROLLED_BACK = "rolled_back"
DRIFT_DETECTED = "drift_detected"
DRIFT_HEALED = "drift_healed"
CONDITION_CHANGED = "condition_changed"
PRUNED = "pruned"
ERROR = "error"
#: The app is Ready again after a failure (notifiers send it once, where they alerted).
RECOVERED = "recovered"
#: A deployment waits at a PAUSE hook for someone to approve or reject it (once per hook).
APPROVAL_NEEDED = "approval_needed"
#: A paused deployment was approved, rejected, or its pause timed out (gitopsd.engine.approvals).
APPROVAL_DECIDED = "approval_decided"

#: Every event kind, in the order a pass produces them.
KINDS: tuple[str, ...] = (
    RECONCILE_STARTED,
    CHANGES_APPLIED,
    ROLLOUT_PROGRESSED,
    APPROVAL_NEEDED,
    APPROVAL_DECIDED,
    ROLLOUT_COMPLETED,
    ROLLOUT_FAILED,
    ROLLED_BACK,
    DRIFT_DETECTED,
    DRIFT_HEALED,
    CONDITION_CHANGED,
    PRUNED,
    ERROR,
    RECOVERED,
    RECONCILE_FINISHED,
)

#: Kinds that report a problem: a notifier that sent one owes a recovery when the app is
#: Ready again.
PROBLEMS: frozenset[str] = frozenset({ROLLOUT_FAILED, ROLLED_BACK, DRIFT_DETECTED, ERROR})


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return _RANKS[self]


_RANKS = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2}


@dataclass(frozen=True)
class FieldDiff:
    """One field of a planned change: a JSON pointer, and both sides as compact JSON
    (``""`` for a side where the field is absent), redacted and shortened for a message."""

    path: str
    before: str
    after: str


@dataclass(frozen=True)
class Change:
    """One resource a pass changed (or found drifted): ``kind/name``, the action and fields."""

    key: str
    action: str
    fields: tuple[FieldDiff, ...] = ()


@dataclass(frozen=True)
class RolloutStage:
    """Where a rollout stands, in the platform's words.

    ``status`` is the deployment's status (ECS: the service deployment's
    ``status``, PENDING, IN_PROGRESS, SUCCESSFUL, ROLLBACK_REQUESTED,
    ROLLBACK_IN_PROGRESS, ROLLBACK_SUCCESSFUL, ROLLBACK_FAILED, STOPPED...; without
    the service deployments API the deployment's ``rolloutState``). ``lifecycle``
    is the step inside it when the platform reports one (ECS: ``lifecycleStage``,
    e.g. SCALE_UP, PRODUCTION_TRAFFIC_SHIFT, BAKE_TIME), else "". ``str()`` gives
    ``STATUS`` or ``STATUS/LIFECYCLE``; the empty stage (nothing seen yet) is "".
    """

    status: str = ""
    lifecycle: str = ""

    def __str__(self) -> str:
        return f"{self.status}/{self.lifecycle}" if self.lifecycle else self.status


@dataclass(frozen=True)
class RolloutProgress:
    """A watched rollout moved from one stage to another (never sent for counts moving).

    ``key`` is the resource (``Service/web``); ``deployment`` the platform's id of
    the deployment (ECS: the service deployment ARN, else the ``ecs-svc/...`` id);
    ``target`` what it rolls out (ECS: the task definition ARN). ``previous`` is
    the empty :class:`RolloutStage` on the first observation. ``rollback`` is True
    for a rollback deployment gitopsd started itself (the platform's own rollback
    shows in ``stage.status``). ``strategy`` is the platform's deployment strategy
    when known (ECS: ROLLING, BLUE_GREEN, LINEAR, CANARY), else "". ``details``
    carries further facts of the stage as sorted ``(name, value)`` string pairs
    (ECS: ``running``, ``desired``, ``failed`` task counts at the change; later
    strategies add theirs, e.g. a traffic share or a bake time), so a new
    platform feature adds pairs, not fields. ``message`` is for people.
    """

    key: str
    stage: RolloutStage
    previous: RolloutStage = RolloutStage()
    deployment: str = ""
    target: str = ""
    message: str = ""
    rollback: bool = False
    strategy: str = ""
    details: tuple[tuple[str, str], ...] = ()
    at: float = field(default_factory=time.time)

    @property
    def transition(self) -> str:
        """``"IN_PROGRESS -> SUCCESSFUL"`` (``"(none)"`` for the empty stage)."""
        return f"{self.previous or '(none)'} -> {self.stage}"

    def to_json(self) -> dict[str, Any]:
        """As JSON (the generic webhook's ``rollout``): stages as ``{"status", "lifecycle"}``,
        ``details`` as an object."""
        doc = asdict(self)
        doc["details"] = dict(self.details)
        return doc


@dataclass(frozen=True)
class Event:
    """One thing that happened to one app.

    ``revision`` is the commit (40 hex, "" when the pass never resolved one)
    and ``commit_message`` its message's first line; ``link`` a web page of the
    commit when the source's URL has a known form (GitHub, GitLab, Bitbucket,
    Gitea), else "". ``stage`` is the pass stage the event comes from
    (``verify`` for rollouts, the failing stage for ``error``). ``fields``
    names what the event is about (resource keys for applied, pruned and drift
    events); ``changes`` the field diff where there is one. ``deployment`` is
    the backend's id of the rollout concerned (ECS: the service deployment ARN,
    else the ``ecs-svc/...`` id), "" when none. ``progress`` is set on
    ``rollout_progressed`` events only.
    """

    kind: str
    app: str
    revision: str
    message: str
    severity: Severity = Severity.INFO
    reason: str = ""
    at: float = field(default_factory=time.time)
    fields: tuple[str, ...] = ()
    deployment: str = ""
    stage: str = ""
    commit_message: str = ""
    link: str = ""
    source: str = ""
    changes: tuple[Change, ...] = ()
    progress: RolloutProgress | None = None

    def dedup_key(self) -> tuple[str, str, str, str]:
        """What makes two events "the same alert": volatile parts (``at``, the message with
        its durations and task ids, deployment ids) left out. For ``rollout_progressed``
        the reason also names the resource, what it rolls out and the stage change, so
        the steps of one rollout are different alerts; for approvals it names the hook."""
        reason = self.reason
        if self.progress is not None:
            p = self.progress
            reason = f"{reason} {p.key} {p.target} {p.transition}"
        if self.kind in (APPROVAL_NEEDED, APPROVAL_DECIDED):
            reason = f"{reason} {' '.join(self.fields)}"  # the resource and the hook id
        return (self.kind, self.app, reason, self.revision)


class EventSink(Protocol):
    """Where the engine hands events: must return at once and never raise."""

    def publish(self, event: Event) -> None: ...


@dataclass(frozen=True)
class ApprovalRequest:
    """What an approver plugin is asked about: one deployment paused at a PAUSE hook.

    ``key`` is the resource (``Service/web``), ``deployment`` the platform's id of
    the paused deployment (ECS: the service deployment ARN), ``hook_id`` the hook
    awaiting action and ``stage`` where it sits (ECS: ``lifecycleStage``, e.g.
    POST_TEST_TRAFFIC_SHIFT); ``revision`` the commit being rolled out and ``target``
    what it rolls out (ECS: the task definition ARN); ``expires_at`` when the pause
    ends on its own (epoch seconds, None when unknown) and ``timeout_action`` what
    the platform then does (CONTINUE or ROLLBACK, "" when unknown).
    """

    app: str
    key: str
    deployment: str
    hook_id: str
    stage: str = ""
    revision: str = ""
    target: str = ""
    expires_at: float | None = None
    timeout_action: str = ""


@dataclass(frozen=True)
class Decision:
    """An approver's answer: ``approve`` True continues the deployment, False rolls it back.

    ``by`` names who decided when it is not the plugin itself (a PR reviewer, a chat
    user); ``reason`` is kept in the history with the decision.
    """

    approve: bool
    reason: str = ""
    by: str = ""
