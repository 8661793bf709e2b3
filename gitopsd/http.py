"""The agent's HTTP server and its local control channel.

``gitopsd run`` is a long-running reconciler, and the things around it need to
talk to it: an orchestrator probes ``/healthz`` and ``/readyz``, Prometheus
scrapes ``/metrics``, a dashboard reads ``/api/v1/apps``, and a Git host's
webhook asks for a fetch at once instead of at the next interval. Those are
served on a TCP address (loopback by default) and are all read-only, except
that a webhook with a valid signature can *trigger a fetch*; its payload is
never trusted or parsed, so a forged or replayed request can at worst make the
agent fetch early. A delivery id seen before (``X-GitHub-Delivery``,
``X-Gitlab-Event-UUID``, ``X-Delivery-Id``) within ``[http].delivery_retention``
is answered 200 and ignored, also after a restart
(:class:`~gitopsd.statestore.deliveries.DeliveryLog`).

Write actions (sync now, suspend, resume, ...) go only through a unix socket
that only the agent's user can open (mode 0600): ``gitopsd.control`` is the
client the CLI uses. Nothing that changes ECS is reachable over TCP.

This module sees the agent only through the small :class:`AgentView` protocol,
so it does not import the engine and is tested with a fake agent.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import socket
import stat
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.abc
import structlog
from aiohttp import web

from gitopsd.config import HttpConfig, WebhookConfig, format_size
from gitopsd.errors import ConfigError, GitopsdError, PermanentError
from gitopsd.redact import register
from gitopsd.statestore.deliveries import DeliveryLog

log = structlog.get_logger(__name__)

#: How long in-flight requests may take to finish once the server is cancelled.
SHUTDOWN_TIMEOUT = 5.0

#: The content type of the Prometheus text exposition format.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ControlError(GitopsdError):
    """A control request the agent refuses: a message for the user and an HTTP status.

    400: the request is malformed; 404: it names an unknown app; 409: it conflicts
    with what the agent is doing (the app is already syncing, say).
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class AgentView(Protocol):
    """What the HTTP server needs from the running agent."""

    def health(self) -> tuple[bool, str]:
        """Whether the loop is alive (the scheduler ticked recently), and why not."""
        ...

    def readiness(self) -> tuple[bool, str]:
        """Whether the sources were fetched and the first pass is done, and why not."""
        ...

    def status(self) -> list[dict[str, Any]]:
        """JSON-able status, one dict per app."""
        ...

    def metrics_text(self) -> str:
        """The metrics in the Prometheus text exposition format."""
        ...

    def trigger(self, sources: Sequence[str], reason: str) -> list[str]:
        """Ask for an immediate fetch of ``sources`` (all when empty); the names triggered."""
        ...

    async def control(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Carry out a write action; may raise :class:`ControlError`."""
        ...


@dataclass(frozen=True)
class HttpEndpoints:
    """Where the server listens once started."""

    #: ``http://host:port`` as bound (the real port when the config asked for 0);
    #: None when ``http.address`` is empty.
    url: str | None
    #: The control socket, or None when there is none.
    socket: Path | None


@dataclass(frozen=True)
class _Hook:
    """A webhook with its secret loaded."""

    config: WebhookConfig
    secret: bytes

    def __repr__(self) -> str:  # never show the secret
        return f"_Hook(name={self.config.name!r}, kind={self.config.kind!r})"


def _load_webhooks(config: HttpConfig) -> list[_Hook]:
    """Each webhook with its secret, read from its environment variable or file.

    One trailing newline is stripped. A missing, unreadable or empty secret raises
    :class:`ConfigError` naming the key (``http.webhooks[0].secret_env``).
    """
    out = []
    for i, hook in enumerate(config.webhooks):
        if hook.secret_env:
            key = f"http.webhooks[{i}].secret_env"
            value = os.environ.get(hook.secret_env)
            if value is None:
                raise ConfigError(
                    f"{key}: the environment variable {hook.secret_env} is not set "
                    f"(it holds the secret of webhook {hook.name!r})"
                )
            secret = _strip_newline(os.fsencode(value))
            where = f"the environment variable {hook.secret_env}"
        elif hook.secret_file is not None:
            key = f"http.webhooks[{i}].secret_file"
            try:
                secret = _strip_newline(hook.secret_file.read_bytes())
            except OSError as exc:
                raise ConfigError(
                    f"{key}: cannot read {hook.secret_file}: {exc.strerror or exc} "
                    f"(it holds the secret of webhook {hook.name!r})"
                ) from None
            where = str(hook.secret_file)
        else:  # pragma: no cover - WebhookConfig requires exactly one
            raise ConfigError(f"http.webhooks[{i}]: set secret_env or secret_file")
        if not secret:
            raise ConfigError(f"{key}: the secret in {where} is empty")
        register(os.fsdecode(secret))
        out.append(_Hook(hook, secret))
    return out


def _load_control_token(config: HttpConfig) -> bytes | None:
    """The bearer token for remote write actions, or None when none is configured."""
    if config.control_token_env:
        value = os.environ.get(config.control_token_env)
        if not value:
            raise ConfigError(
                f"http.control_token_env: the environment variable {config.control_token_env} "
                "is not set or empty"
            )
        return _strip_newline(os.fsencode(value))
    if config.control_token_file is not None:
        try:
            token = _strip_newline(config.control_token_file.read_bytes())
        except OSError as exc:
            raise ConfigError(
                f"http.control_token_file: cannot read {config.control_token_file}: "
                f"{exc.strerror or exc}"
            ) from None
        if not token:
            raise ConfigError(f"http.control_token_file: {config.control_token_file} is empty")
        return token
    return None


def _strip_newline(value: bytes) -> bytes:
    if value.endswith(b"\r\n"):
        return value[:-2]
    return value.removesuffix(b"\n")


async def serve_http(
    config: HttpConfig,
    view: AgentView,
    *,
    control_socket: Path | None,
    deliveries: DeliveryLog | None = None,
    task_status: anyio.abc.TaskStatus[HttpEndpoints] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``task_status.started(HttpEndpoints)`` once listening.

    Webhook secrets are read first: a missing one raises :class:`ConfigError`
    before anything listens. They and the control token are registered with
    :mod:`gitopsd.redact` (masked in every output). ``config.address == ""`` serves only the socket.
    On cancellation in-flight requests get :data:`SHUTDOWN_TIMEOUT` seconds and
    the socket file is removed.
    """
    hooks = _load_webhooks(config)
    token = _load_control_token(config)
    if token is not None:
        register(os.fsdecode(token))
    runners: list[web.AppRunner] = []
    owned: tuple[Path, int, int] | None = None
    try:
        url = None
        if config.address:
            runner = web.AppRunner(
                _tcp_app(config, view, hooks, token, deliveries),
                access_log=None,
                shutdown_timeout=SHUTDOWN_TIMEOUT,
            )
            await runner.setup()
            runners.append(runner)
            host, port = _split_address(config.address)
            try:
                await web.TCPSite(runner, host, port).start()
            except OSError as exc:
                raise ConfigError(
                    f"http.address: cannot listen on {config.address}: {exc.strerror or exc}"
                ) from None
            url = _url(runner.addresses[0])
        sock_path = None
        if control_socket is not None:
            await _claim_socket_path(control_socket)
            sock, dev, ino = _bind_unix(control_socket)
            owned = (control_socket, dev, ino)
            runner = web.AppRunner(
                _control_app(view), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT
            )
            await runner.setup()
            runners.append(runner)
            try:
                await web.SockSite(runner, sock).start()  # listen() only now, after the chmod
            except BaseException:
                sock.close()
                raise
            sock_path = control_socket
        log.info("http server listening", url=url, control_socket=sock_path and str(sock_path))
        task_status.started(HttpEndpoints(url=url, socket=sock_path))
        await anyio.sleep_forever()
    finally:
        with anyio.move_on_after(SHUTDOWN_TIMEOUT + 1, shield=True):
            for runner in reversed(runners):
                await runner.cleanup()
        if owned is not None:
            _remove_own_socket(*owned)


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


def _url(sockname: Any) -> str:
    host, port = sockname[0], sockname[1]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


async def _claim_socket_path(path: Path) -> None:
    """Make ``path`` free for our socket: create its directory, remove a stale socket.

    A socket another agent still listens on is not taken over; a file that is not
    a socket is never removed.
    """
    if not _socket_exists(path):
        return
    try:
        with anyio.fail_after(2):
            stream = await anyio.connect_unix(path)
    except ConnectionRefusedError:
        _unlink(path)  # stale: left by an agent that did not shut down
        log.info("removed stale control socket", path=str(path))
        return
    except TimeoutError:
        pass  # a listener too busy to accept: alive
    except OSError as exc:
        raise PermanentError(f"control socket {path}: {exc.strerror or exc}") from None
    else:
        await stream.aclose()
    raise PermanentError(f"control socket {path}: another gitopsd agent is already listening on it")


def _socket_exists(path: Path) -> bool:
    """Create the directory of ``path``; whether a socket is there (a non-socket refuses)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = path.lstat()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise PermanentError(f"control socket {path}: {exc.strerror or exc}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise PermanentError(
            f"control socket {path}: the path exists and is not a socket; remove it or "
            "choose another path"
        )
    return True


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def _bind_unix(path: Path) -> tuple[socket.socket, int, int]:
    """A unix socket bound at ``path`` with mode 0600, not yet listening, and its file's id.

    Nobody can connect before ``listen()``, so there is no moment when the socket
    is open with the umask's looser mode.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(os.fspath(path))
    except OSError as exc:
        sock.close()
        raise PermanentError(
            f"control socket {path}: cannot listen: {exc.strerror or exc}"
        ) from None
    try:
        os.chmod(path, 0o600)
        sock.setblocking(False)
        st = path.lstat()
    except OSError as exc:
        sock.close()
        path.unlink(missing_ok=True)
        raise PermanentError(f"control socket {path}: {exc.strerror or exc}") from None
    return sock, st.st_dev, st.st_ino


def _remove_own_socket(path: Path, dev: int, ino: int) -> None:
    """Remove the socket file unless another agent has replaced it since."""
    with contextlib.suppress(OSError):
        st = path.lstat()
        if (st.st_dev, st.st_ino) == (dev, ino):
            path.unlink()


# --- the applications ---------------------------------------------------------------


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def _json_errors(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Every error answer as ``{"error": ...}``; an unexpected exception is logged, 500."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            message = f"not found: {request.path}"
        elif exc.status == 405:
            message = f"method {request.method} not allowed on {request.path}"
        else:
            message = exc.text or exc.reason
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return _error(exc.status, message, allow)
    except Exception:
        log.exception("http handler failed", method=request.method, path=request.path)
        return _error(500, "internal error (see the agent's log)")


def _probe(result: tuple[bool, str]) -> web.Response:
    ok, detail = result
    return web.json_response({"ok": ok, "detail": detail}, status=200 if ok else 503)


def _apps_handler(view: AgentView) -> _Handler:
    async def apps(request: web.Request) -> web.StreamResponse:
        return web.json_response({"apps": view.status()})

    return apps


def _tcp_app(
    config: HttpConfig,
    view: AgentView,
    hooks: list[_Hook],
    token: bytes | None = None,
    deliveries: DeliveryLog | None = None,
) -> web.Application:
    async def healthz(request: web.Request) -> web.StreamResponse:
        return _probe(view.health())

    async def readyz(request: web.Request) -> web.StreamResponse:
        return _probe(view.readiness())

    async def metrics(request: web.Request) -> web.StreamResponse:
        body = view.metrics_text().encode("utf-8")
        return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})

    app = web.Application(middlewares=[_json_errors])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/apps", _apps_handler(view))
    for hook in hooks:
        app.router.add_post(
            hook.config.path, _webhook_handler(hook, view, config.max_body, deliveries)
        )
    if token is not None:
        control = _control_handler(view)
        wanted = b"Bearer " + token

        async def guarded(request: web.Request) -> web.StreamResponse:
            given = request.headers.get("Authorization", "").encode("utf-8", "replace")
            if not hmac.compare_digest(given, wanted):
                log.info("control request refused", status=401, remote=request.remote)
                return _error(401, "a valid 'Authorization: Bearer <token>' header is required")
            return await control(request)

        app.router.add_post("/api/v1/control", guarded)
    return app


