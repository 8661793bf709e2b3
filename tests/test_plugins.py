"""The plugin core: discovery, delivery that never raises or stalls, events from outcomes."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog.testing

from gitopsd import builtin_console
from gitopsd.backends.base import Applied, ApplyResult, RolloutStatus
from gitopsd.engine.announce import events_from_outcome
from gitopsd.engine.outcome import Outcome, Stage
from gitopsd.events import (
    CHANGES_APPLIED,
    ERROR,
    RECONCILE_FINISHED,
    ROLLED_BACK,
    Event,
    Severity,
)
from gitopsd.model import Revision
from gitopsd.plugins import (
    EventBus,
    PluginConfigError,
    PluginRegistry,
    backend_entry_points,
    format_plugins,
    hookimpl,
)

COMMIT = "a" * 40


def event(message: str = "m", severity: Severity = Severity.INFO, at: float = 1.0) -> Event:
    return Event(
        kind=ERROR,
        app="web",
        revision=COMMIT,
        message=message,
        severity=severity,
        reason="ApplyFailed",
        at=at,
    )


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    @hookimpl
    def gitopsd_event(self, event: Event) -> None:
        self.events.append(event)


class Raises:
    @hookimpl
    def gitopsd_event(self, event: Event) -> None:
        raise RuntimeError("plugin bug")


# Discovery


def test_discovery_finds_builtin_console_plugin_and_ecs_backend() -> None:
    registry = PluginRegistry.discover()
    infos = {p.name: p for p in registry.plugins()}
    console = infos["console"]
    assert console.distribution == "gitopsd"
    assert console.version
    assert "gitopsd_notifier" in console.hooks
    assert console.enabled
    registry.configure()
    assert "console" in [c.name for c in registry.channels]

    ecs = {b.name: b for b in backend_entry_points()}["ecs"]
    assert ecs.target == "gitopsd.backends.ecs.backend:EcsBackend"

    text = format_plugins(registry)
    assert text.splitlines()[0].split() == ["NAME", "DISTRIBUTION", "VERSION", "HOOKS", "ENABLED"]
    assert any(line.split()[:2] == ["console", "gitopsd"] for line in text.splitlines())
    assert "BACKENDS" in text
    assert "gitopsd.backends.ecs.backend:EcsBackend" in text


def test_disabled_plugin_is_listed_but_receives_nothing() -> None:
    registry = PluginRegistry.discover({"console": {"enabled": False}})
    assert {p.name: p.enabled for p in registry.plugins()}["console"] is False
    registry.configure()
    assert registry.channels == []


def test_console_plugin_prints_problems_only(capsys: pytest.CaptureFixture[str]) -> None:
    registry = PluginRegistry()
    registry.register(builtin_console, "console")
    registry.configure()
    bus = EventBus(registry)

    async def main() -> None:
        async with bus.running():
            bus.publish(event("deploy failed", Severity.ERROR))
            bus.publish(event("fine", Severity.INFO))

    anyio.run(main)
    err = capsys.readouterr().err
    assert err == "ALERT app web: ApplyFailed: deploy failed\n"


# Delivery never raises


def test_raising_plugin_is_logged_and_counted_and_others_still_receive() -> None:
    registry = PluginRegistry()
    rec = Recorder()
    registry.register(Raises(), "bad")
    registry.register(rec, "rec")
    with structlog.testing.capture_logs() as logs:
        registry.deliver(event())
        registry.deliver(event())
    assert registry.errors["bad"] == 2
    assert len(rec.events) == 2
    failed = [e for e in logs if e["event"] == "plugin.event_failed"]
    assert len(failed) == 2
    assert failed[0]["plugin"] == "bad"


def test_hanging_plugin_does_not_delay_publish_or_other_plugins() -> None:
    release = threading.Event()
    calls: list[str] = []

    class Hangs:
        @hookimpl
        def gitopsd_event(self, event: Event) -> None:
            calls.append(event.message)
            release.wait(2)  # bounded: the test releases it at the end

    registry = PluginRegistry()
    rec = Recorder()
    registry.register(Hangs(), "hangs")
    registry.register(rec, "rec")
    bus = EventBus(registry, timeout=0.1)
    publish_took: list[float] = []

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(bus.run)
            t0 = time.monotonic()
            for i in range(3):
                bus.publish(event(f"m{i}"))
            publish_took.append(time.monotonic() - t0)
            bus.close()

    started = time.monotonic()
    try:
        anyio.run(main)
        elapsed = time.monotonic() - started
    finally:
        release.set()
    assert publish_took[0] < 0.05
    assert [e.message for e in rec.events] == ["m0", "m1", "m2"]
    assert bus.delivered == 3
    # The first call timed out; while it is stuck, later events skip the plugin.
    assert registry.timeouts["hangs"] >= 1
    assert registry.timeouts["hangs"] + registry.skipped["hangs"] == 3
    assert elapsed < 1.5  # far below the 2 s the plugin would block


def test_full_bus_drops_oldest_and_counts() -> None:
    bus = EventBus(PluginRegistry(), max_buffer=2)
    for i in range(3):
        bus.publish(event(f"m{i}"))
    assert bus.dropped == 1
    rec = Recorder()
    bus.registry.register(rec, "rec")
    bus.close()
    anyio.run(bus.run)
    assert [e.message for e in rec.events] == ["m1", "m2"]


def test_full_bus_can_drop_newest() -> None:
    bus = EventBus(PluginRegistry(), max_buffer=1, drop="newest")
    bus.publish(event("m0"))
    bus.publish(event("m1"))
    rec = Recorder()
    bus.registry.register(rec, "rec")
    bus.close()
    anyio.run(bus.run)
    assert bus.dropped == 1
    assert [e.message for e in rec.events] == ["m0"]


# Configuration


class NeedsChannel:
    def __init__(self) -> None:
        self.options: Mapping[str, Any] = {}

    @hookimpl
    def gitopsd_configure(self, name: str, options: Mapping[str, Any]) -> None:
        if "channel" not in options:
            raise ValueError("channel: required (the Slack channel to post to)")
        self.options = options


def test_configure_error_names_the_key_path() -> None:
    registry = PluginRegistry(options={"slack": {"enabled": True, "webhook": "x"}})
    registry.register(NeedsChannel(), "slack")
    with pytest.raises(PluginConfigError) as e:
        registry.configure()
    assert "plugins.slack.channel: required" in str(e.value)


def test_configure_passes_options_without_enabled() -> None:
    plugin = NeedsChannel()
    registry = PluginRegistry(options={"slack": {"enabled": True, "channel": "#ops"}})
    registry.register(plugin, "slack")
    registry.configure()
    assert plugin.options == {"channel": "#ops"}


def test_console_plugin_refuses_unknown_options() -> None:
    registry = PluginRegistry(options={"console": {"colour": True}})
    registry.register(builtin_console, "console")
    with pytest.raises(PluginConfigError, match=r"plugins\.console\.colour: unknown option"):
        registry.configure()


# Events


def test_rolled_back_outcome_maps_to_rolled_back_event() -> None:
    outcome = Outcome(
        app="web",
        revision=Revision(source="repo", ref="main", commit=COMMIT),
        applied=ApplyResult(
            app="web",
            applied=(
                Applied(
                    key="Service/web",
                    action="update",
                    rollout="web:7",
                    deployment="ecs-svc/1",
                    service_deployment="arn:aws:ecs:eu-west-1:1:service-deployment/c/web/x",
                ),
            ),
        ),
        rollouts=(RolloutStatus("Service/web", "ROLLED_BACK", "circuit breaker tripped"),),
    )
    events = events_from_outcome(outcome, at=5.0)
    assert [e.kind for e in events] == [CHANGES_APPLIED, ROLLED_BACK, RECONCILE_FINISHED]
    rb = events[1]
    assert rb.app == "web"
    assert rb.revision == COMMIT
    assert rb.severity is Severity.ERROR
    assert rb.reason == "RolledBack"
    assert rb.deployment == "arn:aws:ecs:eu-west-1:1:service-deployment/c/web/x"
    assert "circuit breaker tripped" in rb.message
    assert rb.fields == ("Service/web",)
    assert events[-1].reason == "RolledBack"


def test_failed_outcome_maps_to_error_event() -> None:
    permanent = Outcome(app="web", failed_stage=Stage.APPLY, message="bad request")
    temporary = Outcome(app="web", failed_stage=Stage.SOURCE, message="offline", temporary=True)
    (err, _finished) = events_from_outcome(permanent)
    assert (err.kind, err.reason, err.message, err.severity, err.revision) == (
        ERROR,
        "ApplyFailed",
        "bad request",
        Severity.ERROR,
        "",
    )
    assert events_from_outcome(temporary)[0].severity is Severity.WARNING


def test_dry_run_applies_nothing() -> None:
    outcome = Outcome(
        app="web",
        applied=ApplyResult(app="web", applied=(Applied("Service/web", "update"),), dry_run=True),
    )
    assert [e.kind for e in events_from_outcome(outcome)] == [RECONCILE_FINISHED]


def test_dedup_key_ignores_time_and_message() -> None:
    assert event("a", at=1.0).dedup_key() == event("b", at=99.0).dedup_key()
    assert event().dedup_key() == (ERROR, "web", "ApplyFailed", COMMIT)


def test_a_failed_rollout_is_one_problem_event_not_also_an_error() -> None:
    outcome = Outcome(
        app="web",
        failed_stage=Stage.VERIFY,
        message="Service/web: FAILED: tasks failed to start",
        rollouts=(RolloutStatus("Service/web", "FAILED", "tasks failed to start", (), "d-1"),),
    )
    events = events_from_outcome(outcome)
    assert [e.kind for e in events] == ["rollout_failed", RECONCILE_FINISHED]
    assert events[0].deployment == "d-1"
    assert events[0].stage == "verify"


def test_bus_redacts_events_before_any_plugin_sees_them() -> None:
    from gitopsd.redact import register

    register("hunter2-token-xyz")
    bus = EventBus(PluginRegistry())
    rec = Recorder()
    bus.registry.register(rec, "rec")
    bus.publish(event("failed with hunter2-token-xyz at https://u:pw@host/r"))
    bus.close()
    anyio.run(bus.run)
    assert rec.events[0].message == "failed with *** at https://u:***@host/r"


def test_the_plugins_command_lists_plugins_and_backends_from_entry_points(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gitopsd.cli import main

    config = tmp_path / "gitopsd.toml"
    config.write_text("[plugins.console]\nenabled = true\n")
    assert main(["plugins", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "console  gitopsd" in out
    assert "ecs   gitopsd" in out
    assert "gitopsd.backends.ecs.backend:EcsBackend" in out

    config.write_text("[plugins.console]\ncolour = 'red'\n")
    assert main(["plugins", "-c", str(config)]) == 2
    assert "plugins.console.colour" in capsys.readouterr().err
