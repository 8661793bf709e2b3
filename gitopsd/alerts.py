"""Alert channels: routing, alert hygiene and retried delivery for every notifier.

A notifier plugin (webhook, Slack, SNS, a third party's) only knows how to
*send one alert*: an object with ``async def send(alert)`` (:class:`Notifier`).
Everything users complain about in other tools' notifications lives here,
once, for every notifier:

- **Routing** (:class:`Route`): minimum severity, apps and event kinds to
  include or exclude (shell-style patterns). By default ``reconcile_started``,
  ``reconcile_finished``, ``condition_changed`` and ``rollout_progressed`` are
  left out: they are bookkeeping, not news.
- **Hygiene** (:class:`AlertFilter`): an event whose dedup key (kind, app,
  reason, revision; never durations, timestamps or task ids) was sent within
  ``dedup_window`` is suppressed and counted; the next alert of that key says
  how many were suppressed. A problem (rollout failed, rolled back, drift,
  error) makes the channel owe a recovery: the first ``recovered`` event of
  that app is sent, once, and only where the problem was sent.
- **Delivery** (:class:`Channel`): each notifier has its own bounded queue and
  task, so a slow Slack never delays SNS or a reconcile; a failed send is
  retried with exponential backoff and jitter (tenacity), each attempt bounded
  by a timeout; an alert counts as sent only once ``send`` returned, so a
  failed delivery is never recorded as sent (the next identical event tries
  again). A :class:`PermanentDeliveryError` (a 4xx answer) is not retried.

Every result is counted in the ``gitopsd.notifier.deliveries`` metric.

The agent gives each channel a state store (:meth:`Channel.remember_in`): what
was sent and when, and the recoveries owed, are read back when the channel
starts and written after each delivery, so a restart (a replaced Fargate task)
neither resends an open problem within its window nor forgets a recovery.
"""

from __future__ import annotations

import fnmatch
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import anyio
import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_not_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from gitopsd.events import (
    CONDITION_CHANGED,
    KINDS,
    PROBLEMS,
    RECONCILE_FINISHED,
    RECONCILE_STARTED,
    RECOVERED,
    ROLLOUT_PROGRESSED,
    Event,
    Severity,
)
from gitopsd.statestore import ALERTS, StateStore, StateStoreError, update
from gitopsd.telemetry import instruments as ins

log = structlog.get_logger(__name__)

DEFAULT_EXCLUDED_KINDS: tuple[str, ...] = (
    RECONCILE_STARTED,
    RECONCILE_FINISHED,
    CONDITION_CHANGED,
    ROLLOUT_PROGRESSED,
)


class DeliveryError(Exception):
    """A send failed and a retry may help (a timeout, a 5xx, a 429, a refused connection)."""


class PermanentDeliveryError(DeliveryError):
    """A send was refused and retrying the same alert cannot help (a 4xx, a bad topic)."""


