"""Credentials for a Git remote, read at fetch time, and the URL forms that carry them.

Secrets live in environment variables or files, never in the configuration,
and are read on every fetch so a rotated token is picked up without a restart.
This module turns a source's ``auth`` block and URL into what the transport
needs (HTTP username and password, or an ``ssh`` command line), checks that
the block fits the URL's transport, and redacts URLs and messages so a secret
never reaches a log line or an error. Every secret it reads (a token or
password from the environment or a file, the password or lone user name in the
URL) is registered with :mod:`gitopsd.redact`, so every other output masks it too.

HTTP(S) tokens are sent as HTTP basic auth: username ``x-access-token`` (or
``auth.username`` when set) and the token as the password. GitHub (installation
and personal access tokens), GitLab (any username with a personal or deploy
token), Bitbucket and Gitea all accept a token in that form.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from urllib.parse import SplitResult, unquote, urlsplit

from gitopsd.config import SourceConfig
from gitopsd.errors import SourceRejected
from gitopsd.redact import REDACTOR

TOKEN_USERNAME = "x-access-token"
SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/]+)@)?(?P<host>[^:/]{2,}):(?!//)(?P<path>.*)$")


class Transport(StrEnum):
    """How a source URL is reached."""

    LOCAL = "local"  # a path or file:// URL
    GIT = "git"  # git://, no authentication
    HTTP = "http"  # http:// or https://
    SSH = "ssh"  # ssh://, git+ssh:// or scp-like user@host:path


def transport_of(url: str) -> Transport:
    """Classify a source URL; raise ``ValueError`` for an unknown scheme."""
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    match scheme:
        case "http" | "https":
            return Transport.HTTP
        case "git":
            return Transport.GIT
        case "ssh" | "git+ssh" | "ssh+git":
            return Transport.SSH
        case "file":
            return Transport.LOCAL
        case "":
            return Transport.SSH if SCP_LIKE.match(url) else Transport.LOCAL
        case _:
            raise ValueError(f"unsupported URL scheme {scheme!r}")


def redact_url(url: str) -> str:
    """The URL with any password (or a lone user name that may be a token) replaced by ``***``.

    ``https://user:s3cret@host/r.git`` becomes ``https://user:***@host/r.git`` and
    ``https://ghp_abc@host/r.git`` becomes ``https://***@host/r.git``. SSH user
    names (``git@host:org/repo``) are not secrets and are kept.
    """
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, sep, _password = userinfo.partition(":")
    if sep:
        userinfo = f"{user}:***"
    elif parts.scheme.lower() in ("http", "https"):
        userinfo = "***"
    return parts._replace(netloc=f"{userinfo}@{hostport}").geturl()


def strip_userinfo(url: str) -> str:
    """The URL without ``user:password@`` (used for HTTP, where credentials go in headers)."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    hostport = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=hostport).geturl()


def _url_credentials(parts: SplitResult) -> tuple[str | None, str | None]:
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return user, password


