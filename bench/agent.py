"""``gitopsd run`` as a subprocess for P4 and P5: start, wait, ask its status API, stop.

The agent runs exactly as a user runs it (``python -m gitopsd run -c CONFIG``),
with JSON logs to a file, an HTTP address on a free port and, for P4, an hmac
webhook. Waits poll with a deadline.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bench.servers import ROOT

T = TypeVar("T")
HOOK_SECRET = "bench-secret"
HOOK_ENV = "GITOPSD_BENCH_HOOK_SECRET"

#: Config appended for the agent: its HTTP server and a signed webhook.
AGENT_CONFIG = f"""
[http]
address = "127.0.0.1:0"

[[http.webhooks]]
name = "bench"
kind = "hmac"
secret_env = "{HOOK_ENV}"
"""


def agent_daemon_settings(interval: str) -> str:
    """``[daemon]`` lines for the agent: its pass interval, little jitter."""
    return f'interval = "{interval}"\njitter = 0.0\n'


class Agent:
    """A running ``gitopsd run``."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.log = config.with_suffix(".agent.log")
        self._log_file = self.log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gitopsd", "run", "-c", str(config), "--log-level", "info"],
            cwd=ROOT,
            env={**env, HOOK_ENV: HOOK_SECRET, "PYTHONUNBUFFERED": "1"},
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.url = ""
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def wait_for(self, what: str, check: Callable[[], T | None], timeout: float = 600) -> T:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gitopsd run exited {self.proc.returncode}: {self.tail()}")
            found = check()
            if found:
                return found
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}: {self.tail()}")
            time.sleep(0.05)  # polling with a deadline

    def tail(self) -> str:
        return self.log.read_text()[-3000:]

    def started(self) -> None:
        def url() -> str | None:
            for line in self.log.read_text().splitlines():
                if '"agent.started"' in line:
                    return str(json.loads(line)["url"])
            return None

        self.url = self.wait_for("the agent to start", url, 120)

    def apps(self) -> list[dict[str, Any]]:
        with self._opener.open(self.url + "/api/v1/apps", timeout=30) as response:
            apps: list[dict[str, Any]] = json.loads(response.read())["apps"]
        return apps

    def min_passes(self) -> int:
        return min(int(app["passes"]) for app in self.apps())

    def webhook(self) -> None:
        body = b'{"ref": "refs/heads/main"}'
        signature = "sha256=" + hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        request = urllib.request.Request(
            self.url + "/hooks/bench",
            data=body,
            headers={"X-Signature-256": signature},
            method="POST",
        )
        with self._opener.open(request, timeout=30) as response:
            if response.status != 202:
                raise RuntimeError(f"webhook answered {response.status}")

    def rss(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) in bytes, from /proc."""
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) * 1024
        return fields["VmRSS"], fields["VmHWM"]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
        return self.proc.returncode
