"""The client the CLI uses to reach a running agent over its control socket (or remotely).

``gitopsd run`` listens on a unix socket only its user can open (see
``gitopsd.http``); commands that read the agent's status or ask it to act
(sync now, suspend, ...) go through these two calls instead of doing the work
themselves, so one process stays the single writer. An agent that is not
running is reported as :class:`AgentUnreachable` with what to do; a request
the agent refuses comes back as the agent's :class:`ControlError`.

An agent on another host is reached by URL (``http(s)://host:port``) when it was
started with ``[http].control_token_env``: the token goes as a bearer token, from
``$GITOPSD_AGENT_TOKEN``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from gitopsd.errors import GitopsdError
from gitopsd.http import ControlError

# The host part is ignored by a unix socket connection; it only makes a valid URL.
_BASE = "http://gitopsd"


class AgentUnreachable(GitopsdError):
    """No agent answers on the control socket (none running, or it did not answer in time)."""

    #: True when no agent listens at all (nothing was sent): the caller may act itself.
    absent = False


#: Where a remote agent's bearer token is read from.
TOKEN_ENV = "GITOPSD_AGENT_TOKEN"

Agent = Path | str  # the control socket, or an http(s) URL


async def get_status(socket: Agent, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The running agent's status, one dict per app (``GET /api/v1/apps``)."""
    answer = await _request(socket, "GET", "/api/v1/apps", None, timeout)
    apps = answer.get("apps")
    if not isinstance(apps, list) or not all(isinstance(a, dict) for a in apps):
        raise ControlError("the agent's status answer has no list of apps", 502)
    return apps


async def send_control(
    socket: Agent, request: Mapping[str, Any], timeout: float = 30.0
) -> dict[str, Any]:
    """Ask the running agent to act (``POST /api/v1/control``); its answer.

    Raises :class:`ControlError` with the agent's message and status when it refuses.
    """
    return await _request(socket, "POST", "/api/v1/control", dict(request), timeout)


async def _request(
    socket: Agent, method: str, path: str, body: dict[str, Any] | None, timeout: float
) -> dict[str, Any]:
    remote = isinstance(socket, str)
    not_running = AgentUnreachable(
        f"no gitopsd agent answers at {socket}"
        if remote
        else f"no gitopsd agent is running (no control socket at {socket}); start `gitopsd run`"
    )
    headers = {}
    if remote:
        token = os.environ.get(TOKEN_ENV, "")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        connector: aiohttp.BaseConnector = aiohttp.TCPConnector()
        url = str(socket).rstrip("/") + path
    else:
        connector = aiohttp.UnixConnector(path=str(socket))
        url = _BASE + path
    try:
        async with (
            aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as session,
            session.request(method, url, json=body, headers=headers) as response,
        ):
            status = response.status
            text = await response.text(errors="replace")
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, FileNotFoundError | ConnectionRefusedError):
            not_running.absent = True
            raise not_running from None
        raise AgentUnreachable(
            f"cannot connect to the gitopsd agent at {socket}: {exc.os_error.strerror or exc}"
        ) from None
    except TimeoutError:
        raise AgentUnreachable(
            f"the gitopsd agent at {socket} did not answer within {timeout:g}s"
            + ("; the request may still be carried out" if method == "POST" else "")
        ) from None
    except aiohttp.ClientError as exc:
        raise AgentUnreachable(
            f"the gitopsd agent at {socket} did not answer properly: {exc}"
        ) from None
    try:
        answer = json.loads(text)
    except ValueError:
        answer = None
    if status >= 400:
        if isinstance(answer, dict) and isinstance(answer.get("error"), str):
            raise ControlError(answer["error"], status)
        raise ControlError(f"the agent answered HTTP {status}: {text[:200]}", status)
    if not isinstance(answer, dict):
        raise ControlError(f"the agent's answer is not a JSON object: {text[:200]}", 502)
    return answer
