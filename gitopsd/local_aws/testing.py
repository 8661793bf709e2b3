"""Run the local ECS endpoint from tests: :class:`LocalAws` starts it as a subprocess.

Typical use, one server per test session and a reset between tests::

    with LocalAws(clock="manual") as aws:
        ecs = aws.boto3_client()
        aws.create_cluster("demo")
        ...
        aws.advance(3)          # manual clock: three simulated seconds pass
        aws.reset()

The server is ``python -m gitopsd.local_aws`` on a free loopback port (it binds
port 0 and reports the address on its ``ready on`` line); it stops on SIGTERM
when the context exits. Control calls go to the ``/_gitopsd/`` endpoints
documented in :mod:`gitopsd.local_aws.server`, with the standard library only:
importing this module needs neither moto nor boto3 (``boto3_client`` imports
boto3 when called).
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

#: The line ``local-aws`` prints once it accepts connections (after "starting ...").
READY_LINE = re.compile(r"local-aws: ready on (http://\S+) \(region (\S+)\)")
DUMMY_ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
DUMMY_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


class LocalAwsError(RuntimeError):
    """The local endpoint did not start, died, or refused a control call."""


class LocalAws:
    """A local ECS endpoint in a subprocess, with control helpers for tests."""

    def __init__(
        self,
        *,
        pace: float = 1.0,
        fail_images: Iterable[str] = (),
        clock: str = "real",
        minute_seconds: float | None = None,
        fail_hooks: Iterable[str] = (),
        region: str = "us-east-1",
        create_clusters: Iterable[str] = (),
        host: str = "127.0.0.1",
        startup_timeout: float = 30.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.region = region
        self.host = host
        self.startup_timeout = startup_timeout
        self._args = [
            "--host",
            host,
            "--port",
            "0",
            "--pace",
            repr(float(pace)),
            "--clock",
            clock,
            "--region",
            region,
        ]
        for pattern in fail_images:
            self._args += ["--fail-image", pattern]
        if minute_seconds is not None:
            self._args += ["--minute-seconds", repr(float(minute_seconds))]
        for substring in fail_hooks:
            self._args += ["--fail-hook", substring]
        for cluster in create_clusters:
            self._args += ["--create-cluster", cluster]
        self._args += list(extra_args)
        self._process: subprocess.Popen[str] | None = None
        self._endpoint: str | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # ------------------------------------------------------------- lifecycle

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running server."""
        if self._endpoint is None:
            raise LocalAwsError("LocalAws is not started (use it as a context manager)")
        return self._endpoint

    def start(self) -> LocalAws:
        """Start the subprocess and wait (with a deadline) until it answers."""
        if self._process is not None:
            return self
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"
        command = [sys.executable, "-m", "gitopsd.local_aws", *self._args]
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env
        )
        assert self._process.stdout is not None
        threading.Thread(
            target=_pump, args=(self._process.stdout, self._lines), daemon=True
        ).start()
        deadline = time.monotonic() + self.startup_timeout
        try:
            self._endpoint = self._wait_for_address(deadline)
            self._wait_until_healthy(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for_address(self, deadline: float) -> str:
        seen: list[str] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LocalAwsError(f"local-aws did not report its address; output: {seen}")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                code = self._process.wait() if self._process else None
                raise LocalAwsError(f"local-aws exited with {code} before serving; {seen}")
            seen.append(line.rstrip())
            match = READY_LINE.search(line)
            if match:
                return match.group(1)

    def _wait_until_healthy(self, deadline: float) -> None:
        delay = 0.01
        while True:
            try:
                self._control("GET", "health")
                return
            except (LocalAwsError, OSError) as exc:
                if time.monotonic() + delay > deadline:
                    raise LocalAwsError(f"local-aws is not healthy: {exc}") from exc
            time.sleep(delay)  # polling for readiness, bounded by the deadline
            delay = min(delay * 2, 0.2)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the server and wait for it (kill it after ``timeout``)."""
        process, self._process = self._process, None
        self._endpoint = None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> LocalAws:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --------------------------------------------------------- control plane

    def _control(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.endpoint_url}/_gitopsd/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with self._opener.open(request, timeout=30) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise LocalAwsError(f"{method} /_gitopsd/{path}: HTTP {exc.code}: {detail}") from exc
        return json.loads(raw) if raw else None

    def reset(self) -> None:
        """Forget every AWS resource, the simulation, the call log; settings to startup values."""
        self._control("POST", "reset")

    def calls(self) -> list[str]:
        """AWS operation names received since the last reset or clear, in order."""
        return list(self._control("GET", "calls")["calls"])

    def clear_calls(self) -> None:
        """Empty the call log."""
        self._control("DELETE", "calls")

    def settings(self) -> dict[str, Any]:
        """The current settings (``pace``, ``fail_images``, ``clock``, ``minute_seconds``, ...)."""
        return dict(self._control("GET", "settings"))

    def configure(
        self,
        pace: float | None = None,
        fail_images: list[str] | None = None,
        clock: str | None = None,
        minute_seconds: float | None = None,
        fail_hooks: list[str] | None = None,
    ) -> None:
        """Change some settings (None leaves one as it is)."""
        body: dict[str, Any] = {}
        if pace is not None:
            body["pace"] = pace
        if fail_images is not None:
            body["fail_images"] = list(fail_images)
        if clock is not None:
            body["clock"] = clock
        if minute_seconds is not None:
            body["minute_seconds"] = minute_seconds
        if fail_hooks is not None:
            body["fail_hooks"] = list(fail_hooks)
        self._control("POST", "settings", body)

    def advance(self, seconds: float) -> None:
        """Manual clock: move simulated time forward, then settle every service."""
        self._control("POST", "advance", {"seconds": seconds})

    def inject_fault(
        self, operation: str, error: str = "ThrottlingException", count: int = 1
    ) -> None:
        """Make the next ``count`` calls of ``operation`` fail with ``error``."""
        self._control("POST", "faults", {"operation": operation, "error": error, "count": count})

    def arm_fault(
        self,
        operation: str | Sequence[str],
        error: str | None = "ThrottlingException",
        *,
        count: int | None = None,
        rate: float | None = None,
        seed: int | None = None,
        phase: str = "before",
        latency: float | None = None,
        duration: float | None = None,
    ) -> dict[str, Any]:
        """Arm one fault rule (see :mod:`gitopsd.local_aws.faults`); returns it as listed.

        ``operation``: a name, ``"*"`` (every AWS operation) or several names.
        ``error``: an AWS error code, ``"drop"`` (close the connection unanswered)
        or None (no error: with ``latency``, just slow). ``count`` None leaves the
        server's default: 1, or no cap when ``rate`` or ``duration`` is given.
        """
        rule: dict[str, Any] = {
            "operation": operation if isinstance(operation, str) else list(operation),
            "error": error,
            "phase": phase,
        }
        optional = {
            "count": count,
            "rate": rate,
            "seed": seed,
            "latency": latency,
            "duration": duration,
        }
        rule.update({key: value for key, value in optional.items() if value is not None})
        armed: dict[str, Any] = self._control("POST", "faults", rule)["faults"][-1]
        return armed

    def inject_faults(self, rules: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Arm several fault rules (JSON objects as ``POST /_gitopsd/faults`` takes them)."""
        return dict(self._control("POST", "faults", {"rules": list(rules)}))

    def faults(self) -> dict[str, Any]:
        """``{"faults": [rule ...], "injected": [{"operation", "error", "phase" ...}]}``."""
        return dict(self._control("GET", "faults"))

    def clear_faults(self) -> None:
        """Disarm every fault rule and clear the injection log."""
        self._control("DELETE", "faults")

    def settle(self) -> None:
        """Settle every service at the current simulated time."""
        self._control("POST", "settle")

    # ----------------------------------------------------------- AWS helpers

    def boto3_client(self, service: str = "ecs") -> Any:
        """A boto3 client for this endpoint: dummy credentials, retries off."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            service,
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=DUMMY_ACCESS_KEY,
            aws_secret_access_key=DUMMY_SECRET_KEY,
            config=Config(retries={"total_max_attempts": 1}),
        )

    def create_cluster(self, name: str) -> str:
        """Create an ECS cluster; returns its ARN."""
        response = self.boto3_client("ecs").create_cluster(clusterName=name)
        return str(response["cluster"]["clusterArn"])


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    """Forward the server's stdout lines to a queue (None at EOF)."""
    try:
        for line in stream:
            lines.put(line)
    except ValueError:  # stream closed by stop()
        pass
    finally:
        lines.put(None)
