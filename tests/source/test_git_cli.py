"""The initial clone through the git CLI, and smart HTTP's saved round trips (issue 10, P3).

An empty cache is filled by ``git fetch`` when ``git`` is on ``PATH`` (never
with a secret on its command line), by dulwich when it is not or when git
fails; either way the cache is the same to read and to fetch into. Over
smart HTTP a no-op poll is one request and a one-commit fetch two, on a
connection kept between polls. Real servers on loopback; ``PATH`` without
``git`` stands for a host without the CLI.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import structlog.testing
import urllib3
from support.gitserver import GitDaemon, GitHttpServer, GitRepo

from gitopsd.config import AuthConfig
from gitopsd.source import gitcli
from gitopsd.source.auth import Credentials, Transport
from gitopsd.source.git import GitSource

from .helpers import fetch, logged_requests, make_source
from .sample import HTTP_PASSWORD, HTTP_USER, SERVICE_YAML


@pytest.fixture
def git_runs(monkeypatch: pytest.MonkeyPatch) -> list[gitcli.GitCommand]:
    """The git commands the source ran (the real ``run_fetch`` runs them)."""
    ran: list[gitcli.GitCommand] = []
    real = gitcli.run_fetch

    def recording(command: gitcli.GitCommand, deadline: float, creds: Credentials) -> str | None:
        ran.append(command)
        return real(command, deadline, creds)

    monkeypatch.setattr(gitcli, "run_fetch", recording)
    return ran


@pytest.fixture
def no_git_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``PATH`` without ``git`` (nor anything else)."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def _url_for(
    transport: str, git_root: Path, daemon: GitDaemon, http: GitHttpServer
) -> tuple[str, dict[str, object]]:
    if transport == "git":
        return daemon.url("config"), {}
    if transport == "http":
        return http.url("config"), {"auth": AuthConfig(token_env="GIT_TOKEN")}
    return str(git_root / "config.git"), {}


@pytest.mark.parametrize("cli", ["git", "no-git"])
@pytest.mark.parametrize("transport", ["git", "http", "local"])
def test_the_first_fetch_fills_the_cache_with_or_without_the_git_cli(
    transport: str,
    cli: str,
    config_repo: GitRepo,
    git_root: Path,
    cache_root: Path,
    sources: list[GitSource],
    git_daemon: GitDaemon,
    http_server: GitHttpServer,
    token_env: str,
    git_runs: list[gitcli.GitCommand],
    request: pytest.FixtureRequest,
) -> None:
    url, extra = _url_for(transport, git_root, git_daemon, http_server)
    if cli == "no-git":
        request.getfixturevalue("no_git_on_path")
    source = make_source(sources, cache_root, url, **extra)

    first = fetch(source)

    assert first.commit == config_repo.head()
    assert len(git_runs) == (1 if cli == "git" else 0)
    assert source.last_fetch is not None
    assert source.last_fetch.objects >= 8  # 4 blobs, 4 trees, 1 commit (a pack kept whole)
    assert source.read_tree(first.commit, "apps/web/base")["apps/web/base/service.yaml"] == (
        SERVICE_YAML.encode()
    )

    config_repo.write("apps/web/base/service.yaml", "kind: Service\nname: web\nrev: 2\n")
    second = config_repo.commit("rev 2")
    config_repo.push()
    assert fetch(source).commit == second
    assert len(git_runs) == (1 if cli == "git" else 0)  # later fetches are dulwich's
    assert 0 < source.last_fetch.objects <= 12  # proportional to the change
    assert source.last_fetch.bytes < 4096
    assert source.read_tree(second, "apps/web/base/service.yaml") == {
        "apps/web/base/service.yaml": b"kind: Service\nname: web\nrev: 2\n"
    }


def test_the_git_cli_gets_the_token_from_its_environment_not_its_command_line(
    config_repo: GitRepo,
    cache_root: Path,
    sources: list[GitSource],
    http_server: GitHttpServer,
    token_env: str,
    git_runs: list[gitcli.GitCommand],
) -> None:
    source = make_source(
        sources, cache_root, http_server.url("config"), auth=AuthConfig(token_env=token_env)
    )
    assert fetch(source).commit == config_repo.head()

    [command] = git_runs
    assert not any(HTTP_PASSWORD in arg for arg in command.argv)
    assert command.argv[-2] == http_server.url("config")
    keys = {
        command.env[f"GIT_CONFIG_KEY_{i}"]: command.env[f"GIT_CONFIG_VALUE_{i}"]
        for i in range(int(command.env["GIT_CONFIG_COUNT"]))
    }
    header = keys[f"http.{http_server.url('config')}.extraHeader"]
    assert header.startswith("Authorization: Basic ")
    assert http_server.errors == []


def test_credentials_in_the_url_stay_off_the_git_command_line(tmp_path: Path) -> None:
    url = f"https://{HTTP_USER}:{HTTP_PASSWORD}@git.example.com/org/config.git"
    creds = Credentials(username=HTTP_USER, password=HTTP_PASSWORD, secrets=(HTTP_PASSWORD,))
    command = gitcli.fetch_command(
        "git",
        tmp_path / "cache",
        url,
        Transport.HTTP,
        creds,
        ["+refs/heads/main:refs/heads/main"],
        5,
    )
    assert all(HTTP_PASSWORD not in arg for arg in command.argv)
    assert "https://git.example.com/org/config.git" in command.argv
    assert command.env["GIT_TERMINAL_PROMPT"] == "0"
    assert command.env["GIT_CONFIG_GLOBAL"] == os.devnull


def test_ssh_options_go_to_the_git_cli_through_git_ssh_command(tmp_path: Path) -> None:
    creds = Credentials(ssh_command="ssh -o BatchMode=yes -i /keys/deploy")
    command = gitcli.fetch_command(
        "git", tmp_path / "cache", "git@example.com:org/config.git", Transport.SSH, creds,
        ["+refs/heads/main:refs/heads/main"], 5, environ={"GIT_DIR": "/elsewhere", "HOME": "/h"},
    )  # fmt: skip
    assert command.env["GIT_SSH_COMMAND"] == creds.ssh_command
    assert "GIT_DIR" not in command.env
    assert command.env["HOME"] == "/h"


def test_a_failing_git_cli_falls_back_to_dulwich(
    config_repo: GitRepo,
    cache_root: Path,
    sources: list[GitSource],
    http_server: GitHttpServer,
    token_env: str,
    tmp_path: Path,
) -> None:
    broken = tmp_path / "git-that-fails"
    broken.write_text(f"#!/bin/sh\necho 'fatal: {HTTP_PASSWORD} went wrong' >&2\nexit 128\n")
    broken.chmod(0o755)
    source = make_source(
        sources,
        cache_root,
        http_server.url("config"),
        auth=AuthConfig(token_env=token_env),
        git=str(broken),
    )
    with structlog.testing.capture_logs() as logs:
        assert fetch(source).commit == config_repo.head()

    [failed] = [e for e in logs if e["event"] == "source.git_cli_failed"]
    assert "went wrong" in failed["error"]
    assert HTTP_PASSWORD not in failed["error"]


def test_git_that_does_not_finish_by_the_deadline_is_killed(tmp_path: Path) -> None:
    marker = tmp_path / "child-still-running"
    script = tmp_path / "slow-git"
    script.write_text(f"#!/bin/sh\n(sleep 5; touch {marker}) &\nsleep 5\n")
    script.chmod(0o755)
    command = gitcli.GitCommand([str(script)], dict(os.environ))

    with pytest.raises(gitcli.GitTimedOut):
        gitcli.run_fetch(command, time.monotonic() + 0.2, Credentials())
    assert not marker.exists()  # the whole process group went


def _pool_connections(source: GitSource) -> int:
    kept = source._kept  # the remote kept between polls
    assert kept is not None
    pool = kept[1].client.pool_manager  # type: ignore[attr-defined]
    assert isinstance(pool, urllib3.PoolManager)
    total = 0
    for key in list(pool.pools.keys()):
        total += pool.pools[key].num_connections
    return total


def test_an_http_poll_is_one_request_and_a_fetch_two_on_one_connection(
    config_repo: GitRepo,
    cache_root: Path,
    sources: list[GitSource],
    http_server: GitHttpServer,
    token_env: str,
) -> None:
    source = make_source(
        sources, cache_root, http_server.url("config"), auth=AuthConfig(token_env=token_env)
    )
    fetch(source)
    fetch(source)  # the server's capabilities are known from here on
    connections = _pool_connections(source)
    http_server.clear()

    fetch(source)
    assert [(r.method, r.command) for r in logged_requests(http_server, 1)] == [("POST", "ls-refs")]

    config_repo.write("apps/api/service.yaml", "kind: Service\nname: api\nrev: 2\n")
    head = config_repo.commit("api rev 2")
    config_repo.push()
    http_server.clear()
    assert fetch(source).commit == head
    assert [(r.method, r.command) for r in logged_requests(http_server, 2)] == [
        ("POST", "ls-refs"),
        ("POST", "fetch"),
    ]
    assert _pool_connections(source) == connections  # no new connection since


def test_a_rotated_token_opens_a_new_http_client(
    config_repo: GitRepo,
    cache_root: Path,
    sources: list[GitSource],
    http_server: GitHttpServer,
    token_env: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = make_source(
        sources, cache_root, http_server.url("config"), auth=AuthConfig(token_env=token_env)
    )
    fetch(source)

    def kept() -> object:
        return source._kept[1] if source._kept else None

    before = kept()
    monkeypatch.setenv(token_env, "wrong-token")
    with pytest.raises(Exception, match="authentication failed"):
        fetch(source)
    monkeypatch.setenv(token_env, HTTP_PASSWORD)
    fetch(source)
    assert kept() is not None
    assert kept() is not before
