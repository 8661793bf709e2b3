"""Transport choices and failures that need a real (sometimes deliberately wrong) server.

A local repository is served by ``git upload-pack`` (dulwich's in-process
client negotiates over the whole history on each fetch); a web page answering
HTTP 200 is not a Git server; a hang-up without a word is temporary.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import structlog.testing
from dulwich.client import LocalGitClient, SubprocessGitClient
from support.gitserver import GitDaemon, GitRepo, HangupServer, StaticHttpServer, run_git

from gitopsd.config import AuthConfig
from gitopsd.errors import SourceRejected, SourceUnavailable
from gitopsd.source.auth import Credentials, Transport
from gitopsd.source.git import GitSource
from gitopsd.source.remote import close_remote, open_remote

from .helpers import fetch, make_source, packs
from .sample import HTTP_PASSWORD

SIGN_IN = f"<html><body>Sign in to Corp SSO (session x-access-token:{HTTP_PASSWORD})</body></html>"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/html", SIGN_IN.encode()),
        ("text/plain", b"0123456789012345678901234567890123456789\trefs/heads/main\n"),
        ("application/octet-stream", b""),
    ],
)
def test_an_http_page_that_is_not_git_is_rejected_without_its_text(
    content_type: str,
    body: bytes,
    cache_root: Path,
    sources: list[GitSource],
    token_env: str,
) -> None:
    with StaticHttpServer(body, content_type=content_type) as server:
        source = make_source(
            sources, cache_root, server.url("org/repo.git"), auth=AuthConfig(token_env=token_env)
        )
        with pytest.raises(SourceRejected) as err:
            fetch(source)

    message = str(err.value)
    assert "not as a Git smart-HTTP endpoint" in message
    assert message.endswith("check sources[platform].url")
    assert HTTP_PASSWORD not in message
    assert "html" not in message.lower()


def test_a_silent_hang_up_is_temporary(cache_root: Path, sources: list[GitSource]) -> None:
    with HangupServer() as server:
        source = make_source(sources, cache_root, f"git://127.0.0.1:{server.port}/config.git")
        with pytest.raises(SourceUnavailable) as err:
            fetch(source)
    message = str(err.value)
    assert "closed the connection without answering" in message
    assert "check that the repository exists and is exported: sources[platform].url" in message


def test_a_server_that_says_the_repository_is_missing_is_rejected(
    config_repo: GitRepo, git_root: Path, cache_root: Path, sources: list[GitSource]
) -> None:
    with GitDaemon(git_root, informative_errors=True) as daemon:
        source = make_source(sources, cache_root, daemon.url("nope"))
        with pytest.raises(SourceRejected, match=r"sources\[platform\]\.url"):
            fetch(source)


@pytest.mark.parametrize("form", ["path", "file"])
def test_a_local_remote_is_served_by_git_upload_pack(form: str, git_root: Path) -> None:
    bare = git_root / "config.git"
    url = str(bare) if form == "path" else bare.as_uri()
    remote = open_remote(url, Transport.LOCAL, Credentials(), 10)
    try:
        assert isinstance(remote.client, SubprocessGitClient)
        assert remote.path == str(bare)
        assert remote.fetch_protocol == 0
    finally:
        close_remote(remote)
    fallback = open_remote(url, Transport.LOCAL, Credentials(), 10, git=None)
    assert isinstance(fallback.client, LocalGitClient)


@pytest.mark.parametrize("git", ["", None], ids=["upload-pack", "in-process"])
def test_local_fetches_are_incremental_with_either_client(
    git: str | None,
    config_repo: GitRepo,
    git_root: Path,
    cache_root: Path,
    sources: list[GitSource],
) -> None:
    source = make_source(sources, cache_root, str(git_root / "config.git"), git=git)
    fetch(source)
    config_repo.write("apps/web/base/service.yaml", "kind: Service\nname: web\nrev: 2\n")
    head = config_repo.commit("rev 2")
    config_repo.push()

    assert fetch(source).commit == head
    assert source.last_fetch is not None
    assert 0 < source.last_fetch.objects <= 12
    assert packs(source) == 2
    assert fetch(source).commit == head
    assert not source.last_fetch.fetched


def test_a_missing_local_repository_is_rejected(
    tmp_path: Path, cache_root: Path, sources: list[GitSource]
) -> None:
    for url in (str(tmp_path / "nowhere"), (tmp_path / "nowhere").as_uri(), str(tmp_path)):
        source = make_source(sources, cache_root, url)
        with pytest.raises(SourceRejected, match=r"no Git repository at this URL.*\.url"):
            fetch(source)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a repository to another user needs root")
def test_a_local_repository_owned_by_another_user_is_read_in_process(
    config_repo: GitRepo, git_root: Path, cache_root: Path, sources: list[GitSource]
) -> None:
    """git refuses it (safe.directory); dulwich reads it as before git was used."""
    bare = git_root / "config.git"
    for path in [bare, *bare.rglob("*")]:
        os.chown(path, 65534, 65534, follow_symlinks=False)
    try:
        run_git("ls-remote", str(bare), cwd=git_root)
    except RuntimeError as exc:
        refused = str(exc)
    else:
        pytest.skip("this git serves repositories that other users own")
    assert "dubious ownership" in refused
    source = make_source(sources, cache_root, str(bare))

    with structlog.testing.capture_logs() as logs:
        assert fetch(source).commit == config_repo.head()
        assert fetch(source).commit == config_repo.head()

    fallbacks = [e for e in logs if e["event"] == "source.local_in_process"]
    assert len(fallbacks) == 1  # remembered: the next fetch does not try git again
