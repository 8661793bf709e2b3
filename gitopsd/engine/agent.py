"""The agent behind ``gitopsd run``: one task per source, one task per app, each on its own clock.

Sources are polled once per interval (jittered) and at once when a webhook
triggers them; the apps reading a source share one fetch. A new commit wakes
the apps it affects: an app whose rendered resources did not change is not
re-planned, and a newer commit cancels the rollout wait of an older one. Each
app then runs the same reconcile pass as ``gitopsd sync`` (source, render,
plan, apply, verify, notify), at most one at a time per app, apps in parallel
up to ``[daemon].max_parallel_apps`` (a rollout wait holds no slot, so a long
rollout never delays other apps).

Between commits an app's interval is a drift check: ``drift = "warn"`` plans
and reports what differs; ``"heal"`` applies it again, backing off when
another writer keeps changing it back (a fight is reported, not fought).
Failures requeue by kind (see :mod:`gitopsd.engine.schedule`): a temporary one
backs off, a permanent one stalls the app until Git moves; a commit whose
rollout failed is not redeployed every interval, only when Git moves or on
``gitopsd reconcile APP --force``. The old version keeps running meanwhile.

``shutdown`` stops scheduling, cancels rollout waits at once (the next start
follows them again: verify adopts an unsettled service), lets in-flight
applies finish within the grace period, and returns.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import anyio.abc
import structlog

from gitopsd.backends.base import Backend
from gitopsd.config import AppConfig, Config
from gitopsd.engine.announce import changes_of, commit_link
from gitopsd.engine.approvals import NothingAwaitsApproval, declared_resources
from gitopsd.engine.outcome import Outcome, Stage
from gitopsd.engine.reconcile import Mode, Reconciler
from gitopsd.engine.schedule import Next, Scheduler, backoff
from gitopsd.engine.sources import SourceSet
from gitopsd.engine.status import FALSE, TRUE, UNKNOWN, AppStatus, Condition
from gitopsd.errors import GitopsdError, SignatureRejected, TemporaryError
from gitopsd.events import (
    CONDITION_CHANGED,
    DRIFT_DETECTED,
    DRIFT_HEALED,
    ERROR,
    RECOVERED,
    Event,
    EventSink,
    Severity,
)
from gitopsd.model import Resource, Revision
from gitopsd.plugins import ApproverEntry
from gitopsd.state import JsonRecord, StateDir
from gitopsd.statestore import AGENT, StateStore, StateStoreError, update
from gitopsd.statestore.dirstore import DirStore
from gitopsd.telemetry import instruments as ins

log = structlog.get_logger(__name__)

#: The agent is unhealthy when its loop has not ticked for this long.
HEALTH_BOUND = 30.0
TICK = 1.0
#: Consecutive heals that found the same drift again before the agent backs off.
FIGHT_AFTER = 2
#: How soon an app waiting on a dependency looks again.
DEPENDENCY_RECHECK = 5.0
#: A sync of the same commit that gitopsd did not live to finish this many times in a row
#: (a crash loop: e.g. it deployed itself, the new image failed and ECS rolled it back to an
#: agent that deploys it again) marks the commit failed instead of starting it once more.
MAX_INTERRUPTED_SYNCS = 2


class ControlRefused(Exception):
    """A control request the agent cannot carry out (unknown app, bad action)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Agent:
    """Runs the reconcile loop of every app of one configuration until shut down."""

    def __init__(
        self,
        config: Config,
        backend: Backend,
        sources: SourceSet,
        *,
        events: EventSink | None = None,
        rng: random.Random | None = None,
        store: StateStore | None = None,
        approvers: Sequence[ApproverEntry] = (),
    ) -> None:
        self.config = config
        self.sources = sources
        self.events = events
        #: What survives a restart (docs/state.md); the state directory's store by default.
        self.store = store or DirStore(config.daemon.state_dir / "store")
        self.reconciler = Reconciler(
            config, backend, sources, events=events, store=self.store, approvers=approvers
        )
        self.scheduler = Scheduler(config, rng)
        self.state = StateDir(config.daemon.state_dir)
        self.limiter = anyio.CapacityLimiter(config.daemon.max_parallel_apps)
        self.app_status = {a.name: AppStatus(a.name) for a in config.apps}
        self.reconciler.on_rollout = lambda app, p: self.app_status[app].rollout(p)
        self._apps = {a.name: a for a in config.apps}
        self._wake = {a.name: anyio.Event() for a in config.apps}
        self._due: dict[str, float | None] = {a.name: 0.0 for a in config.apps}
        self._force: set[str] = set()
        self._fights: dict[str, int] = {}
        self._failures: dict[str, int] = {}
        self._baseline: dict[str, tuple[Resource, ...]] = {}
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._triggers = {name: anyio.Event() for name in self._source_names()}
        self._fetched: set[str] = set()
        self._first_pass: set[str] = set()
        self._ready = anyio.Event()
        self._stopping = False
        self._idle = anyio.Event()
        self._last_tick = 0.0
        self._next_polls: dict[str, float] = {}  # wall clock, per source
        self._tg: anyio.abc.TaskGroup | None = None
        #: Apps with a problem (not Ready, or drifted) announced: a recovery is owed.
        self._troubled: set[str] = set()
        #: Wall-clock time before which a drift fight is not healed again (survives restarts).
        self._heal_after: dict[str, float] = {}
        #: The commit a sync was started for and not finished yet, and how many syncs of it
        #: in a row gitopsd did not live to finish (persisted: a crash-loop guard).
        self._syncing: dict[str, tuple[str, int]] = {}
        #: Each app's record as last read from or written to the store.
        self._saved: dict[str, dict[str, Any]] = {}
        self._loaded = False

    def _source_names(self) -> list[str]:
        return sorted({a.source for a in self.config.apps})

    def _legacy_record(self, app: str) -> JsonRecord:
        """Where gitopsd < 0.x kept the record (imported into the store once)."""
        return JsonRecord(self.state.app_dir(app) / "agent.json")

    # -- lifecycle ----------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until :meth:`shutdown`; ``task_status.started()`` once every app had a pass."""
        await self.load_records()
        self._last_tick = anyio.current_time()
        stop_observing = ins.observe_conditions(self._conditions)
        try:
            await self._run_tasks(task_status)
        finally:
            stop_observing()

    def _conditions(self) -> list[tuple[str, str, str]]:
        return [
            (name, c.type, c.status)
            for name, st in self.app_status.items()
            for c in st.conditions.values()
        ]

    async def _run_tasks(self, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._ticker, name="gitopsd.ticker")
            for name in self._source_names():
                tg.start_soon(self._poll, name, name=f"gitopsd.source.{name}")
            for app in self.config.apps:
                tg.start_soon(self._app_loop, app, name=f"gitopsd.app.{app.name}")
            if not self.config.apps:
                self._ready.set()
            await self._ready.wait()
            task_status.started()

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop scheduling; cancel rollout waits; let applies finish within ``grace``."""
        self._stopping = True
        self.reconciler.stopping = True
        grace = self.config.daemon.grace_period if grace is None else grace
        for event in self._triggers.values():
            event.set()
        for name, scope in list(self._scopes.items()):
            if self._stage(name) is not Stage.APPLY:
                scope.cancel()
        for name in self._wake:
            self._wake[name].set()
        if self._scopes:
            with anyio.move_on_after(grace):
                await self._idle.wait()  # set when the last pass in flight ends
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    def _stage(self, app: str) -> Stage | None:
        journal = self.reconciler.journal.apps.get(app)
        return None if journal is None or journal.done else journal.stage

    async def _ticker(self) -> None:
        while True:
            self._last_tick = anyio.current_time()
            await anyio.sleep(TICK)

    async def load_records(self) -> None:
        """Each app's record from the store, once (:meth:`run` calls it; call it first to
        see a store failure as such). A store that cannot be read stops the start: a blank
        memory would resume suspended apps and redeploy failed commits."""
        if self._loaded:
            return
        for name, st in self.app_status.items():
            entry = await self.store.get(AGENT, name)
            data = entry.value if entry is not None else {}
            if entry is None:
                data = await self._carried_over(name)
                if data:
                    legacy = dict(data)
                    await update(self.store, AGENT, name, lambda d: d or legacy)  # noqa: B023
                    log.info("state.imported", app=name, location=self.store.location)
            st.suspended = bool(data.get("suspended", False))
            st.failed_commit = str(data.get("failed_commit", ""))
            st.last_applied = str(data.get("last_applied", ""))
            st.last_attempted = str(data.get("last_attempted", ""))
            st.last_applied_at = float(data.get("last_applied_at", 0.0) or 0.0)
            if int(data.get("drift_fights", 0) or 0) > 0:
                self._fights[name] = int(data["drift_fights"])
            if float(data.get("heal_after", 0.0) or 0.0) > 0:
                self._heal_after[name] = float(data["heal_after"])
            if data.get("troubled"):
                self._troubled.add(name)
            if data.get("syncing"):
                self._syncing[name] = (str(data["syncing"]), int(data.get("interrupted", 0) or 0))
            self._saved[name] = self._record_of(name)
        self._loaded = True

    async def _carried_over(self, name: str) -> dict[str, Any]:
        """A record this host has and the store has not (copied into the store): the state
        directory's store when another backend is configured, else the file of a gitopsd
        that had no store."""
        local = DirStore(self.config.daemon.state_dir / "store")
        if local.location != self.store.location:
            try:
                entry = await local.get(AGENT, name)
            except StateStoreError:
                entry = None
            if entry is not None and entry.value:
                return entry.value
        return await self._legacy_record(name).aload()

    def _record_of(self, name: str) -> dict[str, Any]:
        """What the store keeps of an app (see docs/state.md)."""
        st = self.app_status[name]
        return {
            "suspended": st.suspended,
            "failed_commit": st.failed_commit,
            "last_applied": st.last_applied,
            "last_applied_at": st.last_applied_at,
            "last_attempted": st.last_attempted,
            "drift_fights": self._fights.get(name, 0),
            "heal_after": self._heal_after.get(name, 0.0),
            "troubled": name in self._troubled,
            "syncing": self._syncing.get(name, ("", 0))[0],
            "interrupted": self._syncing.get(name, ("", 0))[1],
        }

    async def _save(self, name: str, *, strict: bool = False) -> None:
        """Write the app's record when it changed (a pass that changes nothing writes
        nothing). Only the fields this agent changed are written, merged into the stored
        document by a conditional write, so another writer's change (``gitopsd rollback``
        suspending the app) is kept, and taken over. ``strict``: raise a store failure
        instead of logging it."""
        saved = self._saved.get(name, {})
        changed = {k: v for k, v in self._record_of(name).items() if saved.get(k) != v}
        if set(changed) <= {"last_applied_at"}:
            return  # a heal pass at the same commit is not news
        try:
            entry = await update(self.store, AGENT, name, lambda d: {**d, **changed})
        except StateStoreError as exc:
            log.warning("state.write_failed", app=name, error=str(exc))
            if strict:
                raise
            return
        if "suspended" not in changed and "suspended" in entry.value:
            self.app_status[name].suspended = bool(entry.value["suspended"])
        self._saved[name] = {**saved, **entry.value}

    # -- sources ------------------------------------------------------------------------

    async def _poll(self, name: str) -> None:
        """Fetch ``name`` every interval or when triggered; wake its apps on a new commit."""
        last: str | None = None
        failing = False
        while not self._stopping:
            try:
                revision: Revision | None = await self.sources.refresh(name)
            except Exception as exc:
                revision = None
                log.warning("agent.source_failed", source=name, error=str(exc))
            first = name not in self._fetched
            self._fetched.add(name)
            commit = revision.commit if revision is not None else None
            recovered = failing and revision is not None
            failing = revision is None
            if first or recovered or (commit is not None and commit != last):
                if commit is not None:
                    last = commit
                for app in self.config.apps:
                    if app.source == name:
                        self._new_revision(app.name, commit)
            now = anyio.current_time()
            at = self.scheduler.next_poll(name, now)
            self._next_polls[name] = time.time() + (at - now)
            with anyio.move_on_after(max(0.0, at - now)):
                await self._triggers[name].wait()
            self._triggers[name] = anyio.Event()

    def _new_revision(self, app: str, commit: str | None) -> None:
        """A new commit (or the first fetch): run the app now, cancelling an older rollout wait."""
        journal = self.reconciler.journal.apps.get(app)
        scope = self._scopes.get(app)
        if (
            scope is not None
            and journal is not None
            and not journal.done
            and journal.revision is not None
            and journal.revision.commit != commit
        ):
            if journal.stage is Stage.APPLY:
                # Never cancel a write: let it finish, then skip the wait for its rollout.
                self.reconciler.superseded.add(app)
            else:
                log.info("agent.rollout_wait_superseded", app=app, newer=commit)
                scope.cancel()
        self._due[app] = 0.0
        self._wake[app].set()

    # -- apps ---------------------------------------------------------------------------

    async def _app_loop(self, app: AppConfig) -> None:
        while not self._stopping:
            await self._wait_turn(app.name)
            if self._stopping:
                return
            st = self.app_status[app.name]
            before = st.conditions["Ready"]
            # Before its source's first fetch a pass only waits for it: not the first pass.
            fetched = self.sources.current(app.source) is not None
            await self._pass(app)
            self._announce_status(app, st, before)
            await self._save(app.name)
            if fetched and app.name not in self._first_pass:
                self._first_pass.add(app.name)
                if len(self._first_pass) == len(self._apps):
                    self._ready.set()

    def _publish(self, event: Event) -> None:
        if self.events is not None:
            try:
                self.events.publish(event)
            except Exception:  # an EventSink must not raise; if one does, the agent goes on
                log.exception("agent.publish_failed", kind=event.kind)

    def _event(
        self, app: AppConfig, kind: str, commit: str, message: str, severity: Severity, reason: str,
        **extra: Any,
    ) -> Event:  # fmt: skip
        return Event(
            kind, app.name, commit, message, severity, reason,
            source=app.source, link=commit_link(self.config.source(app.source).url, commit),
            **extra,
        )  # fmt: skip

    def _announce_status(self, app: AppConfig, st: AppStatus, before: Condition) -> None:
        """Events for what a pass changed in the app's status: the Ready condition moving,
        and a recovery (Ready, not drifted) after an announced problem."""
        after = st.conditions["Ready"]
        commit = st.last_attempted or st.last_applied
        if after.status != before.status:
            self._publish(
                self._event(
                    app, CONDITION_CHANGED, commit,
                    f"Ready: {before.status} -> {after.status}: {after.reason}: {after.message}",
                    Severity.INFO if after.status == TRUE else Severity.WARNING,
                    after.reason,
                )
            )  # fmt: skip
        drifting = bool(st.drift) and not st.drift.startswith("healed: ")
        if after.status == FALSE or drifting:
            self._troubled.add(app.name)
        elif after.status == TRUE and app.name in self._troubled:
            self._troubled.discard(app.name)
            self._publish(
                self._event(
                    app, RECOVERED, commit, f"{app.name} is Ready again at {commit[:12]}",
                    Severity.INFO, "Recovered",
                )
            )  # fmt: skip

    async def _wait_turn(self, name: str) -> None:
        due = self._due[name]
        now = anyio.current_time()
        delay = math.inf if due is None else max(0.0, due - now)
        if delay > 0:
            with anyio.move_on_after(delay):
                await self._wake[name].wait()
        self._wake[name] = anyio.Event()

    def _mode(self, app: AppConfig, st: AppStatus, revision: Revision, forced: bool) -> Mode | None:
        """What this pass does; None: nothing to do now."""
        new_commit = revision.commit != st.last_attempted
        if app.sync.mode == "manual" and not forced:
            return Mode.PLAN
        if revision.commit == st.failed_commit and not forced:
            return Mode.PLAN  # report health and drift; never redeploy a failed commit
        if new_commit or forced or (not st.ready and st.last_applied != revision.commit):
            return Mode.SYNC  # (a restart at the applied commit is a drift check, not a sync)
        drift = app.sync.drift_mode
        if drift == "off":
            return None
        if drift == "heal" and time.time() + TICK < self._heal_after.get(app.name, 0.0):
            return Mode.PLAN  # a drift fight's backoff, also across a restart: report only
        return Mode.SYNC if drift == "heal" else Mode.PLAN

    def _deps_ready(self, app: AppConfig) -> str:
        """'' when every dependency is Ready at its current revision, else who is not."""
        waiting = []
        for dep in app.depends_on:
            st = self.app_status[dep]
            current = self.sources.current(self._apps[dep].source)
            commit = current.commit if isinstance(current, Revision) else None
            if not st.ready or commit is None or st.last_attempted != commit:
                waiting.append(dep)
        return ", ".join(waiting)

    async def _pass(self, app: AppConfig) -> None:
        name = app.name
        st = self.app_status[name]
        current = self.sources.current(app.source)
        if current is None:
            self._due[name] = None  # not fetched yet: the source's first fetch wakes the app
            return
        if not isinstance(current, Revision):
            # The source failed: report it as the app's SourceFailed without a pass (a pass
            # could pick up a commit the poller is fetching right now, as a mere plan).
            failed = Outcome(
                app=name,
                failed_stage=Stage.SOURCE,
                message=str(current),
                temporary=isinstance(current, TemporaryError),
            )
            if st.conditions["Ready"].message != failed.message:  # an alert per failure, not poll
                commit = current.commit if isinstance(current, SignatureRejected) else ""
                self._publish(
                    self._event(
                        app, ERROR, commit, failed.message,
                        Severity.WARNING if failed.temporary else Severity.ERROR,
                        failed.reason, stage=str(Stage.SOURCE),
                    )
                )  # fmt: skip
            await self._update(app, st, failed, Mode.SYNC, drift_check=False)
            return
        forced = name in self._force
        if st.suspended and not forced:
            st.set(
                "Ready",
                st.conditions["Ready"].status,
                "Suspended",
                "suspended: `gitopsd resume` to go on",
            )
            self._due[name] = None
            return
        waiting = self._deps_ready(app)
        if waiting:
            st.set("Ready", FALSE, "DependencyNotReady", f"waiting for {waiting} to be Ready")
            self._due[name] = anyio.current_time() + DEPENDENCY_RECHECK
            return
        self._force.discard(name)
        mode = self._mode(app, st, current, forced)
        if mode is None:
            self._due[name] = self.scheduler.after(
                app, anyio.current_time(), ok=True, temporary=False, failures=0
            ).at
            return
        await self._run(app, st, current, mode, forced)

    async def _run(
        self, app: AppConfig, st: AppStatus, revision: Revision | None, mode: Mode, forced: bool
    ) -> None:
        name = app.name
        drift_check = revision is not None and revision.commit == st.last_attempted and not forced
        baseline = None
        if revision is not None and not forced and revision.commit != st.last_attempted:
            baseline = self._baseline.get(name)
        if (
            mode is Mode.SYNC
            and revision is not None
            and await self._interrupted_too_often(app, st, revision.commit, forced)
        ):
            return
        st.set("Reconciling", TRUE, "Progressing", f"{mode} pass")
        self.reconciler.superseded.discard(name)
        with anyio.CancelScope() as scope:
            self._scopes[name] = scope
            try:
                outcome = await self.reconciler.reconcile(
                    app, mode, baseline=baseline, limiter=self.limiter, revision=revision
                )
            finally:
                self._scopes.pop(name, None)
                if self._stopping and not self._scopes:
                    self._idle.set()
        st.set("Reconciling", FALSE)
        if not (scope.cancelled_caught and self._stopping):
            self._syncing.pop(name, None)  # finished, or superseded by a newer commit
        if scope.cancelled_caught:
            # A newer commit (or shutdown) took over: the next pass starts at once.
            self._due[name] = 0.0
            return
        st.passes += 1
        await self._update(app, st, outcome, mode, drift_check)

    async def _interrupted_too_often(
        self, app: AppConfig, st: AppStatus, commit: str, forced: bool
    ) -> bool:
        """Record that a sync of ``commit`` starts (before its first write); True when the
        previous ones died with gitopsd :data:`MAX_INTERRUPTED_SYNCS` times in a row, in
        which case the commit is marked failed, not started again."""
        name = app.name
        prior, interrupted = self._syncing.get(name, ("", 0))
        interrupted = interrupted + 1 if prior == commit else 0
        if interrupted >= MAX_INTERRUPTED_SYNCS and not forced:
            self._syncing.pop(name, None)
            st.failed_commit = commit
            message = (
                f"the sync of {commit[:12]} was interrupted {interrupted} times in a row "
                "(gitopsd stopped during it: a crash loop, or gitopsd deployed itself and ECS "
                "rolled it back); not retried until Git moves "
                f"(or `gitopsd reconcile {name} --force`)"
            )
            st.set("Ready", FALSE, "SyncInterrupted", message)
            st.set("Stalled", TRUE, "SyncInterrupted", message)
            log.error("agent.sync_interrupted", app=name, commit=commit, times=interrupted)
            await self._save(name)
            self._due[name] = self.scheduler.after(
                app, anyio.current_time(), ok=True, temporary=False, failures=0
            ).at
            return True
        self._syncing[name] = (commit, interrupted)
        await self._save(name)  # before the first write: a death from here on counts
        return False

    async def _update(
        self, app: AppConfig, st: AppStatus, outcome: Outcome, mode: Mode, drift_check: bool
    ) -> None:
        name = app.name
        now = anyio.current_time()
        commit = outcome.revision.commit if outcome.revision else ""
        if commit and (mode is Mode.SYNC or commit == st.last_attempted):
            st.last_attempted, st.last_attempted_at = commit, time.time()
        changeset = outcome.changeset
        unsettled = changeset.unsettled if changeset is not None else ()
        st.health = (
            "Degraded"
            if any(r.health and r.health.state == "Degraded" for r in unsettled)
            else (
                "Progressing" if unsettled else ("Healthy" if changeset is not None else st.health)
            )
        )
        failures = self._fights.get(name, 0)
        if outcome.unchanged:
            st.set(
                "Ready", TRUE, "ArtifactUnchanged", f"commit {commit[:12]} does not change this app"
            )
            self._due[name] = self.scheduler.after(
                app, now, ok=True, temporary=False, failures=0
            ).at
            return
        if not outcome.ok:
            self._baseline.pop(name, None)
            verdicts = {r.state for r in outcome.rollouts}
            if commit and not outcome.temporary and verdicts & {"FAILED", "ROLLED_BACK"}:
                st.failed_commit = commit
                await self._save(name)
            changed = st.set("Ready", FALSE, outcome.reason, outcome.message)
            st.set("Stalled", FALSE if outcome.temporary else TRUE, outcome.reason, outcome.message)
            if changed:
                log.warning(
                    "agent.app_failed", app=name, reason=outcome.reason, message=outcome.message
                )
            st.sync = "OutOfSync" if changeset is not None and not changeset.in_sync else st.sync
            self._failures[name] = self._failures.get(name, 0) + 1
            decision = self.scheduler.after(
                app, now, ok=False, temporary=outcome.temporary, failures=self._failures[name]
            )
            if st.failed_commit == commit and commit:
                # A failed rollout: keep checking health and drift on the interval, in plan
                # mode (the commit itself is not redeployed until Git moves).
                decision = self.scheduler.after(app, now, ok=True, temporary=False, failures=0)
            self._due[name] = decision.at
            st.next_at = 0.0 if decision.at is None else time.time() + (decision.at - now)
            return
        self._failures.pop(name, None)
        pending = changeset.pending if changeset is not None else ()
        if mode is Mode.PLAN:
            self._after_plan(app, st, outcome, drift_check)
        else:
            if drift_check and pending:
                failures += 1  # healed, and it was there again: someone changes it back
                self._fights[name] = failures
                st.drift = "healed: " + _fields(pending)
                log.warning("agent.drift_healed", app=name, fields=_fields(pending), times=failures)
                ins.drift_healed.add(1, {ins.APP: name})
                self._publish(
                    self._event(
                        app, DRIFT_HEALED, commit,
                        f"live state differed from {commit[:12]} and was reverted: "
                        f"{_fields(pending)}",
                        Severity.WARNING if failures >= FIGHT_AFTER else Severity.INFO,
                        "DriftHealed", fields=tuple(r.key for r in pending),
                        changes=changes_of(pending), stage=str(Stage.APPLY),
                    )
                )  # fmt: skip
            else:
                self._fights.pop(name, None)
                self._heal_after.pop(name, None)
                st.drift = ""
            st.sync = "Synced"
            st.failed_commit = ""  # a sync succeeded (a new commit, or --force)
            st.last_applied, st.last_applied_at = commit, time.time()
            self._baseline[name] = outcome.resources
            st.set("Ready", TRUE, outcome.reason, f"applied {commit[:12]}")
            st.set("Stalled", FALSE)
            await self._save(name)
        due = self.scheduler.after(app, now, ok=True, temporary=False, failures=0).at or now
        fights = self._fights.get(name, 0)
        if fights >= FIGHT_AFTER:
            # Another writer keeps undoing the heal: back off, and say so.
            daemon = self.config.daemon
            self._due[name] = max(
                due, now + backoff(fights, daemon.backoff_min, daemon.backoff_max)
            )
            if mode is Mode.SYNC:
                self._heal_after[name] = time.time() + (self._due[name] or now) - now
            st.set(
                "Ready", TRUE, "DriftFight",
                f"another writer keeps changing {st.drift.removeprefix('healed: ')}; "
                "healing less often: ignore those fields or stop the other writer",
            )  # fmt: skip
        else:
            self._due[name] = due
        next_due = self._due[name]
        st.next_at = 0.0 if next_due is None else time.time() + (next_due - now)

    def _after_plan(
        self, app: AppConfig, st: AppStatus, outcome: Outcome, drift_check: bool
    ) -> None:
        changeset = outcome.changeset
        pending = changeset.pending if changeset is not None else ()
        commit = outcome.revision.commit if outcome.revision else ""
        if not pending:
            st.sync = "Synced"
            st.drift = ""
            if commit and commit == st.failed_commit:
                st.set(
                    "Stalled", TRUE, "RolloutFailed",
                    f"the rollout of {commit[:12]} failed; waiting for a new commit "
                    f"(or `gitopsd reconcile {app.name} --force`)",
                )  # fmt: skip
            elif (
                commit
                and changeset is not None
                and not changeset.unsettled
                and st.conditions["Ready"].status != TRUE
            ):
                # A fresh agent (restart, reload) at the commit already live: nothing to
                # apply and every service steady is Ready, not "Unknown" until Git moves.
                st.set("Ready", TRUE, "InSync", f"live state matches {commit[:12]}")
                st.set("Stalled", FALSE)
            return
        st.sync = "OutOfSync"
        if commit and commit == st.failed_commit:
            st.set(
                "Stalled", TRUE, "RolloutFailed",
                f"the rollout of {commit[:12]} failed and is not retried until Git moves "
                f"(or `gitopsd reconcile {app.name} --force`)",
            )  # fmt: skip
            return
        if app.sync.mode == "manual":
            st.set(
                "Ready",
                st.conditions["Ready"].status,
                "OutOfSync",
                "manual sync: run `gitopsd sync`",
            )
            return
        fields = _fields(pending)
        if st.drift != fields:
            log.warning("agent.drift_detected", app=app.name, fields=fields)
            ins.drift_detected.add(1, {ins.APP: app.name})
            self._publish(
                self._event(
                    app, DRIFT_DETECTED, commit,
                    f"live state differs from {commit[:12]}: {fields}", Severity.WARNING,
                    "DriftDetected", fields=tuple(r.key for r in pending),
                    changes=changes_of(pending), stage=str(Stage.PLAN),
                )
            )  # fmt: skip
        st.drift = fields
        st.set("Ready", TRUE, "DriftDetected", f"live state differs from {commit[:12]}: {fields}")

    # -- what the HTTP server, the control socket and systemd see -----------------------

    @property
    def last_tick(self) -> float:
        """Loop time of the scheduler's last tick (0 before :meth:`run`): the watchdog's pulse."""
        return self._last_tick

    def next_poll(self) -> float | None:
        """Wall-clock time of the next scheduled source poll (None before the first)."""
        return min(self._next_polls.values(), default=None)

    def health(self) -> tuple[bool, str]:
        age = anyio.current_time() - self._last_tick
        if self._stopping:
            return False, "shutting down"
        if age > HEALTH_BOUND:
            return False, f"the scheduler has not ticked for {age:.0f}s"
        return True, f"ticked {age:.1f}s ago"

    def readiness(self) -> tuple[bool, str]:
        missing = [n for n in self._source_names() if n not in self._fetched]
        if missing:
            return False, "sources not fetched yet: " + ", ".join(missing)
        if not self._ready.is_set():
            left = sorted(set(self._apps) - self._first_pass)
            return False, "first pass not done: " + ", ".join(left)
        return True, "every app had its first pass"

    def status(self) -> list[dict[str, Any]]:
        return [self.app_status[a.name].to_json() for a in self.config.apps]

    def trigger(self, sources: Sequence[str], reason: str) -> list[str]:
        names = [s for s in (sources or self._triggers) if s in self._triggers]
        for s in names:
            log.info("agent.triggered", source=s, reason=reason)
            self._triggers[s].set()
        return names

    async def control(self, request: Mapping[str, Any]) -> dict[str, Any]:
        action = request.get("action")
        name = request.get("app")
        if action == "status":
            return {"apps": self.status()}
        if not isinstance(name, str) or name not in self._apps:
            known = ", ".join(self._apps) or "none"
            raise ControlRefused(f"no app named {name!r} (apps: {known})", 404)
        st = self.app_status[name]
        if action == "reconcile":
            if request.get("force"):
                self._force.add(name)
            self._due[name] = 0.0
            self._wake[name].set()
            self.trigger([self._apps[name].source], f"reconcile {name}")
            return {"app": name, "queued": True, "force": bool(request.get("force"))}
        if action in ("suspend", "resume"):
            before = st.suspended
            st.suspended = action == "suspend"
            try:
                await self._save(name, strict=True)
            except StateStoreError as exc:
                st.suspended = before
                raise ControlRefused(f"{action} {name}: not recorded: {exc}", 503) from None
            if not st.suspended:
                self._due[name] = 0.0
                self._wake[name].set()
            return {"app": name, "suspended": st.suspended}
        if action == "approve":
            return await self._approve(self._apps[name], request)
        raise ControlRefused(
            f"unknown action {action!r}: use status, reconcile, suspend, resume or approve", 400
        )

    async def _approve(self, app: AppConfig, request: Mapping[str, Any]) -> dict[str, Any]:
        """``gitopsd approve`` through the agent (the one writer): continue or roll back the
        app's paused hooks; recorded as decided by the caller's name "via control API"."""
        approve, by = request.get("approve", True), request.get("by") or "someone"
        service, reason = request.get("service"), request.get("reason") or ""
        if not isinstance(approve, bool) or not isinstance(by, str) or not isinstance(reason, str):
            raise ControlRefused("approve: 'approve' must be a boolean, 'by' and 'reason' text")
        if service is not None and not isinstance(service, str):
            raise ControlRefused("approve: 'service' must be a service name")
        try:
            resources = await declared_resources(
                self.config, self.sources, self.reconciler.backend.schema, app,
                self.reconciler.render_cache,
            )  # fmt: skip
            records = await self.reconciler.approvals.decide(
                app, resources, approve=approve, by=f"{by} via control API", reason=reason,
                service=service,
            )  # fmt: skip
        except NothingAwaitsApproval as exc:
            raise ControlRefused(str(exc), 409) from None
        except GitopsdError as exc:
            raise ControlRefused(f"approve {app.name}: {exc}", 502) from None
        return {"app": app.name, "decisions": [r.to_json() for r in records]}


def _fields(pending: Sequence[Any]) -> str:
    parts = []
    for rc in pending:
        paths = ", ".join(c.path for c in rc.changes[:5]) or str(rc.action)
        parts.append(f"{rc.key} ({paths})")
    return "; ".join(parts)


__all__ = ["UNKNOWN", "Agent", "ControlRefused", "Next"]
