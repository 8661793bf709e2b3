"""What the manifest layer is told about the documents a backend accepts.

Loading, overlays, substitution and rendering are generic: they read YAML and
JSON, patch and substitute without knowing which kinds exist, which member
names a resource, or what the backend's own output adds to a pasted document.
A backend describes that as a :class:`Schema` (the ECS backend's is
``gitopsd.backends.ecs.schema.ecs_schema``) and the engine passes it to
:func:`gitopsd.manifests.render.render_app`, so this package never imports a
backend (``.importlinter`` keeps it so).

A schema also says which values of a rendered resource are secret
(:meth:`Schema.secret_values`); render registers them with :mod:`gitopsd.redact`
so that every output masks them. A backend that says nothing has none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gitopsd.errors import Problem

if TYPE_CHECKING:
    from gitopsd.config import AppConfig
    from gitopsd.manifests.loader import LocatedDoc
    from gitopsd.model import Resource

#: Checks an app's final documents (after overlays and variables): every problem found.
Validator = Callable[[Sequence["LocatedDoc"]], list[Problem]]

#: The secret values in one rendered resource, given the shell patterns of environment
#: variable names whose values are secret (``[manifests].secret_env_names``).
SecretFinder = Callable[["Resource", Sequence[str]], list[str]]


#: Checks an app's final documents against the app's own settings (the backend's
#: guard-rails, ``[policy]`` and ``apps[].policy``): every problem found.
AppValidator = Callable[[Sequence["LocatedDoc"], "AppConfig"], list[Problem]]


def no_app_rules(docs: Sequence[LocatedDoc], app: AppConfig) -> list[Problem]:
    """The :data:`AppValidator` of a backend without per-app rules."""
    return []


def no_secrets(resource: Resource, patterns: Sequence[str]) -> list[str]:
    """The :data:`SecretFinder` of a backend whose resources hold no secret values."""
    return []


@dataclass(frozen=True)
class Kind:
    """One kind of document (``kind: Service``) a backend accepts."""

    name: str
    #: The member that names a resource of this kind within an app (``serviceName``).
    name_field: str
    #: Members dropped silently when present: read-only fields the backend's describe
    #: output prints (``serviceArn``, ``status``, ...), so pasted output works as is.
    ignored_fields: frozenset[str] = frozenset()
    #: Keys the backend's describe output nests objects of this kind under
    #: (``services``): a document holding only such a key gets a hint.
    wrapper_keys: frozenset[str] = frozenset()

    def name_of(self, data: Mapping[str, Any]) -> str | None:
        """The resource's name in ``data``, if set to a string."""
        name = data.get(self.name_field)
        return name if isinstance(name, str) else None


@dataclass(frozen=True)
class Schema:
    """The document kinds one backend accepts, and how it validates rendered documents."""

    #: Kind name -> kind, in the order messages list them.
    kinds: Mapping[str, Kind]
    validate: Validator
    #: How messages name the backend's describe command, e.g. ``aws ecs describe-*``.
    describe_command: str = "describe"
    #: Finds the secret values of a rendered resource (see :meth:`secret_values`).
    find_secrets: SecretFinder = no_secrets
    #: Checks the documents against the app's settings (see :data:`AppValidator`).
    validate_app: AppValidator = no_app_rules

    @classmethod
    def of(
        cls,
        kinds: Iterable[Kind],
        validate: Validator,
        describe_command: str,
        find_secrets: SecretFinder = no_secrets,
        validate_app: AppValidator = no_app_rules,
    ) -> Schema:
        """A schema of ``kinds`` (keyed by their names, order kept)."""
        return cls(
            {k.name: k for k in kinds}, validate, describe_command, find_secrets, validate_app
        )

    def secret_values(self, resource: Resource, patterns: Sequence[str]) -> list[str]:
        """The values in ``resource`` that must never be shown (ECS: ``secrets[].valueFrom``
        and the values of environment entries whose name matches one of ``patterns``)."""
        return self.find_secrets(resource, patterns)

    @property
    def kind_names(self) -> list[str]:
        """The known kinds, in order (for messages)."""
        return list(self.kinds)

    def name_of(self, doc: LocatedDoc) -> str | None:
        """The resource's name within the app (family, serviceName), if set to a string."""
        kind = self.kinds.get(doc.kind or "")
        return kind.name_of(doc.data) if kind is not None else None

    def wrapped_kind(self, key: str) -> str | None:
        """The kind that describe output nests under ``key``, if any."""
        return next((k.name for k in self.kinds.values() if key in k.wrapper_keys), None)
