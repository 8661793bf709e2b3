"""The protocol every backend implements; the engine sees backends only through it.

A backend describes the manifests it accepts (a :class:`Schema` the engine
renders with), turns rendered resources into a typed plan against live state
(with each live resource's health), applies a plan while telling a
:class:`Journal` about every write as it is made, and verifies that what it
applied, and anything the plan found still rolling out or failed, reached a
steady state, telling the caller each time a watched rollout changes stage
(:data:`OnProgress`, a :class:`~gitopsd.events.RolloutProgress`). Amazon ECS
(``gitopsd.backends.ecs``) is one backend.

Prune is opt-in per app (``[apps.sync].prune``): the backend finds what carries
the app's ownership mark but is no longer declared (:class:`PrunePlan`, read-only),
and removes exactly that when asked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gitopsd.config import AppConfig
from gitopsd.events import RolloutProgress, RolloutStage
from gitopsd.manifests.schema import Schema
from gitopsd.model import ChangeSet, Resource, Revision

#: Called by ``Backend.verify`` once per stage change of a watched rollout (never per poll);
#: must return at once and not raise.
OnProgress = Callable[[RolloutProgress], None]

__all__ = [
    "Applied",
    "ApplyResult",
    "Backend",
    "Journal",
    "OnProgress",
    "PausedHook",
    "PruneItem",
    "PrunePlan",
    "RolloutProgress",
    "RolloutStage",
    "RolloutStatus",
]


@dataclass(frozen=True)
class Applied:
    """What one apply did to one resource."""

    key: str
    action: str
    arn: str = ""
    message: str = ""
    #: For a service: the task definition a rollout was started on ("" when none was).
    rollout: str = ""
    #: When the write was made (epoch seconds): events older than this are not this rollout's.
    at: float = 0.0
    #: The id of the PRIMARY deployment the write left (``ecs-svc/...``), when known.
    deployment: str = ""
    #: The backend's record of that deployment (ECS: the service deployment ARN), when known.
    service_deployment: str = ""


@dataclass(frozen=True)
class ApplyResult:
    """The writes made for one change set, in order."""

    app: str
    applied: tuple[Applied, ...] = ()
    dry_run: bool = False


@dataclass(frozen=True)
class RolloutStatus:
    """The outcome of watching one rollout.

    ``state``: COMPLETED; FAILED (and not rolled back); ROLLED_BACK (by the
    platform or by gitopsd, verified); TIMED_OUT (no verdict in time: a later
    pass looks again); REPLACED (another writer started a newer deployment).
    """

    key: str
    state: str
    message: str = ""
    events: tuple[str, ...] = field(default_factory=tuple)
    #: The platform's id of the deployment watched (ECS: the service deployment ARN, else
    #: the ``ecs-svc/...`` deployment id), "" when unknown.
    deployment: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "COMPLETED"

    @property
    def temporary(self) -> bool:
        """Whether a later pass may see this rollout succeed without a change in Git."""
        return self.state in ("TIMED_OUT", "REPLACED")


@dataclass(frozen=True)
class PruneItem:
    """One live resource that carries the app's ownership mark but is no longer declared.

    ``key`` is ``kind/name`` as in change sets (ECS: ``Service/old-api``, or
    ``TaskDefinition/old-api:3`` for one revision); ``reason`` says why it goes.
    """

    key: str
    kind: str
    name: str
    arn: str
    reason: str
    #: Whether the item counts towards :attr:`PrunePlan.share` (ECS: services do,
    #: task-definition revisions do not).
    counted: bool = False


@dataclass(frozen=True)
class PrunePlan:
    """What a prune of one app would remove; read-only, made by ``Backend.plan_prune``.

    ``items`` go in order (ECS: services first, then task-definition revisions).
    ``kept`` lists resources that carry the mark and are not declared but stay,
    with the reason (ECS: a revision a service of the cluster still uses); they
    are for display only. ``declared`` and ``owned`` count the resources of the
    counted kind (ECS: services) that the app declares and that carry its mark.
    """

    app: str
    items: tuple[PruneItem, ...] = ()
    kept: tuple[PruneItem, ...] = ()
    declared: int = 0
    owned: int = 0

    @property
    def empty(self) -> bool:
        return not self.items

    @property
    def counted(self) -> tuple[PruneItem, ...]:
        """The items that count towards :attr:`share` (ECS: the services to delete)."""
        return tuple(i for i in self.items if i.counted)

    @property
    def share(self) -> float:
        """Counted items to remove / resources carrying the app's mark (0.0 when none do).

        A render that lost most of an app's documents shows as a share near 1.0:
        compare it with the configured limit before calling ``Backend.prune``.
        """
        return len(self.counted) / self.owned if self.owned else 0.0


@dataclass(frozen=True)
class PausedHook:
    """A deployment waiting at a PAUSE hook for someone to continue or roll it back.

    ``key`` is the resource (``Service/web``) and ``service`` its name; ``deployment``
    the platform's id of the deployment (ECS: the service deployment ARN); ``hook_id``
    and ``stage`` the hook awaiting action and its lifecycle stage; ``expires_at``
    (epoch seconds) when the pause ends on its own with ``timeout_action`` (CONTINUE
    or ROLLBACK); ``target_revision`` what the deployment rolls out (ECS: the target
    service revision ARN) and ``target`` its task definition ("" when unknown).
    """

    key: str
    service: str
    deployment: str
    hook_id: str
    stage: str = ""
    expires_at: float | None = None
    timeout_action: str = ""
    target_revision: str = ""
    target: str = ""


class Journal(Protocol):
    """Told about each write as soon as it is made, so an interrupted run can say what it did."""

    def wrote(self, applied: Applied) -> None: ...

    def unsure(self, key: str, message: str) -> None:
        """A write whose outcome is unknown (interrupted or unanswered)."""


class Backend(Protocol):
    """A place resources are deployed to."""

    @property
    def schema(self) -> Schema:
        """The document kinds this backend accepts and how rendered documents are validated."""

    async def plan(
        self, app: AppConfig, resources: Sequence[Resource], revision: Revision | None
    ) -> ChangeSet:
        """Compare desired resources with live state; read-only."""

    async def apply(
        self, app: AppConfig, changeset: ChangeSet, journal: Journal | None = None
    ) -> ApplyResult:
        """Make the writes the change set asks for, and nothing else.

        A write in flight when the caller is cancelled is finished (within the
        call timeout) and reported to ``journal`` before the cancellation goes on.
        """

    async def verify(
        self,
        app: AppConfig,
        changeset: ChangeSet,
        result: ApplyResult,
        timeout: float,
        *,
        on_progress: OnProgress | None = None,
    ) -> Sequence[RolloutStatus]:
        """Follow what ``apply`` started, and whatever the change set found unsettled, until
        each is steady, failed, rolled back or ``timeout`` passes. Records what reached a
        steady state on the desired revision (the rollback target of later passes).

        ``on_progress`` hears each stage change of each watched rollout (a rollback the
        backend starts included) once, as it is seen; counts moving are not a change."""

    async def plan_prune(self, app: AppConfig, resources: Sequence[Resource]) -> PrunePlan:
        """What carries ``app``'s ownership mark in its target but is not in ``resources``
        (the app's rendered documents); read-only. Resources without the mark, or with
        another app's, are never listed. A backend that cannot prune returns
        ``PrunePlan(app.name)``. Whether the app opted in is the caller's decision."""

    async def prune(
        self, app: AppConfig, plan: PrunePlan, journal: Journal | None = None
    ) -> ApplyResult:
        """Remove the items of ``plan`` (from ``plan_prune`` in the same pass), in order,
        each write reported to ``journal`` as it is made. An item that is already gone,
        or no longer carries the app's mark, is skipped. A failing write stops the prune
        with :class:`~gitopsd.errors.ApplyError` carrying what was written before it.
        An empty plan writes nothing."""

    async def paused_hooks(
        self, app: AppConfig, resources: Sequence[Resource]
    ) -> Sequence[PausedHook]:
        """The PAUSE hooks awaiting action in the deployments in progress of ``app``'s
        resources (its rendered documents); read-only."""

    async def continue_deployment(
        self, app: AppConfig, deployment: str, hook_id: str, action: str
    ) -> None:
        """Act on a paused hook: ``action`` CONTINUE lets ``deployment`` go on, ROLLBACK
        rolls it back. Raises a classified error when the platform refuses."""
