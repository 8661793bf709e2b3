"""The built-in console notifier: error-severity events on stderr.

Registered like any third-party plugin, through the ``gitopsd.plugins`` entry
point ``console`` in gitopsd's own pyproject.toml; ``[plugins.console]
enabled = false`` turns it off. It takes no options.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from gitopsd.events import Event, Severity
from gitopsd.plugins import hookimpl


def format_alert(event: Event) -> str:
    return f"ALERT app {event.app}: {event.reason}: {event.message}"


@hookimpl
def gitopsd_event(event: Event) -> None:
    if event.severity is Severity.ERROR:
        print(format_alert(event), file=sys.stderr, flush=True)


@hookimpl
def gitopsd_configure(name: str, options: Mapping[str, Any]) -> None:
    for key in options:
        raise ValueError(f"{key}: unknown option (the console plugin takes none but `enabled`)")
