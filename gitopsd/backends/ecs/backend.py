"""The Amazon ECS backend: the protocol the engine sees, over planner, applier and rollout.

One :class:`EcsClient` per region is opened lazily and kept for the life of
the backend, so task definitions cached by ARN stay cached across passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Self

import anyio

from gitopsd.backends.base import ApplyResult, RolloutStatus
from gitopsd.backends.ecs.applier import apply_changeset
from gitopsd.backends.ecs.client import EcsClient
from gitopsd.backends.ecs.planner import plan_app
from gitopsd.backends.ecs.rollout import Progress, watch_rollouts
from gitopsd.backends.ecs.schema import ecs_schema
from gitopsd.config import AppConfig, AwsConfig
from gitopsd.manifests.schema import Schema
from gitopsd.model import ChangeSet, Resource, Revision
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
        return await plan_app(client, app, resources, revision, self.state.last_good(app.name))

    async def apply(self, app: AppConfig, changeset: ChangeSet) -> ApplyResult:
        client = await self.client(app)
        return await apply_changeset(client, app, changeset)

    async def verify(
        self, app: AppConfig, result: ApplyResult, timeout: float
    ) -> Sequence[RolloutStatus]:
        client = await self.client(app)
        return await watch_rollouts(
            client,
            app,
            result.applied,
            timeout=timeout,
            poll_interval=self.poll_interval,
            last_good=self.state.last_good(app.name),
            progress=self.progress,
        )
