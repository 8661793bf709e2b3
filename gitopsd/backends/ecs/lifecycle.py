"""Read a blue/green-family service deployment: stage, traffic split, hooks, bake, cause.

ECS's native strategies (BLUE_GREEN, LINEAR, CANARY) report where a deployment
stands in ``DescribeServiceDeployments``: ``lifecycleStage``, the target
revision's requested production and test traffic weights, the hooks of the
current stage (``lifecycleHookDetails``) and, after a rollback, the triggered
alarms and ``rollback.reason``. :func:`read` turns one such answer into a
:class:`Lifecycle`: the ``details`` pairs of a
:class:`~gitopsd.events.RolloutProgress` (``production_traffic``,
``test_traffic``, ``bake_remaining``, ``hooks``, and ``approval``/``hook_id``/
``hook_stage``/``hook_expires`` at a PAUSE hook awaiting action), a message
people read, and what the watcher needs to judge time: how long ECS itself may
bake (:func:`bake_allowance`) and whether it waits at a PAUSE hook (whose
timeout ECS enforces). Pure functions of the answer: the tests feed them
recorded dicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

#: The strategies that walk lifecycle stages and shift traffic.
NATIVE = frozenset({"BLUE_GREEN", "LINEAR", "CANARY"})
#: Statuses in which a deployment still moves forward (gates run, bake time counts).
FORWARD = frozenset({"PENDING", "IN_PROGRESS"})
#: ECS's defaults where the deployment configuration leaves them out.
LINEAR_STEP_PERCENT = 10.0
LINEAR_STEP_BAKE_MINUTES = 6
CANARY_BAKE_MINUTES = 10


def strategy_of(config: dict[str, Any]) -> str:
    return str(config.get("strategy") or "ROLLING")


def bake_allowance(config: dict[str, Any]) -> float:
    """Seconds ECS itself may spend baking (bake time plus the waits between linear or
    canary steps): the verify deadline is extended by this much."""
    seconds = float(config.get("bakeTimeInMinutes") or 0) * 60.0
    strategy = strategy_of(config)
    if strategy == "LINEAR":
        linear = config.get("linearConfiguration") or {}
        step = float(linear.get("stepPercent") or LINEAR_STEP_PERCENT)
        wait = float(linear.get("stepBakeTimeInMinutes", LINEAR_STEP_BAKE_MINUTES) or 0)
        seconds += max(0, math.ceil(100.0 / step) - 1) * wait * 60.0
    elif strategy == "CANARY":
        canary = config.get("canaryConfiguration") or {}
        seconds += float(canary.get("canaryBakeTimeInMinutes", CANARY_BAKE_MINUTES) or 0) * 60.0
    return seconds


def _weight(value: object) -> str:
    return "" if value is None else f"{float(str(value)):g}"


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        when = value if value.tzinfo else value.replace(tzinfo=UTC)
        return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value or "")


def duration(seconds: float) -> str:
    """``4m10s``, ``1h5m``, ``45s``."""
    s = max(0, int(seconds))
    hours, rest = divmod(s, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


@dataclass(frozen=True)
class Lifecycle:
    """One service deployment answer, read (see the module docstring)."""

    strategy: str
    status: str
    stage: str
    production: str = ""
    test: str = ""
    hooks: str = ""
    #: The PAUSE hook awaiting action, if any: (hook id, its stage, expiry ISO 8601 UTC).
    approval: tuple[str, str, str] | None = None
    #: The hooks that failed or timed out, in words ("" when none).
    hook_problem: str = ""

    @property
    def native(self) -> bool:
        return self.strategy in NATIVE and bool(self.stage)

    @property
    def paused(self) -> bool:
        """Waiting at a PAUSE hook (ECS enforces its timeout, not gitopsd's deadline)."""
        return self.approval is not None and self.status in FORWARD

    @property
    def baking(self) -> bool:
        """In BAKE_TIME, or between two linear/canary steps (some traffic on each side)."""
        if self.status not in FORWARD:
            return False
        if self.stage == "BAKE_TIME":
            return True
        stepping = (
            self.strategy in ("LINEAR", "CANARY") and self.stage == "PRODUCTION_TRAFFIC_SHIFT"
        )
        return stepping and self.production not in ("", "0", "100")

    def key(self) -> tuple[str, ...]:
        """What makes two answers a different step (never task counts, never the clock)."""
        return (self.status, self.stage, self.production, self.test, self.hooks)

    def details(self, bake_remaining: float | None) -> tuple[tuple[str, str], ...]:
        pairs = {
            "production_traffic": self.production,
            "test_traffic": self.test,
            "bake_remaining": "" if bake_remaining is None else f"{bake_remaining:.0f}",
            "hooks": self.hooks,
        }
        if self.approval is not None and self.status in FORWARD:
            hook_id, stage, expires = self.approval
            pairs |= {
                "approval": "needed",
                "hook_id": hook_id,
                "hook_stage": stage,
                "hook_expires": expires,
            }
        return tuple(sorted(pairs.items()))

    def summary(self, bake_remaining: float | None) -> str:
        """For people: "LINEAR: PRODUCTION_TRAFFIC_SHIFT 30% production traffic"..."""
        if self.approval is not None and self.status in FORWARD:
            hook_id, stage, expires = self.approval
            until = f", expires {expires}" if expires else ""
            return f"approval needed: PAUSE hook {hook_id} at {stage}{until}"
        if self.stage == "BAKE_TIME" and bake_remaining is not None:
            return f"{self.strategy}: BAKE_TIME, {duration(bake_remaining)} left"
        text = f"{self.strategy}: {self.stage or self.status}"
        if self.stage == "PRODUCTION_TRAFFIC_SHIFT" and self.production:
            text += f" {self.production}% production traffic"
        elif self.stage == "TEST_TRAFFIC_SHIFT" and self.test:
            text += f" {self.test}% test traffic"
        if self.baking and self.stage != "BAKE_TIME":
            text += ", baking"
        if self.hooks:
            text += f" (hooks {self.hooks})"
        return text


def read(sd: dict[str, Any]) -> Lifecycle:
    """The :class:`Lifecycle` of one DescribeServiceDeployments entry."""
    config = sd.get("deploymentConfiguration") or {}
    target = sd.get("targetServiceRevision") or {}
    stage = str(sd.get("lifecycleStage") or "")
    hooks = [h for h in sd.get("lifecycleHookDetails") or [] if isinstance(h, dict)]
    words = ",".join(f"{h.get('targetType', '?')}:{h.get('status', '?')}" for h in hooks)
    approval = next(
        (
            (str(h.get("hookId", "")), stage, _iso(h.get("expiresAt")))
            for h in hooks
            if h.get("targetType") == "PAUSE" and h.get("status") == "AWAITING_ACTION"
        ),
        None,
    )
    problems = [
        # A PAUSE hook only fails when someone answered it ContinueServiceDeployment ROLLBACK.
        f"approval rejected at {stage} (PAUSE hook {h.get('hookId', '')})"
        if h.get("targetType") == "PAUSE" and h.get("status") == "FAILED"
        else f"lifecycle hook {h.get('targetType', '?')} "
        f"{h.get('targetArn') or h.get('hookId', '')} {h.get('status')} at {stage}".replace(
            "  ", " "
        )
        for h in hooks
        if h.get("status") == "FAILED"
        or (h.get("status") == "TIMED_OUT" and h.get("timeoutAction") != "CONTINUE")
    ]
    return Lifecycle(
        strategy=strategy_of(config),
        status=str(sd.get("status") or ""),
        stage=stage,
        production=_weight(target.get("requestedProductionTrafficWeight")),
        test=_weight(target.get("requestedTestTrafficWeight")),
        hooks=words,
        approval=approval,
        hook_problem="; ".join(problems),
    )


def rollback_cause(sd: dict[str, Any], hook_problem: str = "", stopped_by: str = "") -> str:
    """Why ECS rolled ``sd`` back, in words: gitopsd's own stop (a gate, the deadline),
    the triggered alarms, a failed or timed-out hook, else ECS's own reason."""
    if stopped_by:
        return stopped_by
    alarms = sd.get("alarms") or {}
    triggered = [str(a) for a in alarms.get("triggeredAlarmNames") or []]
    if triggered:
        return (
            f"alarm {', '.join(triggered)} in ALARM"
            if len(triggered) == 1
            else (f"alarms {', '.join(triggered)} in ALARM")
        )
    if hook_problem:
        return hook_problem
    reason = str((sd.get("rollback") or {}).get("reason") or sd.get("statusReason") or "")
    if "ContinueServiceDeployment" in reason or "rejected" in reason.lower():
        return f"approval rejected ({reason})"
    return reason
