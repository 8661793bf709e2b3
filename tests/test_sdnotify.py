"""systemd's notify protocol, against real unix datagram sockets given as ``NOTIFY_SOCKET``.

The unit tests drive :class:`gitopsd.sdnotify.SystemdNotify` directly (the watchdog on a
clock the test moves, so a scheduler that stops ticking is shown without waiting); the
end-to-end test runs ``gitopsd run`` as systemd would, against the local ECS endpoint
and a git daemon, with a filesystem and an abstract ``NOTIFY_SOCKET``, under the
kernel's MemoryDenyWriteExecute (``PR_SET_MDWE``, as the unit sets it) where available.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from e2e import conftest as e2e
from e2e.conftest import Env
from e2e.test_agent import AgentProcess, agent_config

from gitopsd.local_aws.testing import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY
from gitopsd.sdnotify import SystemdNotify, socket_address, status_line, watchdog_period

Message = dict[str, str]

# The end-to-end fixtures (a local ECS endpoint, a git daemon, a configuration).
aws, e2e_aws, env, served = e2e.aws, e2e.e2e_aws, e2e.env, e2e.served


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Listener:
    """The service manager's end: a bound datagram socket and what arrived on it."""

    sock: socket.socket
    notify_socket: str  # the value for $NOTIFY_SOCKET
    messages: list[tuple[float, Message]] = field(default_factory=list)

    def drain(self) -> list[Message]:
        """Messages that arrived since the last call (also kept in :attr:`messages`)."""
        new = []
        while True:
            try:
                data = self.sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.messages.append((time.monotonic(), fields))
            new.append(fields)
        return new

    def wait_for(
        self, what: str, check: Callable[[Message], bool], alive: Callable[[], None], timeout: float
    ) -> Message:
        """The first new message passing ``check``; polls with a deadline."""
        deadline = time.monotonic() + timeout
        while True:
            alive()
            for message in self.drain():
                if check(message):
                    return message
            if time.monotonic() > deadline:
                seen = [m for _, m in self.messages]
                raise AssertionError(f"no {what} within {timeout}s; received: {seen}")
            time.sleep(0.02)  # polling with a deadline


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Listener]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        path = str(tmp_path / "notify.sock")
        sock.bind(path)
        value = path
    else:
        value = f"@gitopsd-test-{uuid.uuid4().hex}"
        sock.bind("\0" + value[1:])
    with sock:
        yield Listener(sock, value)


# -- the protocol ----------------------------------------------------------------------


def test_notifications_reach_the_socket_and_the_variables_are_not_inherited(
    listener: Listener,
) -> None:
    environ = {"NOTIFY_SOCKET": listener.notify_socket, "WATCHDOG_USEC": "2000000", "HOME": "/x"}
    notify = SystemdNotify.from_environ(environ)
    assert notify.enabled
    assert notify.watchdog == 1.0
    assert environ == {"HOME": "/x"}  # a child process must not notify (or ping) for us
    notify.ready("every app had its first pass")
    notify.status("3 apps: 3 Ready")
    notify.status("3 apps: 3 Ready")  # unchanged: not sent again
    notify.stopping("stopping")
    notify.close()
    assert listener.drain() == [
        {"READY": "1", "STATUS": "every app had its first pass"},
        {"STATUS": "3 apps: 3 Ready"},
        {"STOPPING": "1", "STATUS": "stopping"},
    ]


def test_reloading_carries_the_monotonic_clock(listener: Listener) -> None:
    notify = SystemdNotify(socket_address(listener.notify_socket))
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notify.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notify.close()
    (message,) = listener.drain()
    assert message["RELOADING"] == "1"
    assert before <= int(message["MONOTONIC_USEC"]) <= after
    assert message["STATUS"] == "reloading the configuration"


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notify = SystemdNotify.from_environ({"WATCHDOG_USEC": "1000000"})
    assert not notify.enabled
    assert notify.watchdog is None
    assert notify.send("READY=1") is False
    notify.ready()
    notify.stopping("bye")


def test_a_socket_that_is_gone_is_reported_not_raised(tmp_path: Path) -> None:
    notify = SystemdNotify(str(tmp_path / "missing.sock"))
    assert notify.send("READY=1") is False
    assert notify.send("WATCHDOG=1") is False
    notify.close()


def test_notify_socket_forms() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@sd-notify") == "\0sd-notify"
    assert socket_address("vsock:2:1234") is None
    assert socket_address("@") is None


