"""Decisions on PAUSE hooks: the record in the state store, the events, approver plugins.

The backend here is a recording stand-in for ``paused_hooks``/``continue_deployment``
(the ECS side is exercised end to end in tests/e2e/test_approvals.py); the state
store is the real state-directory store.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import anyio
import pytest

from gitopsd.backends.base import Backend, PausedHook
from gitopsd.config import AppConfig, Config, parse_config
from gitopsd.engine.approvals import (
    MAX_KEPT,
    Approvals,
    DecisionRecord,
    NothingAwaitsApproval,
    read_decisions,
    record_decision,
)
from gitopsd.errors import PermanentError
from gitopsd.events import (
    APPROVAL_DECIDED,
    APPROVAL_NEEDED,
    ApprovalRequest,
    Decision,
    Event,
    RolloutProgress,
    RolloutStage,
    Severity,
)
from gitopsd.model import Origin, Resource
from gitopsd.plugins import ApproverEntry, PluginConfigError, PluginRegistry, hookimpl
from gitopsd.statestore import APPROVALS
from gitopsd.statestore.dirstore import DirStore

pytestmark = pytest.mark.anyio

SD = "arn:aws:ecs:us-east-1:123456789012:service-deployment/demo/web/sd1"
TD = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:7"
COMMIT = "c0ffee" * 6 + "abcd"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def config() -> Config:
    return parse_config(
        {
            "daemon": {"rollout_poll_interval": "10ms"},
            "sources": [{"name": "s", "url": "https://github.com/acme/deploy.git"}],
            "apps": [
                {"name": "web", "source": "s", "cluster": "demo"},
                {"name": "api", "source": "s", "cluster": "demo"},
            ],
        }
    )


def resources(*names: str) -> list[Resource]:
    origin = Origin("apps/web/service.yaml", 1)
    return [Resource("Service", n, {"serviceName": n}, origin) for n in names]


class FakeBackend:
    """Paused hooks as a test sets them; ContinueServiceDeployment calls recorded."""

    def __init__(self, hooks: Sequence[PausedHook] = ()) -> None:
        self.hooks = list(hooks)
        self.continued: list[tuple[str, str, str]] = []
        self.asked: list[list[str]] = []

    async def paused_hooks(self, app: AppConfig, resources: Sequence[Resource]) -> list[PausedHook]:
        names = [r.name for r in resources if r.kind == "Service"]
        self.asked.append(names)
        return [h for h in self.hooks if h.service in names]

    async def continue_deployment(
        self, app: AppConfig, deployment: str, hook_id: str, action: str
    ) -> None:
        self.continued.append((deployment, hook_id, action))
        self.hooks = [h for h in self.hooks if h.hook_id != hook_id]


class Sink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def publish(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


def hook(service: str = "web", hook_id: str = "h1", action: str = "ROLLBACK") -> PausedHook:
    return PausedHook(
        key=f"Service/{service}",
        service=service,
        deployment=SD.replace("web", service),
        hook_id=hook_id,
        stage="POST_TEST_TRAFFIC_SHIFT",
        expires_at=time.time() + 600,
        timeout_action=action,
        target=TD,
    )


def waiting(hook_id: str = "h1", *, hooks: str = "PAUSE:AWAITING_ACTION") -> RolloutProgress:
    details = {
        "approval": "needed",
        "hook_id": hook_id,
        "hook_stage": "POST_TEST_TRAFFIC_SHIFT",
        "hook_expires": "2026-12-06T03:00:00Z",
        "hooks": hooks,
    }
    return RolloutProgress(
        key="Service/web",
        stage=RolloutStage("IN_PROGRESS", "POST_TEST_TRAFFIC_SHIFT"),
        deployment=SD,
        target=TD,
        details=tuple(sorted(details.items())),
        message="approval needed",
    )


def moved_on(hooks: str) -> RolloutProgress:
    return RolloutProgress(
        key="Service/web",
        stage=RolloutStage("IN_PROGRESS", "PRODUCTION_TRAFFIC_SHIFT"),
        deployment=SD,
        target=TD,
        details=(("hooks", hooks),),
    )


def approvals(
    tmp_path: Path, backend: FakeBackend, sink: Sink, approvers: Sequence[ApproverEntry] = ()
) -> Approvals:
    return Approvals(
        config(),
        cast(Backend, backend),
        DirStore(tmp_path / "store"),
        events=sink,
        approvers=approvers,
    )


# -- the record ---------------------------------------------------------------------------


def record(hook_id: str, at: float = 1.0) -> DecisionRecord:
    return DecisionRecord(
        app="web", service="web", deployment=SD, hook_id=hook_id, action="CONTINUE",
        outcome="approved", by="alice@host", at=at, reason="looks good",
        stage="POST_TEST_TRAFFIC_SHIFT", revision=COMMIT, target=TD,
    )  # fmt: skip


async def test_a_decision_is_stored_and_read_back_whole(tmp_path: Path) -> None:
    store = DirStore(tmp_path / "store")
    await record_decision(store, record("h1"))
    assert await read_decisions(store, "web") == [record("h1")]
    assert await read_decisions(store, "api") == []
    entry = await store.get(APPROVALS, "web")
    assert entry is not None
    assert entry.version == 1


async def test_the_same_hook_is_recorded_once_and_the_oldest_are_dropped(tmp_path: Path) -> None:
    store = DirStore(tmp_path / "store")
    await record_decision(store, record("h1"))
    await record_decision(store, record("h1", at=2.0))  # the agent and the CLI both saw it
    assert [d.at for d in await read_decisions(store, "web")] == [1.0]
    for i in range(MAX_KEPT + 5):
        await record_decision(store, record(f"x{i}"))
    kept = await read_decisions(store, "web")
    assert len(kept) == MAX_KEPT
    assert kept[-1].hook_id == f"x{MAX_KEPT + 4}"
    assert kept[0].hook_id == "x5"


async def test_concurrent_writers_lose_no_decision(tmp_path: Path) -> None:
    """Conditional writes: each writer re-reads after a conflict, so all are kept."""
    async with anyio.create_task_group() as tg:
        for i in range(12):
            tg.start_soon(record_decision, DirStore(tmp_path / "store"), record(f"h{i}"))
    kept = await read_decisions(DirStore(tmp_path / "store"), "web")
    assert sorted(d.hook_id for d in kept) == sorted(f"h{i}" for i in range(12))


# -- deciding -------------------------------------------------------------------------------


async def test_approve_continues_every_paused_hook_and_records_who(tmp_path: Path) -> None:
    backend, sink = FakeBackend([hook("web", "h1"), hook("api", "h2")]), Sink()
    a = approvals(tmp_path, backend, sink)
    app = config().app("web")
    done = await a.decide(app, resources("web", "api"), approve=True, by="alice@host")
    assert backend.continued == [
        (SD, "h1", "CONTINUE"),
        (SD.replace("web", "api"), "h2", "CONTINUE"),
    ]
    assert [(d.service, d.outcome, d.by) for d in done] == [
        ("web", "approved", "alice@host"),
        ("api", "approved", "alice@host"),
    ]
    stored = await read_decisions(a.store, "web")
    assert [(d.hook_id, d.action, d.stage, d.target) for d in stored] == [
        ("h1", "CONTINUE", "POST_TEST_TRAFFIC_SHIFT", TD),
        ("h2", "CONTINUE", "POST_TEST_TRAFFIC_SHIFT", TD),
    ]
    assert sink.kinds() == [APPROVAL_DECIDED, APPROVAL_DECIDED]
    assert {e.severity for e in sink.events} == {Severity.INFO}
    assert "approved by alice@host" in sink.events[0].message


async def test_reject_rolls_back_only_the_named_service(tmp_path: Path) -> None:
    backend, sink = FakeBackend([hook("web", "h1"), hook("api", "h2")]), Sink()
    a = approvals(tmp_path, backend, sink)
    done = await a.decide(
        config().app("web"), resources("web", "api"), approve=False, by="bob",
        reason="error rate", service="api",
    )  # fmt: skip
    assert backend.continued == [(SD.replace("web", "api"), "h2", "ROLLBACK")]
    assert [(d.outcome, d.reason) for d in done] == [("rejected", "error rate")]
    (event,) = sink.events
    assert (event.kind, event.severity, event.reason) == (
        APPROVAL_DECIDED,
        Severity.WARNING,
        "Rejected",
    )


async def test_nothing_awaiting_approval_is_a_clear_error(tmp_path: Path) -> None:
    backend, sink = FakeBackend(), Sink()
    a = approvals(tmp_path, backend, sink)
    with pytest.raises(NothingAwaitsApproval, match="no deployment awaits approval") as caught:
        await a.decide(config().app("web"), resources("web"), approve=True, by="alice")
    assert "services web" in str(caught.value)
    with pytest.raises(PermanentError, match="declares no service 'nope'"):
        await a.decide(config().app("web"), resources("web"), approve=True, by="a", service="nope")
    assert backend.continued == []
    assert sink.events == []
    assert await read_decisions(a.store, "web") == []


# -- what a watched rollout reports ---------------------------------------------------------


async def test_approval_needed_is_announced_once_per_hook(tmp_path: Path) -> None:
    sink = Sink()
    a = approvals(tmp_path, FakeBackend(), sink)
    app = config().app("web")
    a.observe(app, COMMIT, waiting("h1"))
    a.observe(app, COMMIT, waiting("h1"))  # the next change of the same pause
    a.observe(app, COMMIT, moved_on("PAUSE:SUCCEEDED"))
    a.observe(app, COMMIT, waiting("h2"))  # the next step's hook (LINEAR): a fresh id
    assert sink.kinds() == [APPROVAL_NEEDED, APPROVAL_NEEDED]
    first = sink.events[0]
    assert (first.app, first.revision, first.deployment) == ("web", COMMIT, SD)
    assert first.fields == ("Service/web", "h1")
    assert first.progress is not None
    assert dict(first.progress.details)["hook_id"] == "h1"
    for part in (
        "Service/web",
        COMMIT[:12],
        "POST_TEST_TRAFFIC_SHIFT",
        "web:7",
        "2026-12-06 03:00",
    ):
        assert part in first.message
    assert "gitopsd approve web" in first.message
    assert first.link.startswith("https://github.com/acme/deploy/commit/")
    assert sink.events[0].dedup_key() != sink.events[1].dedup_key()


# -- approver plugins -----------------------------------------------------------------------


class Approver:
    """Says nothing for ``wait`` polls, then ``answer``."""

    def __init__(self, answer: Decision | None, wait: int = 1) -> None:
        self.answer = answer
        self.wait = wait
        self.requests: list[ApprovalRequest] = []

    async def decide(self, request: ApprovalRequest) -> Decision | None:
        self.requests.append(request)
        return self.answer if len(self.requests) > self.wait else None


async def until(check: Any, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):  # polling with a deadline
        while True:
            if check():
                return
            await anyio.sleep(0.01)


async def test_an_approver_plugin_decides_through_the_same_path(tmp_path: Path) -> None:
    backend, sink = FakeBackend([hook("web", "h1")]), Sink()
    yes = Approver(Decision(approve=True, reason="PR #12 approved", by="carol"), wait=2)
    other = Approver(Decision(approve=False))
    a = approvals(
        tmp_path, backend, sink,
        [ApproverEntry("pr", yes, ("web",)), ApproverEntry("chat", other, ("api*",))],
    )  # fmt: skip
    app = config().app("web")
    async with a.consulting(app, resources("web")):
        a.observe(app, COMMIT, waiting("h1"))
        await until(lambda: backend.continued)
    assert backend.continued == [(SD, "h1", "CONTINUE")]
    assert len(yes.requests) == 3
    assert other.requests == []
    request = yes.requests[-1]
    assert (request.app, request.key, request.hook_id, request.revision) == (
        "web",
        "Service/web",
        "h1",
        COMMIT,
    )
    assert request.timeout_action == "ROLLBACK"  # looked up once through the backend
    (stored,) = await read_decisions(a.store, "web")
    assert (stored.by, stored.reason, stored.outcome) == (
        "plugin pr (carol)",
        "PR #12 approved",
        "approved",
    )
    assert sink.kinds() == [APPROVAL_NEEDED, APPROVAL_DECIDED]
    a.observe(app, COMMIT, waiting("h1"))  # a late report of the decided hook: nothing new
    assert sink.kinds() == [APPROVAL_NEEDED, APPROVAL_DECIDED]


async def test_a_failing_approver_counts_as_no_answer(tmp_path: Path) -> None:
    class Broken:
        calls = 0

        async def decide(self, request: ApprovalRequest) -> Decision | None:
            Broken.calls += 1
            raise RuntimeError("chat is down")

    backend, sink = FakeBackend([hook("web", "h1")]), Sink()
    a = approvals(tmp_path, backend, sink, [ApproverEntry("chat", Broken(), ("*",))])
    app = config().app("web")
    async with a.consulting(app, resources("web")):
        a.observe(app, COMMIT, waiting("h1"))
        await until(lambda: Broken.calls >= 3)
    assert backend.continued == []
    assert sink.kinds() == [APPROVAL_NEEDED]


async def test_a_pause_that_times_out_is_recorded_with_the_action_ecs_took(tmp_path: Path) -> None:
    backend, sink = FakeBackend([hook("web", "h1", action="ROLLBACK")]), Sink()
    a = approvals(tmp_path, backend, sink)
    app = config().app("web")
    async with a.consulting(app, resources("web")):
        a.observe(app, COMMIT, waiting("h1"))
        await until(lambda: a.pending["web"]["h1"].enriched)
        a.observe(app, COMMIT, moved_on("PAUSE:TIMED_OUT"))
        await until(lambda: len(sink.events) == 2)
    (stored,) = await read_decisions(a.store, "web")
    assert (stored.outcome, stored.action, stored.hook_id) == ("timed out", "ROLLBACK", "h1")
    timed_out = sink.events[-1]
    assert (timed_out.kind, timed_out.reason, timed_out.severity) == (
        APPROVAL_DECIDED,
        "ApprovalTimedOut",
        Severity.WARNING,
    )
    assert "timeout action ROLLBACK" in timed_out.message


# -- plugin configuration -------------------------------------------------------------------


class ApproverPlugin:
    def __init__(self) -> None:
        self.options: dict[str, Any] = {}

    @hookimpl
    def gitopsd_approver(self, name: str, options: dict[str, Any]) -> Any:
        self.options = dict(options)
        if options.get("broken"):
            return object()
        return Approver(None)


def registry(options: dict[str, dict[str, Any]]) -> tuple[PluginRegistry, ApproverPlugin]:
    plugin = ApproverPlugin()
    reg = PluginRegistry(options=options)
    reg.register(plugin, "pr")
    return reg, plugin


def test_an_approver_serves_the_apps_its_approve_apps_names() -> None:
    reg, plugin = registry({"pr": {"approve_apps": ["web", "shop-*"], "repo": "acme/deploy"}})
    reg.configure()
    (entry,) = reg.approvers
    assert entry.name == "pr"
    assert plugin.options == {"repo": "acme/deploy"}
    assert [entry.serves(a) for a in ("web", "shop-eu", "api")] == [True, True, False]


def test_an_approver_without_approve_apps_decides_nothing() -> None:
    reg, _ = registry({"pr": {"repo": "acme/deploy"}})
    reg.configure()
    assert reg.approvers == []


def test_bad_approver_options_name_the_key() -> None:
    reg, _ = registry({"pr": {"approve_apps": 3}})
    with pytest.raises(PluginConfigError, match=r"plugins\.pr\.approve_apps: must be a list"):
        reg.configure()
    reg, _ = registry({"pr": {"approve_apps": ["*"], "broken": True}})
    with pytest.raises(PluginConfigError, match="has no `async def decide"):
        reg.configure()


async def test_a_hook_gone_the_way_of_its_timeout_action_without_a_decision_timed_out(
    tmp_path: Path,
) -> None:
    """ECS may leave the stage at once on a CONTINUE timeout: no TIMED_OUT is ever seen."""
    backend, sink = FakeBackend([hook("web", "h1", action="CONTINUE")]), Sink()
    a = approvals(tmp_path, backend, sink)
    app = config().app("web")
    async with a.consulting(app, resources("web")):
        a.observe(app, COMMIT, waiting("h1"))
        await until(lambda: a.pending["web"]["h1"].enriched)
        a.observe(app, COMMIT, moved_on(""))  # on to PRODUCTION_TRAFFIC_SHIFT
        await until(lambda: len(sink.events) == 2)
    (stored,) = await read_decisions(a.store, "web")
    assert (stored.outcome, stored.action) == ("timed out", "CONTINUE")
    assert sink.events[-1].severity == Severity.INFO


async def test_a_hook_gone_the_other_way_was_decided_outside_gitopsd(tmp_path: Path) -> None:
    backend, sink = FakeBackend([hook("web", "h1", action="ROLLBACK")]), Sink()
    a = approvals(tmp_path, backend, sink)
    app = config().app("web")
    async with a.consulting(app, resources("web")):
        a.observe(app, COMMIT, waiting("h1"))
        await until(lambda: a.pending["web"]["h1"].enriched)
        a.observe(app, COMMIT, moved_on(""))  # went on although the timeout rolls back
    assert await read_decisions(a.store, "web") == []
    assert sink.kinds() == [APPROVAL_NEEDED]


async def test_a_decision_replaces_a_timeout_guessed_for_the_same_hook(tmp_path: Path) -> None:
    store = DirStore(tmp_path / "store")
    guessed = replace(record("h1"), outcome="timed out", by="ECS (timeout)")
    await record_decision(store, guessed)
    await record_decision(store, record("h1", at=2.0))
    await record_decision(store, replace(guessed, at=3.0))  # and not the other way round
    (kept,) = await read_decisions(store, "web")
    assert (kept.outcome, kept.by, kept.at) == ("approved", "alice@host", 2.0)
