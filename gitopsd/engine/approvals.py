"""Approvals at PAUSE hooks: who continued or rolled back a paused deployment, and when.

A blue/green, linear or canary deployment can wait at a ``PAUSE`` lifecycle
hook until someone says CONTINUE or ROLLBACK, or the hook's timeout passes and
the platform takes its timeout action. This module is the one path every
decision takes, whoever makes it:

- ``gitopsd approve APP [--reject]`` (the CLI itself, or the running agent
  through its control API: one writer), :meth:`Approvals.decide`;
- an approver plugin (``gitopsd_approver``, :mod:`gitopsd.plugins`), asked on
  every rollout poll while a hook of an app it serves awaits action
  (:meth:`Approvals.consulting`, around verify);
- the platform itself when the pause times out (reported, not decided).

Each decision is acted on through the backend (``continue_deployment``),
recorded in the state store (namespace :data:`APPROVALS`, one document per app
holding its newest :data:`MAX_KEPT` decisions, written with a conditional
write) for ``gitopsd history``, and published as one ``approval_decided``
event. A watched rollout reporting ``approval`` = "needed" (a
:class:`~gitopsd.events.RolloutProgress` detail) becomes one
``approval_needed`` event per hook id, so notifiers tell people what waits.
"""

from __future__ import annotations

import getpass
import socket
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

import anyio
import structlog

from gitopsd.backends.base import Backend, PausedHook
from gitopsd.config import AppConfig, Config
from gitopsd.engine.announce import commit_link
from gitopsd.engine.outcome import Stage
from gitopsd.engine.sources import SourceSet
from gitopsd.errors import GitopsdError, PermanentError, SourceUnavailable
from gitopsd.events import (
    APPROVAL_DECIDED,
    APPROVAL_NEEDED,
    ApprovalRequest,
    Decision,
    Event,
    EventSink,
    RolloutProgress,
    Severity,
)
from gitopsd.manifests.render import RenderCache, render_app
from gitopsd.manifests.schema import Schema
from gitopsd.model import Resource, Revision
from gitopsd.plugins import ApproverEntry
from gitopsd.statestore import APPROVALS, StateStore, StateStoreError, update

log = structlog.get_logger(__name__)

#: Decisions kept per app (the oldest are dropped; a document stays far below 64 KiB).
MAX_KEPT = 100
#: Hook ids remembered per app as announced or decided (bounded, oldest forgotten).
MAX_SEEN = 256

CONTINUE, ROLLBACK = "CONTINUE", "ROLLBACK"
APPROVED, REJECTED, TIMED_OUT = "approved", "rejected", "timed out"


class NothingAwaitsApproval(PermanentError):
    """``gitopsd approve`` found no PAUSE hook awaiting action in the app."""


@dataclass(frozen=True)
class DecisionRecord:
    """One decision on one paused hook, as kept in the state store and shown in history.

    ``outcome`` is :data:`APPROVED`, :data:`REJECTED` or :data:`TIMED_OUT`; ``action``
    what the platform was told (or, for a timeout, did): CONTINUE or ROLLBACK. ``by``
    is who or what decided (``user@host``, ``alice via control API``, ``plugin NAME``,
    the platform for a timeout).
    """

    app: str
    service: str
    deployment: str
    hook_id: str
    action: str
    outcome: str
    by: str
    at: float
    reason: str = ""
    stage: str = ""
    revision: str = ""
    target: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> DecisionRecord:
        fields = cls.__dataclass_fields__
        values = {k: v for k, v in doc.items() if k in fields}
        values["at"] = float(values.get("at") or 0.0)
        for name in fields:
            if name != "at":
                values[name] = str(values.get(name) or "")
        return cls(**values)

    @property
    def line(self) -> str:
        """One line for people: ``approved by alice (CONTINUE): looks good``."""
        text = f"{self.outcome} by {self.by} ({self.action})"
        if self.stage:
            text += f" at {self.stage}"
        return text + (f": {self.reason}" if self.reason else "")


def default_who() -> str:
    """``user@host`` of this process (``gitopsd approve --by`` when not given)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


async def read_decisions(store: StateStore, app: str) -> list[DecisionRecord]:
    """The app's recorded decisions, oldest first."""
    entry = await store.get(APPROVALS, app)
    if entry is None:
        return []
    out = []
    for doc in entry.value.get("decisions", []):
        if isinstance(doc, dict):
            out.append(DecisionRecord.from_json(doc))
    return out


