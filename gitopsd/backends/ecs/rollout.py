"""Verify: watch rollouts until each is steady, failed, or out of time.

The ``services_stable`` waiter is not enough (ecs-facts.md section 2): after a
circuit-breaker rollback the service is "stable" again, on the OLD task
definition. The outcome is judged by the deployment gitopsd started (known by
its id from the UpdateService answer): it must be the PRIMARY one, on the task
definition gitopsd applied, with ``rolloutState`` COMPLETED. ECS replacing it
with a newer deployment after it FAILED is a rollback by ECS; a FAILED or
timed-out rollout that ECS did not roll back is rolled back by gitopsd to the
last task definition recorded as COMPLETED (never merely "the previous
revision"), when the app's sync policy asks for it.

All services of an app are polled together (one DescribeServices per 10
services per poll), and a temporary API error only costs one poll.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
import structlog

from gitopsd.backends.base import Applied, RolloutStatus
from gitopsd.backends.ecs.client import EcsClient
from gitopsd.backends.ecs.planner import primary_deployment, td_label
from gitopsd.config import AppConfig
from gitopsd.errors import BackendUnavailable, GitopsdError
from gitopsd.state import JsonRecord

log = structlog.get_logger(__name__)

Progress = Callable[[str, str], None]  # (service key, message)

#: Events older than the write (minus this slack for clock skew) are earlier rollouts'.
EVENT_CLOCK_SLACK = 2.0


@dataclass
class Verdict:
    state: str  # COMPLETED | FAILED | ROLLED_BACK
    message: str


def _created(d: dict[str, Any]) -> float:
    created = d.get("createdAt")
    return created.timestamp() if isinstance(created, datetime) else 0.0


class RolloutWatcher:
    """Follows one service's rollout from successive DescribeServices answers."""

    def __init__(self, app: AppConfig, applied: Applied, progress: Progress | None) -> None:
        self.app = app
        self.service = applied.key.split("/", 1)[1]
        self.key = applied.key
        self.td_arn = applied.rollout
        self.deployment_id = applied.deployment
        self.since = applied.at - EVENT_CLOCK_SLACK if applied.at else 0.0
        self.progress = progress
        self.events: list[str] = []
        self._seen_events: set[str] = set()
        self._last_line = ""
        self._seen_ours = False
        self._ours_failed = ""

    def say(self, message: str) -> None:
        """Record one progress line and pass it on."""
        self.events.append(message)
        log.info("rollout.progress", app=self.app.name, service=self.service, message=message)
        if self.progress is not None:
            self.progress(self.key, message)

    def _report(self, svc: dict[str, Any]) -> None:
        for event in reversed(svc.get("events", [])):  # ECS lists newest first
            event_id = str(event.get("id") or event.get("message"))
            if _created(event) and _created(event) < self.since:
                continue
            if event_id not in self._seen_events:
                self._seen_events.add(event_id)
                text = str(event.get("message", ""))
                self.say(f"event: {text}")
                # "(service web) (deployment ecs-svc/123) deployment failed: <reason>."
                if self.deployment_id and self.deployment_id in text:
                    _, found, reason = text.partition("deployment failed: ")
                    if found:
                        self._ours_failed = reason.rstrip(".") or "rollout FAILED"
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
                self.say(line)

    def _is_ours(self, d: dict[str, Any]) -> bool:
        if self.deployment_id:
            return d.get("id") == self.deployment_id
        return d.get("taskDefinition") == self.td_arn

    def observe(self, svc: dict[str, Any] | None) -> Verdict | None:
        """The outcome once there is one; None while the rollout goes on."""
        if not svc:
            return Verdict("FAILED", "the service disappeared during the rollout")
        self._report(svc)
        primary = primary_deployment(svc) or {}
        ours = next((d for d in svc.get("deployments", []) if self._is_ours(d)), None)
        if ours is not None:
            self._seen_ours = True
            if ours.get("rolloutState") == "FAILED":
                self._ours_failed = str(ours.get("rolloutStateReason", "")) or "rollout FAILED"
        state = primary.get("rolloutState")
        if ours is not None and ours is primary:
            if state == "COMPLETED" and primary.get("taskDefinition") == self.td_arn:
                return Verdict("COMPLETED", f"{td_label(self.td_arn)} rolled out")
            if state == "FAILED":
                return Verdict("FAILED", self._ours_failed)
            return None
        # Another deployment is PRIMARY. It replaced ours only if it is newer than
        # the write (otherwise DescribeServices may simply lag behind UpdateService).
        replaced = self._ours_failed or (self._seen_ours and ours is None)
        newer = _created(primary) >= self.since if self.since else self._seen_ours
        if (replaced or newer) and state == "COMPLETED":
            back = td_label(primary.get("taskDefinition", ""))
            if primary.get("taskDefinition") == self.td_arn:
                return Verdict("COMPLETED", f"{back} rolled out")
            reason = f" ({self._ours_failed})" if self._ours_failed else ""
            return Verdict(
                "ROLLED_BACK", f"{td_label(self.td_arn)} failed{reason}; ECS rolled back to {back}"
            )
        return None