@pytest.mark.parametrize(
    ("environ", "period"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_period_is_half_watchdog_usec_for_this_process(
    environ: dict[str, str], period: float | None
) -> None:
    assert watchdog_period(environ, pid=4242) == period


def _app(name: str, ready: str, reason: str = "", **kw: Any) -> dict[str, Any]:
    return {"app": name, "conditions": [{"type": "Ready", "status": ready, "reason": reason}], **kw}


def test_the_status_line_says_what_the_agent_does_without_a_countdown() -> None:
    assert status_line((False, "first pass not done: web"), [], None) == (
        "starting: first pass not done: web"
    )
    apps = [
        _app("web", "True"),
        _app("worker", "False", "RolloutFailed"),
        _app("api", "True", suspended=True),
        _app("cron", "True", drift="svc/cron (desiredCount)"),
        _app("jobs", "True", drift="healed: svc/jobs (desiredCount)"),
        _app("new", "Unknown"),
    ]
    at = time.mktime((2030, 1, 2, 14, 3, 12, 0, 0, -1))
    assert status_line((True, ""), apps, at) == (
        "6 apps: 3 Ready, 1 not Ready (worker: RolloutFailed), 1 Unknown (new), "
        "1 suspended (api), 1 drifted (cron); next poll 14:03:12"
    )
    assert status_line((True, ""), [_app("web", "True")], None) == "1 app: 1 Ready"


# -- the watchdog follows the scheduler, not just the process ---------------------------


class Scheduler:
    """An agent whose scheduler ticks as the test's clock moves, until it is stopped."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.last_tick = 0.0
        self.ticking = True

    def clock(self) -> float:
        return self.now

    def next_poll(self) -> float | None:
        return None

    def readiness(self) -> tuple[bool, str]:
        return True, "every app had its first pass"

    def status(self) -> list[dict[str, Any]]:
        return [_app("web", "True")]

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        self.last_tick = self.now
        task_status.started()


@pytest.mark.anyio
async def test_watchdog_pings_stop_when_the_scheduler_stops_ticking_and_resume_with_it(
    listener: Listener,
) -> None:
    scheduler = Scheduler()
    pings: list[int] = []  # pings sent in each watchdog period

    class Stop(Exception):
        pass

    async def sleep(seconds: float) -> None:
        """The loop goes on (time passes); the scheduler ticks only while it is alive."""
        pings.append(sum(1 for m in listener.drain() if m.get("WATCHDOG") == "1"))
        scheduler.now += seconds
        if scheduler.ticking:
            scheduler.last_tick = scheduler.now
        if len(pings) == 4:
            scheduler.ticking = False  # stuck: the loop runs, the scheduler does not
        if len(pings) == 8:
            scheduler.ticking = True
            scheduler.last_tick = scheduler.now
        if len(pings) == 10:
            raise Stop
        await anyio.lowlevel.checkpoint()

    notify = SystemdNotify(
        socket_address(listener.notify_socket),
        watchdog=15.0,  # WatchdogSec=30s
        tick=1.0,
        clock=scheduler.clock,
        sleep=sleep,
    )
    await notify.follow(scheduler)
    assert listener.drain()[0]["READY"] == "1"
    with pytest.raises(Stop):
        await notify.keep_alive()
    notify.close()
    # The scheduler's last tick is at the end of the 4th period: pings 0s and 15s after it
    # (within the bound), then none, so systemd's watchdog (30s) fires at most 45s after the
    # scheduler stopped; once it ticks again, so do the pings.
    assert pings == [1, 1, 1, 1, 1, 1, 0, 0, 1, 1]


@pytest.mark.anyio
async def test_pings_go_on_while_the_agent_winds_down_on_stop_and_reload(
    listener: Listener,
) -> None:
    scheduler = Scheduler()
    notify = SystemdNotify(
        socket_address(listener.notify_socket), watchdog=15.0, clock=scheduler.clock
    )
    await notify.follow(scheduler)
    scheduler.now += 60.0  # the old agent no longer ticks while it is replaced...
    assert not notify.ticking()
    notify.reloading()
    assert notify.ticking()  # ...which is expected between SIGHUP and the new agent
    await notify.follow(Scheduler())  # the new agent is watched from now on
    assert notify.ticking()
    scheduler.now += 60.0
    notify.stopping("stopping")
    assert notify.ticking()
    notify.close()


# -- a real `gitopsd run` under a notify socket ------------------------------------------

#: Run gitopsd with the kernel refusing writable+executable memory, as the unit's
#: MemoryDenyWriteExecute=yes does (PR_SET_MDWE, Linux >= 6.3; without it, as is).
MDWE_BOOT = """
import ctypes, runpy, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    print("PR_SET_MDWE unavailable", file=sys.stderr)
sys.argv = ["gitopsd", *sys.argv[1:]]
runpy.run_module("gitopsd", run_name="__main__")
"""


class NotifiedAgent(AgentProcess):
    """``gitopsd run`` started as systemd starts a Type=notify unit with WatchdogSec=."""

    def __init__(self, setup: Env, notify_socket: str, watchdog_usec: int) -> None:
        self.env = setup
        self.log = setup.config.parent / "agent.log"
        run_env = dict(
            os.environ,
            AWS_ACCESS_KEY_ID=DUMMY_ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=DUMMY_SECRET_KEY,
            PYTHONUNBUFFERED="1",
            NOTIFY_SOCKET=notify_socket,
            WATCHDOG_USEC=str(watchdog_usec),
        )
        run_env.pop("AWS_PROFILE", None)
        self._log_file = self.log.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                MDWE_BOOT,
                "run",
                "-c",
                str(setup.config),
                "--log-level",
                "info",
            ],
            env=run_env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.url = ""

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"agent exited {self.proc.returncode}: {self.log.read_text()}")


def test_gitopsd_run_tells_systemd_ready_status_watchdog_reloading_and_stopping(
    env: Env, listener: Listener
) -> None:
    agent_config(env, source_interval="0.5s")
    a = NotifiedAgent(env, listener.notify_socket, watchdog_usec=400_000)  # WatchdogSec=0.4s
    try:
        ready = listener.wait_for("READY=1", lambda m: m.get("READY") == "1", a.alive, 60)
        before = [m for _, m in listener.messages[:-1]]
        # Not before the first pass: every earlier status was a start-up one, and READY's own
        # status (computed with it) counts both apps.
        assert before
        assert all(m.get("STATUS", "starting").startswith("starting") for m in before)
        assert all("READY" not in m for m in before)
        assert ready["STATUS"].startswith("2 apps: ")
        a.started()
        assert a.get("/readyz")[0] == 200

        # WATCHDOG=1 every half WATCHDOG_USEC, from the event loop.
        listener.wait_for(
            "10 watchdog pings",
            lambda m: sum(1 for _, x in listener.messages if x.get("WATCHDOG") == "1") >= 10,
            a.alive,
            30,
        )
        times = [t for t, m in listener.messages if m.get("WATCHDOG") == "1"]
        gaps = sorted(b - t for t, b in itertools.pairwise(times))
        median = gaps[len(gaps) // 2]
        assert 0.1 <= median <= 0.4, gaps  # 0.2s asked; a busy machine stretches some

        # SIGHUP: RELOADING=1 (with the monotonic clock), then READY=1 after the new pass.
        sent = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        a.proc.send_signal(signal.SIGHUP)
        reloading = listener.wait_for(
            "RELOADING=1", lambda m: m.get("RELOADING") == "1", a.alive, 30
        )
        assert int(reloading["MONOTONIC_USEC"]) >= sent
        again = listener.wait_for("READY=1 again", lambda m: m.get("READY") == "1", a.alive, 60)
        assert again["STATUS"].startswith("2 apps: ")

        # SIGTERM: STOPPING=1, then exit 0.
        a.proc.send_signal(signal.SIGTERM)
        assert a.proc.wait(timeout=30) == 0
        listener.drain()
        stopping = [m for _, m in listener.messages if m.get("STOPPING") == "1"]
        assert len(stopping) == 1
        assert stopping[0]["STATUS"].startswith("stopping")
        # STATUS only when it changed: never the same line twice in a row.
        statuses = [m["STATUS"] for _, m in listener.messages if "STATUS" in m]
        assert all(x != y for x, y in itertools.pairwise(statuses)), statuses
    finally:
        a.stop()


def test_gitopsd_runs_with_writable_executable_memory_refused() -> None:
    """MemoryDenyWriteExecute=yes in the unit: CPython and gitopsd's imports need no W+X page."""
    probe = MDWE_BOOT.replace(
        'runpy.run_module("gitopsd", run_name="__main__")',
        "import mmap\n"
        "try:\n"
        "    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
        "    print('W+X allowed')\n"
        "except PermissionError:\n"
        "    print('W+X refused')\n"
        "import gitopsd.daemon, gitopsd.cli, aiobotocore.session, dulwich.client\n"
        "import opentelemetry.sdk.trace, pydantic, structlog\n"
        'runpy.run_module("gitopsd", run_name="__main__")',
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, "--version"], capture_output=True, text=True, timeout=60
    )
    if "PR_SET_MDWE unavailable" in out.stderr:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux >= 6.3) to emulate the unit's setting")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "W+X refused"
    assert out.stdout.splitlines()[1].startswith("gitopsd ")
