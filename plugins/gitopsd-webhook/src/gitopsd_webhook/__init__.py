"""The generic webhook notifier: each alert POSTed as JSON, optionally HMAC-signed.

Why: anything that takes an HTTP POST (an incident tool, a chat bridge, your own
Lambda behind a function URL, a CI trigger) can receive gitopsd's alerts without
a dedicated plugin. The body is :meth:`gitopsd.alerts.Alert.to_json` (kind, app,
revision, commit_message, link, severity, reason, stage, message, title, at,
deployment, fields, changes, suppressed, repeat), serialised once; a receiver that
knows the shared secret verifies it came from gitopsd the way GitHub webhooks
are verified.

Options (``[plugins.webhook]``), besides the common notifier options (``min_severity``,
``apps``, ``kinds``, ``dedup_window``, ``retries``, ``timeout``...: :mod:`gitopsd.alerts`):

``url``
    The http(s) URL to POST to. Or:
``url_env``
    The name of an environment variable holding the URL (when it embeds a token).
    Exactly one of ``url`` and ``url_env`` is required.
``secret_env`` / ``secret_file``
    Optional, at most one: the HMAC key, from an environment variable or a file
    (surrounding whitespace stripped). Each request then carries
    ``X-Gitopsd-Signature-256: sha256=<hex HMAC-SHA256 of the exact body bytes>``,
    the scheme of GitHub's ``X-Hub-Signature-256``.
``headers``
    Optional table of extra static headers (``{ "X-Team" = "platform" }``).

Every request carries ``Content-Type: application/json``, ``X-Gitopsd-Event: <kind>``
and ``X-Gitopsd-Delivery: <id>``, the id being stable across retries of one alert
(sha256 of the event's dedup key and time) so a receiver can drop duplicates.

Retries, dedup and timeouts are the channel's (:class:`gitopsd.alerts.Channel`): a
2xx is delivered, 429/5xx/unreachable are retried, any other 4xx is not. The secret,
a URL read from the environment and the values of credential-like headers are
registered with :func:`gitopsd.redact.register`, so no gitopsd output shows them.

Installed without a ``[plugins.webhook]`` table, the plugin is left inactive by gitopsd
(its refusal is only logged at debug level); with a table, a missing ``url`` is an error.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gitopsd.alerts import Alert, post_json, string_option
from gitopsd.plugins import hookimpl
from gitopsd.redact import register

__all__ = ["WebhookNotifier", "delivery_id", "gitopsd_notifier", "sign"]

SIGNATURE_HEADER = "X-Gitopsd-Signature-256"
EVENT_HEADER = "X-Gitopsd-Event"
DELIVERY_HEADER = "X-Gitopsd-Delivery"
USER_AGENT = "gitopsd-webhook"

#: Options this plugin takes (the common channel options are removed before it sees them).
OPTIONS = ("url", "url_env", "secret_env", "secret_file", "headers")

#: Headers gitopsd sets itself; ``headers`` may not override them.
_RESERVED = frozenset(
    h.lower()
    for h in (
        "Content-Type",
        "Content-Length",
        "Host",
        SIGNATURE_HEADER,
        EVENT_HEADER,
        DELIVERY_HEADER,
    )
)
#: Header names whose values are treated as secrets.
_SECRET_HEADER = re.compile(r"(?i)auth|token|key|secret|password|cookie|signature")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 field-name

#: A bound for one request when the notifier is used outside a channel; in gitopsd the
#: channel's ``timeout`` (default 10 s) cancels an attempt first.
REQUEST_TIMEOUT = 300.0


def sign(secret: bytes, body: bytes) -> str:
    """The signature header value: ``sha256=`` + hex HMAC-SHA256 of ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def delivery_id(alert: Alert) -> str:
    """A stable id of ``alert``: the same for every attempt to deliver it."""
    e = alert.event
    material = json.dumps([*e.dedup_key(), repr(e.at)], separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()


class WebhookNotifier:
    """POSTs alerts to one URL (see the module docstring)."""

    channel_defaults: Mapping[str, Any] = {}

    def __init__(
        self,
        url: str,
        *,
        secret: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self.url = url
        self._secret = secret
        self.headers = dict(headers or {})
        self.timeout = timeout

    def __repr__(self) -> str:  # never the URL: it may embed a token
        signed = "signed" if self._secret else "unsigned"
        return f"WebhookNotifier({urlsplit(self.url).hostname or '?'}, {signed})"

    def request(self, alert: Alert) -> tuple[bytes, dict[str, str]]:
        """The exact body and headers sent for ``alert``."""
        body = json.dumps(alert.to_json(), ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            "User-Agent": USER_AGENT,
            **self.headers,
            EVENT_HEADER: alert.event.kind,
            DELIVERY_HEADER: delivery_id(alert),
        }
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, body)
        return body, headers

    async def send(self, alert: Alert) -> None:
        body, headers = self.request(alert)
        await post_json(self.url, {}, headers=headers, data=body, timeout=self.timeout)


def _check_url(key: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # Never the value: it may be a secret.
        raise ValueError(f"{key}: must be an http:// or https:// URL with a host")
    return url


def _url(options: Mapping[str, Any]) -> str:
    inline, env = string_option(options, "url"), string_option(options, "url_env")
    if inline is not None and env is not None:
        raise ValueError("url: give either url or url_env, not both")
    if inline is not None:
        return _check_url("url", inline)
    if env is None:
        raise ValueError("url: required (or url_env, naming an environment variable with the URL)")
    value = os.environ.get(env, "").strip()
    if not value:
        raise ValueError(f"url_env: the environment variable {env} is not set or is empty")
    register(value)
    return _check_url("url_env", value)


def _secret(options: Mapping[str, Any]) -> bytes | None:
    env, file = string_option(options, "secret_env"), string_option(options, "secret_file")
    if env is not None and file is not None:
        raise ValueError("secret_env: give either secret_env or secret_file, not both")
    if env is not None:
        value = os.environ.get(env, "").strip()
        if not value:
            raise ValueError(f"secret_env: the environment variable {env} is not set or is empty")
    elif file is not None:
        try:
            value = Path(file).expanduser().read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"secret_file: cannot read {file}: {exc.__class__.__name__}") from None
        if not value:
            raise ValueError(f"secret_file: {file} is empty")
    else:
        return None
    register(value)
    return value.encode()


def _headers(options: Mapping[str, Any]) -> dict[str, str]:
    value = options.get("headers", {})
    if not isinstance(value, Mapping):
        raise ValueError('headers: must be a table of header names to strings ({ "X-Team" = "a" })')
    out: dict[str, str] = {}
    for name, header in value.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise ValueError(f"headers.{name}: not a valid HTTP header name")
        if not isinstance(header, str) or "\r" in header or "\n" in header:
            raise ValueError(f"headers.{name}: must be a single-line string")
        if name.lower() in _RESERVED:
            raise ValueError(f"headers.{name}: set by gitopsd itself, cannot be overridden")
        if _SECRET_HEADER.search(name):
            register(header)
            register(header.split()[-1] if header.split() else "")  # "Bearer <token>"
        out[name] = header
    return out


def build(options: Mapping[str, Any]) -> WebhookNotifier:
    """The notifier for the plugin's own options; ``ValueError("key: message")`` if bad."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(
            f"{unknown[0]}: unknown option (the webhook notifier takes {', '.join(OPTIONS)} "
            "and the common notifier options)"
        )
    return WebhookNotifier(_url(options), secret=_secret(options), headers=_headers(options))


@hookimpl
def gitopsd_notifier(name: str, options: Mapping[str, Any]) -> WebhookNotifier:
    return build(options)
