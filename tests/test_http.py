"""The agent's HTTP server against a fake agent: real HTTP on loopback, a real unix socket."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import socket
import stat
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
import structlog
from multidict import CIMultiDictProxy

from gitopsd.config import HttpConfig
from gitopsd.control import get_status
from gitopsd.errors import ConfigError, PermanentError
from gitopsd.http import METRICS_CONTENT_TYPE, ControlError, HttpEndpoints, serve_http

pytestmark = pytest.mark.anyio

GITHUB_SECRET = "gh-s3cret"
GITLAB_SECRET = "gl-t0ken"
HMAC_SECRET = "hm-s3cret"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class FakeView:
    """An AgentView that records what the server asked of it."""

    healthy: tuple[bool, str] = (True, "scheduler ticked 1s ago")
    ready: tuple[bool, str] = (True, "first pass done")
    apps: list[dict[str, Any]] = field(
        default_factory=lambda: [{"name": "web", "ready": True, "revision": "abc1234"}]
    )
    metrics: str = "# TYPE gitopsd_up gauge\ngitopsd_up 1\n"
    triggers: list[tuple[list[str], str]] = field(default_factory=list)
    controls: list[dict[str, Any]] = field(default_factory=list)
    refuse: ControlError | None = None

    def health(self) -> tuple[bool, str]:
        return self.healthy

    def readiness(self) -> tuple[bool, str]:
        return self.ready

    def status(self) -> list[dict[str, Any]]:
        return self.apps

    def metrics_text(self) -> str:
        return self.metrics

    def trigger(self, sources: Sequence[str], reason: str) -> list[str]:
        self.triggers.append((list(sources), reason))
        return list(sources) or ["deploy", "platform"]

    async def control(self, request: Mapping[str, Any]) -> dict[str, Any]:
        self.controls.append(dict(request))
        if self.refuse is not None:
            raise self.refuse
        return {"done": True}


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The webhook secrets: two in the environment, one in a file with a trailing newline."""
    monkeypatch.setenv("TEST_GITHUB_SECRET", GITHUB_SECRET)
    monkeypatch.setenv("TEST_HMAC_SECRET", HMAC_SECRET)
    path = tmp_path / "gitlab-token"
    path.write_text(GITLAB_SECRET + "\n")
    return path


def http_config(secret_file: Path, **extra: Any) -> HttpConfig:
    return HttpConfig.model_validate(
        {
            "address": "127.0.0.1:0",
            "max_body": 64,
            "webhooks": [
                {"name": "gh", "kind": "github", "secret_env": "TEST_GITHUB_SECRET"},
                {
                    "name": "gl",
                    "kind": "gitlab",
                    "secret_file": str(secret_file),
                    "sources": ["deploy"],
                },
                {
                    "name": "hm",
                    "kind": "hmac",
                    "secret_env": "TEST_HMAC_SECRET",
                    "sources": ["deploy", "platform"],
                },
            ],
            **extra,
        }
    )


@asynccontextmanager
async def serving(
    config: HttpConfig, view: FakeView, control_socket: Path | None = None
) -> AsyncIterator[HttpEndpoints]:
    async with anyio.create_task_group() as tg:
        endpoints: HttpEndpoints = await tg.start(
            functools.partial(serve_http, config, view, control_socket=control_socket)
        )
        try:
            yield endpoints
        finally:
            tg.cancel_scope.cancel()


async def start_error(
    config: HttpConfig, view: FakeView, control_socket: Path | None = None
) -> BaseException:
    """What serve_http raises before it is listening."""
    caught: BaseException | None = None
    try:
        async with serving(config, view, control_socket):
            pass
    except Exception as exc:
        caught = exc
    while isinstance(caught, ExceptionGroup):
        assert len(caught.exceptions) == 1, caught
        caught = caught.exceptions[0]
    if caught is not None:
        return caught
    raise AssertionError("serve_http started")


