"""Fixtures: one ``store`` fixture, parametrized over both state stores.

The DynamoDB store talks over HTTP to the local endpoint (moto's DynamoDB), to a
table each test creates with the key schema docs/state.md documents.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from gitopsd.config import AwsConfig
from gitopsd.local_aws.testing import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY, LocalAws
from gitopsd.statestore import StateStore
from gitopsd.statestore.dirstore import DirStore
from gitopsd.statestore.dynamodb import DynamoDbStore

from .table import create_state_table

_tables = itertools.count(1)


def aws_config(aws: LocalAws, **kw: Any) -> AwsConfig:
    return AwsConfig(endpoint_url=aws.endpoint_url, region=aws.region, **kw)


@pytest.fixture(scope="session")
def state_aws() -> Iterator[LocalAws]:
    with LocalAws() as server:
        yield server


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DUMMY_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DUMMY_SECRET_KEY)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(params=["dir", "dynamodb"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, aws_env: None
) -> AsyncIterator[StateStore]:
    if request.param == "dir":
        yield DirStore(tmp_path / "store")
        return
    aws: LocalAws = request.getfixturevalue("state_aws")
    table = f"state-{next(_tables)}"
    create_state_table(aws, table)
    async with DynamoDbStore(table, aws_config(aws, max_attempts=2)) as ddb:
        yield ddb


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
