"""Helpers of the notifier plugin tests: an HTTP receiver and events.

The receiver is a real aiohttp server on 127.0.0.1 (an ephemeral port) that records
each request and answers with scripted statuses.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
from aiohttp import web

from gitopsd.events import ROLLOUT_FAILED, Change, Event, FieldDiff, Severity

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LINK = f"https://github.com/acme/deploy/commit/{COMMIT}"
DEPLOYMENT = "arn:aws:ecs:us-east-1:123456789012:service-deployment/c/web/1a2b3c4d5e6f"

_ROLLOUT_FAILED = Event(
    kind=ROLLOUT_FAILED,
    app="web",
    revision=COMMIT,
    message="service/web: deployment failed: tasks failed to start",
    severity=Severity.ERROR,
    reason="RolledBack",
    at=1_700_000_000.25,
    fields=("service/web",),
    deployment=DEPLOYMENT,
    stage="verify",
    commit_message="Bump web to 1.2",
    link=LINK,
    source="deploy",
    changes=(
        Change(
            "service/web",
            "update",
            (
                FieldDiff("/taskDefinition", '"web:1"', '"web:2"'),
                FieldDiff("/desiredCount", "2", "3"),
            ),
        ),
        Change("taskdefinition/web", "create"),
    ),
)


def rollout_failed(**overrides: Any) -> Event:
    """A rolled-back rollout of ``web`` with a commit, a link, changes and a deployment."""
    return replace(_ROLLOUT_FAILED, **overrides)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass
class Receiver:
    """What the local HTTP server received; ``statuses`` are answered in turn, then 200."""

    url: str
    statuses: list[int] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Request]:
        """The requests once there are ``count`` of them (polling, with a deadline)."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.requests)} request(s) received, not {count}")
            await anyio.sleep(0.005)
        return self.requests


@asynccontextmanager
async def receiver(statuses: Sequence[int] = (), path: str = "/hook") -> AsyncIterator[Receiver]:
    """A local HTTP server recording the requests to ``path``."""
    runner: web.AppRunner | None = None
    holder: list[Receiver] = []

    async def handle(request: web.Request) -> web.Response:
        recv = holder[0]
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        recv.requests.append(Request(request.method, request.path, headers, body))
        status = recv.statuses.pop(0) if recv.statuses else 200
        return web.Response(status=status, text="ok" if status < 400 else f"error {status}")

    app = web.Application()
    app.router.add_route("*", path, handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        holder.append(Receiver(f"http://{host}:{port}{path}", list(statuses)))
        yield holder[0]
    finally:
        await runner.cleanup()


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