async def record_decision(store: StateStore, record: DecisionRecord) -> None:
    """Append ``record`` to its app's document (conditional write; the oldest beyond
    :data:`MAX_KEPT` dropped). The same hook decided twice is kept once (a decision
    replaces a timeout recorded for the same hook: the watcher may have guessed first)."""

    def same(d: dict[str, Any]) -> bool:
        return d.get("deployment") == record.deployment and d.get("hook_id") == record.hook_id

    def change(doc: dict[str, Any]) -> dict[str, Any] | None:
        kept = [d for d in doc.get("decisions", []) if isinstance(d, dict)]
        earlier = [d for d in kept if same(d)]
        if earlier and (record.outcome == TIMED_OUT or earlier[0].get("outcome") != TIMED_OUT):
            return None
        kept = [d for d in kept if not same(d)]  # a person's decision beats a timeout guessed
        return {**doc, "decisions": [*kept, record.to_json()][-MAX_KEPT:]}

    await update(store, APPROVALS, record.app, change)


async def declared_resources(
    config: Config,
    sources: SourceSet,
    schema: Schema,
    app: AppConfig,
    cache: RenderCache | None = None,
) -> list[Resource]:
    """``app``'s resources rendered at its source's commit last fetched (no fetch)."""
    current = sources.current(app.source)
    if not isinstance(current, Revision):
        raise SourceUnavailable(
            f"app {app.name!r}: source {app.source!r} has no fetched commit yet"
            + (f" ({current})" if current is not None else "")
        )
    reader = sources.reader(app.source, current.commit)
    return await anyio.to_thread.run_sync(
        partial(
            render_app,
            max_file_size=config.manifests.max_file_size,
            secret_env_names=config.manifests.secret_env_names,
            cache=cache,
        ),
        reader,
        app,
        schema,
    )


@dataclass(frozen=True)
class _Pending:
    """A hook seen awaiting action in a watched rollout."""

    request: ApprovalRequest
    progress: RolloutProgress
    #: Looked up through ``Backend.paused_hooks`` (timeout action, expiry, target).
    enriched: bool = False


@dataclass(frozen=True)
class _Left:
    """A pending hook that stopped awaiting action without a decision by this process."""

    app: AppConfig
    seen: _Pending
    #: The rollout reported the hook TIMED_OUT.
    timed_out: bool
    #: Where the deployment went: CONTINUE (on) or ROLLBACK (rolling back).
    went: str


