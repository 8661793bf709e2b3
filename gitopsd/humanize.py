"""Durations as people read them ("5m", "2h"), for messages and tables alike."""

from __future__ import annotations

import time


def age(since: float, now: float | None = None) -> str:
    """How long ago epoch second ``since`` was: ``"42s"``, ``"5m"``, ``"3h"``, ``"2d"``."""
    seconds = max(0.0, (time.time() if now is None else now) - since)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"
