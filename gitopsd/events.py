"""Typed, frozen, backend-neutral event payloads that plugins receive.

Every hook (:mod:`gitopsd.plugins`) gets one :class:`Event`: what happened
(``kind``, one of the ``*`` constants below), to which app, at which commit,
how bad it is (:class:`Severity`), a machine-readable ``reason`` (the same
words as the Ready condition: ``ApplyFailed``, ``RolledBack``...) and a human
``message``. Events carry strings only, never backend objects, so a plugin
does not depend on the ECS backend or on the engine's classes.

:func:`events_from_outcome` turns a finished pass's
:class:`~gitopsd.engine.outcome.Outcome` into events. It takes the outcome
duck-typed (:class:`OutcomeLike`) so that this module sits below the engine
in the layers (``.importlinter``) and the engine can import it.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gitopsd.model import Revision

# Event kinds.
RECONCILE_STARTED = "reconcile_started"
RECONCILE_FINISHED = "reconcile_finished"
CHANGES_APPLIED = "changes_applied"
ROLLOUT_COMPLETED = "rollout_completed"
ROLLOUT_FAILED = "rollout_failed"
ROLLED_BACK = "rolled_back"
DRIFT_DETECTED = "drift_detected"
DRIFT_HEALED = "drift_healed"
CONDITION_CHANGED = "condition_changed"
PRUNED = "pruned"
ERROR = "error"

#: Every event kind, in the order a pass produces them.
KINDS: tuple[str, ...] = (
    RECONCILE_STARTED,
    CHANGES_APPLIED,
    ROLLOUT_COMPLETED,
    ROLLOUT_FAILED,
    ROLLED_BACK,
    DRIFT_DETECTED,
    DRIFT_HEALED,
    CONDITION_CHANGED,
    PRUNED,
    ERROR,
    RECONCILE_FINISHED,
)


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Event:
    """One thing that happened to one app.

    ``revision`` is the commit (40 hex, "" when the pass never resolved one);
    ``fields`` names what the event is about (resource keys for applied,
    pruned and drift events, field paths where known); ``deployment`` is the
    backend's id of the rollout concerned (ECS: the service deployment ARN,
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

    def dedup_key(self) -> tuple[str, str, str, str]:
        """What makes two events "the same alert": volatile parts (``at``, the message) left out."""
        return (self.kind, self.app, self.reason, self.revision)


# The parts of an Outcome this module reads (gitopsd.engine.outcome.Outcome satisfies it).


class WriteLike(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def deployment(self) -> str: ...
    @property
    def service_deployment(self) -> str: ...


class WritesLike(Protocol):
    @property
    def applied(self) -> Sequence[WriteLike]: ...
    @property
    def dry_run(self) -> bool: ...


class RolloutLike(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def message(self) -> str: ...


class OutcomeLike(Protocol):
    @property
    def app(self) -> str: ...
    @property
    def revision(self) -> Revision | None: ...
    @property
    def message(self) -> str: ...
    @property
    def temporary(self) -> bool: ...
    @property
    def applied(self) -> WritesLike | None: ...
    @property
    def pruned(self) -> WritesLike | None: ...
    @property
    def rollouts(self) -> Sequence[RolloutLike]: ...
    @property
    def ok(self) -> bool: ...
    @property
    def reason(self) -> str: ...


#: Rollout state -> (kind, severity, reason).
_ROLLOUT_EVENTS: dict[str, tuple[str, Severity, str]] = {
    "COMPLETED": (ROLLOUT_COMPLETED, Severity.INFO, "RolloutCompleted"),
    "ROLLED_BACK": (ROLLED_BACK, Severity.ERROR, "RolledBack"),
    "FAILED": (ROLLOUT_FAILED, Severity.ERROR, "RolloutFailed"),
    # No verdict yet / another writer took over: a later pass looks again.
    "TIMED_OUT": (ROLLOUT_FAILED, Severity.WARNING, "RolloutTimedOut"),
    "REPLACED": (ROLLOUT_FAILED, Severity.WARNING, "RolloutReplaced"),
}


def _writes(result: WritesLike | None) -> Sequence[WriteLike]:
    if result is None or result.dry_run:
        return ()
    return result.applied


def events_from_outcome(outcome: OutcomeLike, *, at: float | None = None) -> list[Event]:
    """The events one finished pass produced, in order; always ends with ``reconcile_finished``.

    - ``changes_applied`` when the pass wrote anything (not on a dry run);
    - one ``rollout_completed`` / ``rollout_failed`` / ``rolled_back`` per watched rollout;
    - ``pruned`` when prune removed anything;
    - ``error`` when the pass failed (severity ``warning`` when a retry may help);
    - ``reconcile_finished`` with the pass's reason.
    """
    when = time.time() if at is None else at
    app = outcome.app
    commit = outcome.revision.commit if outcome.revision is not None else ""
    events: list[Event] = []

    def add(
        kind: str,
        message: str,
        severity: Severity,
        reason: str,
        fields: tuple[str, ...] = (),
        deployment: str = "",
    ) -> None:
        events.append(Event(kind, app, commit, message, severity, reason, when, fields, deployment))

    writes = _writes(outcome.applied)
    if writes:
        add(
            CHANGES_APPLIED,
            f"{len(writes)} change(s) applied: " + ", ".join(f"{w.action} {w.key}" for w in writes),
            Severity.INFO,
            "ChangesApplied",
            fields=tuple(w.key for w in writes),
        )
    deployments = {w.key: w.service_deployment or w.deployment for w in writes}
    for r in outcome.rollouts:
        kind, severity, reason = _ROLLOUT_EVENTS.get(
            r.state, (ROLLOUT_FAILED, Severity.WARNING, r.state)
        )
        add(
            kind,
            f"{r.key}: {r.state}: {r.message}" if r.message else f"{r.key}: {r.state}",
            severity,
            reason,
            fields=(r.key,),
            deployment=deployments.get(r.key, ""),
        )
    pruned = _writes(outcome.pruned)
    if pruned:
        add(
            PRUNED,
            f"{len(pruned)} resource(s) pruned: " + ", ".join(w.key for w in pruned),
            Severity.INFO,
            "Pruned",
            fields=tuple(w.key for w in pruned),
        )
    if not outcome.ok:
        add(
            ERROR,
            outcome.message,
            Severity.WARNING if outcome.temporary else Severity.ERROR,
            outcome.reason,
        )
    add(RECONCILE_FINISHED, outcome.message or outcome.reason, Severity.INFO, outcome.reason)
    return events