async def call(
    method: str,
    url: str,
    *,
    data: Any = None,
    headers: Mapping[str, str] | None = None,
    connector: aiohttp.BaseConnector | None = None,
) -> tuple[int, Any, CIMultiDictProxy[str]]:
    async with (
        aiohttp.ClientSession(connector=connector) as client,
        client.request(method, url, data=data, headers=headers) as response,
    ):
        body = await response.read()
        try:
            parsed: Any = json.loads(body)
        except ValueError:
            parsed = body.decode()
        return response.status, parsed, response.headers


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- probes, metrics, status -----------------------------------------------------------


async def test_probes_answer_200_with_the_detail(secrets: Path) -> None:
    async with serving(http_config(secrets), FakeView()) as ep:
        assert ep.url is not None
        assert ep.url.startswith("http://127.0.0.1:")
        assert not ep.url.endswith(":0")
        assert ep.socket is None
        status, body, _ = await call("GET", ep.url + "/healthz")
        assert (status, body) == (200, {"ok": True, "detail": "scheduler ticked 1s ago"})
        status, body, _ = await call("GET", ep.url + "/readyz")
        assert (status, body) == (200, {"ok": True, "detail": "first pass done"})


async def test_probes_answer_503_with_the_detail(secrets: Path) -> None:
    view = FakeView(
        healthy=(False, "scheduler last ticked 300s ago"), ready=(False, "fetching sources")
    )
    async with serving(http_config(secrets), view) as ep:
        assert ep.url is not None
        status, body, _ = await call("GET", ep.url + "/healthz")
        assert (status, body) == (503, {"ok": False, "detail": "scheduler last ticked 300s ago"})
        status, body, _ = await call("GET", ep.url + "/readyz")
        assert (status, body) == (503, {"ok": False, "detail": "fetching sources"})


async def test_metrics_in_the_prometheus_text_format(secrets: Path) -> None:
    view = FakeView()
    async with serving(http_config(secrets), view) as ep:
        assert ep.url is not None
        status, body, headers = await call("GET", ep.url + "/metrics")
    assert status == 200
    assert headers["Content-Type"] == METRICS_CONTENT_TYPE
    assert METRICS_CONTENT_TYPE.startswith("text/plain; version=0.0.4")
    assert body == view.metrics


async def test_apps_status_as_json(secrets: Path) -> None:
    view = FakeView()
    async with serving(http_config(secrets), view) as ep:
        assert ep.url is not None
        status, body, _ = await call("GET", ep.url + "/api/v1/apps")
        assert (status, body) == (200, {"apps": view.apps})
        status, body, _ = await call("POST", ep.url + "/api/v1/apps", data=b"{}")
        assert status == 405
        assert "not allowed" in body["error"]


async def test_unknown_paths_and_write_actions_are_not_on_tcp(secrets: Path) -> None:
    view = FakeView()
    async with serving(http_config(secrets), view) as ep:
        assert ep.url is not None
        for method, path in [
            ("POST", "/hooks/nope"),
            ("GET", "/nope"),
            ("POST", "/api/v1/control"),
            ("GET", "/api/v1/control"),
        ]:
            status, body, _ = await call(method, ep.url + path, data=b'{"action": "sync"}')
            assert status == 404, (method, path)
            assert body == {"error": f"not found: {path}"}
        status, _, _ = await call("GET", ep.url + "/hooks/gh")
        assert status == 405
    assert view.triggers == []
    assert view.controls == []


async def test_a_failing_view_answers_500_without_details(secrets: Path) -> None:
    class Broken(FakeView):
        def status(self) -> list[dict[str, Any]]:
            raise RuntimeError("secret internals")

    async with serving(http_config(secrets), Broken()) as ep:
        assert ep.url is not None
        status, body, _ = await call("GET", ep.url + "/api/v1/apps")
    assert status == 500
    assert "secret internals" not in body["error"]


# --- webhooks ---------------------------------------------------------------------------

BODY = b'{"ref": "refs/heads/main"}'

