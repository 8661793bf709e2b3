"""Fixtures every suite shares.

Suite-specific servers live beside their tests (tests/source, tests/local_aws,
tests/e2e); the reusable servers themselves are in tests/support/.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

from gitopsd.redact import REDACTOR


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """The CLI configures structlog (and the root logger) globally, and secrets are
    registered process-wide: give every test the defaults back."""
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers = []
    REDACTOR.forget_all()
