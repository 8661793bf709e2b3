"""The status table: one line per app, the rollout stage shown while one is watched."""

from __future__ import annotations

import io

from gitopsd.output import Painter, format_status_table


def _app(progress: str) -> dict[str, object]:
    return {
        "app": "web",
        "last_applied": "0123456789abcdef",
        "sync": "Synced",
        "health": "Progressing",
        "progress": progress,
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "InSync", "message": "applied 0123"},
            {"type": "Stalled", "status": "False"},
        ],
    }


def test_a_watched_rollout_shows_its_stage_in_the_message() -> None:
    text = format_status_table([_app("Service/web: IN_PROGRESS")], Painter(io.StringIO(), "never"))
    line = text.splitlines()[1]
    assert line.startswith("web")
    assert "rollout Service/web: IN_PROGRESS; applied 0123" in line


def test_without_a_rollout_the_message_is_the_conditions() -> None:
    line = format_status_table([_app("")], Painter(io.StringIO(), "never")).splitlines()[1]
    assert "rollout" not in line
    assert "applied 0123" in line
