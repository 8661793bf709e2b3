"""Plugins: pluggy hooks, discovery by entry point, and delivery of events.

A plugin is any module or object with functions marked ``@hookimpl``, named by
an entry point in the ``gitopsd.plugins`` group of its distribution::

    [project.entry-points."gitopsd.plugins"]
    slack = "gitopsd_slack.plugin"

Hooks (all optional for a plugin):

``gitopsd_notifier(name, options)``
    Return a :class:`gitopsd.alerts.Notifier` (an object with ``async def
    send(alert)``) built from the plugin's options, or None. gitopsd gives it
    routing, alert hygiene (dedup window, suppressed counts, recovery once)
    and retried delivery on its own task (:mod:`gitopsd.alerts`); the options
    those take (``min_severity``, ``apps``, ``kinds``, ``dedup_window``,
    ``retries``...) are removed from ``options`` first. Raise
    ``ValueError("key.path: message")`` on a bad option. This is the hook
    for anything that alerts people.
``gitopsd_event(event)``
    Every event, raw (no routing, no dedup): for audit logs and the like. A
    notification (:class:`gitopsd.events.Event`). It must return fast: a
    plugin that talks to the network hands the work to its own thread or
    queue. gitopsd calls it from a worker thread with a timeout
    (:class:`EventBus`), so a plugin that blocks loses its own events (they are
    counted as timed out / skipped) but never stalls a reconcile or another
    plugin; an abandoned call keeps its thread until it returns, which is the
    plugin's problem. Exceptions are logged and counted, never raised.
``gitopsd_configure(name, options)``
    Validate the plugin's ``[plugins.NAME]`` table (``enabled`` removed) and
    keep it; raise ``ValueError("key.path: message")`` on a bad option.
    gitopsd reports it as ``plugins.NAME.key.path: message``.
``gitopsd_backends()``
    Optional: backends this plugin provides, ``{name: factory}``. Backends are
    otherwise found through the ``gitopsd.backends`` entry point group.
``gitopsd_approver(name, options)``
    Return an :class:`Approver` (an object with ``async def decide(request)``
    answering a :class:`gitopsd.events.Decision`, or None for "not yet") built
    from the plugin's options, or None. It is asked on every rollout poll while
    a deployment of an app it serves waits at a PAUSE hook
    (:mod:`gitopsd.engine.approvals`); ``approve_apps`` (names or shell patterns;
    required, none by default) says which apps, and is removed from ``options``.

``gitopsd_gate(name, type, options)``
    Return a gate (an object with ``async def check(context) -> GateResult``,
    :mod:`gitopsd.gates`) for an ``apps[].gates`` entry whose ``type`` the
    plugin provides (``options`` is the entry's ``options`` table), or None
    for a type it does not know. Raise ``ValueError("message")`` on bad options.

``[plugins.NAME] enabled = false`` disables a discovered plugin: it is listed
but receives nothing.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol, runtime_checkable

import anyio
import anyio.abc
import pluggy
import structlog

from gitopsd.alerts import Channel, ChannelOptions, Notifier, parse_channel_options
from gitopsd.errors import ConfigError
from gitopsd.events import ApprovalRequest, Change, Decision, Event, FieldDiff
from gitopsd.redact import redact
from gitopsd.telemetry import instruments as ins

log = structlog.get_logger(__name__)

PROJECT = "gitopsd"
PLUGINS_GROUP = "gitopsd.plugins"
BACKENDS_GROUP = "gitopsd.backends"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

HOOKS = (
    "gitopsd_notifier",
    "gitopsd_event",
    "gitopsd_configure",
    "gitopsd_backends",
    "gitopsd_approver",
    "gitopsd_gate",
)
#: The option of ``[plugins.NAME]`` naming the apps an approver decides for.
APPROVE_APPS = "approve_apps"


@runtime_checkable
class Approver(Protocol):
    """What an approver plugin provides (returned by its ``gitopsd_approver`` hook).

    ``decide`` answers a :class:`~gitopsd.events.Decision` (approve or reject), or
    None while it has no answer yet (it is asked again on the next poll). It must
    return within a poll interval; an exception is logged and counts as no answer.
    """

    async def decide(self, request: ApprovalRequest) -> Decision | None: ...


@dataclass(frozen=True)
class ApproverEntry:
    """An approver plugin with the apps it decides for (``approve_apps`` patterns)."""

    name: str
    approver: Approver
    apps: tuple[str, ...]

    def serves(self, app: str) -> bool:
        return any(fnmatch.fnmatchcase(app, pattern) for pattern in self.apps)


class HookSpecs:
    """The hooks gitopsd calls; see the module docstring."""

    @hookspec(firstresult=True)
    def gitopsd_notifier(self, name: str, options: Mapping[str, Any]) -> Notifier | None:
        """A notifier built from ``[plugins.NAME]`` (channel options removed), or None."""

    @hookspec
    def gitopsd_event(self, event: Event) -> None:
        """A notification; return fast (hand slow work to your own task)."""

    @hookspec
    def gitopsd_configure(self, name: str, options: Mapping[str, Any]) -> None:
        """Validate and keep ``[plugins.NAME]``; raise ``ValueError("key.path: message")``."""

    @hookspec
    def gitopsd_backends(self) -> dict[str, object]:  # type: ignore[empty-body]
        """Backends this plugin provides: ``{name: factory}``."""

    @hookspec(firstresult=True)
    def gitopsd_approver(self, name: str, options: Mapping[str, Any]) -> Approver | None:
        """An approver built from ``[plugins.NAME]`` (``approve_apps`` removed), or None."""

    @hookspec(firstresult=True)
    def gitopsd_gate(self, name: str, type: str, options: Mapping[str, Any]) -> object | None:
        """A gate (``async def check(context)``) for gate ``type``, or None."""


class PluginConfigError(ConfigError):
    """A plugin refused its options, or could not be loaded."""


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str
    version: str
    hooks: tuple[str, ...]
    enabled: bool


@dataclass(frozen=True)
class BackendEntry:
    name: str
    target: str
    distribution: str
    version: str


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(HookSpecs)
    return pm


class PluginRegistry:
    """The plugins found, which are enabled, and delivery of events to them.

    ``options`` is the ``[plugins]`` table of the configuration:
    ``{name: {"enabled": bool, ...plugin options}}``.
    """

    def __init__(
        self,
        pm: pluggy.PluginManager | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.pm = pm if pm is not None else _new_manager()
        self.options: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (options or {}).items()}
        #: Exceptions raised by gitopsd_event, per plugin.
        self.errors: Counter[str] = Counter()
        #: Deliveries abandoned after the timeout, per plugin.
        self.timeouts: Counter[str] = Counter()
        #: Events not delivered because the plugin's previous call had not returned.
        self.skipped: Counter[str] = Counter()
        #: Entry points that failed to load: name -> message.
        self.load_errors: dict[str, str] = {}
        #: The notifiers' delivery channels, built by :meth:`configure`.
        self.channels: list[Channel] = []
        #: The approvers with the apps they serve, built by :meth:`configure`.
        self.approvers: list[ApproverEntry] = []
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def discover(
        cls,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        extra: Mapping[str, object] | None = None,
    ) -> PluginRegistry:
        """Load the ``gitopsd.plugins`` entry points (one by one: a broken one is recorded
        in ``load_errors`` and logged, the others still load), plus ``extra`` plugins
        (``{name: plugin}``, for tests and built-ins not installed as a distribution)."""
        registry = cls(options=options)
        names = {ep.name for ep in importlib.metadata.entry_points(group=PLUGINS_GROUP)}
        for name in sorted(names):
            if not registry.enabled(name):
                # Listed, not imported: a disabled plugin runs no code.
                continue
            try:
                registry.pm.load_setuptools_entrypoints(PLUGINS_GROUP, name=name)
            except Exception as e:
                registry.load_errors[name] = f"{type(e).__name__}: {e}"
                log.exception("plugin.load_failed", plugin=name)
        for name, plugin in (extra or {}).items():
            registry.register(plugin, name)
        return registry

    def register(self, plugin: object, name: str) -> None:
        self.pm.register(plugin, name=name)

    def enabled(self, name: str) -> bool:
        return bool(self.options.get(name, {}).get("enabled", True))

    def names(self) -> list[str]:
        """Every plugin found, loaded or not (disabled entry points are not loaded)."""
        found = {n for n, _ in self.pm.list_name_plugin() if n is not None}
        found |= {ep.name for ep in importlib.metadata.entry_points(group=PLUGINS_GROUP)}
        return sorted(found)

    def _hooks_of(self, name: str) -> tuple[str, ...]:
        plugin = self.pm.get_plugin(name)
        if plugin is None:
            return ()
        return tuple(
            h
            for h in HOOKS
            if any(i.plugin is plugin for i in getattr(self.pm.hook, h).get_hookimpls())
        )

    def plugins(self) -> list[PluginInfo]:
        """What ``gitopsd plugins`` lists."""
        dists: dict[str, tuple[str, str]] = {}
        for plugin, dist in self.pm.list_plugin_distinfo():
            name = self.pm.get_name(plugin)
            if name is not None:
                dists[name] = (dist.project_name, dist.version)
        for ep in importlib.metadata.entry_points(group=PLUGINS_GROUP):
            if ep.name not in dists and ep.dist is not None:
                dists[ep.name] = (ep.dist.name, ep.dist.version)
        return [
            PluginInfo(
                name=n,
                distribution=dists.get(n, ("-", "-"))[0],
                version=dists.get(n, ("-", "-"))[1],
                hooks=self._hooks_of(n),
                enabled=self.enabled(n) and n not in self.load_errors,
            )
            for n in self.names()
        ]

    def _enabled_impls(self, hook: str) -> list[tuple[str, pluggy.HookImpl]]:
        out = []
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            name = self.pm.get_name(impl.plugin)
            if name is not None and self.enabled(name):
                out.append((name, impl))
        return out

    def configure(self) -> None:
        """Give each enabled plugin its options and build the notifiers' channels; raise
        :class:`PluginConfigError` naming ``plugins.NAME.key.path`` for every refusal (all
        plugins are asked first)."""
        problems = [
            f"plugins.{n}: could not be loaded: {m} (fix or uninstall it, or set "
            f"[plugins.{n}] enabled = false to run without it)"
            for n, m in self.load_errors.items()
        ]
        notifier_plugins = {n for n, _ in self._enabled_impls("gitopsd_notifier")}
        approver_plugins = {n for n, _ in self._enabled_impls("gitopsd_approver")}
        for name, impl in self._enabled_impls("gitopsd_configure"):
            opts = {k: v for k, v in self.options.get(name, {}).items() if k != "enabled"}
            if name in approver_plugins:
                opts.pop(APPROVE_APPS, None)
            if name in notifier_plugins:
                opts = {k: v for k, v in opts.items() if k not in ChannelOptions.KEYS}
            try:
                impl.function(*_args(impl, {"name": name, "options": opts}))
            except ValueError as e:
                problems.append(f"plugins.{name}.{e}")
        self.channels = []
        for name, impl in self._enabled_impls("gitopsd_notifier"):
            options = self.options.get(name, {})
            if name in approver_plugins:
                options = {k: v for k, v in options.items() if k != APPROVE_APPS}
            try:
                _, own = parse_channel_options(options)
                notifier = impl.function(*_args(impl, {"name": name, "options": own}))
                if notifier is None:
                    continue
                if not isinstance(notifier, Notifier):
                    problems.append(
                        f"plugins.{name}: gitopsd_notifier returned {type(notifier).__name__}, "
                        "which has no `async def send(alert)`"
                    )
                    continue
                defaults = getattr(notifier, "channel_defaults", {}) or {}
                channel_options, _ = parse_channel_options({**defaults, **options})
            except ValueError as e:
                if name not in self.options:
                    # Installed but not configured (no [plugins.NAME] table): inactive.
                    log.debug("plugin.not_configured", plugin=name, reason=str(e))
                    continue
                problems.append(f"plugins.{name}.{e}")
                continue
            self.channels.append(Channel(name, notifier, channel_options))
        self.approvers = self._approvers(problems)
        if problems:
            raise PluginConfigError("\n  ".join(problems))

    def _approvers(self, problems: list[str]) -> list[ApproverEntry]:
        """Each enabled approver plugin with ``approve_apps``; refusals go to ``problems``."""
        out = []
        for name, impl in self._enabled_impls("gitopsd_approver"):
            options = {k: v for k, v in self.options.get(name, {}).items() if k != "enabled"}
            patterns = options.pop(APPROVE_APPS, None)
            if patterns is None:
                log.debug("plugin.approver_unused", plugin=name, reason=f"no {APPROVE_APPS}")
                continue
            if isinstance(patterns, str):
                patterns = [patterns]
            if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
                problems.append(
                    f"plugins.{name}.{APPROVE_APPS}: must be a list of app names or shell "
                    "patterns (e.g. ['web', 'shop-*'])"
                )
                continue
            try:
                approver = impl.function(*_args(impl, {"name": name, "options": options}))
            except ValueError as e:
                problems.append(f"plugins.{name}.{e}")
                continue
            if approver is None:
                continue
            if not isinstance(approver, Approver):
                problems.append(
                    f"plugins.{name}: gitopsd_approver returned {type(approver).__name__}, "
                    "which has no `async def decide(request)`"
                )
                continue
            out.append(ApproverEntry(name, approver, tuple(patterns)))
        return out

    def backends(self) -> dict[str, object]:
        """Backends provided by enabled plugins through ``gitopsd_backends``."""
        out: dict[str, object] = {}
        for name, impl in self._enabled_impls("gitopsd_backends"):
            provided = impl.function(*_args(impl, {}))
            if not isinstance(provided, Mapping):
                raise PluginConfigError(f"plugins.{name}: gitopsd_backends must return a dict")
            out.update(provided)
        return out

    def gate(self, name: str, type: str, options: Mapping[str, Any]) -> object | None:
        """The first enabled plugin's gate for ``type`` (``apps[].gates[]``), or None.
        A plugin's ``ValueError`` becomes a :class:`PluginConfigError` naming the gate."""
        for plugin, impl in self._enabled_impls("gitopsd_gate"):
            try:
                found = impl.function(
                    *_args(impl, {"name": name, "type": type, "options": options})
                )
            except ValueError as e:
                raise PluginConfigError(f"gates {name} (type {type}, plugin {plugin}): {e}") from e
            if found is not None:
                return found
        return None

    def event_receivers(self) -> list[str]:
        return [n for n, _ in self._enabled_impls("gitopsd_event")]

    def deliver_to(self, name: str, event: Event) -> bool:
        """Call one plugin's ``gitopsd_event``; log and count an exception, never raise.

        Returns False when the plugin was skipped because its previous call is still running.
        """
        impls = [i for n, i in self._enabled_impls("gitopsd_event") if n == name]
        with self._lock:
            if name in self._busy:
                self.skipped[name] += 1
                return False
            self._busy.add(name)
        try:
            for impl in impls:
                impl.function(*_args(impl, {"event": event}))
        except Exception:
            self.errors[name] += 1
            ins.plugin_errors.add(1, {ins.NOTIFIER: name, ins.RESULT: "raised"})
            log.exception("plugin.event_failed", plugin=name, kind=event.kind, app=event.app)
        finally:
            with self._lock:
                self._busy.discard(name)
        return True

    def deliver(self, event: Event) -> None:
        """Call ``gitopsd_event`` on each enabled plugin in turn (this thread; a blocking
        plugin blocks it: the :class:`EventBus` is the way to deliver with a timeout)."""
        for name in self.event_receivers():
            self.deliver_to(name, event)


