"""When the agent runs an app's next pass: jittered intervals, capped exponential backoff.

Pure functions of an outcome and a time, so every rule is tested without
waiting: success requeues after the app's interval stretched by a random
share (Flux's jitter, so a fleet does not poll in lock-step); a temporary
failure backs off exponentially from ``backoff_min`` up to ``backoff_max``;
a permanent failure (a bad manifest, a rollout that failed) stalls the app
until Git moves, while a newer revision is always tried at once rather than
waiting out an older one's backoff.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from gitopsd.config import AppConfig, Config


class Next(enum.StrEnum):
    """Why the next pass is due."""

    INTERVAL = "interval"  # the app is Ready: drift check after the interval
    BACKOFF = "backoff"  # a temporary failure: retry after the backoff
    STALLED = "stalled"  # a permanent failure: wait for a new commit (or --force)


def jittered(interval: float, jitter: float, rng: random.Random) -> float:
    """``interval`` stretched by a random share of up to ``jitter`` (never shortened)."""
    return interval * (1.0 + jitter * rng.random())


def backoff(failures: int, minimum: float, maximum: float) -> float:
    """The delay after ``failures`` consecutive temporary failures (1 -> ``minimum``)."""
    if failures <= 0:
        return 0.0
    return min(maximum, minimum * 2.0 ** min(failures - 1, 62))


@dataclass(frozen=True)
class Decision:
    """When the next pass is due (loop time) and why; ``None``: only a new commit or a trigger."""

    reason: Next
    at: float | None


class Scheduler:
    """The agent's timing rules for one configuration."""

    def __init__(self, config: Config, rng: random.Random | None = None) -> None:
        self.config = config
        self.rng = rng or random.Random()

    def interval(self, app: AppConfig) -> float:
        return app.interval or self.config.daemon.interval

    def source_interval(self, name: str) -> float:
        return self.config.source(name).interval or self.config.daemon.interval

    def next_poll(self, name: str, now: float) -> float:
        return now + jittered(self.source_interval(name), self.config.daemon.jitter, self.rng)

    def after(
        self, app: AppConfig, now: float, *, ok: bool, temporary: bool, failures: int
    ) -> Decision:
        """The next pass after one that ended ``ok`` / failed (``temporary`` or not)."""
        daemon = self.config.daemon
        if ok:
            return Decision(
                Next.INTERVAL, now + jittered(self.interval(app), daemon.jitter, self.rng)
            )
        if temporary:
            delay = backoff(failures, daemon.backoff_min, daemon.backoff_max)
            return Decision(Next.BACKOFF, now + jittered(delay, daemon.jitter, self.rng))
        return Decision(Next.STALLED, None)
