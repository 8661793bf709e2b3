"""Fixtures for the local ECS endpoint: one server per session, a clean slate per test.

``local_aws_server`` starts one :class:`~gitopsd.local_aws.testing.LocalAws`
(manual clock, pace 1 task per second) for the session; ``local_aws`` resets it
before each test, so tests drive simulated time with ``advance()`` and never
wait. Shaped so that it can move to ``tests/conftest.py`` unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gitopsd.local_aws.testing import LocalAws

CLUSTER = "c"

RegisterTaskDefinition = Callable[..., str]


@pytest.fixture(scope="session")
def local_aws_server() -> Iterator[LocalAws]:
    """The session's local ECS endpoint."""
    with LocalAws(clock="manual", pace=1.0) as server:
        yield server


@pytest.fixture
def local_aws(local_aws_server: LocalAws) -> LocalAws:
    """The endpoint, reset: no resources, startup settings, empty call log."""
    local_aws_server.reset()
    return local_aws_server


@pytest.fixture
def ecs(local_aws: LocalAws) -> Any:
    """A boto3 ECS client for the endpoint (retries off)."""
    return local_aws.boto3_client("ecs")


@pytest.fixture
def cluster(local_aws: LocalAws) -> str:
    """An empty ECS cluster named ``c``."""
    local_aws.create_cluster(CLUSTER)
    return CLUSTER


@pytest.fixture
def register(ecs: Any) -> RegisterTaskDefinition:
    """Register a one-container task definition (bridge networking); returns its ARN."""

    def register_task_definition(image: str, family: str = "web") -> str:
        response = ecs.register_task_definition(
            family=family,
            networkMode="bridge",
            containerDefinitions=[{"name": "app", "image": image, "memory": 128}],
        )
        return str(response["taskDefinition"]["taskDefinitionArn"])

    return register_task_definition
