"""The local ECS endpoint as a WSGI app: moto's server, our ECS layer, a control plane.

:func:`build_server` returns a threaded werkzeug server whose app is
:class:`LocalAwsApp`:

- every AWS request goes to moto's own ``DomainDispatcherApplication`` (so all
  moto services answer, on the real wire protocols); once
  :func:`~gitopsd.local_aws.ecs_backend.install` ran, its ECS routes dispatch to
  :class:`~gitopsd.local_aws.ecs_responses.SimulatedEcsResponse`;
- the name of each AWS operation received is appended to the call log: from
  ``X-Amz-Target`` for JSON protocols (``RegisterTaskDefinition``), else from the
  ``Action`` form field (query protocols) when there is one;
- ``/moto-api/...`` works as in moto (``POST /moto-api/reset`` forgets every
  resource, simulated deployments included, but keeps the settings);
- ``/_gitopsd/...`` is the control plane, plain HTTP with JSON bodies:

  ==========================  ==============================================================
  ``GET  /_gitopsd/health``    ``{"ok": true, "region": ..., "clock": ..., "now": ...}``
  ``POST /_gitopsd/reset``     moto reset, settings and clock back to the startup values,
                               call log cleared, ``--create-cluster`` clusters created again
  ``GET  /_gitopsd/settings``  ``{"pace": 1.0, "fail_images": [...], "clock": "real",
                               "minute_seconds": 60.0, "fail_hooks": [...]}``
  ``POST /_gitopsd/settings``  change some of those keys; 400 with ``{"error": ...}`` if bad
  ``GET  /_gitopsd/calls``     ``{"calls": ["CreateCluster", ...]}`` since the last clear
  ``DELETE /_gitopsd/calls``   clear the call log
  ``POST /_gitopsd/advance``   ``{"seconds": 2.5}``: move the manual clock, then settle every
                               service; 409 if the clock is ``real``. Answers ``{"now": ...}``
  ``POST /_gitopsd/settle``    settle every service at the current simulated time
  ``POST /_gitopsd/faults``    arm a fault rule, or ``{"rules": [...]}``: ``{"operation":
                               "RegisterTaskDefinition", "error": "ThrottlingException",
                               "count": 3}`` fails the next 3 such calls; 400 if a rule is bad.
                               Optional keys (see :mod:`gitopsd.local_aws.faults`):
                               ``operation`` ``"*"`` or a list; ``rate`` (0..1) with ``seed``;
                               ``duration`` (s); ``phase`` ``"before"`` (moto never sees the
                               call) or ``"after"`` (moto processes it, the answer is
                               replaced); ``error`` ``"drop"`` (close the connection, no
                               answer) or ``null`` (just slow); ``latency`` (s, at most 60)
  ``GET  /_gitopsd/faults``    ``{"faults": [rule + "matched", "injected", "active" ...],
                               "injected": [{"operation", "error", "phase", ...}, ...]}``
  ``DELETE /_gitopsd/faults``  disarm every rule, clear the injection log
  ==========================  ==============================================================

A fault applies to AWS operations only (never to ``/_gitopsd/`` or ``/moto-api``);
a faulted call is still in the call log.

Times in control answers are ISO 8601 strings in UTC.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from gitopsd.local_aws.clock import ClockError
from gitopsd.local_aws.ecs_backend import (
    create_cluster,
    install,
    settle_all,
)
from gitopsd.local_aws.faults import MAX_LATENCY, PHASE_BEFORE, Injection
from gitopsd.local_aws.runtime import Runtime
from gitopsd.local_aws.settings import SettingsError

CONTROL_PREFIX = "/_gitopsd/"

StartResponse = Callable[..., Any]


def operation_name(environ: dict[str, Any]) -> str | None:
    """The AWS operation of a request (X-Amz-Target, else the Action form field)."""
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return str(target).rsplit(".", 1)[-1]
    content_type = str(environ.get("CONTENT_TYPE", ""))
    if not content_type.startswith("application/x-www-form-urlencoded"):
        query = parse_qs(str(environ.get("QUERY_STRING", "")))
        return query["Action"][0] if "Action" in query else None
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    fields = parse_qs(body.decode("utf-8", errors="replace"))
    return fields["Action"][0] if "Action" in fields else None


class LocalAwsApp:
    """WSGI app: control plane, call log, then moto with the simulated ECS."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.moto_app = DomainDispatcherApplication(create_backend_app)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if path.startswith(CONTROL_PREFIX):
            response = self.control(Request(environ))
            return response(environ, start_response)
        if path.startswith("/moto-api"):
            with self.runtime.lock:
                return list(self.moto_app(environ, start_response))
        operation = operation_name(environ)
        if operation:
            self.runtime.calls.record(operation)
            injection = self.runtime.faults.match(operation)
            if injection is not None:
                return self._inject(injection, environ, start_response)
        return self.moto_app(environ, start_response)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ faults

    def _inject(
        self, injection: Injection, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        """Answer one AWS call as the fault rule that fired says."""
        if injection.phase == PHASE_BEFORE:
            _delay(injection.latency)
            if injection.error is None:
                return self.moto_app(environ, start_response)  # type: ignore[no-any-return]
        else:
            status, headers, body = self._call_moto(environ)
            _delay(injection.latency)
            if injection.error is None:
                start_response(status, headers)
                return [body]
        if injection.drop:
            _drop_connection(environ, unread=injection.phase == PHASE_BEFORE)
        json_protocol = "HTTP_X_AMZ_TARGET" in environ  # JSON services name the operation there
        response = Response(
            injection.body(json_protocol=json_protocol),
            status=injection.status,
            mimetype="application/x-amz-json-1.1" if json_protocol else "text/xml",
        )
        return response(environ, start_response)

    def _call_moto(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        """Let moto process the request; its whole answer, not sent."""
        answer: dict[str, Any] = {}
        chunks: list[bytes] = []

        def capture(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            answer["status"], answer["headers"] = status, list(headers)
            return chunks.append

        result = self.moto_app(environ, capture)
        try:
            chunks.extend(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return answer["status"], answer["headers"], b"".join(chunks)

    # ---------------------------------------------------------- control plane

    def control(self, request: Request) -> Response:
        """Answer one ``/_gitopsd/`` request."""
        route = (request.method, request.path[len(CONTROL_PREFIX) :].strip("/"))
        handlers: dict[tuple[str, str], Callable[[Request], Any]] = {
            ("GET", "health"): self._health,
            ("POST", "reset"): self._reset,
            ("GET", "settings"): self._get_settings,
            ("POST", "settings"): self._set_settings,
            ("GET", "calls"): self._get_calls,
            ("DELETE", "calls"): self._clear_calls,
            ("POST", "advance"): self._advance,
            ("POST", "settle"): self._settle,
            ("GET", "faults"): lambda _: self.runtime.faults.snapshot(),
            ("POST", "faults"): lambda request: self.runtime.faults.arm(_body(request)),
            ("DELETE", "faults"): self._clear_faults,
        }
        handler = handlers.get(route)
        if handler is None:
            known = sorted(f"{m} {CONTROL_PREFIX}{p}" for m, p in handlers)
            return _json({"error": f"no such control endpoint; known: {known}"}, 404)
        try:
            return _json(handler(request))
        except (SettingsError, ValueError, TypeError) as exc:
            return _json({"error": str(exc)}, 400)
        except ClockError as exc:
            return _json({"error": str(exc)}, 409)

    def _health(self, _: Request) -> dict[str, Any]:
        return {
            "ok": True,
            "region": self.runtime.region,
            "clock": self.runtime.clock.mode,
            "now": self.runtime.clock.now().isoformat(),
        }

    def _reset(self, _: Request) -> dict[str, Any]:
        from moto.moto_api._internal.models import moto_api_backend

        with self.runtime.lock:
            moto_api_backend.reset()
            self.runtime.reset_settings()
            self.runtime.calls.clear()
            self.runtime.faults.clear()
            create_startup_clusters(self.runtime)
        return {"ok": True}

    def _get_settings(self, _: Request) -> dict[str, Any]:
        return self.runtime.settings.to_json()

    def _set_settings(self, request: Request) -> dict[str, Any]:
        body = _body(request)
        with self.runtime.lock:
            settle_all()  # steps already due happen under the old settings
            return self.runtime.configure_json(body).to_json()

    def _clear_faults(self, _: Request) -> dict[str, Any]:
        self.runtime.faults.clear()
        return self.runtime.faults.snapshot()

    def _get_calls(self, _: Request) -> dict[str, Any]:
        return {"calls": self.runtime.calls.snapshot()}

    def _clear_calls(self, _: Request) -> dict[str, Any]:
        self.runtime.calls.clear()
        return {"ok": True}

    def _advance(self, request: Request) -> dict[str, Any]:
        seconds = _body(request).get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise ValueError(f"'seconds' must be a number >= 0, got {seconds!r}")
        with self.runtime.lock:
            now = self.runtime.clock.advance(float(seconds))
            settle_all()
        return {"now": now.isoformat()}

    def _settle(self, _: Request) -> dict[str, Any]:
        with self.runtime.lock:
            settle_all()
            return {"now": self.runtime.clock.now().isoformat()}


def _delay(seconds: float) -> None:
    """An injected latency: really wait (bounded by ``faults.MAX_LATENCY``)."""
    if seconds > 0:
        time.sleep(min(seconds, MAX_LATENCY))


def _drop_connection(environ: dict[str, Any], *, unread: bool) -> None:
    """Shut the client's TCP connection down, unanswered; werkzeug then drops the request.

    Raises :class:`ConnectionAbortedError`, which werkzeug's request handler takes
    for a connection the client dropped (nothing is written, nothing logged).
    """
    sock = environ.get("werkzeug.socket")
    if sock is None:
        raise RuntimeError("'drop' faults need the werkzeug server (no werkzeug.socket)")
    if unread:  # read the request body first: unread data turns the close into a reset
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > 0:
            environ["wsgi.input"].read(length)
    with contextlib.suppress(OSError):  # already gone
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    raise ConnectionAbortedError("connection dropped by an injected fault")


def _body(request: Request) -> dict[str, Any]:
    raw = request.get_data(as_text=True)
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    return data


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json")


def create_startup_clusters(runtime: Runtime) -> None:
    """Create the ``--create-cluster`` clusters in the runtime's region."""
    for name in runtime.startup_clusters:
        create_cluster(name, runtime.region)


class QuietRequestHandler(MotoRequestHandler):
    """moto's request handler without one log line per request."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Do not log successful requests (errors are still logged)."""


def build_server(host: str, port: int, runtime: Runtime, *, verbose: bool = False) -> Any:
    """Install the simulated ECS and bind a threaded server (port 0: any free port)."""
    install(runtime)
    with runtime.lock:
        create_startup_clusters(runtime)
    handler = MotoRequestHandler if verbose else QuietRequestHandler
    server: BaseWSGIServer = make_server(
        host, port, LocalAwsApp(runtime), threaded=True, request_handler=handler
    )
    return server
