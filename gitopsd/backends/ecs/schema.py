"""The ECS backend's manifest schema: its kinds, as the generic manifest layer sees them.

The manifest layer loads, patches and renders documents without importing a
backend; it learns the kinds from a :class:`~gitopsd.manifests.schema.Schema`.
This module builds ECS's from botocore's ECS model (:mod:`.service_model`):
the kinds and the members that name them, the read-only fields that
``aws ecs describe-*`` prints and the write calls do not take (dropped from
pasted output), :func:`~gitopsd.backends.ecs.validate.validate_documents`, and
:func:`~gitopsd.backends.ecs.secrets.secret_values` (which values render registers
as secret), and :func:`~gitopsd.backends.ecs.guardrails.check_documents` (the app's
guard-rails).
"""

from __future__ import annotations

import functools

from gitopsd.backends.ecs.guardrails import check_documents
from gitopsd.backends.ecs.secrets import secret_values
from gitopsd.backends.ecs.service_model import KIND_NAME_FIELDS, KIND_OPERATIONS, ecs_model
from gitopsd.backends.ecs.validate import validate_documents
from gitopsd.manifests.schema import Kind, Schema

#: Manifest ``kind`` -> the botocore output shape ``aws ecs describe-*`` prints for it.
#: Its members that are not input members of the kind's write call are read-only
#: and dropped from pasted output (see :func:`describe_only_fields`).
DESCRIBE_SHAPES: dict[str, str] = {
    "TaskDefinition": "TaskDefinition",  # describe-task-definition .taskDefinition
    "Service": "Service",  # describe-services .services[]
}

#: A pasted describe wrapper's key -> the kind of the object(s) inside it (for a hint).
DESCRIBE_WRAPPERS: dict[str, str] = {
    "taskDefinition": "TaskDefinition",
    "services": "Service",
    "service": "Service",
}

#: How messages name the command whose output users paste.
DESCRIBE_COMMAND = "aws ecs describe-*"


@functools.cache
def describe_only_fields(kind: str) -> frozenset[str]:
    """Members ``aws ecs describe-*`` prints for ``kind`` that its write call does not take.

    For TaskDefinition: taskDefinitionArn, revision, status, requiresAttributes,
    compatibilities, registeredAt, registeredBy, deregisteredAt, ...; for Service:
    serviceArn, clusterArn, status, runningCount, pendingCount, events,
    deployments, taskSets, createdAt, createdBy, roleArn, ... Derived from
    botocore, so fields AWS adds to the describe output later are covered too.
    """
    model = ecs_model()
    output = model.shape_for(DESCRIBE_SHAPES[kind]).members
    operation = model.operation_model(KIND_OPERATIONS[kind]).input_shape.members
    return frozenset(output) - frozenset(operation)


@functools.cache
def ecs_schema() -> Schema:
    """The kinds the ECS backend accepts (TaskDefinition, Service) and its validator.

    Built once, on first use: it loads botocore's ECS model.
    """
    kinds = [
        Kind(
            name=kind,
            name_field=KIND_NAME_FIELDS[kind],
            ignored_fields=describe_only_fields(kind),
            wrapper_keys=frozenset(k for k, v in DESCRIBE_WRAPPERS.items() if v == kind),
        )
        for kind in KIND_OPERATIONS
    ]
    return Schema.of(
        kinds, validate_documents, DESCRIBE_COMMAND, secret_values, validate_app=check_documents
    )