#: hook name -> (headers proving the secret for BODY, sources triggered)
GOOD = {
    "gh": ({"X-Hub-Signature-256": sign(GITHUB_SECRET, BODY), "X-GitHub-Event": "push"}, []),
    "gl": ({"X-Gitlab-Token": GITLAB_SECRET}, ["deploy"]),
    "hm": ({"X-Signature-256": sign(HMAC_SECRET, BODY)}, ["deploy", "platform"]),
}

BAD = {
    "gh-missing": ("gh", {"X-GitHub-Event": "push"}),
    "gh-wrong-secret": ("gh", {"X-Hub-Signature-256": sign("guess", BODY)}),
    "gh-other-body": ("gh", {"X-Hub-Signature-256": sign(GITHUB_SECRET, b"{}")}),
    "gh-no-prefix": (
        "gh",
        {"X-Hub-Signature-256": sign(GITHUB_SECRET, BODY).removeprefix("sha256=")},
    ),
    "gh-hmac-header": ("gh", {"X-Signature-256": sign(GITHUB_SECRET, BODY)}),
    "gl-missing": ("gl", {}),
    "gl-wrong": ("gl", {"X-Gitlab-Token": "gl-t0ke"}),
    "gl-with-newline": ("gl", {"X-Gitlab-Token": GITLAB_SECRET + "x"}),
    "gl-empty": ("gl", {"X-Gitlab-Token": ""}),
    "hm-missing": ("hm", {}),
    "hm-wrong": ("hm", {"X-Signature-256": sign(GITHUB_SECRET, BODY)}),
    "hm-github-header": ("hm", {"X-Hub-Signature-256": sign(HMAC_SECRET, BODY)}),
}


@pytest.mark.parametrize("name", sorted(GOOD))
async def test_a_signed_webhook_triggers_its_sources(name: str, secrets: Path) -> None:
    headers, sources = GOOD[name]
    view = FakeView()
    async with serving(http_config(secrets), view) as ep:
        assert ep.url is not None
        with structlog.testing.capture_logs() as logs:
            status, body, _ = await call(
                "POST", f"{ep.url}/hooks/{name}", data=BODY, headers=headers
            )
    assert status == 202
    assert body == {"triggered": sources or ["deploy", "platform"]}
    assert view.triggers == [(sources, f"webhook {name}")]
    assert {"event": "webhook", "name": name, "outcome": "triggered"}.items() <= logs[-1].items()
    assert all(s not in repr(logs) for s in (GITHUB_SECRET, GITLAB_SECRET, HMAC_SECRET))


@pytest.mark.parametrize("case", sorted(BAD))
async def test_a_webhook_without_the_right_signature_triggers_nothing(
    case: str, secrets: Path
) -> None:
    name, headers = BAD[case]
    view = FakeView()
    async with serving(http_config(secrets), view) as ep:
        assert ep.url is not None
        with structlog.testing.capture_logs() as logs:
            status, body, _ = await call(
                "POST", f"{ep.url}/hooks/{name}", data=BODY, headers=headers
            )
    assert status == 401
    assert set(body) == {"error"}
    assert view.triggers == []
    assert logs[-1]["event"] == "webhook rejected"
    assert logs[-1]["name"] == name
    assert all(s not in repr(logs) for s in (GITHUB_SECRET, GITLAB_SECRET, HMAC_SECRET))


async def test_github_ping_answers_200_and_triggers_nothing(secrets: Path) -> None:
    view = FakeView()
    async with serving(http_config(secrets), view) as ep:
        assert ep.url is not None
        ping = b'{"zen": "Keep it logically awesome."}'
        headers = {"X-GitHub-Event": "ping", "X-Hub-Signature-256": sign(GITHUB_SECRET, ping)}
        status, body, _ = await call("POST", ep.url + "/hooks/gh", data=ping, headers=headers)
        assert (status, body) == (200, {"ok": True, "detail": "pong"})
        # A ping proves the secret too: an unsigned one is refused.
        status, _, _ = await call(
            "POST", ep.url + "/hooks/gh", data=ping, headers={"X-GitHub-Event": "ping"}
        )
        assert status == 401
    assert view.triggers == []


