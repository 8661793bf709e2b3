"""Tell systemd what ``gitopsd run`` is doing: the ``sd_notify(3)`` protocol for ``Type=notify``.

systemd reads one datagram per notification on the unix socket named by
``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace): newline
separated ``KEY=VALUE`` lines. gitopsd sends ``READY=1`` once every app had
its first pass, ``STATUS=`` lines saying what it does (only when they change,
at most once per scheduler tick), ``WATCHDOG=1`` every half ``$WATCHDOG_USEC``
*while the agent's scheduler ticks* (a loop that hangs, or a scheduler that
stops, stops the pings and systemd restarts the service), ``RELOADING=1`` with
``MONOTONIC_USEC=`` on SIGHUP then ``READY=1`` once the new configuration had
its first pass, and ``STOPPING=1`` on shutdown. Without ``$NOTIFY_SOCKET``
every call is a no-op, so the same code runs under a terminal, a container
or systemd.

Why a short module on :mod:`socket` rather than a library: the protocol is
one ``sendto`` of a datagram; ``systemd-python`` and ``cysystemd`` need
libsystemd and a C build, ``sdnotify`` (last release 2017) has no types, no
``$WATCHDOG_USEC``/``$WATCHDOG_PID`` handling and no ``MONOTONIC_USEC``, and
none of them knows when *our* scheduler is alive, which is the part that
matters here.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

import anyio
import anyio.abc
import structlog

log = structlog.get_logger(__name__)

#: The variables systemd sets for a notify service (unset once read, so children do not inherit).
ENVIRONMENT = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
#: How often the STATUS line is recomputed (sent only when it changed).
STATUS_EVERY = 1.0


class Watched(Protocol):
    """What the notifier needs from the agent (:class:`gitopsd.engine.agent.Agent`)."""

    @property
    def last_tick(self) -> float:
        """Loop time of the scheduler's last tick."""
        ...

    def next_poll(self) -> float | None:
        """Wall-clock time of the next source poll, None before the first one."""
        ...

    def readiness(self) -> tuple[bool, str]: ...

    def status(self) -> list[dict[str, Any]]: ...

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None: ...


def socket_address(value: str) -> str | None:
    """``$NOTIFY_SOCKET`` as a :mod:`socket` address: ``@name`` is the abstract ``\\0name``."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # vsock: and other transports of newer systemd versions


def watchdog_period(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between two ``WATCHDOG=1``: half ``$WATCHDOG_USEC``; None when not asked for.

    ``$WATCHDOG_PID``, when set, must be this process (systemd sets it to the main PID;
    a child that inherited the variables must not ping for its parent).
    """
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec:
        return None
    owner = environ.get("WATCHDOG_PID", "")
    if owner and owner != str(pid):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning(
            "systemd.bad_watchdog_usec",
            value=usec,
            hint="WATCHDOG_USEC must be microseconds; set WatchdogSec= in the unit",
        )
        return None
    return value / 2_000_000 if value > 0 else None


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as ``RELOADING=1`` wants it in ``MONOTONIC_USEC=``."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def status_line(
    ready: tuple[bool, str], apps: Sequence[Mapping[str, Any]], next_poll: float | None
) -> str:
    """One line for ``systemctl status``: stable while nothing changes (no countdown)."""
    ok, why = ready
    if not ok:
        return f"starting: {why}"
    counts: dict[str, list[str]] = {
        "Ready": [], "not Ready": [], "Unknown": [], "suspended": [], "drifted": []
    }  # fmt: skip
    for app in apps:
        name = str(app.get("app", "?"))
        ready_condition: Mapping[str, Any] = next(
            (c for c in app.get("conditions", ()) if c.get("type") == "Ready"), {}
        )
        if app.get("suspended"):
            counts["suspended"].append(name)
        elif ready_condition.get("status") == "True":
            counts["Ready"].append(name)
        elif ready_condition.get("status", "Unknown") == "Unknown":
            counts["Unknown"].append(name)
        else:
            counts["not Ready"].append(f"{name}: {ready_condition.get('reason') or 'Unknown'}")
        drift = str(app.get("drift") or "")
        if drift and not drift.startswith("healed: "):
            counts["drifted"].append(name)
    parts = [f"{len(counts['Ready'])} Ready"]
    for kind in ("not Ready", "Unknown", "suspended", "drifted"):
        if counts[kind]:
            parts.append(f"{len(counts[kind])} {kind} ({_some(counts[kind])})")
    line = f"{len(apps)} app{'s' if len(apps) != 1 else ''}: " + ", ".join(parts)
    if next_poll:
        line += "; next poll " + time.strftime("%H:%M:%S", time.localtime(next_poll))
    return line


def _some(names: list[str], most: int = 3) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


