"""Credential resolution, transport detection and URL redaction (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitopsd.config import AuthConfig, SourceConfig
from gitopsd.errors import SourceRejected
from gitopsd.source.auth import (
    TOKEN_USERNAME,
    Transport,
    redact_url,
    resolve_credentials,
    strip_userinfo,
    transport_of,
)
from gitopsd.source.cache import cache_dir


@pytest.mark.parametrize(
    ("url", "transport"),
    [
        ("/srv/git/config.git", Transport.LOCAL),
        ("relative/config.git", Transport.LOCAL),
        ("file:///srv/git/config.git", Transport.LOCAL),
        ("git://example.com/config.git", Transport.GIT),
        ("https://github.com/org/config.git", Transport.HTTP),
        ("HTTP://example.com/config.git", Transport.HTTP),
        ("ssh://git@github.com/org/config.git", Transport.SSH),
        ("git+ssh://git@github.com/org/config.git", Transport.SSH),
        ("git@github.com:org/config.git", Transport.SSH),
        ("github.com:org/config.git", Transport.SSH),
    ],
)
def test_transport_of(url: str, transport: Transport) -> None:
    assert transport_of(url) is transport


def test_unknown_scheme() -> None:
    with pytest.raises(ValueError, match="unsupported URL scheme 'ftp'"):
        transport_of("ftp://example.com/config.git")


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("https://user:s3cret@host/r.git", "https://user:***@host/r.git"),
        ("https://ghp_abc123@host/r.git", "https://***@host/r.git"),
        ("https://host:8443/r.git", "https://host:8443/r.git"),
        ("ssh://git@host/r.git", "ssh://git@host/r.git"),
        ("git@host:org/r.git", "git@host:org/r.git"),
        ("/srv/git/r.git", "/srv/git/r.git"),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_strip_userinfo() -> None:
    assert strip_userinfo("https://u:p@host:1/r.git") == "https://host:1/r.git"


def test_cache_dir_is_stable_and_ignores_credentials(tmp_path: Path) -> None:
    a = cache_dir(tmp_path, "platform", "https://host/r.git")
    assert a == cache_dir(tmp_path, "platform", "https://host/r.git")
    assert a.name.startswith("platform-")
    assert a != cache_dir(tmp_path, "platform", "https://host/other.git")


def config(url: str = "https://host/r.git", **auth: object) -> SourceConfig:
    return SourceConfig(name="platform", url=url, auth=AuthConfig.model_validate(auth))


def test_token_uses_the_access_token_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_TOKEN", "  tok-123\n")
    creds = resolve_credentials(config(token_env="GIT_TOKEN"), Transport.HTTP)
    assert (creds.username, creds.password) == (TOKEN_USERNAME, "tok-123")
    assert creds.hint.startswith("check the token in $GIT_TOKEN")
    assert creds.scrub("Bearer tok-123 failed") == "Bearer *** failed"


def test_token_with_a_username(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_TOKEN", "tok-123")
    creds = resolve_credentials(config(token_env="GIT_TOKEN", username="oauth2"), Transport.HTTP)
    assert (creds.username, creds.password) == ("oauth2", "tok-123")


def test_password_from_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("hunter2\n")
    creds = resolve_credentials(config(username="deploy", password_file=secret), Transport.HTTP)
    assert (creds.username, creds.password) == ("deploy", "hunter2")
    assert str(secret) in creds.hint


def test_empty_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_TOKEN", " ")
    with pytest.raises(SourceRejected) as err:
        resolve_credentials(config(token_env="GIT_TOKEN"), Transport.HTTP)
    assert str(err.value) == (
        "sources[platform].auth.token_env: environment variable GIT_TOKEN is empty"
    )


def test_credentials_in_the_url() -> None:
    creds = resolve_credentials(config(url="https://bob:pa%40ss@host/r.git"), Transport.HTTP)
    assert (creds.username, creds.password) == ("bob", "pa@ss")
    assert creds.scrub("pa@ss") == "***"


def test_no_credentials() -> None:
    creds = resolve_credentials(config(), Transport.HTTP)
    assert creds.username is None
    assert "auth.token_env" in creds.hint


@pytest.mark.parametrize(
    ("url", "auth", "message"),
    [
        (
            "git@host:org/r.git",
            {"token_env": "GIT_TOKEN"},
            "sources[platform].auth.token_env: tokens, usernames and passwords apply to "
            "http(s) URLs only, and git@host:org/r.git is a ssh URL; "
            "use auth.ssh_key_file for ssh",
        ),
        (
            "https://host/r.git",
            {"ssh_key_file": "/k"},
            "sources[platform].auth.ssh_key_file: SSH keys apply to ssh URLs only, "
            "and https://host/r.git is a http URL",
        ),
    ],
)
def test_auth_that_does_not_fit_the_transport(
    url: str, auth: dict[str, object], message: str
) -> None:
    with pytest.raises(SourceRejected) as err:
        resolve_credentials(config(url, **auth), transport_of(url))
    assert str(err.value) == message
