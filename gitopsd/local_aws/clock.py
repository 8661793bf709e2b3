"""Simulated time for the local ECS endpoint.

Deployments progress from timestamps, never from sleeps, so tests can choose:

- ``real``: simulated time is the wall clock (plus an offset, see below). A
  user trying manifests locally sees rollouts progress on their own.
- ``manual``: simulated time stands still until :meth:`SimClock.advance` moves
  it; a test drives a rollout step by step and never waits.

Switching from ``manual`` back to ``real`` keeps time monotonic: the clock
continues from the manual time, running at wall-clock speed.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from gitopsd.local_aws.settings import ClockMode, check_clock


class ClockError(RuntimeError):
    """The clock cannot do what was asked (advance a real clock, move backwards)."""


def wall_clock() -> datetime:
    """The current UTC time, timezone-aware."""
    return datetime.now(UTC)


class SimClock:
    """A clock that follows the wall clock or stands still until advanced."""

    def __init__(self, mode: str = "real", source: Callable[[], datetime] = wall_clock) -> None:
        self._source = source
        self._lock = threading.Lock()
        self._mode: ClockMode = check_clock(mode)
        self._offset = timedelta(0)
        self._frozen = source()

    @property
    def mode(self) -> ClockMode:
        """``real`` or ``manual``."""
        return self._mode

    def now(self) -> datetime:
        """Simulated now (UTC, timezone-aware)."""
        with self._lock:
            return self._now_locked()

    def _now_locked(self) -> datetime:
        if self._mode == "manual":
            return self._frozen
        return self._source() + self._offset

    def set_mode(self, mode: str) -> None:
        """Switch mode without a jump in simulated time."""
        checked = check_clock(mode)
        with self._lock:
            if checked == self._mode:
                return
            current = self._now_locked()
            if checked == "manual":
                self._frozen = current
            else:
                self._offset = current - self._source()
            self._mode = checked

    def advance(self, seconds: float) -> datetime:
        """Move a manual clock forward by ``seconds`` (>= 0); returns the new now."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ClockError(f"can only advance by a finite number of seconds >= 0, got {seconds}")
        with self._lock:
            if self._mode != "manual":
                raise ClockError("the clock is 'real': switch it to 'manual' to advance it")
            self._frozen = self._frozen + timedelta(seconds=seconds)
            return self._frozen

    def reset(self, mode: str) -> None:
        """Back to wall-clock time (no offset), in ``mode``."""
        checked = check_clock(mode)
        with self._lock:
            self._mode = checked
            self._offset = timedelta(0)
            self._frozen = self._source()
