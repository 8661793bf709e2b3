"""The built-in console notifier: problems (and their recovery) as lines on stderr.

Registered like any third-party plugin, through the ``gitopsd.plugins`` entry
point ``console`` in gitopsd's own pyproject.toml; ``[plugins.console]
enabled = false`` turns it off. It takes the options every notifier takes
(:mod:`gitopsd.alerts`: ``min_severity`` (default ``warning`` here), ``apps``,
``kinds``, ``dedup_window``...) and none of its own. Lines::

    ALERT app web: RolledBack: service/web: ROLLED_BACK: ...
    RESOLVED app web: web is Ready again at 0123456789ab
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from gitopsd.alerts import Alert
from gitopsd.events import RECOVERED
from gitopsd.plugins import hookimpl


def format_alert(alert: Alert) -> str:
    event = alert.event
    if event.kind == RECOVERED:
        return f"RESOLVED app {event.app}: {event.message}"
    text = f"ALERT app {event.app}: {event.reason}: {event.message}".rstrip(": ")
    if alert.suppressed:
        text += f" ({alert.suppressed} identical alert(s) suppressed)"
    return text


class ConsoleNotifier:
    channel_defaults: Mapping[str, Any] = {"min_severity": "warning", "retries": 0}

    async def send(self, alert: Alert) -> None:
        print(format_alert(alert), file=sys.stderr, flush=True)


@hookimpl
def gitopsd_notifier(name: str, options: Mapping[str, Any]) -> ConsoleNotifier:
    for key in options:
        raise ValueError(
            f"{key}: unknown option (the console notifier takes only the common notifier "
            "options: min_severity, apps, exclude_apps, kinds, exclude_kinds, dedup_window)"
        )
    return ConsoleNotifier()