async def watch_rollouts(
    client: EcsClient,
    app: AppConfig,
    applied: Sequence[Applied],
    *,
    timeout: float,
    poll_interval: float,
    last_good: JsonRecord,
    progress: Progress | None = None,
) -> list[RolloutStatus]:
    """Watch every service write in ``applied`` that started a rollout; one status each."""
    watchers = {
        w.service: w for w in (RolloutWatcher(app, a, progress) for a in applied if a.rollout)
    }
    verdicts: dict[str, Verdict] = {}
    with anyio.move_on_after(timeout):
        while len(verdicts) < len(watchers):
            pending = [name for name in watchers if name not in verdicts]
            try:
                live = await client.describe_services(app.cluster, pending)
            except BackendUnavailable as exc:
                log.warning("rollout.poll_failed", app=app.name, error=str(exc))
                live = None
            if live is not None:
                for name in pending:
                    verdict = watchers[name].observe(live.get(name))
                    if verdict is not None:
                        verdicts[name] = verdict
            if len(verdicts) < len(watchers):
                await anyio.sleep(poll_interval)

    statuses = []
    for name, watcher in sorted(watchers.items()):
        verdict = verdicts.get(name)
        if verdict is None:
            verdict = Verdict("TIMED_OUT", f"no steady state within {timeout:g}s")
        if verdict.state == "COMPLETED":
            _remember(last_good, name, watcher.td_arn)
        elif verdict.state in ("FAILED", "TIMED_OUT"):
            verdict = await _roll_back(client, app, watcher, verdict, last_good)
        log.info("rollout.outcome", app=app.name, service=name, state=verdict.state)
        statuses.append(
            RolloutStatus(watcher.key, verdict.state, verdict.message, tuple(watcher.events))
        )
    return statuses


def _remember(record: JsonRecord, service: str, td_arn: str) -> None:
    try:
        record.update(**{service: td_arn})
    except OSError as exc:
        log.warning("state.write_failed", path=str(record.path), error=str(exc))


async def _roll_back(
    client: EcsClient, app: AppConfig, watcher: RolloutWatcher, verdict: Verdict,
    last_good: JsonRecord,
) -> Verdict:  # fmt: skip
    message = f"{td_label(watcher.td_arn)} failed: {verdict.message}"
    if not app.sync.rollback:
        return Verdict(verdict.state, message + "; automatic rollback is off (sync.rollback)")
    good = last_good.load().get(watcher.service)
    if not good or good == watcher.td_arn:
        return Verdict(verdict.state, message + "; no earlier revision is known to be good")
    try:
        await client.update_service(
            {"cluster": app.cluster, "service": watcher.service, "taskDefinition": good}
        )
    except GitopsdError as exc:
        return Verdict(verdict.state, message + f"; rolling back to {td_label(good)} failed: {exc}")
    watcher.say(f"gitopsd rolled back to {td_label(good)}")
    return Verdict("ROLLED_BACK", message + f"; gitopsd rolled back to {td_label(good)}")