class Approvals:
    """Decisions on paused hooks for one configuration: act, record, announce, consult."""

    def __init__(
        self,
        config: Config,
        backend: Backend,
        store: StateStore,
        *,
        events: EventSink | None = None,
        approvers: Sequence[ApproverEntry] = (),
        poll_interval: float | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
        self.store = store
        self.events = events
        self.approvers = list(approvers)
        self.poll_interval = (
            config.daemon.rollout_poll_interval if poll_interval is None else poll_interval
        )
        #: Per app, hooks awaiting action seen in watched rollouts, by hook id.
        self.pending: dict[str, dict[str, _Pending]] = {}
        #: Per app, hook ids announced (approval_needed sent) and decided.
        self._announced: dict[str, dict[str, None]] = {}
        self._decided: dict[str, dict[str, None]] = {}
        #: Hooks that left AWAITING_ACTION undecided by gitopsd, seen by :meth:`observe`
        #: and told apart by the consulting loop (a timeout is recorded).
        self._left: list[_Left] = []
        self._wake = anyio.Event()

    # -- what a user (or the agent on a user's behalf) decides ---------------------------

    async def decide(
        self,
        app: AppConfig,
        resources: Sequence[Resource],
        *,
        approve: bool,
        by: str,
        reason: str = "",
        service: str | None = None,
    ) -> list[DecisionRecord]:
        """Continue (``approve``) or roll back every PAUSE hook awaiting action in the
        app's services (or ``service`` only); the decisions, recorded and announced.

        Raises :class:`NothingAwaitsApproval` when no hook awaits action."""
        names = [r.name for r in resources if r.kind == "Service"]
        if service is not None:
            if service not in names:
                raise PermanentError(
                    f"app {app.name!r} declares no service {service!r} "
                    f"(services: {', '.join(names) or 'none'})"
                )
            resources = [r for r in resources if r.kind != "Service" or r.name == service]
        hooks = list(await self.backend.paused_hooks(app, resources))
        if not hooks:
            where = f"service {service!r}" if service else f"services {', '.join(names) or '-'}"
            raise NothingAwaitsApproval(
                f"app {app.name!r}: no deployment awaits approval (no PAUSE hook is "
                f"AWAITING_ACTION in {where}); `gitopsd status` shows what the rollouts do"
            )
        return [await self._act(app, hook, approve=approve, by=by, reason=reason) for hook in hooks]

    async def _act(
        self, app: AppConfig, hook: PausedHook, *, approve: bool, by: str, reason: str
    ) -> DecisionRecord:
        action = CONTINUE if approve else ROLLBACK
        await self.backend.continue_deployment(app, hook.deployment, hook.hook_id, action)
        seen = self.pending.get(app.name, {}).pop(hook.hook_id, None)
        _remember(self._decided, app.name, hook.hook_id)
        record = DecisionRecord(
            app=app.name,
            service=hook.service,
            deployment=hook.deployment,
            hook_id=hook.hook_id,
            action=action,
            outcome=APPROVED if approve else REJECTED,
            by=by,
            at=time.time(),
            reason=reason,
            stage=hook.stage,
            revision=seen.request.revision if seen is not None else "",
            target=hook.target,
        )
        log.info(
            "approval.decided", app=app.name, service=hook.service, hook=hook.hook_id,
            action=action, by=by,
        )  # fmt: skip
        await self._keep(record)
        self._publish(app, record)
        return record

    async def _keep(self, record: DecisionRecord) -> None:
        try:
            await record_decision(self.store, record)
        except StateStoreError as exc:  # ECS acted: say so, and that the record is missing
            log.warning("approval.not_recorded", app=record.app, error=str(exc))

    def _publish(self, app: AppConfig, record: DecisionRecord) -> None:
        severity = Severity.INFO if record.outcome == APPROVED else Severity.WARNING
        if record.outcome == TIMED_OUT:
            message = (
                f"Service/{record.service}: the pause at {record.stage or 'a PAUSE hook'} timed "
                f"out; ECS took its timeout action {record.action}"
            )
            reason = "ApprovalTimedOut"
            severity = Severity.INFO if record.action == CONTINUE else Severity.WARNING
        else:
            message = f"Service/{record.service}: {record.line}"
            reason = "Approved" if record.outcome == APPROVED else "Rejected"
        self._send(
            Event(
                APPROVAL_DECIDED, app.name, record.revision, message, severity, reason,
                fields=(f"Service/{record.service}", record.hook_id),
                deployment=record.deployment, stage=str(Stage.VERIFY), source=app.source,
                link=self._link(app, record.revision),
            )
        )  # fmt: skip

    # -- what a watched rollout tells ------------------------------------------------------

    def observe(self, app: AppConfig, commit: str, progress: RolloutProgress) -> None:
        """A watched rollout changed: a hook newly awaiting action is announced (once per
        hook id); a pending one that no longer awaits action, undecided by gitopsd, is
        queued to be told apart (a timeout, or a decision made outside gitopsd). Returns
        at once."""
        details = dict(progress.details)
        hook_id = details.get("hook_id", "")
        needed = details.get("approval") == "needed" and bool(hook_id)
        pending = self.pending.setdefault(app.name, {})
        for hid, seen in list(pending.items()):
            if seen.request.key != progress.key or (needed and hid == hook_id):
                continue
            del pending[hid]  # decided, timed out, or the deployment moved on
            if progress.deployment and progress.deployment != seen.request.deployment:
                # A newer deployment of the service replaced the paused one (a newer commit):
                # neither a timeout nor a decision, and the new one's state says nothing of it.
                log.info(
                    "approval.superseded", app=app.name, key=progress.key, hook=hid,
                    deployment=seen.request.deployment, newer=progress.deployment,
                )  # fmt: skip
                continue
            if hid not in self._decided.get(app.name, {}):
                timed_out = "TIMED_OUT" in details.get("hooks", "")
                went = ROLLBACK if progress.stage.status.startswith("ROLLBACK") else CONTINUE
                self._left.append(_Left(app, seen, timed_out, went))
                self._wake.set()
        if not needed or hook_id in self._decided.get(app.name, {}) or hook_id in pending:
            return
        request = ApprovalRequest(
            app=app.name,
            key=progress.key,
            deployment=progress.deployment,
            hook_id=hook_id,
            stage=details.get("hook_stage", "") or progress.stage.lifecycle,
            revision=commit,
            target=progress.target,
            expires_at=_parse_time(details.get("hook_expires", "")),
            timeout_action=details.get("hook_timeout_action", ""),
        )
        pending[hook_id] = _Pending(request, progress)
        if hook_id not in self._announced.get(app.name, {}):
            _remember(self._announced, app.name, hook_id)
            self._announce_needed(app, request, progress)
        self._wake.set()

    def _announce_needed(
        self, app: AppConfig, request: ApprovalRequest, progress: RolloutProgress
    ) -> None:
        expires = _format_time(request.expires_at)
        service = request.key.split("/", 1)[-1]
        message = (
            f"approval needed: {request.key} at {request.revision[:12] or '-'} waits at a "
            f"PAUSE hook in {request.stage or 'its deployment'}"
            + (f", rolling out {request.target.rsplit('/', 1)[-1]}" if request.target else "")
            + (f"; the pause ends on its own at {expires}" if expires else "")
            # --service: without it, approve decides on every paused service of the app.
            + f": `gitopsd approve {app.name} --service {service}` continues it, "
            f"`gitopsd approve {app.name} --service {service} --reject` rolls it back"
        )
        log.warning("approval.needed", app=app.name, key=request.key, hook=request.hook_id)
        self._send(
            Event(
                APPROVAL_NEEDED, app.name, request.revision, message, Severity.WARNING,
                "ApprovalNeeded", at=progress.at, fields=(request.key, request.hook_id),
                deployment=request.deployment, stage=str(Stage.VERIFY), source=app.source,
                link=self._link(app, request.revision), progress=progress,
            )
        )  # fmt: skip

    # -- approver plugins, while verify watches --------------------------------------------

    @asynccontextmanager
    async def consulting(
        self, app: AppConfig, resources: Sequence[Resource]
    ) -> AsyncIterator[None]:
        """For the body (verify): ask the approvers serving ``app`` about its pending hooks
        every poll interval, and record the pauses that timed out."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._consult_loop, app, list(resources))
            try:
                yield
            finally:
                tg.cancel_scope.cancel()
        await self._record_timeouts(app)  # one seen by the last poll

    async def _consult_loop(self, app: AppConfig, resources: list[Resource]) -> None:
        approvers = [a for a in self.approvers if a.serves(app.name)]
        while True:
            with anyio.CancelScope(shield=True):  # the end of verify must not lose a timeout
                await self._record_timeouts(app)
            for hook_id, seen in list(self.pending.get(app.name, {}).items()):
                if not seen.enriched:
                    seen = await self._enrich(app, resources, seen)
                for entry in approvers:
                    if hook_id not in self.pending.get(app.name, {}):
                        break  # decided meanwhile
                    decision = await self._ask(entry, seen.request)
                    if decision is not None:
                        await self._decided_by_plugin(app, entry, seen, decision)
                        break
            self._wake = anyio.Event()
            with anyio.move_on_after(self.poll_interval):
                await self._wake.wait()

    async def _enrich(self, app: AppConfig, resources: list[Resource], seen: _Pending) -> _Pending:
        """The hook's timeout action, expiry and target from the backend (once per hook)."""
        mine = [r for r in resources if r.key == seen.request.key]
        try:
            hooks = await self.backend.paused_hooks(app, mine)
        except GitopsdError as exc:
            log.info("approval.lookup_failed", app=app.name, error=str(exc))
            return seen
        found = next((h for h in hooks if h.hook_id == seen.request.hook_id), None)
        request = seen.request
        if found is not None:
            request = replace(
                request,
                timeout_action=found.timeout_action or request.timeout_action,
                expires_at=found.expires_at if found.expires_at is not None else request.expires_at,
                target=request.target or found.target,
                stage=request.stage or found.stage,
            )
        enriched = replace(seen, request=request, enriched=True)
        pending = self.pending.get(app.name, {})
        if request.hook_id in pending:
            pending[request.hook_id] = enriched
        return enriched

    async def _ask(self, entry: ApproverEntry, request: ApprovalRequest) -> Decision | None:
        with anyio.move_on_after(max(self.poll_interval, 1.0)) as scope:
            try:
                decision = await entry.approver.decide(request)
            except Exception:
                log.exception("approval.approver_failed", plugin=entry.name, app=request.app)
                return None
        if scope.cancelled_caught:
            log.warning("approval.approver_timeout", plugin=entry.name, app=request.app)
            return None
        if decision is not None and not isinstance(decision, Decision):
            log.warning(
                "approval.approver_answer_ignored", plugin=entry.name,
                answer=type(decision).__name__,
            )  # fmt: skip
            return None
        return decision

    async def _decided_by_plugin(
        self, app: AppConfig, entry: ApproverEntry, seen: _Pending, decision: Decision
    ) -> None:
        request = seen.request
        hook = PausedHook(
            key=request.key,
            service=request.key.split("/", 1)[-1],
            deployment=request.deployment,
            hook_id=request.hook_id,
            stage=request.stage,
            expires_at=request.expires_at,
            timeout_action=request.timeout_action,
            target=request.target,
        )
        who = f"plugin {entry.name}" + (f" ({decision.by})" if decision.by else "")
        try:
            await self._act(app, hook, approve=decision.approve, by=who, reason=decision.reason)
        except GitopsdError as exc:  # say, the hook timed out meanwhile: asked again next poll
            log.warning("approval.continue_failed", app=app.name, plugin=entry.name, error=str(exc))

    async def _record_timeouts(self, app: AppConfig) -> None:
        """Record the pauses of ``app`` that timed out.

        A hook reported TIMED_OUT did. One that left AWAITING_ACTION without being
        reported so (ECS may move to the next stage at once) timed out when the
        deployment went the way of the hook's timeout action and no decision on it is
        recorded (else someone acted outside gitopsd: logged, not recorded)."""
        mine = [left for left in self._left if left.app.name == app.name]
        self._left = [left for left in self._left if left.app.name != app.name]
        for left in mine:
            request = left.seen.request
            if request.hook_id in self._decided.get(app.name, {}):
                continue
            if not left.timed_out:
                recorded = await self._recorded(request)
                if recorded or request.timeout_action != left.went:
                    if not recorded:
                        log.info(
                            "approval.decided_outside", app=app.name, key=request.key,
                            hook=request.hook_id, action=left.went,
                        )  # fmt: skip
                    continue
            _remember(self._decided, app.name, request.hook_id)
            record = DecisionRecord(
                app=app.name,
                service=request.key.split("/", 1)[-1],
                deployment=request.deployment,
                hook_id=request.hook_id,
                action=request.timeout_action or left.went,
                outcome=TIMED_OUT,
                by="ECS (timeout)",
                at=time.time(),
                reason="nobody decided before the pause expired",
                stage=request.stage,
                revision=request.revision,
                target=request.target,
            )
            log.warning("approval.timed_out", app=app.name, key=request.key, action=record.action)
            await self._keep(record)
            self._publish(app, record)

    async def _recorded(self, request: ApprovalRequest) -> bool:
        try:
            decisions = await read_decisions(self.store, request.app)
        except StateStoreError:
            return False
        return any(
            d.deployment == request.deployment and d.hook_id == request.hook_id for d in decisions
        )

    # -- helpers ---------------------------------------------------------------------------

    def _send(self, event: Event) -> None:
        if self.events is not None:
            try:
                self.events.publish(event)
            except Exception:  # an EventSink must not raise; if one does, go on
                log.exception("notify.failed", kind=event.kind)

    def _link(self, app: AppConfig, commit: str) -> str:
        return commit_link(self.config.source(app.source).url, commit) if commit else ""


def _remember(seen: dict[str, dict[str, None]], app: str, hook_id: str) -> None:
    ids = seen.setdefault(app, {})
    ids[hook_id] = None
    while len(ids) > MAX_SEEN:
        del ids[next(iter(ids))]


def _parse_time(text: str) -> float | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _format_time(at: float | None) -> str:
    if at is None:
        return ""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
