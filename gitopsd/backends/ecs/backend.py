"""The Amazon ECS backend: the protocol the engine sees, over planner, applier and rollout.

One :class:`EcsClient` per region is opened lazily and kept for the life of
the backend, so task definitions cached by ARN stay cached across passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Self

import anyio

from gitopsd.backends.base import ApplyResult, Journal, RolloutStatus
from gitopsd.backends.ecs.applier import apply_changeset
from gitopsd.backends.ecs.client import EcsClient
from gitopsd.backends.ecs.planner import plan_app
from gitopsd.backends.ecs.rollout import Progress, Target, watch_rollouts
from gitopsd.backends.ecs.schema import ecs_schema
from gitopsd.config import AppConfig, AwsConfig
from gitopsd.manifests.schema import Schema
from gitopsd.model import Action, ChangeSet, Resource, Revision
from gitopsd.state import StateDir


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
        return await apply_changeset(
            client, app, changeset, journal, grace=self.aws.call_timeout * self.aws.max_attempts
        )

    async def verify(
        self, app: AppConfig, changeset: ChangeSet, result: ApplyResult, timeout: float
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
            await record.aupdate(**steady)
        return statuses


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
