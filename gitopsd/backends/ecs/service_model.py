"""Botocore's ECS service model, loaded once, and the kinds gitopsd maps onto it.

Every field list gitopsd compares or validates is derived from this model,
never written by hand, so a field AWS adds later is compared the day botocore
knows it.
"""

from __future__ import annotations

import functools
from typing import Any

import botocore.loaders
import botocore.model

#: Manifest ``kind`` -> the ECS operation whose input shape the document is.
KIND_OPERATIONS: dict[str, str] = {
    "TaskDefinition": "RegisterTaskDefinition",
    "Service": "CreateService",
}

#: Manifest ``kind`` -> the member that names the resource within an app.
KIND_NAME_FIELDS: dict[str, str] = {
    "TaskDefinition": "family",
    "Service": "serviceName",
}


@functools.cache
def ecs_model() -> Any:
    """The ``botocore.model.ServiceModel`` of ECS (loaded from botocore's data files).

    Read as a botocore session reads it, without importing the session (and with it
    botocore's client and docs machinery): ``gitopsd validate`` needs only the model.
    """
    data = botocore.loaders.create_loader().load_service_model("ecs", "service-2")
    return botocore.model.ServiceModel(data, service_name="ecs")


def input_shape(operation: str) -> Any:
    """The ``StructureShape`` of an operation's input, e.g. ``RegisterTaskDefinition``."""
    return ecs_model().operation_model(operation).input_shape


def input_members(operation: str) -> frozenset[str]:
    """Top-level member names of an operation's input."""
    return frozenset(input_shape(operation).members)