def _control_app(view: AgentView) -> web.Application:
    app = web.Application(middlewares=[_json_errors])
    app.router.add_get("/api/v1/apps", _apps_handler(view))
    app.router.add_post("/api/v1/control", _control_handler(view))
    return app


def _control_handler(view: AgentView) -> _Handler:
    async def control(request: web.Request) -> web.StreamResponse:
        raw = await request.read()  # bounded by the application's client_max_size
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "the request body is not valid JSON")
        if not isinstance(body, dict):
            return _error(400, "the request body must be a JSON object")
        try:
            result = await view.control(body)
        except ControlError as exc:
            log.info("control request refused", status=exc.status, error=exc.message)
            return _error(exc.status, exc.message)
        return web.json_response(result)

    return control


# --- webhooks -----------------------------------------------------------------------


#: The header each kind names its delivery in (a redelivery keeps the id).
DELIVERY_HEADERS = {
    "github": "X-GitHub-Delivery",
    "gitlab": "X-Gitlab-Event-UUID",
    "hmac": "X-Delivery-Id",
}


def _webhook_handler(
    hook: _Hook, view: AgentView, max_body: int, deliveries: DeliveryLog | None = None
) -> _Handler:
    name = hook.config.name

    async def webhook(request: web.Request) -> web.StreamResponse:
        body = await _read_limited(request, max_body)
        if body is None:
            log.warning("webhook rejected", name=name, outcome="too large", remote=request.remote)
            return _error(413, f"the request body is larger than {format_size(max_body)}")
        problem = _verify(hook, request, body)
        if problem is not None:
            log.warning("webhook rejected", name=name, outcome=problem, remote=request.remote)
            return _error(401, problem)
        if hook.config.kind == "github" and request.headers.get("X-GitHub-Event") == "ping":
            log.info("webhook", name=name, outcome="ping")
            return web.json_response({"ok": True, "detail": "pong"})
        delivery = request.headers.get(DELIVERY_HEADERS[hook.config.kind], "").strip()[:120]
        if deliveries is not None and delivery and not await deliveries.first_time(name, delivery):
            log.info("webhook", name=name, outcome="replayed", delivery=delivery)
            return web.json_response(
                {"triggered": [], "duplicate": True, "detail": f"delivery {delivery} already seen"}
            )
        triggered = view.trigger(hook.config.sources, reason=f"webhook {name}")
        log.info("webhook", name=name, outcome="triggered", sources=triggered)
        return web.json_response({"triggered": triggered}, status=202)

    return webhook


async def _read_limited(request: web.Request, limit: int) -> bytes | None:
    """The body, or None as soon as it proves larger than ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


#: The header each kind carries its proof in.
_HEADERS = {"github": "X-Hub-Signature-256", "gitlab": "X-Gitlab-Token", "hmac": "X-Signature-256"}


def _verify(hook: _Hook, request: web.Request, body: bytes) -> str | None:
    """None when the request proves it knows the secret, else what is wrong."""
    header = _HEADERS[hook.config.kind]
    given = request.headers.get(header)
    if not given:
        return f"missing {header} header"
    provided = given.strip().encode("utf-8", "replace")
    if hook.config.kind == "gitlab":
        expected = hook.secret
    else:
        digest = hmac.new(hook.secret, body, hashlib.sha256).hexdigest()
        expected = f"sha256={digest}".encode()
        provided = provided.lower()
    if not hmac.compare_digest(expected, provided):
        return f"{header} does not match"
    return None
