"""Settings validation, image patterns and the simulated clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gitopsd.local_aws.clock import ClockError, SimClock
from gitopsd.local_aws.runtime import Runtime
from gitopsd.local_aws.settings import SettingsError, SimSettings


class FakeWall:
    """A wall clock the test moves."""

    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.mark.parametrize(
    ("pattern", "image", "expected"),
    [
        ("*:broken", "nginx:broken", True),
        ("*:broken", "nginx:1.27", False),
        ("nginx:*", "registry.example/nginx:1", False),  # globs match the whole string
        ("*/nginx:*", "registry.example/nginx:1", True),
        ("re:broken", "app:broken-2", True),  # regexes search
        ("re:^app:1\\.2[0-9]$", "app:1.27", True),
        ("re:^app:1\\.2[0-9]$", "app:1.3", False),
    ],
)
def test_fail_image_patterns(pattern: str, image: str, expected: bool) -> None:
    settings = SimSettings.create(fail_images=[pattern])
    assert (settings.failing_image(["ok:1", image]) == image) is expected


@pytest.mark.parametrize("pace", [0, -1, float("inf"), float("nan")])
def test_pace_must_be_positive_and_finite(pace: float) -> None:
    with pytest.raises(SettingsError, match="pace"):
        SimSettings.create(pace=pace)


def test_bad_values_are_refused() -> None:
    with pytest.raises(SettingsError, match="bad regex"):
        SimSettings.create(fail_images=["re:("])
    with pytest.raises(SettingsError, match="clock"):
        SimSettings.create(clock="fast")
    with pytest.raises(SettingsError, match="unknown setting"):
        SimSettings().updated_from_json({"speed": 2})
    with pytest.raises(SettingsError, match="list of strings"):
        SimSettings().updated_from_json({"fail_images": "x"})
    with pytest.raises(SettingsError, match="number"):
        SimSettings().updated_from_json({"pace": True})


def test_json_round_trip_and_partial_update() -> None:
    settings = SimSettings.create(pace=2, fail_images=["*:bad"], clock="manual")
    assert settings.to_json() == {
        "pace": 2.0,
        "fail_images": ["*:bad"],
        "clock": "manual",
        "minute_seconds": 60.0,
        "fail_hooks": [],
    }
    updated = settings.updated_from_json({"pace": 5})
    assert updated.to_json() == {
        "pace": 5.0,
        "fail_images": ["*:bad"],
        "clock": "manual",
        "minute_seconds": 60.0,
        "fail_hooks": [],
    }
    assert settings.updated_from_json(updated.to_json()) == updated


def test_manual_clock_moves_only_when_advanced() -> None:
    wall = FakeWall()
    clock = SimClock("manual", source=wall)
    start = clock.now()
    wall.now += timedelta(hours=1)
    assert clock.now() == start
    assert clock.advance(2.5) == start + timedelta(seconds=2.5)
    with pytest.raises(ClockError):
        clock.advance(-1)


def test_real_clock_cannot_be_advanced_and_switching_keeps_time_monotonic() -> None:
    wall = FakeWall()
    clock = SimClock("real", source=wall)
    with pytest.raises(ClockError, match="manual"):
        clock.advance(1)
    clock.set_mode("manual")
    frozen = clock.now()
    clock.advance(60)
    clock.set_mode("real")
    assert clock.now() == frozen + timedelta(seconds=60)
    wall.now += timedelta(seconds=5)
    assert clock.now() == frozen + timedelta(seconds=65)
    clock.reset("real")
    assert clock.now() == wall.now


def test_runtime_probe_interval_and_reset() -> None:
    runtime = Runtime(SimSettings.create(pace=4, clock="manual"))
    assert runtime.interval() == timedelta(seconds=0.25)
    runtime.configure(pace=2, fail_images=["*:bad"], clock="real")
    assert runtime.clock.mode == runtime.settings.clock == "real"
    assert runtime.interval() == timedelta(seconds=0.5)
    runtime.reset_settings()
    assert runtime.settings.to_json() == {
        "pace": 4.0,
        "fail_images": [],
        "clock": "manual",
        "minute_seconds": 60.0,
        "fail_hooks": [],
    }
    assert runtime.clock.mode == runtime.settings.clock
