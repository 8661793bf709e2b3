"""The state one local ECS server shares between its request handlers.

A server process has exactly one :class:`Runtime`: the current and the startup
settings, the simulated clock, the log of received API calls and the lock that
serializes every ECS request with the control endpoints (the werkzeug server
is threaded; the simulation is not thread-safe on its own). It also turns the
settings into the two things the simulation asks for: the step interval and
whether a task of a given revision starts.

No moto here, so the control plane and the tests can use it without the extra.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from gitopsd.local_aws.clock import SimClock
from gitopsd.local_aws.faults import Faults
from gitopsd.local_aws.records import Revision
from gitopsd.local_aws.settings import SimSettings


class CallLog:
    """Operation names received (``RegisterTaskDefinition``, ``UpdateService`` ...), in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[str] = []

    def record(self, operation: str) -> None:
        """Append one operation name."""
        with self._lock:
            self._calls.append(operation)

    def snapshot(self) -> list[str]:
        """A copy of the names recorded since the last clear."""
        with self._lock:
            return list(self._calls)

    def clear(self) -> None:
        """Forget every recorded name."""
        with self._lock:
            self._calls.clear()


class Runtime:
    """Settings, clock, call log and lock of one local ECS server."""

    def __init__(
        self,
        defaults: SimSettings | None = None,
        *,
        region: str = "us-east-1",
        startup_clusters: Iterable[str] = (),
    ) -> None:
        self.defaults = defaults or SimSettings()
        self.settings = self.defaults
        self.clock = SimClock(self.defaults.clock)
        self.calls = CallLog()
        self.faults = Faults()
        #: Held while a request touches ECS state or the settings.
        self.lock = threading.RLock()
        self.region = region
        self.startup_clusters = tuple(startup_clusters)

    def configure(
        self,
        pace: float | None = None,
        fail_images: Iterable[str] | None = None,
        clock: str | None = None,
        minute_seconds: float | None = None,
        fail_hooks: Iterable[str] | None = None,
    ) -> SimSettings:
        """Change some knobs (None keeps a knob); returns the new settings."""
        with self.lock:
            return self._apply(
                self.settings.updated(pace, fail_images, clock, minute_seconds, fail_hooks)
            )

    def configure_json(self, body: Mapping[str, Any]) -> SimSettings:
        """Change knobs from a JSON object (keys of ``SimSettings.to_json``)."""
        with self.lock:
            return self._apply(self.settings.updated_from_json(body))

    def _apply(self, settings: SimSettings) -> SimSettings:
        self.clock.set_mode(settings.clock)
        self.settings = settings
        return settings

    def reset_settings(self) -> None:
        """Back to the startup settings; the clock restarts from wall-clock time."""
        with self.lock:
            self.settings = self.defaults
            self.clock.reset(self.defaults.clock)

    def interval(self) -> timedelta:
        """Simulated time between two task starts of one deployment (``1 / pace``)."""
        return timedelta(seconds=1.0 / self.settings.pace)

    def minute(self) -> timedelta:
        """Simulated length of one configured minute (bake times, hook timeouts)."""
        return timedelta(seconds=self.settings.minute_seconds)

    def hook_fails(self, target_arn: str | None) -> bool:
        """True when an AWS_LAMBDA hook with this target answers FAILED."""
        return self.settings.failing_hook(target_arn) is not None

    def probe(self, revision: Revision) -> str | None:
        """Why a task of ``revision`` fails to start now, or None if it starts."""
        image = self.settings.failing_image(image for _, image in revision.images)
        if image is None:
            return None
        return (
            "CannotPullContainerError: pull image manifest has been retried 5 time(s): "
            f"failed to resolve ref {image}: not found"
        )