def _args(impl: pluggy.HookImpl, kwargs: Mapping[str, object]) -> list[object]:
    # A hookimpl may accept a subset of the spec's arguments, as pluggy allows.
    return [kwargs[a] for a in impl.argnames]


DropPolicy = Literal["oldest", "newest"]


def redact_event(event: Event) -> Event:
    """``event`` with every text field through the one redaction mechanism."""
    return replace(
        event,
        message=redact(event.message),
        commit_message=redact(event.commit_message),
        link=redact(event.link),
        reason=redact(event.reason),
        fields=tuple(redact(f) for f in event.fields),
        changes=tuple(
            Change(
                redact(c.key),
                c.action,
                tuple(FieldDiff(f.path, redact(f.before), redact(f.after)) for f in c.fields),
            )
            for c in event.changes
        ),
        progress=(
            None
            if event.progress is None
            else replace(
                event.progress,
                message=redact(event.progress.message),
                details=tuple((k, redact(v)) for k, v in event.progress.details),
            )
        ),
    )


class EventBus:
    """Hands events to plugins and notifiers off the reconcile's path.

    :meth:`publish` never blocks and never raises: it redacts the event, offers
    it to every notifier's :class:`~gitopsd.alerts.Channel` (each with its own
    queue and task, see :mod:`gitopsd.alerts`), and queues it for the raw
    ``gitopsd_event`` hooks. That queue is bounded (``max_buffer``) and when
    full drops the oldest queued event (``drop="oldest"``) or the new one
    (``"newest"``), counting it in :attr:`dropped`. :meth:`run` is the consumer
    (start it in a task group, or use :meth:`running`): each event goes to
    every enabled ``gitopsd_event`` plugin concurrently, each call in a worker
    thread bounded by ``timeout`` seconds; a call that overruns is abandoned
    and counted in ``registry.timeouts``, and the plugin is skipped while it is
    still stuck. Call :meth:`publish` and :meth:`close` from the event loop's
    thread.
    """

    def __init__(
        self,
        registry: PluginRegistry,
        *,
        max_buffer: int = 1000,
        timeout: float = 5.0,
        drop: DropPolicy = "oldest",
    ) -> None:
        self.registry = registry
        self.timeout = timeout
        self.drop = drop
        self.dropped = 0
        self.delivered = 0
        self._send, self._receive = anyio.create_memory_object_stream[Event](max_buffer)
        self._done = anyio.Event()

    @property
    def channels(self) -> list[Channel]:
        return self.registry.channels

    def publish(self, event: Event) -> None:
        """Queue ``event`` for every plugin and notifier; never blocks, never raises."""
        try:
            event = redact_event(event)
            for channel in self.channels:
                channel.offer(event)
        except Exception:
            log.exception("plugin.publish_failed", kind=event.kind, app=event.app)
        try:
            self._send.send_nowait(event)
            return
        except anyio.WouldBlock:
            pass
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            self.dropped += 1
            return
        self.dropped += 1
        if self.drop == "newest":
            log.warning("plugin.event_dropped", kind=event.kind, app=event.app)
            return
        try:
            old = self._receive.receive_nowait()
            log.warning("plugin.event_dropped", kind=old.kind, app=old.app)
            self._send.send_nowait(event)
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass

    def close(self) -> None:
        """No more events: :meth:`run` delivers what is queued and returns."""
        self._send.close()
        for channel in self.channels:
            channel.close()

    async def run(self) -> None:
        """Deliver until :meth:`close` and everything queued is delivered."""
        try:
            async with anyio.create_task_group() as tg:
                for channel in self.channels:
                    tg.start_soon(channel.run)
                async with self._receive:
                    async for event in self._receive:
                        await self._deliver(event)
        finally:
            self._done.set()

    @asynccontextmanager
    async def running(self, drain: float = 10.0) -> AsyncIterator[EventBus]:
        """Run the bus for the body; on exit close it and let queued alerts go out
        for at most ``drain`` seconds (a notifier that cannot deliver by then loses them,
        and says so in the log)."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.run)
            try:
                yield self
            finally:
                self.close()
                with anyio.move_on_after(drain, shield=True) as scope:
                    await self._done.wait()
                if scope.cancelled_caught:
                    log.warning("plugin.drain_timeout", timeout=drain)
                tg.cancel_scope.cancel()

    async def _deliver(self, event: Event) -> None:
        async with anyio.create_task_group() as tg:
            for name in self.registry.event_receivers():
                tg.start_soon(self._deliver_one, name, event)
        self.delivered += 1

    async def _deliver_one(self, name: str, event: Event) -> None:
        with anyio.move_on_after(self.timeout) as scope:
            await anyio.to_thread.run_sync(
                self.registry.deliver_to, name, event, abandon_on_cancel=True
            )
        if scope.cancelled_caught:
            self.registry.timeouts[name] += 1
            ins.plugin_errors.add(1, {ins.NOTIFIER: name, ins.RESULT: "timeout"})
            log.warning("plugin.event_timeout", plugin=name, kind=event.kind, timeout=self.timeout)


def backend_entry_points() -> list[BackendEntry]:
    """The ``gitopsd.backends`` entry points, not loaded."""
    out = [
        BackendEntry(
            ep.name,
            ep.value,
            ep.dist.name if ep.dist else "-",
            ep.dist.version if ep.dist else "-",
        )
        for ep in importlib.metadata.entry_points(group=BACKENDS_GROUP)
    ]
    return sorted(out, key=lambda b: b.name)


def _table(header: Iterable[str], rows: list[list[str]]) -> list[str]:
    head = list(header)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [head, *rows]
    ]


def format_plugins(registry: PluginRegistry) -> str:
    """The text of ``gitopsd plugins``: the plugins, then the backends."""
    rows = [
        [
            p.name,
            p.distribution,
            p.version,
            ",".join(h.removeprefix("gitopsd_") for h in p.hooks) or "-",
            "yes" if p.enabled else ("load failed" if p.name in registry.load_errors else "no"),
        ]
        for p in registry.plugins()
    ]
    lines = _table(["NAME", "DISTRIBUTION", "VERSION", "HOOKS", "ENABLED"], rows)
    if not rows:
        lines.append("(no plugins)")
    backends = [[b.name, b.distribution, b.version, b.target] for b in backend_entry_points()]
    for name in registry.backends():
        backends.append([name, "-", "-", "(gitopsd_backends hook)"])
    lines += ["", "BACKENDS"]
    lines += _table(["NAME", "DISTRIBUTION", "VERSION", "TARGET"], backends)
    return "\n".join(lines) + "\n"


def event_bus(options: Mapping[str, Mapping[str, Any]], **kwargs: Any) -> EventBus:
    """The plugins of ``[plugins]`` found, configured (a :class:`PluginConfigError` names
    every bad key), and an :class:`EventBus` over them."""
    registry = PluginRegistry.discover(options)
    registry.configure()
    return EventBus(registry, **kwargs)