@dataclass(frozen=True)
class Credentials:
    """What a transport needs to authenticate, plus what to scrub from messages.

    ``hint`` tells a user where the credentials came from, for an
    authentication failure message ("check the token in $GIT_TOKEN").
    """

    username: str | None = None
    password: str | None = None
    ssh_command: str | None = None
    hint: str = ""
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def scrub(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return text


def _key(config: SourceConfig, name: str) -> str:
    return f"sources[{config.name}].auth.{name}"


def _read_env(config: SourceConfig, key: str, var: str) -> str:
    value = os.environ.get(var)
    if value is None:
        raise SourceRejected(f"{_key(config, key)}: environment variable {var} is not set")
    value = value.strip()
    if not value:
        raise SourceRejected(f"{_key(config, key)}: environment variable {var} is empty")
    return value


def _read_file(config: SourceConfig, key: str, path: Path) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SourceRejected(f"{_key(config, key)}: cannot read {path}: {reason}") from None
    if not value:
        raise SourceRejected(f"{_key(config, key)}: {path} is empty")
    return value


def _read_secret(
    config: SourceConfig, kind: str, env: str | None, file: Path | None
) -> tuple[str, str] | None:
    """The secret in ``auth.<kind>_env`` or ``auth.<kind>_file`` and where it is (for hints).

    ``None`` when neither is set; a variable that is unset or empty, or a file
    that cannot be read or is empty, is a :class:`SourceRejected`.
    """
    if env:
        return _read_env(config, f"{kind}_env", env), f"${env}"
    if file is not None:
        return _read_file(config, f"{kind}_file", file), str(file)
    return None


def _check_readable(config: SourceConfig, key: str, path: Path) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise SourceRejected(f"{_key(config, key)}: cannot read {path}: {reason}") from None


def ssh_command(
    *,
    key_file: Path | None = None,
    known_hosts_file: Path | None = None,
    timeout: float | None = None,
    program: str = "ssh",
) -> str:
    """The ``ssh`` command line dulwich's subprocess SSH vendor runs (as one shell-quoted string).

    Batch mode (never prompt), strict host key checking against
    ``known_hosts_file`` (or the user's default known_hosts when unset), only the
    given key, and connect and keep-alive timeouts derived from ``timeout`` so
    a silent server cannot hold a fetch forever.
    """
    args = [program, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
    if known_hosts_file is not None:
        args += ["-o", f"UserKnownHostsFile={known_hosts_file}"]
    if key_file is not None:
        args += ["-i", str(key_file), "-o", "IdentitiesOnly=yes"]
    if timeout is not None:
        seconds = max(1, math.ceil(timeout))
        args += [
            "-o", f"ConnectTimeout={seconds}",
            "-o", f"ServerAliveInterval={max(1, math.ceil(seconds / 3))}",
            "-o", "ServerAliveCountMax=3",
        ]  # fmt: skip
    return shlex.join(args)


def register_url_credentials(url: str) -> None:
    """Mark the password in ``url`` (or, over http(s), a lone user name: often a token) secret."""
    if "://" not in url:
        return
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return
    user, password = _url_credentials(parts)
    if password:
        REDACTOR.register_all({password, parts.password})
    elif user and parts.scheme.lower() in ("http", "https"):
        REDACTOR.register_all({user, parts.username})


def resolve_credentials(config: SourceConfig, transport: Transport) -> Credentials:
    """Read the secrets of ``config.auth`` now; raise ``SourceRejected`` naming the bad key.

    A credential that does not fit the URL's transport (a token for an ssh URL,
    an SSH key for an https URL) is rejected too: it is a configuration mistake
    that would otherwise surface as a confusing authentication failure. Every
    secret read, and the credentials in the URL, are registered with
    :mod:`gitopsd.redact`.
    """
    register_url_credentials(config.url)
    creds = _resolve(config, transport)
    REDACTOR.register_all(creds.secrets)
    return creds


def _resolve(config: SourceConfig, transport: Transport) -> Credentials:
    auth = config.auth
    token_keys = [k for k in ("token_env", "token_file") if getattr(auth, k)]
    password_keys = [k for k in ("password_env", "password_file") if getattr(auth, k)]
    ssh_keys = [k for k in ("ssh_key_file", "known_hosts_file") if getattr(auth, k)]
    if token_keys and password_keys:
        raise SourceRejected(
            f"{_key(config, token_keys[0])}: set a token or a password, not both "
            f"(remove sources[{config.name}].auth.{password_keys[0]})"
        )
    http_keys = token_keys + password_keys + (["username"] if auth.username else [])
    if transport is not Transport.HTTP and http_keys:
        raise SourceRejected(
            f"{_key(config, http_keys[0])}: tokens, usernames and passwords apply to "
            f"http(s) URLs only, and {redact_url(config.url)} is a {transport} URL"
            + ("; use auth.ssh_key_file for ssh" if transport is Transport.SSH else "")
        )
    if transport is not Transport.SSH and ssh_keys:
        raise SourceRejected(
            f"{_key(config, ssh_keys[0])}: SSH keys apply to ssh URLs only, "
            f"and {redact_url(config.url)} is a {transport} URL"
        )

    if transport is Transport.SSH:
        for key in ssh_keys:
            _check_readable(config, key, getattr(auth, key))
        command = ssh_command(
            key_file=auth.ssh_key_file,
            known_hosts_file=auth.known_hosts_file,
            timeout=config.timeout,
        )
        hint = (
            f"check that the key {auth.ssh_key_file} is authorised on the server"
            if auth.ssh_key_file
            else f"set sources[{config.name}].auth.ssh_key_file to a key the server accepts"
        )
        if auth.known_hosts_file:
            hint += f" and that {auth.known_hosts_file} holds the server's host key"
        return Credentials(ssh_command=command, hint=hint)

    if transport is not Transport.HTTP:
        return Credentials()

    url_user, url_password = _url_credentials(urlsplit(config.url))
    url_secrets = tuple(s for s in (url_password,) if s)
    found = _read_secret(config, "token", auth.token_env, auth.token_file)
    if found is not None:
        token, where = found
        return Credentials(
            username=auth.username or TOKEN_USERNAME,
            password=token,
            hint=f"check the token in {where} "
            "(it may be expired, revoked or lack read access to the repository)",
            secrets=(token, *url_secrets),
        )
    found = _read_secret(config, "password", auth.password_env, auth.password_file)
    if found is not None:
        password, where = found
        return Credentials(
            username=auth.username,
            password=password,
            hint=f"check the username {auth.username!r} and the password in {where}",
            secrets=(password, *url_secrets),
        )
    if auth.username:
        return Credentials(
            username=auth.username,
            password=url_password,
            hint=f"check the username {auth.username!r}",
            secrets=url_secrets,
        )
    if url_user is not None:
        # Credentials written into the URL (discouraged): a lone user name is
        # how some hosts take a token (https://TOKEN@host/...).
        return Credentials(
            username=url_user,
            password=url_password or "",
            hint="check the credentials in the URL (better: use auth.token_env)",
            secrets=tuple(s for s in (url_password, url_user if not url_password else None) if s),
        )
    return Credentials(
        hint=(
            f"the remote needs credentials: set sources[{config.name}].auth.token_env "
            "(or token_file, or username with password_env)"
        )
    )
