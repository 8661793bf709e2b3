"""The CLI's client for a running agent, against serve_http on a real unix socket."""

from __future__ import annotations

import functools
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

import gitopsd.http
from gitopsd.config import HttpConfig
from gitopsd.control import AgentUnreachable, get_status, send_control
from gitopsd.http import ControlError, serve_http

pytestmark = pytest.mark.anyio

APPS = [{"name": "web", "ready": True}, {"name": "api", "ready": False, "reason": "RenderFailed"}]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Agent:
    """A fake AgentView whose control answers are scripted per action."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.release = anyio.Event()
        self.received = anyio.Event()

    def health(self) -> tuple[bool, str]:
        return True, "ok"

    def readiness(self) -> tuple[bool, str]:
        return True, "ok"

    def status(self) -> list[dict[str, Any]]:
        return APPS

    def metrics_text(self) -> str:
        return ""

    def trigger(self, sources: Sequence[str], reason: str) -> list[str]:
        return list(sources)

    async def control(self, request: Mapping[str, Any]) -> dict[str, Any]:
        self.requests.append(dict(request))
        self.received.set()
        match request.get("action"):
            case "sync":
                return {"accepted": list(request.get("apps", []))}
            case "hang":
                await self.release.wait()
                return {}
            case "busy":
                raise ControlError("app 'web' is already syncing", 409)
            case _:
                raise ControlError(f"unknown action {request.get('action')!r}")


@asynccontextmanager
async def agent_at(sock: Path, agent: Agent, *, release: bool = True) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        await tg.start(
            functools.partial(serve_http, HttpConfig(address=""), agent, control_socket=sock)
        )
        try:
            yield
        finally:
            if release:
                agent.release.set()
            tg.cancel_scope.cancel()


async def test_status_and_control_round_trip(tmp_path: Path) -> None:
    sock = tmp_path / "ctl.sock"
    agent = Agent()
    async with agent_at(sock, agent):
        assert await get_status(sock) == APPS
        answer = await send_control(sock, {"action": "sync", "apps": ["web"]})
        assert answer == {"accepted": ["web"]}
    assert agent.requests == [{"action": "sync", "apps": ["web"]}]
    assert not sock.exists()


@pytest.mark.parametrize(
    ("request_", "status", "message"),
    [
        ({"action": "busy"}, 409, "app 'web' is already syncing"),
        ({"action": "explode"}, 400, "unknown action 'explode'"),
    ],
)
async def test_a_refusal_comes_back_as_control_error(
    tmp_path: Path, request_: dict[str, Any], status: int, message: str
) -> None:
    sock = tmp_path / "ctl.sock"
    async with agent_at(sock, Agent()):
        with pytest.raises(ControlError) as caught:
            await send_control(sock, request_)
    assert (caught.value.status, str(caught.value)) == (status, message)


async def test_no_agent_running(tmp_path: Path) -> None:
    sock = tmp_path / "ctl.sock"
    expected = f"no gitopsd agent is running (no control socket at {sock}); start `gitopsd run`"
    with pytest.raises(AgentUnreachable) as caught:
        await get_status(sock)
    assert str(caught.value) == expected
    with socket.socket(socket.AF_UNIX) as dead:  # the socket of an agent that died
        dead.bind(str(sock))
    with pytest.raises(AgentUnreachable) as caught:
        await send_control(sock, {"action": "sync"})
    assert str(caught.value) == expected


async def test_an_agent_that_does_not_answer_in_time(tmp_path: Path) -> None:
    sock = tmp_path / "ctl.sock"
    async with agent_at(sock, Agent()):
        with pytest.raises(AgentUnreachable, match=r"did not answer within 0\.2s; the request"):
            await send_control(sock, {"action": "hang"}, timeout=0.2)


async def test_shutdown_does_not_wait_forever_for_a_hung_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gitopsd.http, "SHUTDOWN_TIMEOUT", 0.1)
    sock = tmp_path / "ctl.sock"
    agent = Agent()
    with anyio.fail_after(5):
        async with agent_at(sock, agent, release=False), anyio.create_task_group() as tg:
            tg.start_soon(send_control, sock, {"action": "hang"})
            await agent.received.wait()  # the request is in the agent's hands
            tg.cancel_scope.cancel()
    assert not agent.release.is_set()
    assert not sock.exists()
