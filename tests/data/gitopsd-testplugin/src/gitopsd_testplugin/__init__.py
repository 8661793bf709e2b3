"""A minimal third-party notifier: every alert appended to the file at option ``path``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gitopsd.alerts import Alert
from gitopsd.plugins import hookimpl


class FileNotifier:
    def __init__(self, path: Path) -> None:
        self.path = path

    async def send(self, alert: Alert) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(alert.to_json()) + "\n")


@hookimpl
def gitopsd_notifier(name: str, options: Mapping[str, Any]) -> FileNotifier:
    path = options.get("path")
    if not isinstance(path, str) or not path:
        raise ValueError("path: required (the file to append alerts to)")
    return FileNotifier(Path(path))
