"""What a test (or a user of ``gitopsd local-aws``) can tune in the simulated ECS.

Five knobs, all changeable while the server runs:

- ``pace``: how many tasks of a deployment reach RUNNING (or fail) per simulated
  second. ``1.0`` means a service with ``desiredCount`` 3 completes a rollout in
  about 3 seconds of simulated time.
- ``fail_images``: container images that never start. A task whose task
  definition has at least one container image matching a pattern fails to start
  (as an image that cannot be pulled does on ECS). Patterns are shell globs
  matched against the whole image string with :func:`fnmatch.fnmatchcase`
  (``"*:broken"``, ``"registry.example/app:*"``); a pattern that starts with
  ``re:`` is a Python regular expression searched in the image string
  (``"re:^nginx:1\\.2[0-9]$"``).
- ``clock``: ``real`` (simulated time follows the wall clock) or ``manual``
  (simulated time moves only when told to, see :mod:`gitopsd.local_aws.clock`).
- ``minute_seconds``: how many simulated seconds one configured "minute" lasts
  (bake times, step bake times, lifecycle hook timeouts); default 60. A demo on
  the real clock sets 1 to bake "5 minutes" in 5 seconds.
- ``fail_hooks``: substrings of ``hookTargetArn``: an ``AWS_LAMBDA`` lifecycle
  hook whose target contains one answers FAILED (the deployment rolls back);
  every other Lambda hook answers SUCCEEDED.

The module is pure: no moto, no I/O.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

ClockMode = Literal["real", "manual"]
CLOCK_MODES: tuple[ClockMode, ...] = ("real", "manual")

#: Default pace: tasks per second per deployment.
DEFAULT_PACE = 1.0
#: Default length of a configured minute, in simulated seconds.
DEFAULT_MINUTE_SECONDS = 60.0

REGEX_PREFIX = "re:"

#: The knobs, as ``GET /_gitopsd/settings`` names them.
SETTING_NAMES = ("pace", "fail_images", "clock", "minute_seconds", "fail_hooks")


class SettingsError(ValueError):
    """A setting has an invalid value (bad pace, bad pattern, unknown clock mode)."""


@dataclass(frozen=True)
class ImagePattern:
    """One ``fail_images`` entry: a glob, or a regular expression after ``re:``."""

    text: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> ImagePattern:
        """Validate ``text`` and return the pattern (regexes are compiled once)."""
        if not isinstance(text, str) or not text:
            raise SettingsError(f"fail image pattern must be a non-empty string, got {text!r}")
        if text.startswith(REGEX_PREFIX):
            try:
                compiled = re.compile(text[len(REGEX_PREFIX) :])
            except re.error as exc:
                raise SettingsError(f"fail image pattern {text!r}: bad regex: {exc}") from exc
            return cls(text, compiled)
        return cls(text)

    def matches(self, image: str) -> bool:
        """True when ``image`` (e.g. ``"nginx:1.27"``) matches this pattern."""
        if self._regex is not None:
            return self._regex.search(image) is not None
        return fnmatch.fnmatchcase(image, self.text)


@dataclass(frozen=True)
class SimSettings:
    """The simulation knobs; immutable, replaced as a whole on every change."""

    pace: float = DEFAULT_PACE
    fail_images: tuple[ImagePattern, ...] = ()
    clock: ClockMode = "real"
    minute_seconds: float = DEFAULT_MINUTE_SECONDS
    fail_hooks: tuple[str, ...] = ()

    @classmethod
    def create(
        cls,
        pace: float = DEFAULT_PACE,
        fail_images: Iterable[str] = (),
        clock: str = "real",
        minute_seconds: float = DEFAULT_MINUTE_SECONDS,
        fail_hooks: Iterable[str] = (),
    ) -> SimSettings:
        """Build validated settings from plain values (CLI options, JSON)."""
        return cls(
            pace=check_pace(pace),
            fail_images=tuple(ImagePattern.parse(p) for p in fail_images),
            clock=check_clock(clock),
            minute_seconds=check_minute_seconds(minute_seconds),
            fail_hooks=check_fail_hooks(fail_hooks),
        )

    def updated(
        self,
        pace: float | None = None,
        fail_images: Iterable[str] | None = None,
        clock: str | None = None,
        minute_seconds: float | None = None,
        fail_hooks: Iterable[str] | None = None,
    ) -> SimSettings:
        """A copy with the given knobs changed; ``None`` keeps the current value."""
        result = self
        if pace is not None:
            result = replace(result, pace=check_pace(pace))
        if fail_images is not None:
            patterns = tuple(ImagePattern.parse(p) for p in fail_images)
            result = replace(result, fail_images=patterns)
        if clock is not None:
            result = replace(result, clock=check_clock(clock))
        if minute_seconds is not None:
            result = replace(result, minute_seconds=check_minute_seconds(minute_seconds))
        if fail_hooks is not None:
            result = replace(result, fail_hooks=check_fail_hooks(fail_hooks))
        return result

    def updated_from_json(self, body: Mapping[str, Any]) -> SimSettings:
        """Apply a JSON object with some of the knobs (see :meth:`to_json`); unknown keys fail."""
        unknown = set(body) - set(SETTING_NAMES)
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        pace = body.get("pace")
        images = body.get("fail_images")
        clock = body.get("clock")
        minute = body.get("minute_seconds")
        hooks = body.get("fail_hooks")
        for name, number in (("pace", pace), ("minute_seconds", minute)):
            if number is not None and (
                isinstance(number, bool) or not isinstance(number, int | float)
            ):
                raise SettingsError(f"{name} must be a number, got {number!r}")
        for name, strings in (("fail_images", images), ("fail_hooks", hooks)):
            if strings is not None and (
                not isinstance(strings, list) or not all(isinstance(i, str) for i in strings)
            ):
                raise SettingsError(f"{name} must be a list of strings, got {strings!r}")
        if clock is not None and not isinstance(clock, str):
            raise SettingsError(f"clock must be a string, got {clock!r}")
        return self.updated(
            pace=None if pace is None else float(pace),
            fail_images=cast("list[str] | None", images),
            clock=clock,
            minute_seconds=None if minute is None else float(minute),
            fail_hooks=cast("list[str] | None", hooks),
        )

    def failing_hook(self, target_arn: str | None) -> str | None:
        """The ``fail_hooks`` substring found in a Lambda hook's target ARN, or None."""
        if not target_arn:
            return None
        return next((s for s in self.fail_hooks if s in target_arn), None)

    def failing_image(self, images: Iterable[str]) -> str | None:
        """The first image that matches a ``fail_images`` pattern, or None."""
        for image in images:
            if any(p.matches(image) for p in self.fail_images):
                return image
        return None

    def to_json(self) -> dict[str, Any]:
        """The settings as plain JSON values (the inverse of :meth:`updated_from_json`)."""
        return {
            "pace": self.pace,
            "fail_images": [p.text for p in self.fail_images],
            "clock": self.clock,
            "minute_seconds": self.minute_seconds,
            "fail_hooks": list(self.fail_hooks),
        }


def check_pace(pace: float) -> float:
    """Validate a pace: a finite number of tasks per second, greater than zero."""
    value = float(pace)
    if not math.isfinite(value) or value <= 0:
        raise SettingsError(f"pace must be a finite number > 0 (tasks per second), got {pace!r}")
    return value


def check_minute_seconds(seconds: float) -> float:
    """Validate ``minute_seconds``: a finite number of simulated seconds, greater than zero."""
    value = float(seconds)
    if not math.isfinite(value) or value <= 0:
        raise SettingsError(
            f"minute_seconds must be a finite number > 0 (simulated seconds per minute), "
            f"got {seconds!r}"
        )
    return value


def check_fail_hooks(substrings: Iterable[str]) -> tuple[str, ...]:
    """Validate ``fail_hooks``: non-empty substrings of a Lambda hook's target ARN."""
    result = tuple(substrings)
    for text in result:
        if not isinstance(text, str) or not text:
            raise SettingsError(f"fail hook substring must be a non-empty string, got {text!r}")
    return result


def check_clock(mode: str) -> ClockMode:
    """Validate a clock mode name."""
    if mode not in CLOCK_MODES:
        raise SettingsError(f"clock must be one of {', '.join(CLOCK_MODES)}, got {mode!r}")
    return mode
