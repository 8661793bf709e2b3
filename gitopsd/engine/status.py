"""What a user can read about each app while the agent runs: conditions, as Flux has them.

``Ready`` (True / False / Unknown) with the failing stage as its reason,
``Reconciling`` while a pass runs (with the stage of each rollout being watched,
also in ``rollouts`` and ``progress``), ``Stalled``
when only a change in Git (or ``gitopsd reconcile --force``) can help; plus
the last attempted and last applied revisions and when, the sync state
(Synced / OutOfSync), the health of the live services, and whether the app is
suspended. A condition's ``since`` moves only when its status changes, so an
alert can be sent on a change rather than on every pass.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from gitopsd.events import RolloutProgress

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"


@dataclass
class Condition:
    type: str
    status: str
    reason: str = ""
    message: str = ""
    since: float = 0.0


@dataclass
class AppStatus:
    """The agent's view of one app; everything here is JSON-able through :meth:`to_json`."""

    app: str
    conditions: dict[str, Condition] = field(default_factory=dict)
    last_attempted: str = ""
    last_attempted_at: float = 0.0
    last_applied: str = ""
    last_applied_at: float = 0.0
    #: A commit whose rollout failed: not redeployed until Git moves (or ``--force``).
    failed_commit: str = ""
    suspended: bool = False
    sync: str = UNKNOWN  # Synced | OutOfSync | Unknown
    health: str = UNKNOWN  # Healthy | Progressing | Degraded | Unknown
    drift: str = ""
    #: The rollouts being watched, one ``Service/web: IN_PROGRESS`` per resource ("" when none).
    progress: str = ""
    #: The stage of each rollout being watched now: ``{"Service/web": "IN_PROGRESS"}``.
    rollouts: dict[str, str] = field(default_factory=dict)
    #: Each watched rollout waiting at a PAUSE hook now: ``{"Service/web": {"hook_id": ...,
    #: "stage": ..., "expires": ISO 8601 UTC}}`` (``gitopsd approve`` decides).
    approvals: dict[str, dict[str, str]] = field(default_factory=dict)
    next_at: float = 0.0  # wall clock of the next pass, 0 when only Git can wake it
    passes: int = 0
    #: The message of each watched blue/green-family rollout's last step (for ``progress``).
    _said: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for kind in ("Ready", "Reconciling", "Stalled"):
            self.conditions.setdefault(kind, Condition(kind, UNKNOWN if kind == "Ready" else FALSE))

    def set(self, kind: str, status: str, reason: str = "", message: str = "") -> bool:
        """Set a condition; True when its status changed (its ``since`` moves then)."""
        current = self.conditions[kind]
        changed = current.status != status
        if kind == "Reconciling" and status != TRUE:
            self.rollouts.clear()  # the pass ended: no rollout is watched any more
            self.approvals.clear()
            self._said.clear()
            self.progress = ""
        self.conditions[kind] = Condition(
            kind, status, reason, message, time.time() if changed else current.since
        )
        return changed

    def rollout(self, progress: RolloutProgress) -> None:
        """A watched rollout reached another stage (shown until the pass ends)."""
        self.rollouts[progress.key] = str(progress.stage)
        details = dict(progress.details)
        if details.get("approval") == "needed":
            self.approvals[progress.key] = {
                "hook_id": details.get("hook_id", ""),
                "stage": details.get("hook_stage", ""),
                "expires": details.get("hook_expires", ""),
            }
        else:
            self.approvals.pop(progress.key, None)
        if "production_traffic" in details or "approval" in details:
            # A blue/green-family step: its message says more (traffic, bake left, approval).
            self._said[progress.key] = progress.message.removeprefix(f"{progress.key}: ")
        else:
            self._said.pop(progress.key, None)
        self.progress = "; ".join(
            f"{k}: {self._said.get(k, v)}" for k, v in sorted(self.rollouts.items())
        )
        reconciling = self.conditions["Reconciling"]
        if reconciling.status == TRUE:
            self.conditions["Reconciling"] = Condition(
                "Reconciling", TRUE, reconciling.reason, f"verify: {self.progress}",
                reconciling.since,
            )  # fmt: skip

    @property
    def ready(self) -> bool:
        return self.conditions["Ready"].status == TRUE

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("_said", None)
        doc["conditions"] = [asdict(c) for c in self.conditions.values()]
        return doc
