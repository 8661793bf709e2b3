"""The protocol every backend implements; the engine sees backends only through it.

A backend describes the manifests it accepts (a :class:`Schema` the engine
renders with), turns rendered resources into a typed plan against live state,
applies a plan, and verifies that what it applied reached a steady state.
Amazon ECS (``gitopsd.backends.ecs``) is one backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gitopsd.config import AppConfig
from gitopsd.manifests.schema import Schema
from gitopsd.model import ChangeSet, Resource, Revision


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


@dataclass(frozen=True)
class ApplyResult:
    """The writes made for one change set, in order."""

    app: str
    applied: tuple[Applied, ...] = ()
    dry_run: bool = False


@dataclass(frozen=True)
class RolloutStatus:
    """The outcome of watching one rollout."""

    key: str
    state: str  # COMPLETED | FAILED | ROLLED_BACK | TIMED_OUT
    message: str = ""
    events: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.state == "COMPLETED"


class Backend(Protocol):
    """A place resources are deployed to."""

    @property
    def schema(self) -> Schema:
        """The document kinds this backend accepts and how rendered documents are validated."""

    async def plan(
        self, app: AppConfig, resources: Sequence[Resource], revision: Revision | None
    ) -> ChangeSet:
        """Compare desired resources with live state; read-only."""

    async def apply(self, app: AppConfig, changeset: ChangeSet) -> ApplyResult:
        """Make the writes the change set asks for, and nothing else."""

    async def verify(
        self, app: AppConfig, result: ApplyResult, timeout: float
    ) -> Sequence[RolloutStatus]:
        """Watch what ``apply`` started until it is steady, failed, or ``timeout`` passes."""
