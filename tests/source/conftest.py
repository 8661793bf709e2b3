"""Fixtures for the Git source tests: a published config repository and real servers.

Thin wrappers over :mod:`support.gitserver` (tests/support/gitserver.py), so they can move to the
top-level conftest unchanged when other suites need them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.gitserver import GitDaemon, GitHttpServer, GitRepo

from gitopsd.source.git import GitSource

from .sample import HTTP_PASSWORD, HTTP_USER, make_config_repo


@pytest.fixture
def git_root(tmp_path: Path) -> Path:
    """The directory of bare repositories the servers serve."""
    return tmp_path / "served"


@pytest.fixture
def cache_root(tmp_path: Path) -> Path:
    """Where GitSource keeps its cache repositories."""
    return tmp_path / "cache"


@pytest.fixture
def config_repo(tmp_path: Path, git_root: Path) -> GitRepo:
    """A work repository with a few manifests on ``main``, published as ``config.git``."""
    return make_config_repo(tmp_path / "work", git_root / "config.git")


@pytest.fixture
def git_daemon(git_root: Path) -> Iterator[GitDaemon]:
    """``git daemon`` over ``git_root`` on a free loopback port."""
    with GitDaemon(git_root) as daemon:
        yield daemon


@pytest.fixture
def http_server(git_root: Path) -> Iterator[GitHttpServer]:
    """Smart HTTP over ``git_root`` requiring basic auth ``HTTP_USER``/``HTTP_PASSWORD``."""
    with GitHttpServer(git_root, username=HTTP_USER, password=HTTP_PASSWORD) as server:
        yield server


@pytest.fixture
def sources() -> Iterator[list[GitSource]]:
    """Collects the sources a test makes and closes them afterwards."""
    made: list[GitSource] = []
    yield made
    for s in made:
        s.close()


@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch) -> str:
    """``$GIT_TOKEN`` holds the HTTP server's password."""
    monkeypatch.setenv("GIT_TOKEN", HTTP_PASSWORD)
    return "GIT_TOKEN"