class SystemdNotify:
    """The service's side of ``$NOTIFY_SOCKET``; every method is a no-op when it is unset."""

    def __init__(
        self,
        address: str | None,
        *,
        watchdog: float | None = None,
        tick: float = 1.0,
        clock: Callable[[], float] = anyio.current_time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.address = address
        #: Seconds between two ``WATCHDOG=1`` (half ``WatchdogSec=``), None without a watchdog.
        self.watchdog = watchdog if address else None
        #: A ping goes out only when the scheduler (which ticks every ``tick`` seconds) ticked
        #: at most this long ago.
        self.stale_after = max(watchdog or 0.0, 2 * tick)
        self._clock = clock
        self._sleep = sleep
        self._sock: socket.socket | None = None
        self._watched: Watched | None = None
        self._since = 0.0  # when the watched agent was handed over (before its first tick)
        self._phase = "starting"  # starting | running | reloading | stopping
        self._handover = False  # between SIGHUP and the new agent: the old one is winding down
        self._was_ready = False
        self._status = ""
        self._failed = False

    @classmethod
    def from_environ(
        cls, environ: MutableMapping[str, str] | None = None, **kw: Any
    ) -> SystemdNotify:
        """Read (and unset) systemd's variables from ``environ`` (default: the process's)."""
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        period = watchdog_period(env, os.getpid())
        for name in ENVIRONMENT:
            env.pop(name, None)
        address = socket_address(raw) if raw else None
        if raw and address is None:
            log.warning(
                "systemd.unsupported_notify_socket",
                notify_socket=raw,
                hint="only a path or an @abstract unix socket is supported; "
                "readiness and the watchdog are not reported",
            )
        return cls(address, watchdog=period, **kw)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """One datagram of ``KEY=VALUE`` lines; False (logged once) when it could not be sent."""
        if self.address is None:
            return False
        message = "\n".join(f.replace("\n", " ") for f in fields).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(message, self.address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning(
                    "systemd.notify_failed",
                    notify_socket=self.address.replace("\0", "@"),
                    error=str(exc),
                    hint="systemd will not see readiness or watchdog pings; "
                    "is NOTIFY_SOCKET the socket systemd set?",
                )
            return False
        if self._failed:
            self._failed = False
            log.info("systemd.notify_recovered")
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # -- the daemon's lifecycle ---------------------------------------------------------

    def status(self, text: str) -> None:
        """``STATUS=text``, unless it is what systemd shows already."""
        if text != self._status:
            self._status = text
            self.send(f"STATUS={text}")

    def ready(self, note: str = "") -> None:
        """``READY=1`` with the current status (after the first pass, and after a reload)."""
        self._phase = "running"
        self._handover, self._was_ready = False, True
        text = note or self._current_status()
        self._status = text
        self.send("READY=1", f"STATUS={text}")

    def reloading(self) -> None:
        """``RELOADING=1`` (with ``MONOTONIC_USEC=``, as ``Type=notify-reload`` requires)."""
        self._phase = "reloading"
        self._handover = True
        self._status = "reloading the configuration"
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}", f"STATUS={self._status}")

    def reload_refused(self) -> None:
        """The new configuration was refused and the running one goes on: READY=1 again
        (unless the first pass is still running: READY=1 comes after it, as usual)."""
        self._handover = False
        if self._was_ready:
            self.ready()
        else:
            self._phase = "starting"

    def stopping(self, why: str) -> None:
        """``STOPPING=1``: from now on systemd waits for the exit (``TimeoutStopSec=``)."""
        self._phase = "stopping"
        self._status = why
        self.send("STOPPING=1", f"STATUS={why}")

    async def follow(self, agent: Watched) -> None:
        """Run ``agent``; READY=1 once every app had its first pass. Its ticks are watched."""
        self._watched, self._since, self._handover = agent, self._clock(), False
        async with anyio.create_task_group() as tg:
            await tg.start(agent.run)
            self.ready()

    def _current_status(self) -> str:
        agent = self._watched
        if agent is None:
            return "starting"
        return status_line(agent.readiness(), agent.status(), agent.next_poll())

    def ticking(self) -> bool:
        """The scheduler ticked recently. While the agent winds down (stopping, or replaced on a
        reload) it no longer ticks: then the loop running this is the pulse, and the wind-down
        is bounded by ``[daemon].grace_period`` (and ``TimeoutStopSec=``)."""
        if self._phase == "stopping" or self._handover:
            return True
        agent = self._watched
        if agent is None:
            return False
        return self._clock() - max(agent.last_tick, self._since) <= self.stale_after

    @asynccontextmanager
    async def running(self) -> AsyncIterator[SystemdNotify]:
        """Watchdog pings and STATUS updates in the background, for the life of the block."""
        if not self.enabled:
            yield self
            return
        try:
            async with anyio.create_task_group() as tg:
                if self.watchdog:
                    tg.start_soon(self.keep_alive, name="gitopsd.systemd.watchdog")
                tg.start_soon(self._report, name="gitopsd.systemd.status")
                yield self
                tg.cancel_scope.cancel()
        finally:
            self.close()

    async def keep_alive(self) -> None:
        """``WATCHDOG=1`` every :attr:`watchdog` seconds, skipped while the scheduler is stuck."""
        assert self.watchdog
        while True:
            if self.ticking():
                self.send("WATCHDOG=1")
            await self._sleep(self.watchdog)

    async def _report(self) -> None:
        while True:
            if self._phase in ("starting", "running") and self._watched is not None:
                self.status(self._current_status())
            await self._sleep(STATUS_EVERY)