async def test_a_body_over_the_cap_is_refused_unread(secrets: Path) -> None:
    big = b"x" * 65
    view = FakeView()

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked encoding
        for _ in range(5):
            yield b"x" * 20

    async with serving(http_config(secrets), view) as ep:
        assert ep.url is not None
        # With a Content-Length, and (signed correctly) exactly at the cap.
        status, body, _ = await call(
            "POST",
            ep.url + "/hooks/hm",
            data=big,
            headers={"X-Signature-256": sign(HMAC_SECRET, big)},
        )
        assert (status, body) == (413, {"error": "the request body is larger than 64 bytes"})
        status, _, _ = await call(
            "POST", ep.url + "/hooks/gl", data=chunks(), headers={"X-Gitlab-Token": GITLAB_SECRET}
        )
        assert status == 413
        assert view.triggers == []
        exact = b"x" * 64
        status, _, _ = await call(
            "POST",
            ep.url + "/hooks/hm",
            data=exact,
            headers={"X-Signature-256": sign(HMAC_SECRET, exact)},
        )
        assert status == 202
    assert len(view.triggers) == 1


# --- secrets ----------------------------------------------------------------------------


async def test_a_missing_secret_env_var_names_the_key(
    secrets: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("TEST_HMAC_SECRET")
    sock = tmp_path / "run" / "ctl.sock"
    error = await start_error(http_config(secrets), FakeView(), sock)
    assert isinstance(error, ConfigError)
    assert str(error).startswith("http.webhooks[2].secret_env: ")
    assert "TEST_HMAC_SECRET is not set" in str(error)
    assert not sock.exists()  # nothing was listening


async def test_a_missing_or_empty_secret_file_names_the_key(secrets: Path) -> None:
    await anyio.Path(secrets).unlink()
    error = await start_error(http_config(secrets), FakeView())
    assert isinstance(error, ConfigError)
    assert str(error).startswith(f"http.webhooks[1].secret_file: cannot read {secrets}: ")
    await anyio.Path(secrets).write_text("\n")
    error = await start_error(http_config(secrets), FakeView())
    assert isinstance(error, ConfigError)
    assert str(error) == f"http.webhooks[1].secret_file: the secret in {secrets} is empty"


async def test_an_address_in_use_names_the_key(secrets: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        error = await start_error(http_config(secrets, address=f"127.0.0.1:{port}"), FakeView())
    assert isinstance(error, ConfigError)
    assert str(error).startswith(f"http.address: cannot listen on 127.0.0.1:{port}: ")


# --- the control socket -------------------------------------------------------------------


async def test_the_control_socket_is_owner_only_and_removed_on_shutdown(
    secrets: Path, tmp_path: Path
) -> None:
    sock = tmp_path / "run" / "ctl.sock"
    async with serving(http_config(secrets), FakeView(), sock) as ep:
        assert ep.socket == sock
        mode = sock.stat().st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
        assert stat.S_IMODE(sock.parent.stat().st_mode) & 0o077 == 0
    assert not sock.exists()


async def test_only_the_socket_when_the_address_is_empty(secrets: Path, tmp_path: Path) -> None:
    sock = tmp_path / "ctl.sock"
    view = FakeView()
    async with serving(http_config(secrets, address=""), view, sock) as ep:
        assert ep == HttpEndpoints(url=None, socket=sock)
        assert await get_status(sock) == view.apps
    assert not sock.exists()


async def test_control_requests_reach_the_view(secrets: Path, tmp_path: Path) -> None:
    sock = tmp_path / "ctl.sock"
    view = FakeView()
    url = "http://agent/api/v1/control"
    async with serving(http_config(secrets), view, sock) as ep:
        assert ep.socket is not None
        unix = functools.partial(aiohttp.UnixConnector, path=str(sock))
        answer = await call("POST", url, data=b'{"action": "sync"}', connector=unix())
        assert answer[:2] == (200, {"done": True})
        for raw, message in [
            (b"[1, 2]", "the request body must be a JSON object"),
            (b"not json", "the request body is not valid JSON"),
            (b"", "the request body is not valid JSON"),
        ]:
            answer = await call("POST", url, data=raw, connector=unix())
            assert answer[:2] == (400, {"error": message})
        view.refuse = ControlError("app 'web' is already syncing", 409)
        answer = await call("POST", url, data=b'{"action": "sync"}', connector=unix())
        assert answer[:2] == (409, {"error": "app 'web' is already syncing"})
        answer = await call("GET", "http://agent/healthz", connector=unix())
        assert answer[0] == 404
    assert view.controls == [{"action": "sync"}, {"action": "sync"}]


async def test_a_stale_socket_file_is_replaced(secrets: Path, tmp_path: Path) -> None:
    sock = tmp_path / "ctl.sock"
    with socket.socket(socket.AF_UNIX) as old:  # an agent that died without cleaning up
        old.bind(str(sock))
    assert sock.exists()
    view = FakeView()
    async with serving(http_config(secrets, address=""), view, sock):
        assert await get_status(sock) == view.apps
    assert not sock.exists()


async def test_a_live_socket_is_not_taken_over(secrets: Path, tmp_path: Path) -> None:
    sock = tmp_path / "ctl.sock"
    view = FakeView()
    async with serving(http_config(secrets, address=""), view, sock):
        error = await start_error(http_config(secrets, address=""), FakeView(), sock)
        assert isinstance(error, PermanentError)
        assert "another gitopsd agent is already listening" in str(error)
        assert await get_status(sock) == view.apps  # the first agent still answers
    assert not sock.exists()


async def test_a_file_that_is_not_a_socket_is_left_alone(secrets: Path, tmp_path: Path) -> None:
    path = tmp_path / "ctl.sock"
    path.write_text("important")
    error = await start_error(http_config(secrets, address=""), FakeView(), path)
    assert isinstance(error, PermanentError)
    assert "is not a socket" in str(error)
    assert path.read_text() == "important"


async def test_shutdown_leaves_a_newer_agents_socket(secrets: Path, tmp_path: Path) -> None:
    sock = tmp_path / "ctl.sock"
    async with serving(http_config(secrets, address=""), FakeView(), sock):
        sock.unlink()  # another agent took the path over (say, after an operator removed it)
        with socket.socket(socket.AF_UNIX) as newer:
            newer.bind(str(sock))
            inode = os.stat(sock).st_ino
    assert os.stat(sock).st_ino == inode


# --- remote control with a bearer token ------------------------------------------------


async def test_without_a_token_write_actions_are_not_on_the_http_port(secrets: Path) -> None:
    view = FakeView()
    async with serving(http_config(secrets), view) as endpoints:
        assert endpoints.url is not None
        status, _, _ = await call("POST", endpoints.url + "/api/v1/control", data=b"{}")
    assert status in (404, 405)
    assert view.controls == []


async def test_a_bearer_token_allows_remote_control_and_a_wrong_one_is_refused(
    secrets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gitopsd.control import TOKEN_ENV, send_control

    monkeypatch.setenv("TEST_CONTROL_TOKEN", "t0ken")
    view = FakeView()
    config = http_config(secrets, control_token_env="TEST_CONTROL_TOKEN")
    async with serving(config, view) as endpoints:
        assert endpoints.url is not None
        url = endpoints.url + "/api/v1/control"
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "t0ken"}):
            status, body, _ = await call("POST", url, data=b"{}", headers=headers)
            assert status == 401, headers
            assert "Bearer" in body["error"]
        assert view.controls == []
        monkeypatch.setenv(TOKEN_ENV, "t0ken")
        answer = await send_control(endpoints.url, {"action": "reconcile", "app": "web"})
    assert answer == {"done": True}
    assert view.controls == [{"action": "reconcile", "app": "web"}]


async def test_a_missing_control_token_is_a_clear_error(secrets: Path) -> None:
    config = http_config(secrets, control_token_env="TEST_NO_SUCH_TOKEN")
    error = await start_error(config, FakeView())
    assert "http.control_token_env" in str(error)
