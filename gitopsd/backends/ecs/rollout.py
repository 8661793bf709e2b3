"""Verify: watch a service's rollout until it is steady, failed, or out of time.

The ``services_stable`` waiter is not enough (ecs-facts.md section 2): after a
circuit-breaker rollback the service is "stable" again, on the OLD task
definition. The outcome is judged by the PRIMARY deployment: its task
definition must be the one gitopsd applied and its ``rolloutState`` must be
COMPLETED. A FAILED rollout that ECS did not roll back itself is rolled back
by gitopsd to the last task definition recorded as COMPLETED (never merely
"the previous revision"), when the app's sync policy asks for it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import anyio
import structlog

from gitopsd.backends.base import RolloutStatus
from gitopsd.backends.ecs.client import EcsClient
from gitopsd.backends.ecs.planner import primary_deployment, td_label
from gitopsd.config import AppConfig
from gitopsd.state import JsonRecord

log = structlog.get_logger(__name__)

Progress = Callable[[str, str], None]  # (service key, message)

EVENT_CLOCK_SLACK = 2.0


class RolloutWatcher:
    """Polls one service until its rollout on ``td_arn`` has an outcome."""

    def __init__(
        self,
        client: EcsClient,
        app: AppConfig,
        service: str,
        td_arn: str,
        *,
        poll_interval: float,
        last_good: JsonRecord,
        progress: Progress | None = None,
        since: float = 0.0,
    ) -> None:
        self.client = client
        self.app = app
        self.service = service
        self.td_arn = td_arn
        self.poll_interval = poll_interval
        self.last_good = last_good
        self.progress = progress
        self.key = f"Service/{service}"
        self._seen_events: set[str] = set()
        # Events before the write that started this rollout belong to earlier ones
        # (with a little slack for clock skew between us and AWS).
        self._since = since - EVENT_CLOCK_SLACK if since else 0.0
        self._last_line = ""
        self.events: list[str] = []

    def _say(self, message: str) -> None:
        self.events.append(message)
        log.info("rollout.progress", app=self.app.name, service=self.service, message=message)
        if self.progress is not None:
            self.progress(self.key, message)

    async def _describe(self) -> dict[str, Any]:
        found = await self.client.describe_services(self.app.cluster, [self.service])
        return found.get(self.service, {})

    def _report(self, svc: dict[str, Any]) -> None:
        for event in reversed(svc.get("events", [])):  # ECS lists newest first
            event_id = str(event.get("id") or event.get("message"))
            created = event.get("createdAt")
            if isinstance(created, datetime) and created.timestamp() < self._since:
                continue
            if event_id not in self._seen_events:
                self._seen_events.add(event_id)
                self._say(f"event: {event.get('message', '')}")
        primary = primary_deployment(svc)
        if primary is not None:
            line = (
                f"{td_label(primary.get('taskDefinition', ''))}: "
                f"{primary.get('runningCount', 0)}/{primary.get('desiredCount', 0)} running, "
                f"{primary.get('pendingCount', 0)} pending, "
                f"{primary.get('failedTasks', 0)} failed, "
                f"rollout {primary.get('rolloutState', 'unknown')}"
            )
            if line != self._last_line:
                self._last_line = line
                self._say(line)

    async def watch(self, timeout: float) -> RolloutStatus:
        """The outcome; never raises for a failed rollout, only reports it."""
        ours_failed = False
        with anyio.move_on_after(timeout):
            while True:
                svc = await self._describe()
                if not svc:
                    return self._status("FAILED", "the service disappeared during the rollout")
                self._report(svc)
                primary = primary_deployment(svc) or {}
                state = primary.get("rolloutState")
                on_ours = primary.get("taskDefinition") == self.td_arn
                if on_ours and state == "COMPLETED":
                    self.last_good.update(**{self.service: self.td_arn})
                    return self._status("COMPLETED", f"{td_label(self.td_arn)} rolled out")
                if on_ours and state == "FAILED":
                    return await self._failed(primary.get("rolloutStateReason", ""))
                if not on_ours:
                    ours = _deployment_on(svc, self.td_arn)
                    if ours is not None and ours.get("rolloutState") == "FAILED":
                        ours_failed = True
                    # ECS (circuit breaker) put another revision back as PRIMARY.
                    if (ours_failed or ours is None) and state == "COMPLETED":
                        reason = (ours or {}).get("rolloutStateReason", "")
                        back = td_label(primary.get("taskDefinition", ""))
                        return self._status(
                            "ROLLED_BACK",
                            f"{td_label(self.td_arn)} failed"
                            + (f" ({reason})" if reason else "")
                            + f"; ECS rolled back to {back}",
                        )
                await anyio.sleep(self.poll_interval)
        return await self._failed(f"no steady state within {timeout:g}s", timed_out=True)

    async def _failed(self, reason: str, *, timed_out: bool = False) -> RolloutStatus:
        state = "TIMED_OUT" if timed_out else "FAILED"
        message = f"{td_label(self.td_arn)} failed: {reason}"
        if not self.app.sync.rollback:
            return self._status(state, message + "; automatic rollback is off (sync.rollback)")
        good = self.last_good.load().get(self.service)
        if not good or good == self.td_arn:
            return self._status(state, message + "; no earlier revision is known to be good")
        await self.client.update_service(
            {"cluster": self.app.cluster, "service": self.service, "taskDefinition": good}
        )
        self._say(f"gitopsd rolled back to {td_label(good)}")
        return self._status("ROLLED_BACK", message + f"; gitopsd rolled back to {td_label(good)}")

    def _status(self, state: str, message: str) -> RolloutStatus:
        log.info("rollout.outcome", app=self.app.name, service=self.service, state=state)
        return RolloutStatus(self.key, state, message, tuple(self.events))


def _deployment_on(svc: dict[str, Any], td_arn: str) -> dict[str, Any] | None:
    return next((d for d in svc.get("deployments", []) if d.get("taskDefinition") == td_arn), None)
