"""One reconcile pass: source -> render -> plan -> apply -> verify -> notify.

Each app goes through the stages on its own; a failure in one app (a broken
manifest, a throttled API) ends that app's pass with the failing stage as the
reason and leaves the other apps to go on. Apps run concurrently in one
anyio task group, bounded so a large config does not burst the AWS API.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

import anyio
import structlog

from gitopsd.backends.base import ApplyResult, Backend
from gitopsd.config import AppConfig, Config
from gitopsd.engine.outcome import Outcome, Stage
from gitopsd.engine.sources import SourceSet
from gitopsd.errors import (
    ApplyError,
    GitopsdError,
    RolloutFailed,
    TemporaryError,
    leaf_error,
)
from gitopsd.manifests.render import render_app

log = structlog.get_logger(__name__)


class Mode(enum.StrEnum):
    RENDER = "render"  # source + render (validate, render)
    PLAN = "plan"  # ... + plan (diff, sync --dry-run)
    SYNC = "sync"  # ... + apply + verify


class Notifier(Protocol):
    """Receives every finished pass; alerting plugins implement this."""

    def notify(self, outcome: Outcome) -> None: ...


class Reconciler:
    """Runs passes over a configuration's apps with one backend."""

    def __init__(
        self,
        config: Config,
        backend: Backend,
        sources: SourceSet,
        *,
        notifiers: Sequence[Notifier] = (),
        wait: bool | None = None,
        max_parallel_apps: int = 4,
    ) -> None:
        self.config = config
        self.backend = backend
        self.sources = sources
        self.notifiers = list(notifiers)
        self.wait = wait
        self._apps_limit = anyio.CapacityLimiter(max_parallel_apps)

    async def run(self, apps: Sequence[AppConfig], mode: Mode) -> list[Outcome]:
        """One pass over ``apps``; outcomes in the order of ``apps``."""
        self.sources.new_pass()
        results: dict[str, Outcome] = {}

        async def one(app: AppConfig) -> None:
            async with self._apps_limit:
                results[app.name] = await self.reconcile(app, mode)

        async with anyio.create_task_group() as tg:
            for app in apps:
                tg.start_soon(one, app)
        return [results[a.name] for a in apps]

    async def reconcile(self, app: AppConfig, mode: Mode) -> Outcome:
        started = time.monotonic()
        outcome = await self._stages(app, mode)
        log.info(
            "reconcile.done",
            app=app.name,
            mode=str(mode),
            reason=outcome.reason,
            revision=outcome.revision.commit if outcome.revision else None,
            duration=round(time.monotonic() - started, 3),
        )
        if mode is Mode.SYNC:
            self._notify(outcome)
        return outcome

    async def _stages(self, app: AppConfig, mode: Mode) -> Outcome:
        """Run the stages in order; the first failure ends the pass with its stage."""
        outcome = Outcome(app=app.name)
        stage = Stage.SOURCE
        try:
            revision = await self.sources.revision(app.source)
            outcome = replace(outcome, revision=revision)

            stage = Stage.RENDER
            reader = self.sources.reader(app.source, revision.commit)
            schema = self.backend.schema
            resources = await anyio.to_thread.run_sync(render_app, reader, app, schema)
            outcome = replace(outcome, resources=tuple(resources))
            if mode is Mode.RENDER:
                return outcome

            stage = Stage.PLAN
            changeset = await self.backend.plan(app, resources, revision)
            outcome = replace(outcome, changeset=changeset)
            if mode is Mode.PLAN or changeset.in_sync:
                return outcome

            stage = Stage.APPLY
            wait = app.sync.wait if self.wait is None else self.wait
            try:
                applied = await self.backend.apply(app, changeset)
            except ApplyError as exc:
                # Part was written before the failure: report it, and watch what it started.
                partial = exc.partial
                if isinstance(partial, ApplyResult):
                    outcome = replace(outcome, applied=partial)
                    if wait and any(a.rollout for a in partial.applied):
                        rollouts = await self.backend.verify(app, partial, app.sync.timeout)
                        outcome = replace(outcome, rollouts=tuple(rollouts))
                raise
            outcome = replace(outcome, applied=applied)
            if not wait:
                return outcome

            stage = Stage.VERIFY
            rollouts = await self.backend.verify(app, applied, app.sync.timeout)
            outcome = replace(outcome, rollouts=tuple(rollouts))
            failed = [r for r in rollouts if not r.ok]
            if failed:
                raise RolloutFailed("; ".join(f"{r.key}: {r.message}" for r in failed))
            return outcome
        except Exception as exc:
            error = leaf_error(exc)
            if isinstance(error, GitopsdError):
                message = str(error)
            else:
                log.error(
                    "reconcile.internal_error", app=app.name, stage=str(stage), exc_info=error
                )
                message = f"internal error: {type(error).__name__}: {error}"
            return replace(
                outcome,
                failed_stage=stage,
                message=message,
                temporary=(
                    error.temporary
                    if isinstance(error, ApplyError)
                    else isinstance(error, TemporaryError)
                ),
            )

    def _notify(self, outcome: Outcome) -> None:
        for notifier in self.notifiers:
            try:
                notifier.notify(outcome)
            except Exception:
                log.exception("notify.failed", app=outcome.app, notifier=type(notifier).__name__)
