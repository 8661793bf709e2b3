"""The values that flow between the stages of a reconcile pass.

Source yields a :class:`Revision`; render yields :class:`Resource` documents;
plan yields a :class:`ChangeSet`. These types are backend-neutral: the ECS
backend gives ``kind`` and ``spec`` their meaning.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

JSON = Any  # a JSON-like value: dict, list, str, int, float, bool or None


@dataclass(frozen=True)
class Revision:
    """A resolved point in a Git source."""

    source: str
    ref: str
    commit: str  # 40-hex commit id
    #: Why this may not be the remote's current commit (the remote was unreachable, or
    #: ``--offline``); empty when it was just resolved on the remote.
    stale: str = ""


@dataclass(frozen=True)
class Origin:
    """Where a document came from, for error messages."""

    file: str
    line: int


@dataclass(frozen=True)
class Resource:
    """One desired resource after rendering.

    ``spec`` is the backend's write-call input shape (for ECS:
    RegisterTaskDefinition or CreateService input) without ``kind``.
    ``name`` is its identity within the app (task-definition family, service name).
    """

    kind: str
    name: str
    spec: dict[str, JSON]
    origin: Origin

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"


class HealthState(enum.StrEnum):
    """How a live resource is doing, in Argo CD's words."""

    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"


@dataclass(frozen=True)
class Health:
    """The live health of one resource, read during plan (e.g. a rollout still running)."""

    state: HealthState
    message: str = ""

    @property
    def settled(self) -> bool:
        return self.state is HealthState.HEALTHY


class Action(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    NOOP = "no-op"


@dataclass(frozen=True)
class FieldChange:
    """One field that differs; ``path`` is a JSON pointer into the normalised form."""

    path: str
    before: JSON
    after: JSON
    note: str = ""

    @property
    def op(self) -> str:
        if self.before is MISSING:
            return "add"
        if self.after is MISSING:
            return "remove"
        return "replace"


class _Missing:
    """Marks a value absent on one side of a :class:`FieldChange`."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<missing>"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


@dataclass(frozen=True)
class ResourceChange:
    """The planned change of one resource."""

    kind: str
    name: str
    action: Action
    changes: tuple[FieldChange, ...] = ()
    origin: Origin | None = None
    # Backend-private data the apply step needs (e.g. the ARN to point a service at).
    details: Mapping[str, JSON] = field(default_factory=dict)
    #: Live health when the backend knows it (None: the resource has none, or does not exist).
    health: Health | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class ChangeSet:
    """The typed plan of one app at one revision."""

    app: str
    revision: Revision | None
    resources: tuple[ResourceChange, ...]

    @property
    def in_sync(self) -> bool:
        return all(r.action is Action.NOOP for r in self.resources)

    @property
    def pending(self) -> tuple[ResourceChange, ...]:
        return tuple(r for r in self.resources if r.action is not Action.NOOP)

    @property
    def unsettled(self) -> tuple[ResourceChange, ...]:
        """Resources whose live health is not Healthy (a rollout running or failing)."""
        return tuple(r for r in self.resources if r.health is not None and not r.health.settled)
