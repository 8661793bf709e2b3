"""How failures from dulwich become SourceUnavailable or SourceRejected (no network)."""

from __future__ import annotations

import pytest
from dulwich.client import HTTPUnauthorized
from dulwich.errors import GitProtocolError, HangupException, NotGitRepository

from gitopsd.errors import SourceRejected, SourceUnavailable
from gitopsd.source.auth import Credentials
from gitopsd.source.remote import classify

WHAT = "source 'platform' (https://host/r.git)"
KEY = "sources[platform].url"
CREDS = Credentials(
    username="x-access-token",
    password="tok-123",
    hint="check the token in $GIT_TOKEN",
    secrets=("tok-123",),
)


@pytest.mark.parametrize(
    ("exc", "kind", "text"),
    [
        (HTTPUnauthorized(None, "https://host/r.git"), SourceRejected, "authentication failed"),
        (GitProtocolError("unexpected http resp 403 for u"), SourceRejected, "HTTP 403"),
        (GitProtocolError("unexpected http resp 404 for u"), SourceRejected, KEY),
        (GitProtocolError("unexpected http resp 502 for u"), SourceUnavailable, "HTTP 502"),
        (NotGitRepository(), SourceRejected, "no Git repository at this URL"),
        (
            GitProtocolError("access denied or repository not exported: /r.git"),
            SourceRejected,
            "does not exist or is not exported",
        ),
        # a silent hang-up is how a busy or restarting server fails too: retry
        (HangupException(), SourceUnavailable, "check that the repository exists"),
        (
            HangupException([b"fatal: '/r.git' does not appear to be a git repository"]),
            SourceRejected,
            "no Git repository at this URL",
        ),
        (ValueError("Invalid info/refs format"), SourceUnavailable, "could not be read"),
        (HangupException([b"fatal: early EOF"]), SourceUnavailable, "early EOF"),
        (ConnectionResetError(104, "Connection reset by peer"), SourceUnavailable, "reset"),
        (TimeoutError("timed out"), SourceUnavailable, "did not answer in time"),
    ],
)
def test_classify(exc: BaseException, kind: type[Exception], text: str) -> None:
    err = classify(exc, WHAT, CREDS, KEY)
    assert type(err) is kind
    assert str(err).startswith(WHAT + ": ")
    assert text in str(err)


def test_auth_failures_carry_the_hint() -> None:
    err = classify(GitProtocolError("unexpected http resp 403 for u"), WHAT, CREDS, KEY)
    assert str(err).endswith("check the token in $GIT_TOKEN")


def test_secrets_are_scrubbed_from_server_text() -> None:
    err = classify(HangupException([b"fatal: token tok-123 expired"]), WHAT, CREDS, KEY)
    assert "tok-123" not in str(err)
    assert "token *** expired" in str(err)
