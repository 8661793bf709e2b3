"""The Slack notifier: alerts as readable Slack messages through an incoming webhook.

Why: a failed rollout or drift should reach people where they already are, with
what they need to act (which app, which commit and its message, what changed,
which ECS deployment), not a JSON dump. The message is Block Kit with a plain
``text`` fallback (the alert's title) for notifications and old clients:

- a section with a severity prefix (``[ERROR]``, ``[WARNING]``, ``[INFO]``,
  ``[RESOLVED]``; no emoji) and the title;
- fields: app, revision (12 characters, linked to the commit page when the
  source has one), commit message, stage, reason (the empty ones left out);
- the message; what changed (``service/web: /taskDefinition: old → new``, at
  most :data:`MAX_CHANGE_LINES` lines, then "and N more"); the ECS deployment;
- a context line with the count of identical alerts suppressed since the last one.

User text is escaped as Slack requires (``&``, ``<``, ``>``).

Options (``[plugins.slack]``), besides the common notifier options (``min_severity``,
``apps``, ``kinds``, ``dedup_window``, ``retries``, ``timeout``...: :mod:`gitopsd.alerts`):

``url_env``
    The name of an environment variable holding the incoming webhook URL. Or:
``url_file``
    A file holding it (surrounding whitespace stripped). Exactly one is required:
    the URL *is* the credential, so an inline ``url`` is refused.
``channel``, ``username``
    Optional, passed through in the payload (honoured by legacy webhooks; an app's
    incoming webhook posts to the channel it was created for).

The URL is registered with :func:`gitopsd.redact.register`. Retries, dedup and
timeouts are the channel's (:class:`gitopsd.alerts.Channel`): Slack's 429 and 5xx
are retried, its other 4xx answers (``invalid_payload``, ``no_service``...) are not.

Installed without a ``[plugins.slack]`` table, the plugin is left inactive by gitopsd
(its refusal is only logged at debug level); with a table, a missing URL is an error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gitopsd.alerts import Alert, post_json, string_option
from gitopsd.events import RECOVERED, Event
from gitopsd.plugins import hookimpl
from gitopsd.redact import register

__all__ = ["SlackNotifier", "escape", "gitopsd_notifier", "payload"]

#: Options this plugin takes (the common channel options are removed before it sees them).
OPTIONS = ("url_env", "url_file", "channel", "username")
#: Lines of "what changed" shown before "and N more".
MAX_CHANGE_LINES = 10
#: Longest value of a changed field shown (the event's diffs are already shortened).
MAX_VALUE = 80
#: Slack's limit on a section's text (and a field's is 2000).
MAX_SECTION = 3000
MAX_FIELD = 2000
#: A bound for one request when the notifier is used outside a channel; in gitopsd the
#: channel's ``timeout`` (default 10 s) cancels an attempt first.
REQUEST_TIMEOUT = 300.0

_PREFIX = {"info": "[INFO]", "warning": "[WARNING]", "error": "[ERROR]"}


def escape(text: str) -> str:
    """``text`` safe in a Slack text object: the three control characters as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, never ending inside an ``&amp;`` entity."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def _link(url: str, text: str) -> str:
    """``<url|text>``, or just the text when ``url`` cannot be a Slack link."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or any(c in url for c in "<>| \t\r\n"):
        return escape(text)
    return f"<{url.replace('&', '&amp;')}|{escape(text)}>"


def _value(text: str) -> str:
    return _cut(escape(text), MAX_VALUE) if text else "(none)"


def change_lines(event: Event) -> list[str]:
    """One line per changed field (or per resource without field diffs), escaped."""
    lines = []
    for change in event.changes:
        key = escape(change.key)
        if not change.fields:
            lines.append(f"{key}: {escape(change.action)}")
        for f in change.fields:
            lines.append(f"{key}: {escape(f.path)}: {_value(f.before)} → {_value(f.after)}")
    return lines


def _header(alert: Alert) -> str:
    e = alert.event
    prefix = "[RESOLVED]" if e.kind == RECOVERED else _PREFIX.get(str(e.severity), "[INFO]")
    return f"*{prefix} {escape(alert.title)}*"


def _fields(event: Event) -> list[dict[str, str]]:
    fields = [("App", escape(event.app))]
    if event.revision:
        short = event.revision[:12]
        fields.append(("Revision", _link(event.link, short) if event.link else escape(short)))
    if event.commit_message:
        fields.append(("Commit", escape(event.commit_message)))
    if event.stage:
        fields.append(("Stage", escape(event.stage)))
    if event.reason:
        fields.append(("Reason", escape(event.reason)))
    return [
        {"type": "mrkdwn", "text": _cut(f"*{label}*\n{value}", MAX_FIELD)}
        for label, value in fields
    ]


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _cut(text, MAX_SECTION)}}


def payload(
    alert: Alert, *, channel: str | None = None, username: str | None = None
) -> dict[str, Any]:
    """The webhook body for ``alert``."""
    e = alert.event
    blocks: list[dict[str, Any]] = [
        _section(_header(alert)),
        {"type": "section", "fields": _fields(e)},
    ]
    if e.message and e.kind != RECOVERED:
        blocks.append(_section(escape(e.message)))
    lines = change_lines(e)
    if lines:
        shown = lines[:MAX_CHANGE_LINES]
        if len(lines) > len(shown):
            shown.append(f"and {len(lines) - len(shown)} more")
        blocks.append(_section("*What changed*\n" + "\n".join(shown)))
    context = []
    if e.deployment:
        context.append(f"Deployment: `{escape(e.deployment)}`")
    if alert.suppressed > 0:
        context.append(f"{alert.suppressed} identical alert(s) suppressed since the last one")
    if context:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": t} for t in context]}
        )
    body: dict[str, Any] = {"text": escape(alert.title), "blocks": blocks}
    if channel:
        body["channel"] = channel
    if username:
        body["username"] = username
    return body


class SlackNotifier:
    """Posts alerts to one Slack incoming webhook (see the module docstring)."""

    channel_defaults: Mapping[str, Any] = {}

    def __init__(
        self,
        url: str,
        *,
        channel: str | None = None,
        username: str | None = None,
        timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self.url = url
        self.channel = channel
        self.username = username
        self.timeout = timeout

    def __repr__(self) -> str:  # never the URL: it is the credential
        return f"SlackNotifier(channel={self.channel!r})"

    async def send(self, alert: Alert) -> None:
        body = payload(alert, channel=self.channel, username=self.username)
        await post_json(self.url, body, timeout=self.timeout)


def _url(options: Mapping[str, Any]) -> str:
    if "url" in options:
        raise ValueError(
            "url: an inline webhook URL is refused (the URL is the credential): put it in an "
            "environment variable and set url_env, or in a file and set url_file"
        )
    env, file = string_option(options, "url_env"), string_option(options, "url_file")
    if env is not None and file is not None:
        raise ValueError("url_env: give either url_env or url_file, not both")
    if env is not None:
        key = "url_env"
        url = os.environ.get(env, "").strip()
        if not url:
            raise ValueError(f"url_env: the environment variable {env} is not set or is empty")
    elif file is not None:
        key = "url_file"
        try:
            url = Path(file).expanduser().read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"url_file: cannot read {file}: {exc.__class__.__name__}") from None
        if not url:
            raise ValueError(f"url_file: {file} is empty")
    else:
        raise ValueError(
            "url_env: required (the name of an environment variable holding the incoming "
            "webhook URL), or url_file"
        )
    register(url)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{key}: the webhook URL must be an https:// URL")  # never the value
    return url


def build(options: Mapping[str, Any]) -> SlackNotifier:
    """The notifier for the plugin's own options; ``ValueError("key: message")`` if bad."""
    unknown = sorted(set(options) - {*OPTIONS, "url"})
    if unknown:
        raise ValueError(
            f"{unknown[0]}: unknown option (the slack notifier takes {', '.join(OPTIONS)} "
            "and the common notifier options)"
        )
    url = _url(options)
    return SlackNotifier(
        url, channel=string_option(options, "channel"), username=string_option(options, "username")
    )


@hookimpl
def gitopsd_notifier(name: str, options: Mapping[str, Any]) -> SlackNotifier:
    return build(options)
