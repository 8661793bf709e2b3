"""The secret values of ECS resources: what render registers with :mod:`gitopsd.redact`.

In a task definition (the RegisterTaskDefinition input, or what
DescribeTaskDefinition returns: the same shape) these are, per container:

- ``secrets[].valueFrom`` and ``logConfiguration.secretOptions[].valueFrom``:
  Secrets Manager or Parameter Store references, not the secrets themselves,
  but they name where the secrets live, so they are treated as sensitive;
- ``repositoryCredentials.credentialsParameter``: likewise a reference;
- ``environment[].value`` when the entry's ``name`` matches one of the
  ``[manifests].secret_env_names`` patterns (``*PASSWORD*``, ``*TOKEN*``...).

Services hold none. The functions are lenient about shape: render calls them
before validation, so a wrong type is skipped rather than an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gitopsd.manifests.secrets import name_matches
from gitopsd.model import Resource


def _items(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _container_secrets(container: Mapping[str, Any], patterns: Sequence[str]) -> list[str]:
    found = [s.get("valueFrom") for s in _items(container.get("secrets"))]
    log = container.get("logConfiguration")
    if isinstance(log, Mapping):
        found += [s.get("valueFrom") for s in _items(log.get("secretOptions"))]
    credentials = container.get("repositoryCredentials")
    if isinstance(credentials, Mapping):
        found.append(credentials.get("credentialsParameter"))
    for entry in _items(container.get("environment")):
        name = entry.get("name")
        if isinstance(name, str) and name_matches(name, patterns):
            found.append(entry.get("value"))
    return [v for v in found if isinstance(v, str) and v]


def task_definition_secrets(spec: Mapping[str, Any], patterns: Sequence[str]) -> list[str]:
    """The secret values in a task definition (desired or live), in container order."""
    out: list[str] = []
    for container in _items(spec.get("containerDefinitions")):
        out += _container_secrets(container, patterns)
    return out


def secret_values(resource: Resource, patterns: Sequence[str]) -> list[str]:
    """The ECS schema's :data:`~gitopsd.manifests.schema.SecretFinder`."""
    if resource.kind != "TaskDefinition":
        return []
    return task_definition_secrets(resource.spec, patterns)
