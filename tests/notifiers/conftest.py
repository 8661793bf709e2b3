"""Fixtures of the notifier plugin tests.

The local AWS endpoint is the moto server of :mod:`gitopsd.local_aws` (SNS and SQS
answer there as well as ECS): one per session, reset before each test, like
``tests/local_aws/conftest.py`` (whose fixtures are not visible from here).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gitopsd.local_aws.testing import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY, LocalAws


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def local_aws_server() -> Iterator[LocalAws]:
    """The session's local AWS endpoint (moto: SNS and SQS answer as well as ECS)."""
    with LocalAws() as server:
        yield server


@pytest.fixture
def local_aws(local_aws_server: LocalAws) -> LocalAws:
    """The endpoint, reset: no resources, no faults, empty call log."""
    local_aws_server.reset()
    local_aws_server.clear_faults()
    return local_aws_server


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials in the environment, and no AWS config of the machine's."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DUMMY_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DUMMY_SECRET_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
