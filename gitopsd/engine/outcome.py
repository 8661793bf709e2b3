"""The record of one reconcile pass of one app.

A pass is a fixed sequence of stages; the first that fails ends the pass and
gives its reason (as Flux's Ready condition does), and whether a retry can
help. Everything a caller shows or alerts on is in :class:`Outcome`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from gitopsd.backends.base import ApplyResult, PrunePlan, RolloutStatus
from gitopsd.model import ChangeSet, Resource, Revision


class Stage(enum.StrEnum):
    SOURCE = "source"
    RENDER = "render"
    PLAN = "plan"
    APPLY = "apply"
    VERIFY = "verify"
    NOTIFY = "notify"


#: The reason recorded when a stage fails.
FAILURE_REASONS: dict[Stage, str] = {
    Stage.SOURCE: "SourceFailed",
    Stage.RENDER: "RenderFailed",
    Stage.PLAN: "PlanFailed",
    Stage.APPLY: "ApplyFailed",
    Stage.VERIFY: "RolloutFailed",
    Stage.NOTIFY: "NotifyFailed",
}


@dataclass(frozen=True)
class Outcome:
    """What one pass of one app found and did."""

    app: str
    revision: Revision | None = None
    failed_stage: Stage | None = None
    message: str = ""
    temporary: bool = False
    resources: tuple[Resource, ...] = ()
    changeset: ChangeSet | None = None
    applied: ApplyResult | None = None
    rollouts: tuple[RolloutStatus, ...] = field(default_factory=tuple)
    #: Things the user must know although the pass went on (a stale source, a rewritten
    #: history that was followed).
    warnings: tuple[str, ...] = ()
    #: The commit did not change what the app renders: nothing was planned.
    unchanged: bool = False
    #: What prune would remove (``[apps.sync].prune``), and what it removed.
    prune: PrunePlan | None = None
    pruned: ApplyResult | None = None
    #: Prune found more than ``prune_max_share`` to remove and waits for --confirm-prune.
    prune_held: bool = False

    @property
    def ok(self) -> bool:
        return self.failed_stage is None

    @property
    def reason(self) -> str:
        if self.failed_stage is not None:
            return FAILURE_REASONS[self.failed_stage]
        if any(r.state == "ROLLED_BACK" for r in self.rollouts):
            return "RolledBack"
        if self.unchanged:
            return "ArtifactUnchanged"
        return "ReconciliationSucceeded"

    @property
    def rolled_back(self) -> bool:
        return any(r.state == "ROLLED_BACK" for r in self.rollouts)
