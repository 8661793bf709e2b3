"""Typed, frozen, backend-neutral event payloads that plugins receive.

Every hook (:mod:`gitopsd.plugins`) gets one :class:`Event`: what happened
(``kind``, one of the ``*`` constants below), to which app, at which commit,
how bad it is (:class:`Severity`), a machine-readable ``reason`` (the same
words as the Ready condition: ``ApplyFailed``, ``RolledBack``...) and a human
``message``. Events carry strings only, never backend objects, so a plugin
does not depend on the ECS backend or on the engine's classes.

The engine builds them (:mod:`gitopsd.engine.announce` from a finished pass,
the agent for drift and condition changes) and hands them to an
:class:`EventSink` (the plugin event bus), which never blocks the pass.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Protocol

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

#: Every event kind, in the order a pass produces them.
KINDS: tuple[str, ...] = (
    RECONCILE_STARTED,
    CHANGES_APPLIED,
    ROLLOUT_PROGRESSED,
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
    else the ``ecs-svc/...`` id), "" when none.
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

    def dedup_key(self) -> tuple[str, str, str, str]:
        """What makes two events "the same alert": volatile parts (``at``, the message with
        its durations and task ids, deployment ids) left out."""
        return (self.kind, self.app, self.reason, self.revision)


class EventSink(Protocol):
    """Where the engine hands events: must return at once and never raise."""

    def publish(self, event: Event) -> None: ...
