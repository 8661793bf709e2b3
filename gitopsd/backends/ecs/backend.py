"""The Amazon ECS backend: the protocol the engine sees, over planner, applier and rollout.

One :class:`EcsClient` per region is opened lazily and kept for the life of
the backend, so task definitions cached by ARN stay cached across passes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Self

import anyio
import structlog

from gitopsd.backends.base import ApplyResult, Journal, OnProgress, PrunePlan, RolloutStatus
from gitopsd.backends.ecs import history as ecs_history
from gitopsd.backends.ecs.applier import apply_changeset
from gitopsd.backends.ecs.client import EcsClient, retry_budget
from gitopsd.backends.ecs.planner import plan_app, td_family
from gitopsd.backends.ecs.prune import plan_prune, prune
from gitopsd.backends.ecs.rollout import Progress, Target, watch_rollouts
from gitopsd.backends.ecs.schema import ecs_schema
from gitopsd.config import AppConfig, AwsConfig
from gitopsd.manifests.schema import Schema
from gitopsd.model import Action, ChangeSet, Resource, Revision
from gitopsd.state import StateDir

log = structlog.get_logger(__name__)


class EcsBackend:
    """Deploys task definitions and services to Amazon ECS."""

    def __init__(
        self,
        aws: AwsConfig,
        state: StateDir,
        *,
        poll_interval: float = 5.0,
        progress: Progress | None = None,
    ) -> None:
        self.aws = aws
        self.state = state
        self.poll_interval = poll_interval
        self.progress = progress
        self._clients: dict[str, EcsClient] = {}
        self._stack = AsyncExitStack()
        self._lock = anyio.Lock()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        with anyio.CancelScope(shield=True):
            await self._stack.aclose()

    async def client(self, app: AppConfig) -> EcsClient:
        region = app.region or self.aws.region or ""
        async with self._lock:
            if region not in self._clients:
                self._clients[region] = await self._stack.enter_async_context(
                    EcsClient(self.aws, region or None)
                )
            return self._clients[region]

    @property
    def schema(self) -> Schema:
        return ecs_schema()

    async def plan(
        self, app: AppConfig, resources: Sequence[Resource], revision: Revision | None
    ) -> ChangeSet:
        client = await self.client(app)
        return await plan_app(client, app, resources, revision)

    async def apply(
        self, app: AppConfig, changeset: ChangeSet, journal: Journal | None = None
    ) -> ApplyResult:
        client = await self.client(app)
        return await apply_changeset(client, app, changeset, journal, grace=retry_budget(self.aws))

    async def verify(
        self,
        app: AppConfig,
        changeset: ChangeSet,
        result: ApplyResult,
        timeout: float,
        *,
        on_progress: OnProgress | None = None,
    ) -> Sequence[RolloutStatus]:
        client = await self.client(app)
        record = self.state.last_good(app.name)
        targets = rollout_targets(changeset, result)
        statuses = await watch_rollouts(
            client,
            app,
            targets,
            timeout=timeout,
            poll_interval=self.poll_interval,
            last_good=record,
            progress=self.progress,
            on_progress=on_progress,
        )
        watched = {t.service for t in targets}
        steady = {
            rc.name: str(rc.details["deployment_td"])
            for rc in changeset.resources
            if rc.kind == "Service"
            and rc.name not in watched
            and rc.health is not None
            and rc.health.settled
            and rc.details.get("td_in_sync")
        }
        if steady:  # steady on what Git asks for: a good rollback target for later passes
            try:
                await record.aupdate(**steady)
            except OSError as exc:  # a hint for rollbacks only: never fail a sync over it
                log.warning("state.write_failed", path=str(record.path), error=str(exc))
        return statuses

    async def plan_prune(self, app: AppConfig, resources: Sequence[Resource]) -> PrunePlan:
        """Services and task-definition revisions tagged for ``app`` and no longer declared
        (see :mod:`gitopsd.backends.ecs.prune`); the families of the app's last-good record
        are looked at too. Read-only."""
        client = await self.client(app)
        record = await self.state.last_good(app.name).aload()
        known = sorted({td_family(str(arn)) for arn in record.values() if arn})
        return await plan_prune(client, app, resources, known_families=known)

    async def prune(
        self, app: AppConfig, plan: PrunePlan, journal: Journal | None = None
    ) -> ApplyResult:
        """Delete the plan's services and deregister its revisions (see
        :mod:`gitopsd.backends.ecs.prune`); deleted services leave the last-good record."""
        client = await self.client(app)
        return await prune(
            client,
            app,
            plan,
            journal,
            grace=retry_budget(self.aws),
            last_good=self.state.last_good(app.name),
        )

    async def history(
        self, app: AppConfig, services: Sequence[str], *, limit: int = 20
    ) -> list[ecs_history.HistoryEntry]:
        """The app's deployments as ECS keeps them, newest first (up to ``limit`` per service)."""
        client = await self.client(app)
        return await ecs_history.app_history(client, app, services, limit=limit)

    async def rollback_targets(
        self, app: AppConfig, services: Sequence[str], commit: str | None
    ) -> tuple[str, dict[str, str]]:
        """The commit to roll back to (``commit``, a prefix of it, or else the last one whose
        deployments all completed), in full, and service name -> task-definition ARN for it.
        Raises ``PlanError`` when there is none."""
        client = await self.client(app)
        return await ecs_history.rollback_targets(client, app, services, commit)