@dataclass(frozen=True)
class Alert:
    """What a notifier sends: the event, plus what hygiene adds.

    ``suppressed`` counts the identical events not sent since this key was last
    sent (0 for a first alert); ``repeat`` is True when this key was sent before
    (the problem persists past the dedup window).
    """

    event: Event
    suppressed: int = 0
    repeat: bool = False

    @property
    def title(self) -> str:
        e = self.event
        commit = f" at {e.revision[:12]}" if e.revision else ""
        if e.kind == RECOVERED:
            return f"{e.app} is Ready again{commit}"
        words = e.kind.replace("_", " ")
        return f"{e.app}: {words}{commit}" + (f" ({e.reason})" if e.reason else "")

    @property
    def text(self) -> str:
        """The title, the message and the suppressed count: a plain-text alert body."""
        lines = [self.title]
        if self.event.message and self.event.kind != RECOVERED:
            lines.append(self.event.message)
        if self.suppressed:
            lines.append(f"({self.suppressed} identical alert(s) suppressed since the last one)")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The alert as a JSON document (the generic webhook's body)."""
        e = self.event
        return {
            "kind": e.kind,
            "app": e.app,
            "revision": e.revision,
            "commit_message": e.commit_message,
            "link": e.link,
            "source": e.source,
            "severity": str(e.severity),
            "reason": e.reason,
            "stage": e.stage,
            "message": e.message,
            "title": self.title,
            "at": e.at,
            "deployment": e.deployment,
            "rollout": e.progress.to_json() if e.progress is not None else None,
            "fields": list(e.fields),
            "changes": [
                {
                    "key": c.key,
                    "action": c.action,
                    "fields": [
                        {"path": f.path, "before": f.before, "after": f.after} for f in c.fields
                    ],
                }
                for c in e.changes
            ],
            "suppressed": self.suppressed,
            "repeat": self.repeat,
        }


@runtime_checkable
class Notifier(Protocol):
    """What a notifier plugin provides (returned by its ``gitopsd_notifier`` hook).

    ``send`` delivers one alert or raises: :class:`PermanentDeliveryError` when a
    retry cannot help, anything else to have it retried. ``aclose`` (optional) is
    awaited at shutdown.
    """

    async def send(self, alert: Alert) -> None: ...


def _patterns(key: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key}: must be a list of names or shell patterns (e.g. ['web*'])")
    return tuple(value)


@dataclass(frozen=True)
class Route:
    """Which events a notifier receives."""

    min_severity: Severity = Severity.INFO
    apps: tuple[str, ...] = ()  # empty: every app
    exclude_apps: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()  # empty: every kind but DEFAULT_EXCLUDED_KINDS
    exclude_kinds: tuple[str, ...] = ()

    def wants(self, event: Event) -> bool:
        kinds = self.kinds or tuple(k for k in KINDS if k not in DEFAULT_EXCLUDED_KINDS)
        if not any(fnmatch.fnmatchcase(event.kind, k) for k in kinds):
            return False
        if any(fnmatch.fnmatchcase(event.kind, k) for k in self.exclude_kinds):
            return False
        if self.apps and not any(fnmatch.fnmatchcase(event.app, a) for a in self.apps):
            return False
        if any(fnmatch.fnmatchcase(event.app, a) for a in self.exclude_apps):
            return False
        # A recovery follows its problem through: it passes the severity bar.
        return event.kind == RECOVERED or event.severity.rank >= self.min_severity.rank


@dataclass(frozen=True)
class ChannelOptions:
    """The options every notifier takes (``[plugins.NAME]``), besides its own."""

    route: Route = Route()
    dedup_window: float = 3600.0
    attempts: int = 5
    backoff_min: float = 1.0
    backoff_max: float = 60.0
    timeout: float = 10.0
    queue: int = 1000

    #: The keys :func:`parse_channel_options` consumes.
    KEYS = (
        "min_severity",
        "apps",
        "exclude_apps",
        "kinds",
        "exclude_kinds",
        "dedup_window",
        "retries",
        "retry_backoff_min",
        "retry_backoff_max",
        "timeout",
        "queue",
    )


def _seconds(key: str, value: object) -> float:
    from gitopsd.config import parse_duration  # the same duration words as the rest of the file

    try:
        return float(parse_duration(value))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{key}: {exc}") from None


def parse_channel_options(options: Mapping[str, Any]) -> tuple[ChannelOptions, dict[str, Any]]:
    """Split ``[plugins.NAME]`` into the channel's options and the plugin's own.

    Raises ``ValueError("key: message")`` for a bad value.
    """
    own = {k: v for k, v in options.items() if k not in ChannelOptions.KEYS and k != "enabled"}
    severity = options.get("min_severity", "info")
    try:
        min_severity = Severity(severity)
    except ValueError:
        raise ValueError(f"min_severity: {severity!r} is not one of info, warning, error") from None
    kinds = _patterns("kinds", options.get("kinds"))
    exclude_kinds = _patterns("exclude_kinds", options.get("exclude_kinds"))
    for key, values in (("kinds", kinds), ("exclude_kinds", exclude_kinds)):
        for v in values:
            if not any(fnmatch.fnmatchcase(k, v) for k in KINDS):
                raise ValueError(f"{key}: {v!r} matches no event kind (kinds: {', '.join(KINDS)})")
    route = Route(
        min_severity=min_severity,
        apps=_patterns("apps", options.get("apps")),
        exclude_apps=_patterns("exclude_apps", options.get("exclude_apps")),
        kinds=kinds,
        exclude_kinds=exclude_kinds,
    )
    retries = options.get("retries", 4)
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 100:
        raise ValueError("retries: must be a whole number from 0 to 100")
    queue = options.get("queue", 1000)
    if not isinstance(queue, int) or isinstance(queue, bool) or queue < 1:
        raise ValueError("queue: must be a whole number of at least 1")
    window = options.get("dedup_window", 3600.0)
    parsed = ChannelOptions(
        route=route,
        dedup_window=0.0 if window in (0, "0", "0s") else _seconds("dedup_window", window),
        attempts=retries + 1,
        backoff_min=_seconds("retry_backoff_min", options.get("retry_backoff_min", 1.0)),
        backoff_max=_seconds("retry_backoff_max", options.get("retry_backoff_max", 60.0)),
        timeout=_seconds("timeout", options.get("timeout", 10.0)),
        queue=queue,
    )
    return parsed, own


@dataclass
class _Sent:
    at: float
    suppressed: int = 0


@dataclass
class AlertFilter:
    """Hygiene of one channel: which routed events become alerts. Pure; time injected."""

    window: float = 3600.0
    clock: Callable[[], float] = time.time
    _sent: dict[tuple[str, str, str, str], _Sent] = field(default_factory=dict)
    #: Apps with a problem sent on this channel and no recovery yet.
    _owed: set[str] = field(default_factory=set)

    def admit(self, event: Event) -> Alert | None:
        """The alert to send for ``event``, or None (suppressed, counted, or nothing owed)."""
        if event.kind == RECOVERED:
            return Alert(event) if event.app in self._owed else None
        key = event.dedup_key()
        last = self._sent.get(key)
        if last is None:
            return Alert(event)
        if self.window > 0 and self.clock() - last.at < self.window:
            last.suppressed += 1
            return None
        return Alert(event, suppressed=last.suppressed, repeat=True)

    def sent(self, alert: Alert) -> None:
        """Record a delivered alert (only then: a failed one is tried again next time)."""
        e = alert.event
        if e.kind == RECOVERED:
            self._owed.discard(e.app)
            # A new failure after a recovery is news again.
            for key in [k for k in self._sent if k[1] == e.app and k[0] in PROBLEMS]:
                del self._sent[key]
            return
        self._sent[e.dedup_key()] = _Sent(self.clock())
        if e.kind in PROBLEMS:
            self._owed.add(e.app)

    def pending_suppressed(self) -> int:
        return sum(s.suppressed for s in self._sent.values())

    def to_json(self) -> dict[str, Any]:
        """The memory as a JSON document (what the state store keeps)."""
        return {
            "sent": [
                {"key": list(k), "at": v.at, "suppressed": v.suppressed}
                for k, v in sorted(self._sent.items())
            ],
            "owed": sorted(self._owed),
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Take back a memory saved by :meth:`to_json` (entries past the window are dropped
        unless their app still owes a recovery; malformed ones are ignored)."""
        now = self.clock()
        owed = data.get("owed")
        self._owed |= {str(a) for a in owed} if isinstance(owed, list) else set()
        for item in data.get("sent", []) if isinstance(data.get("sent"), list) else []:
            try:
                key = tuple(str(p) for p in item["key"])
                at, suppressed = float(item["at"]), int(item.get("suppressed", 0))
            except (KeyError, TypeError, ValueError):
                continue
            if len(key) == 4 and (now - at < self.window or key[1] in self._owed):
                self._sent.setdefault(key, _Sent(at, suppressed))


class Channel:
    """One notifier's queue and delivery task (see the module docstring)."""

    def __init__(
        self,
        name: str,
        notifier: Notifier,
        options: ChannelOptions | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.notifier = notifier
        self.options = options or ChannelOptions()
        self.filter = AlertFilter(self.options.dedup_window, clock)
        self.results: dict[str, int] = {}
        self._queue: deque[Event] = deque()
        self._wake = anyio.Event()
        self._closed = False
        self._store: StateStore | None = None
        self._restored = False

    def remember_in(self, store: StateStore) -> None:
        """Keep the alert memory in ``store`` (read before the first event is handled,
        written after each delivery)."""
        self._store = store
        self._restored = False

    async def _restore(self) -> None:
        if self._store is None or self._restored:
            return
        self._restored = True
        try:
            entry = await self._store.get(ALERTS, self.name)
        except StateStoreError as exc:
            log.warning("notifier.memory_unread", notifier=self.name, error=str(exc))
            return
        if entry is not None:
            self.filter.restore(entry.value)

    async def _remember(self) -> None:
        if self._store is None:
            return
        memory = self.filter.to_json()
        try:
            # This channel's memory wins over a stored one (it is a dedup hint; a recovery
            # must be able to forget problems), but never blindly: the write is conditional.
            await update(self._store, ALERTS, self.name, lambda _: memory)
        except StateStoreError as exc:
            log.warning("notifier.memory_unsaved", notifier=self.name, error=str(exc))

    def _count(self, result: str) -> None:
        self.results[result] = self.results.get(result, 0) + 1
        ins.notifier_deliveries.add(1, {ins.NOTIFIER: self.name, ins.RESULT: result})

    def offer(self, event: Event) -> None:
        """Queue ``event`` if the route wants it; never blocks (a full queue drops the oldest).

        Call from the event loop's thread."""
        if not self.options.route.wants(event):
            return
        if self._closed:
            self._count("dropped")
            return
        if len(self._queue) >= self.options.queue:
            old = self._queue.popleft()
            log.warning("notifier.dropped", notifier=self.name, kind=old.kind, app=old.app)
            self._count("dropped")
        self._queue.append(event)
        self._wake.set()

    def close(self) -> None:
        """No more events: :meth:`run` delivers what is queued, then returns."""
        self._closed = True
        self._wake.set()

    async def run(self) -> None:
        """Deliver queued events until :meth:`close`; then close the notifier."""
        try:
            while True:
                while self._queue:
                    await self._handle(self._queue.popleft())
                if self._closed:
                    return
                await self._wake.wait()
                self._wake = anyio.Event()
        finally:
            closer = getattr(self.notifier, "aclose", None)
            if closer is not None:
                with anyio.move_on_after(self.options.timeout, shield=True):
                    try:
                        await closer()
                    except Exception:
                        log.exception("notifier.close_failed", notifier=self.name)

    async def _handle(self, event: Event) -> None:
        await self._restore()
        alert = self.filter.admit(event)
        if alert is None:
            if event.kind != RECOVERED:
                self._count("suppressed")
            return
        if await self.deliver(alert):
            self.filter.sent(alert)
            await self._remember()

    async def deliver(self, alert: Alert) -> bool:
        """Send with retries; True once sent. Never raises (but cancellation)."""
        opts = self.options
        retrying = AsyncRetrying(
            retry=retry_if_not_exception_type(PermanentDeliveryError),
            wait=wait_random_exponential(multiplier=opts.backoff_min, max=opts.backoff_max),
            stop=stop_after_attempt(opts.attempts),
            reraise=True,
        )
        attempt = 0
        try:
            async for state in retrying:
                with state:
                    attempt += 1
                    try:
                        with anyio.fail_after(opts.timeout):
                            await self.notifier.send(alert)
                    except Exception as exc:
                        log.warning(
                            "notifier.attempt_failed",
                            notifier=self.name,
                            kind=alert.event.kind,
                            app=alert.event.app,
                            attempt=attempt,
                            error=_describe(exc),
                        )
                        raise
        except Exception as exc:
            self._count("failed")
            log.error(
                "notifier.failed",
                notifier=self.name,
                kind=alert.event.kind,
                app=alert.event.app,
                attempts=attempt,
                error=_describe(exc),
                hint="the alert is not recorded as sent; the next identical event tries again",
            )
            return False
        self._count("sent")
        log.info("notifier.sent", notifier=self.name, kind=alert.event.kind, app=alert.event.app)
        return True


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def post_json(
    url: str,
    body: Mapping[str, Any] | Sequence[Any],
    *,
    headers: Mapping[str, str] | None = None,
    data: bytes | None = None,
    timeout: float = 10.0,
) -> int:
    """POST JSON to ``url`` for a notifier; return the status, raise a :class:`DeliveryError`.

    ``data``, when given, is sent as the body instead of ``body`` serialised (so a
    signature computed over exact bytes matches). 2xx returns; 429 and 5xx raise
    :class:`DeliveryError` (retried); other 4xx raise :class:`PermanentDeliveryError`.
    Messages never contain the URL (it often embeds a token).
    """
    import json

    import aiohttp

    payload = data if data is not None else json.dumps(body).encode()
    sent_headers = {"Content-Type": "application/json", **(headers or {})}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.post(url, data=payload, headers=sent_headers) as response,
        ):
            text = (await response.text())[:200]
            status = response.status
    except (aiohttp.ClientError, OSError) as exc:
        raise DeliveryError(f"could not reach the endpoint: {type(exc).__name__}") from None
    if 200 <= status < 300:
        return status
    if status == 429 or status >= 500:
        raise DeliveryError(f"answered {status}: {text}")
    raise PermanentDeliveryError(f"answered {status}: {text}")


def string_option(options: Mapping[str, Any], key: str) -> str | None:
    """A notifier plugin's optional string option, stripped; ``ValueError("key: ...")`` when
    it is set to something else than a non-empty string."""
    value = options.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key}: must be a non-empty string")
    return value.strip()
