"""Fixtures every suite shares.

Suite-specific servers live beside their tests (tests/source, tests/local_aws,
tests/e2e); the reusable servers themselves are in tests/support/.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """The CLI configures structlog globally; give every test the defaults back."""
    yield
    structlog.reset_defaults()