def rollout_targets(changeset: ChangeSet, result: ApplyResult) -> list[Target]:
    """What verify follows: the rollouts apply started, and those the plan found unsettled.

    A service the plan found rolling out or failed (an interrupted run's rollout,
    or one a human started) and that apply did not touch is followed from the
    deployment it is in, so a rerun never calls a failing service in sync.
    """
    targets = {a.key: Target.of(a) for a in result.applied if a.rollout}
    for rc in changeset.unsettled:
        if rc.kind != "Service" or rc.key in targets or rc.action is Action.CREATE:
            continue
        if any(a.key == rc.key for a in result.applied):
            continue  # written without a new deployment: its rollout is the one found
        td = str(rc.details.get("deployment_td", ""))
        targets[rc.key] = Target(
            service=rc.name,
            key=rc.key,
            td_arn=td,
            deployment_id=str(rc.details.get("deployment", "")),
            service_deployment=str(rc.details.get("service_deployment", "")),
            since=float(rc.details.get("deployment_created") or 0.0),
            adopted=True,
            desired=bool(rc.details.get("td_in_sync")),
        )
    return list(targets.values())


async def roll_back_to(
    backend: EcsBackend, app: AppConfig, targets: dict[str, str], timeout: float
) -> list[RolloutStatus]:
    """Point each service at its task definition (``gitopsd rollback``) and follow the rollouts."""
    client = await backend.client(app)
    started: list[Target] = []
    for service, td in sorted(targets.items()):
        at = time.time()
        svc = await client.update_service(
            {"cluster": app.cluster, "service": service, "taskDefinition": td}
        )
        primary: dict[str, object] = next(
            (d for d in svc.get("deployments", []) if d.get("status") == "PRIMARY"), {}
        )
        started.append(
            Target(
                service=service,
                key=f"Service/{service}",
                td_arn=td,
                deployment_id=str(primary.get("id", "")),
                service_deployment=str(svc.get("currentServiceDeployment") or ""),
                since=at,
                desired=False,  # not what Git asks for: never recorded as last good
            )
        )
    return await watch_rollouts(
        client,
        app,
        started,
        timeout=timeout,
        poll_interval=backend.poll_interval,
        last_good=backend.state.last_good(app.name),
        progress=backend.progress,
        roll_back=False,  # the user chose this revision: report, never undo it
    )
