"""The Amazon ECS backend: the protocol the engine sees, over planner, applier and rollout.

One :class:`EcsClient` per region is opened lazily and kept for the life of
the backend. Task definitions are cached by ARN for the whole process and
persisted under the state directory when the backend closes
(:mod:`gitopsd.backends.ecs.tdcache`), so the next one-shot run starts warm.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Self

import anyio
import anyio.to_thread
import structlog

from gitopsd.backends.base import (
    ApplyResult,
    Journal,
    OnProgress,
    PausedHook,
    PrunePlan,
    RolloutStatus,
)
from gitopsd.backends.ecs import history as ecs_history
from gitopsd.backends.ecs import pause as ecs_pause
from gitopsd.backends.ecs.accounts import Accounts, Identity, identity_of
from gitopsd.backends.ecs.alarm_checks import check_alarms
from gitopsd.backends.ecs.applier import apply_changeset
from gitopsd.backends.ecs.client import EcsClient, retry_budget
from gitopsd.backends.ecs.guardrails import (
    account_problem,
    app_region,
    guardrails,
    target_problems,
)
from gitopsd.backends.ecs.planner import plan_app, td_family
from gitopsd.backends.ecs.prune import plan_prune, prune
from gitopsd.backends.ecs.rollout import Progress, Target, watch_rollouts
from gitopsd.backends.ecs.schema import ecs_schema
from gitopsd.backends.ecs.secret_refs import check_references
from gitopsd.backends.ecs.tdcache import cache_file, namespace_of, shared_cache
from gitopsd.config import AppConfig, AwsConfig, GateConfig
from gitopsd.errors import PlanError
from gitopsd.gates import Gate, GatePlugins, build_gates
from gitopsd.gates.cloudwatch import CloudWatchGate
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
        gate_plugins: GatePlugins | None = None,
    ) -> None:
        self.aws = aws
        #: Resolves gate types other than ``cloudwatch`` (the plugins' ``gitopsd_gate``).
        self.gate_plugins = gate_plugins
        self._gates: dict[str, list[tuple[GateConfig, Gate]]] = {}
        self.state = state
        self.poll_interval = poll_interval
        self.progress = progress
        #: One client per identity (gitopsd's own or an assumed role) and region.
        self._clients: dict[tuple[Identity, str], EcsClient] = {}
        self.accounts = Accounts(aws)
        self._stack = AsyncExitStack()
        self._lock = anyio.Lock()
        namespace = namespace_of(aws.endpoint_url)
        self.td_cache = shared_cache(namespace, cache_file(state.root, namespace))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        with anyio.CancelScope(shield=True):
            await self._stack.aclose()
            await anyio.to_thread.run_sync(self.td_cache.save)

    async def client(self, app: AppConfig) -> EcsClient:
        region = app.region or self.aws.region or ""
        key = (identity_of(app), region)
        async with self._lock:
            if key not in self._clients:
                session = self.accounts.session(app)
                self._clients[key] = await self._stack.enter_async_context(
                    EcsClient(self.aws, region or None, session=session, td_cache=self.td_cache)
                )
            return self._clients[key]

    async def preflight(self, app: AppConfig) -> str | None:
        """Refuse (``PlanError``) an app whose cluster, region or account is outside its
        guard-rails; runs before the plan and before every write. Returns the account when
        a rule needed it (``sts:GetCallerIdentity`` is asked only then, once per identity)."""
        session = self.accounts.session(app)
        region = app_region(app) or session.get_config_variable("region")
        found = target_problems(app, region)
        if found:
            lines = "\n  ".join(f"{key}: {message}" for key, message in found)
            raise PlanError(
                f"app {app.name!r} is outside its guard-rails; nothing was written:\n  {lines}"
            )
        if not guardrails(app).accounts:
            return None
        account = await self.accounts.account(app, region)
        problem = account_problem(app, account)
        if problem:
            raise PlanError(problem)
        return account

    def gates(self, app: AppConfig) -> list[tuple[GateConfig, Gate]]:
        """The app's metric gates, built once (``PermanentError`` for an unknown type)."""
        if app.name not in self._gates:
            session = self.accounts.session(app)
            self._gates[app.name] = build_gates(
                app,
                cloudwatch=lambda c: CloudWatchGate(c, session, self.aws, app_region(app)),
                plugins=self.gate_plugins,
            )
        return self._gates[app.name]

    @property
    def schema(self) -> Schema:
        return ecs_schema()

    async def plan(
        self, app: AppConfig, resources: Sequence[Resource], revision: Revision | None
    ) -> ChangeSet:
        account = await self.preflight(app)
        self.gates(app)  # a gate type no plugin provides stops the pass before any write
        client = await self.client(app)
        changeset = await plan_app(client, app, resources, revision)
        if changeset.pending:  # deployment alarms named by services about to be written
            region = app_region(app) or self.accounts.session(app).get_config_variable("region")
            await check_alarms(self.accounts.session(app), self.aws, changeset, region=region)
        if guardrails(app).check_secret_refs and changeset.pending:
            region = app_region(app) or self.accounts.session(app).get_config_variable("region")
            account = account or await self.accounts.account(app, region)
            await check_references(
                self.accounts.session(app), self.aws, changeset, region=region, account=account
            )
        return changeset

    async def apply(
        self, app: AppConfig, changeset: ChangeSet, journal: Journal | None = None
    ) -> ApplyResult:
        await self.preflight(app)
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
            gates=self.gates(app),
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
        await self.preflight(app)
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

    async def paused_hooks(self, app: AppConfig, resources: Sequence[Resource]) -> list[PausedHook]:
        """The PAUSE hooks awaiting action in the app's services (:mod:`.pause`)."""
        client = await self.client(app)
        services = [r.name for r in resources if r.kind == "Service"]
        return await ecs_pause.paused_hooks(client, app, services)

    async def continue_deployment(
        self, app: AppConfig, deployment: str, hook_id: str, action: str
    ) -> None:
        """ContinueServiceDeployment (CONTINUE or ROLLBACK) on a paused hook."""
        await self.preflight(app)
        client = await self.client(app)
        await ecs_pause.continue_service_deployment(client, deployment, hook_id, action)

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
    await backend.preflight(app)
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
