"""One reconcile pass: source -> render -> plan -> apply -> verify -> notify.

Each app goes through the stages on its own; a failure in one app (a broken
manifest, a throttled API) ends that app's pass with the failing stage as the
reason and leaves the other apps to go on. Apps run concurrently in one
anyio task group, bounded so a large config does not burst the AWS API.

A sync holds the app's cross-process lock (:class:`~gitopsd.state.AppLock`)
from plan to verify, so two gitopsd processes never interleave writes to one
app, and every record of the app is written under it. Read-only passes
(validate, diff, sync --dry-run) take no lock and write no record.

Render results are cached by the content of what they read (see
:class:`~gitopsd.manifests.render.RenderCache`), so the agent's passes parse
only the apps a commit changed.

Verify runs on every sync, also when there is nothing to change: a rollout
that an interrupted run left running, or that failed meanwhile, is followed
and judged (and rolled back when the policy says so); a pass never calls an
app in sync while its rollout is failing.

The source stage also guards history: a commit that does not descend from
the app's last applied commit (a force-push, a branch reset) is reported, and
refused when the source sets ``allow_history_rewrite = false``.

While verify watches a rollout, each stage change the backend reports is
published at once as one ``rollout_progressed`` event (not at the end of the
pass) and handed to :attr:`Reconciler.on_rollout` (the agent's status).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import replace
from functools import partial

import anyio
import structlog

from gitopsd.backends.base import ApplyResult, Backend, RolloutProgress, RolloutStatus
from gitopsd.config import AppConfig, Config
from gitopsd.engine.announce import commit_link, events_from_outcome
from gitopsd.engine.approvals import Approvals
from gitopsd.engine.journal import AppJournal, Listener, RunJournal
from gitopsd.engine.outcome import Outcome, Stage
from gitopsd.engine.passtrace import PassTrace
from gitopsd.engine.sources import SourceSet
from gitopsd.errors import (
    AppLocked,
    ApplyError,
    GitopsdError,
    HistoryRewritten,
    RolloutFailed,
    RolloutUnfinished,
    TemporaryError,
    leaf_error,
)
from gitopsd.events import RECONCILE_STARTED, ROLLOUT_PROGRESSED, Event, EventSink, Severity
from gitopsd.manifests.render import RenderCache, render_app
from gitopsd.model import Resource, Revision
from gitopsd.plugins import ApproverEntry
from gitopsd.state import StateDir
from gitopsd.statestore import APPLIED, StateStore, StateStoreError, update
from gitopsd.statestore.dirstore import DirStore

log = structlog.get_logger(__name__)


class Mode(enum.StrEnum):
    RENDER = "render"  # source + render (validate, render)
    PLAN = "plan"  # ... + plan (diff, sync --dry-run)
    SYNC = "sync"  # ... + apply + verify


class Reconciler:
    """Runs passes over a configuration's apps with one backend."""

    def __init__(
        self,
        config: Config,
        backend: Backend,
        sources: SourceSet,
        *,
        events: EventSink | None = None,
        wait: bool | None = None,
        max_parallel_apps: int = 4,
        listener: Listener | None = None,
        confirm_prune: bool = False,
        store: StateStore | None = None,
        approvers: Sequence[ApproverEntry] = (),
    ) -> None:
        self.config = config
        self.backend = backend
        self.sources = sources
        #: Where a sync's events go (the plugin event bus); None: nowhere.
        self.events = events
        self.wait = wait
        self.state = StateDir(config.daemon.state_dir)
        #: Where the last applied commit is kept (docs/state.md).
        self.store = store or DirStore(config.daemon.state_dir / "store")
        self.journal = RunJournal(listener)
        self.listener = listener
        self.confirm_prune = confirm_prune
        #: Set on shutdown: passes finish their apply but do not wait for rollouts (the
        #: next start follows them: verify adopts unsettled services).
        self.stopping = False
        #: Apps whose pass a newer commit superseded during apply: their verify is skipped
        #: (the next pass follows the newer rollout).
        self.superseded: set[str] = set()
        self._apps_limit = anyio.CapacityLimiter(max_parallel_apps)
        #: Renders are CPU-bound (the GIL runs one at a time anyway) and read their source
        #: under its lock: the apps of one source render one at a time, so the first app
        #: rendered starts its API calls while the next renders, instead of every app's
        #: render finishing last and together. By source name.
        self._render_limits: dict[str, anyio.CapacityLimiter] = {}
        #: Hears each rollout stage change, with the app's name (the agent's status); must
        #: return at once.
        self.on_rollout: Callable[[str, RolloutProgress], None] | None = None
        #: Apps rendered by earlier passes: one whose files, config and vars did not change
        #: is not parsed again.
        self.render_cache = RenderCache(max_entries=max(64, 2 * len(config.apps)))
        #: Decisions on paused hooks: announced from rollout progress, approver plugins
        #: consulted during verify (gitopsd.engine.approvals).
        self.approvals = Approvals(config, backend, self.store, events=events, approvers=approvers)

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

    async def reconcile(
        self,
        app: AppConfig,
        mode: Mode,
        *,
        baseline: Sequence[Resource] | None = None,
        limiter: anyio.CapacityLimiter | None = None,
        revision: Revision | None = None,
    ) -> Outcome:
        """One pass of one app.

        ``revision``: the commit to reconcile (the agent pins the one it decided on);
        None: the source's current one.

        ``baseline``: the resources last applied; a sync whose rendered resources
        equal them stops after render (the commit did not touch the app).
        ``limiter``: held from render to the end of apply, released for verify, so a
        long rollout does not hold a slot other apps need.
        """
        journal = AppJournal(app.name, self.listener)
        self.journal.apps[app.name] = journal
        with PassTrace(app.name, str(mode), journal) as track:
            if mode is Mode.SYNC:
                self._publish(
                    Event(
                        RECONCILE_STARTED,
                        app.name,
                        revision.commit if revision else "",
                        "sync started",
                        stage=str(Stage.SOURCE),
                        source=app.source,
                    )
                )
            outcome = await self._stages(app, mode, journal, track, baseline, limiter, revision)
            journal.done = True
            if mode is Mode.SYNC:
                track.enter(Stage.NOTIFY)
                self._announce(app, outcome)
            track.finish(outcome)
            log.info(
                "reconcile.done",
                mode=str(mode),
                reason=outcome.reason,
                duration=round(time.monotonic() - track.started, 3),
            )
        return outcome

    def _warn(self, app: str, outcome: Outcome, message: str) -> Outcome:
        log.warning("reconcile.warning", app=app, message=message)
        if self.listener is not None:
            self.listener.warned(app, message)
        return replace(outcome, warnings=(*outcome.warnings, message))

    async def _stages(
        self,
        app: AppConfig,
        mode: Mode,
        journal: AppJournal,
        track: PassTrace,
        baseline: Sequence[Resource] | None,
        limiter: anyio.CapacityLimiter | None,
        pinned: Revision | None = None,
    ) -> Outcome:
        """Run the stages in order; the first failure ends the pass with its stage."""
        outcome = Outcome(app=app.name)
        stage = Stage.SOURCE
        async with AsyncExitStack() as held:
            slot = AsyncExitStack()
            held.push_async_callback(slot.aclose)
            if limiter is not None:
                await slot.enter_async_context(limiter)
            try:
                track.enter(stage)
                revision = pinned or await self.sources.revision(app.source)
                journal.revision = revision
                track.revision(revision)
                outcome = replace(outcome, revision=revision)
                if revision.stale:
                    outcome = self._warn(app.name, outcome, revision.stale)

                stage = track.enter(Stage.RENDER)
                reader = self.sources.reader(app.source, revision.commit)
                schema = self.backend.schema
                resources = await anyio.to_thread.run_sync(
                    partial(
                        render_app,
                        max_file_size=self.config.manifests.max_file_size,
                        secret_env_names=self.config.manifests.secret_env_names,
                        cache=self.render_cache,
                    ),
                    reader,
                    app,
                    schema,
                    limiter=self._render_limits.setdefault(app.source, anyio.CapacityLimiter(1)),
                )
                outcome = replace(outcome, resources=tuple(resources))
                if mode is Mode.RENDER:
                    return outcome
                if baseline is not None and tuple(resources) == tuple(baseline):
                    return replace(outcome, unchanged=True)

                if mode is Mode.SYNC:
                    stage = journal.stage = Stage.APPLY  # a busy lock fails the apply
                    lock = self.state.lock(app.name)
                    await lock.acquire(self.config.daemon.lock_timeout)
                    held.push_async_exit(lock)

                stage = track.enter(Stage.SOURCE)
                warning = await self._check_history(app, revision, mode)
                if warning:
                    outcome = self._warn(app.name, outcome, warning)

                stage = track.enter(Stage.PLAN)
                changeset = await self.backend.plan(app, resources, revision)
                outcome = replace(outcome, changeset=changeset)
                if app.sync.prune:
                    prune = await self.backend.plan_prune(app, resources)
                    hold = prune.share > app.sync.prune_max_share and not self.confirm_prune
                    outcome = replace(outcome, prune=prune, prune_held=hold and not prune.empty)
                    if outcome.prune_held:
                        outcome = self._warn(
                            app.name,
                            outcome,
                            f"prune would remove {len(prune.counted)} of {prune.owned} services "
                            f"(more than sync.prune_max_share = {app.sync.prune_max_share:g}): "
                            f"run `gitopsd sync {app.name} --confirm-prune` to remove them",
                        )
                if mode is Mode.PLAN:
                    return outcome
                if self.listener is not None and (changeset.pending or outcome.prune):
                    self.listener.planned(outcome)

                stage = track.enter(Stage.APPLY)
                wait = app.sync.wait if self.wait is None else self.wait
                applied = ApplyResult(app=app.name)
                if changeset.pending:
                    try:
                        applied = await self.backend.apply(app, changeset, journal)
                    except ApplyError as exc:
                        # Part was written before the failure: report it, and watch what
                        # it started.
                        written = exc.partial
                        if isinstance(written, ApplyResult):
                            outcome = replace(outcome, applied=written)
                            if wait and any(a.rollout for a in written.applied):
                                stage = track.enter(Stage.VERIFY)
                                rollouts = await self.backend.verify(
                                    app,
                                    changeset,
                                    written,
                                    app.sync.timeout,
                                    on_progress=partial(self._progressed, app, revision),
                                )
                                outcome = replace(outcome, rollouts=tuple(rollouts))
                                stage = Stage.APPLY
                        raise
                    outcome = replace(outcome, applied=applied)
                if outcome.prune is not None and not outcome.prune.empty and not outcome.prune_held:
                    try:
                        pruned = await self.backend.prune(app, outcome.prune, journal)
                    except ApplyError as exc:
                        if isinstance(exc.partial, ApplyResult):
                            outcome = replace(outcome, pruned=exc.partial)
                        raise
                    outcome = replace(outcome, pruned=pruned)
                await self._record_applied(app, revision)
                if not wait:
                    return outcome
                if self.stopping:
                    return self._warn(app.name, outcome, "shutting down: rollouts not verified")
                if app.name in self.superseded:
                    return self._warn(app.name, outcome, "a newer commit arrived: not verified")

                await slot.aclose()  # a rollout wait holds no slot
                stage = track.enter(Stage.VERIFY)
                async with self.approvals.consulting(app, resources):
                    rollouts = await self.backend.verify(
                        app,
                        changeset,
                        applied,
                        app.sync.timeout,
                        on_progress=partial(self._progressed, app, revision),
                    )
                outcome = replace(outcome, rollouts=tuple(rollouts))
                _raise_for(rollouts)
                return outcome
            except Exception as exc:
                failed = self._failed(app, outcome, stage, exc)
                assert failed.failed_stage is not None
                track.failed(failed.failed_stage, failed.message, leaf_error(exc))
                return failed

    async def _check_history(self, app: AppConfig, revision: Revision, mode: Mode) -> str:
        """A warning when ``revision`` does not descend from the app's last applied commit."""
        record = await self._applied(app.name)
        last = record.get("commit")
        if not isinstance(last, str) or record.get("source") != app.source:
            return ""
        if last == revision.commit or revision.commit == "worktree":
            return ""
        descends = await self.sources.is_ancestor(app.source, last, revision.commit)
        if descends:
            return ""
        why = "is not in the fetched history" if descends is None else "is not an ancestor of it"
        text = (
            f"history rewritten: commit {revision.commit[:12]} of {revision.ref} does not "
            f"descend from the last applied commit {last[:12]} (it {why}); a force-push or a "
            "branch reset?"
        )
        source = self.config.source(app.source)
        if not source.allow_history_rewrite and mode is Mode.SYNC:
            raise HistoryRewritten(
                f"{text} Refused: sources[{source.name}].allow_history_rewrite is false. Push a "
                f"commit on top of {last[:12]}, or set allow_history_rewrite = true to follow it."
            )
        return text

    async def _applied(self, app: str) -> dict[str, object]:
        """The app's last applied commit: ``{"source", "commit", "at"}`` (``{}``: none known).

        A store that cannot be read is a warning, not a failed pass (the check is a guard;
        a failed read never blocks a deploy). A record left by an older gitopsd in the
        state directory is used when the store has none."""
        try:
            entry = await self.store.get(APPLIED, app)
        except StateStoreError as exc:
            log.warning("state.read_failed", app=app, error=str(exc))
            return {}
        if entry is not None:
            return entry.value
        return await self.state.applied(app).aload()

    async def _record_applied(self, app: AppConfig, revision: Revision) -> None:
        """Remember the commit applied, when it changed (not on every pass)."""
        if revision.commit == "worktree":
            return
        new = {"source": app.source, "commit": revision.commit}

        def change(old: dict[str, object]) -> dict[str, object] | None:
            if all(old.get(k) == v for k, v in new.items()):
                return None
            return {**new, "at": time.time()}

        try:
            await update(self.store, APPLIED, app.name, change)
        except StateStoreError as exc:
            log.warning("state.write_failed", app=app.name, error=str(exc))

    def _failed(self, app: AppConfig, outcome: Outcome, stage: Stage, exc: Exception) -> Outcome:
        error = leaf_error(exc)
        if isinstance(error, GitopsdError):
            message = str(error)
        else:
            log.error("reconcile.internal_error", app=app.name, stage=str(stage), exc_info=error)
            message = f"internal error: {type(error).__name__}: {error}"
        if isinstance(error, AppLocked):
            stage = Stage.APPLY
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

    def _publish(self, event: Event) -> None:
        if self.events is not None:
            try:
                self.events.publish(event)
            except Exception:  # an EventSink must not raise; if one does, the pass goes on
                log.exception("notify.failed", kind=event.kind)

    def _progressed(self, app: AppConfig, revision: Revision, progress: RolloutProgress) -> None:
        """A watched rollout changed stage: one ``rollout_progressed`` event, now."""
        if self.on_rollout is not None:
            try:
                self.on_rollout(app.name, progress)
            except Exception:  # a listener must not raise; if one does, the pass goes on
                log.exception("reconcile.rollout_listener_failed", app=app.name)
        try:
            self.approvals.observe(app, revision.commit, progress)  # approval_needed, once
        except Exception:
            log.exception("reconcile.approvals_failed", app=app.name)
        self._publish(
            Event(
                ROLLOUT_PROGRESSED,
                app.name,
                revision.commit,
                progress.message,
                Severity.INFO,
                "RolloutProgressed",
                at=progress.at,
                fields=(progress.key,),
                deployment=progress.deployment,
                stage=str(Stage.VERIFY),
                link=commit_link(self.config.source(app.source).url, revision.commit),
                source=app.source,
                progress=progress,
            )
        )

    def _announce(self, app: AppConfig, outcome: Outcome) -> None:
        """The notify stage: the pass's events, with the commit's message and web page."""
        if self.events is None:
            return
        commit = outcome.revision.commit if outcome.revision else ""
        message = ""
        if commit:
            try:
                message = self.sources.commit_message(app.source, commit).strip().splitlines()[0]
            except (GitopsdError, IndexError, OSError):
                message = ""
        url = self.config.source(app.source).url
        for event in events_from_outcome(
            outcome, commit_message=message, link=commit_link(url, commit)
        ):
            self._publish(event)


def _raise_for(rollouts: Sequence[RolloutStatus]) -> None:
    failed = [r for r in rollouts if not r.ok]
    if not failed:
        return
    text = "; ".join(f"{r.key}: {r.state}: {r.message}" for r in failed)
    if all(r.temporary for r in failed):
        raise RolloutUnfinished(text)
    raise RolloutFailed(text)
