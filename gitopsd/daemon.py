"""``gitopsd run``: the agent, its HTTP server and control socket, and its signals.

The composition root of the long-running process: it builds the backend,
the sources and the :class:`~gitopsd.engine.agent.Agent`, serves
``/healthz``, ``/readyz``, ``/metrics``, ``/api/v1/apps`` and the webhooks
(:mod:`gitopsd.http`) and the control socket ``<state_dir>/gitopsd.sock``
(mode 0600) that ``gitopsd status``, ``reconcile``, ``suspend`` and ``resume``
talk to. SIGTERM or SIGINT: stop scheduling, cancel rollout waits, let
in-flight applies finish within ``[daemon].grace_period``, exit 0. SIGHUP:
reload the configuration; a bad new one is refused with a clear log line and
the running one goes on. Under systemd (``Type=notify``) it reports readiness, status,
watchdog pings, reloads and the stop (:mod:`gitopsd.sdnotify`).
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import structlog

from gitopsd import __version__
from gitopsd.backends.ecs.backend import EcsBackend
from gitopsd.config import Config
from gitopsd.config_source import ConfigSource, aload
from gitopsd.engine.agent import TICK, Agent, ControlRefused
from gitopsd.engine.sources import SourceSet
from gitopsd.errors import ConfigError, TemporaryError
from gitopsd.http import ControlError, serve_http
from gitopsd.plugins import EventBus, event_bus
from gitopsd.sdnotify import SystemdNotify
from gitopsd.state import StateDir
from gitopsd.statestore.deliveries import DeliveryLog
from gitopsd.statestore.factory import open_store
from gitopsd.telemetry.setup import Telemetry, setup_telemetry

log = structlog.get_logger(__name__)


def control_socket(config: Config) -> Path:
    return config.daemon.state_dir / "gitopsd.sock"


class AgentView:
    """The agent as the HTTP server sees it (write actions only on the control socket)."""

    def __init__(self, agent: Agent, telemetry: Telemetry) -> None:
        self.agent = agent
        self.telemetry = telemetry

    def health(self) -> tuple[bool, str]:
        return self.agent.health()

    def readiness(self) -> tuple[bool, str]:
        return self.agent.readiness()

    def status(self) -> list[dict[str, Any]]:
        return self.agent.status()

    def metrics_text(self) -> str:
        return self.telemetry.prometheus_text()

    def trigger(self, sources: Sequence[str], reason: str) -> list[str]:
        return self.agent.trigger(sources, reason)

    async def control(self, request: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return await self.agent.control(request)
        except ControlRefused as exc:
            raise ControlError(str(exc), exc.status) from None


async def run_agent(source: ConfigSource, config: Config | None = None) -> int:
    """Serve until SIGTERM/SIGINT (exit 0); reload on SIGHUP (``source`` is read again)."""
    config = config or await aload(source)
    telemetry = setup_telemetry(config.telemetry, version=__version__)
    bus = event_bus(config.plugins)  # a bad [plugins] table is refused before anything starts
    systemd = SystemdNotify.from_environ(tick=TICK)
    try:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async with systemd.running():
                while True:
                    reloaded = await _serve(config, source, bus, telemetry, signals, systemd)
                    if reloaded is None:
                        log.info("agent.stopped")
                        return 0
                    config, bus = reloaded
    finally:
        telemetry.flush()


async def _serve(
    config: Config,
    source: ConfigSource,
    bus: EventBus,
    telemetry: Telemetry,
    signals: AsyncIterator[int],
    systemd: SystemdNotify,
) -> tuple[Config, EventBus] | None:
    """Run the agent on ``config`` until a signal; the new configuration on SIGHUP."""
    reload_to: tuple[Config, EventBus] | None = None
    sources = SourceSet(config)
    try:
        async with (
            open_store(config, check=True) as store,  # what survives a restart (docs/state.md)
            bus.running(drain=config.daemon.grace_period),
            EcsBackend(
                config.aws,
                StateDir(config.daemon.state_dir),
                poll_interval=config.daemon.rollout_poll_interval,
                gate_plugins=bus.registry.gate,
            ) as backend,
        ):
            for channel in bus.channels:
                channel.remember_in(store)
            agent = Agent(
                config, backend, sources, events=bus, store=store,
                approvers=bus.registry.approvers,
            )  # fmt: skip
            await agent.load_records()  # an unreadable store stops the start, plainly
            async with anyio.create_task_group() as tg:
                tg.start_soon(systemd.follow, agent)  # READY=1 after the first pass
                endpoints = await tg.start(
                    partial(
                        serve_http,
                        control_socket=control_socket(config),
                        deliveries=DeliveryLog(store, config.http.delivery_retention),
                    ),
                    config.http,
                    AgentView(agent, telemetry),
                )
                log.info(
                    "agent.started",
                    url=endpoints.url,
                    socket=str(endpoints.socket),
                    apps=len(config.apps),
                    notifiers=[c.name for c in bus.channels],
                )
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        systemd.reloading()
                        try:
                            new = await aload(source)
                            reload_to = (new, event_bus(new.plugins))
                        except (ConfigError, TemporaryError) as exc:
                            log.error(
                                "agent.reload_refused",
                                error=str(exc),
                                hint="the running configuration goes on",
                            )
                            systemd.reload_refused()
                            continue
                        log.info("agent.reloading", config=source.label)
                    else:
                        log.info("agent.stopping", signal=signal.Signals(signum).name)
                        grace = config.daemon.grace_period
                        systemd.stopping(f"stopping: applies in flight get {grace:g}s to finish")
                    break
                await agent.shutdown()
                tg.cancel_scope.cancel()
    finally:
        sources.close()
    return reload_to
