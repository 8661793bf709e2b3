"""The one-command demo: ``gitopsd run``, the agent, doing its job against a local ECS endpoint.

``make demo`` (``python -m gitopsd.demo``) needs no AWS account. It starts the
local ECS endpoint (``gitopsd local-aws``), builds a Git repository from
``examples/``, writes the shipped ``config/example.toml`` with short intervals,
an HTTP address and a signed webhook, and starts the agent
(``gitopsd run``) as a subprocess. It then narrates what the agent does, as it
happens, printing the agent's interesting log lines and watching AWS:

1. the agent's first pass creates the task definitions and services, followed to
   COMPLETED; ``gitopsd status`` asks the running agent how its apps are;
2. a pushed commit (a new web image) is applied and rolled out with no command typed;
3. a signed webhook (``POST /hooks/ci``) makes the next commit immediate instead
   of waiting for the source interval (the time is measured);
4. a commit with an image that cannot start: the rollout fails, ECS's circuit
   breaker rolls it back, the agent alerts, and does not redeploy the failed commit
   on the next intervals (zero write calls); ``gitopsd status`` says so; a fixing
   commit makes the app Ready again;
5. a change made behind Git's back (the AWS API) is reported as drift (the default
   ``drift = "warn"``) and left alone;
6. the worker app is switched to ``drift = "heal"`` (config rewritten, SIGHUP: the
   agent reloads): the reloaded agent's first pass reverts the drift, and its drift
   check then heals a new one by itself;
7. progressive delivery on ECS's own CANARY strategy: the api app
   (``examples/progressive``) is added; its deployment waits at a PAUSE hook, the
   agent says "approval needed", and ``gitopsd approve api`` lets ECS go on
   (test traffic, a 10% canary, 100%, bake);
8. the next api release is approved too, but its alarm fires during the bake: ECS
   rolls it back, the agent reports the alarm by name, and ``gitopsd history api``
   shows both decisions next to their deployments;
9. SIGTERM: the agent stops and exits 0.

The local endpoint runs with ``--minute-seconds 1``: a configured "minute" (bake
times, hook timeouts) lasts one second, so the canary's bakes take seconds.

Every wait polls with a deadline. On a failure the agent's last log lines are
printed and the demo exits non-zero. Everything lives in a temporary directory
that is removed at the end, also on Ctrl-C.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

from gitopsd.local_aws.testing import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY, LocalAws

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
EXAMPLE_CONFIG = ROOT / "config" / "example.toml"
FAIL_PATTERN = "*:broken*"
WEB_TD = "apps/web/base/task-definition.yaml"
API_MANIFEST = "progressive/api.yaml"
API_ALARM = "api-5xx"
#: Simulated seconds per configured "minute" (bake times) on the demo's endpoint.
MINUTE_SECONDS = 1.0
#: The canary app the demo adds in step 7 (examples/progressive).
API_APP = """\
[[apps]]
name = "api"
source = "examples"
path = "progressive"
cluster = "demo"
  [apps.sync]
  timeout = "5m"
"""

#: The demo's agent settings: short intervals so that the story moves.
DAEMON_INTERVAL = 2.0
SOURCE_INTERVAL = 3.0
HOOK_NAME = "ci"
HOOK_SECRET_ENV = "GITOPSD_DEMO_HOOK_SECRET"
#: How often a wait looks again (the only sleeps in the demo).
POLL = 0.1

#: Agent log events worth a line on the demo's output (warnings and errors always are).
SHOWN_EVENTS = frozenset(
    {
        "agent.started",
        "agent.triggered",
        "webhook",
        "apply.task_definition",
        "apply.service",
        "rollout.outcome",
        "agent.app_failed",
        "agent.drift_detected",
        "agent.drift_healed",
        "agent.rollout_wait_superseded",
        "agent.reloading",
        "agent.stopping",
        "agent.stopped",
        "rollout.stage",
        "approval.decided",
    }
)
#: Log fields not worth showing.
HIDDEN_FIELDS = frozenset({"event", "level", "timestamp", "logger", "socket"})

_TTY = sys.stdout.isatty() and "NO_COLOR" not in os.environ
T = TypeVar("T")


def _style(text: str, code: str) -> str:
    return f"\033[{code}m{text}\033[0m" if _TTY else text


def say(text: str) -> None:
    print("\n" + _style(textwrap.dedent(text).strip(), "1;36"), flush=True)


def step(n: int, title: str) -> None:
    print("\n" + _style(f"=== {n}. {title} ", "1;35").ljust(72, "="), flush=True)


def shell(text: str) -> None:
    print(_style(f"$ {text}", "33"), flush=True)


def example_config(
    source_url: str,
    endpoint_url: str,
    *,
    state_dir: str = "state",
    poll: str = "0.5s",
    timeout: str = "5m",
) -> str:
    """``config/example.toml`` pointed at a repository and an endpoint.

    The demo and the end-to-end tests run the configuration the project ships,
    so what a user copies is what is exercised.
    """
    text = EXAMPLE_CONFIG.read_text()
    for key, value in (
        ("url", source_url),
        ("endpoint_url", endpoint_url),
        ("state_dir", state_dir),
        ("rollout_poll_interval", poll),
        ("timeout", timeout),
    ):
        text, count = re.subn(
            rf'^(\s*){key} = "[^"]*"', rf'\g<1>{key} = "{value}"', text, flags=re.M
        )
        if not count:
            raise ValueError(f"{EXAMPLE_CONFIG} has no {key!r} to set")
    return text


#: What the demo adds to the example configuration for the agent.
AGENT_SETTINGS = f"""\
[http]
address = "127.0.0.1:0"          # a free port; the agent logs the one it got
[[http.webhooks]]
name = "{HOOK_NAME}"
kind = "hmac"                    # X-Signature-256: sha256=<hmac of the body>
secret_env = "{HOOK_SECRET_ENV}"
"""


def agent_config(base: str, *, heal_worker: bool = False, api: bool = False) -> str:
    """The example configuration with the demo's intervals, HTTP server and webhook."""

    def insert(text: str, after: str, lines: str) -> str:
        if after not in text:
            raise ValueError(f"{EXAMPLE_CONFIG} has no {after.strip()!r} to extend")
        return text.replace(after, after + lines, 1)

    text = insert(base, "[daemon]\n", f'interval = "{DAEMON_INTERVAL:g}s"\n')
    text = insert(text, 'branch = "main"\n', f'interval = "{SOURCE_INTERVAL:g}s"\n')
    if heal_worker:
        head, sep, worker = text.partition('[[apps]]\nname = "worker"\n')
        if not sep:
            raise ValueError(f"{EXAMPLE_CONFIG} has no app 'worker'")
        text = head + sep + insert(worker, "[apps.sync]\n", '  drift = "heal"\n')
    if api:
        text += "\n" + API_APP
    return text + "\n" + AGENT_SETTINGS


class DemoFailed(Exception):
    """Something the demo waited for did not happen."""


class AgentLog:
    """Follows the agent's log file: keeps every line, prints the interesting ones."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[str] = []
        self.events: list[dict[str, Any]] = []
        self.alerts: list[str] = []
        self._offset = path.stat().st_size if path.exists() else 0  # a new agent's lines only
        self._partial = b""
        self._applied: set[str] = set()  # apps with a write since their last pass ended

    def pump(self) -> None:
        """Read what the agent wrote since the last call."""
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        *complete, self._partial = (self._partial + data).split(b"\n")
        for raw in complete:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self._line(line)

    def _line(self, line: str) -> None:
        self.lines.append(line)
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            # The agent's stderr: ALERT lines (ConsoleNotifier), or a traceback.
            if line.startswith("ALERT"):
                self.alerts.append(line)
                print(_style(f"  agent | {line}", "1;31"), flush=True)
            else:
                print(_style(f"  agent | {line}", "2"), flush=True)
            return
        self.events.append(event)
        if self._worth_showing(event):
            print(_style(f"  agent | {_format_event(event)}", _event_color(event)), flush=True)

    def _worth_showing(self, event: dict[str, Any]) -> bool:
        name = str(event.get("event"))
        app = str(event.get("app"))
        if name.startswith("apply."):
            self._applied.add(app)
        if event.get("level") in ("warning", "error", "critical"):
            return True
        if name == "reconcile.done":
            # The end of a pass that wrote or failed; the passes that found nothing to do
            # (a drift check, a commit that does not touch the app) are not news.
            wrote = app in self._applied
            self._applied.discard(app)
            return wrote or event.get("reason") != "ReconciliationSucceeded"
        return name in SHOWN_EVENTS

    def find(self, what: str, since: int = 0, /, **fields: Any) -> dict[str, Any] | None:
        """The first event ``what`` at index ``since`` or later whose fields match."""
        for event in self.events[since:]:
            if event.get("event") == what and all(event.get(k) == v for k, v in fields.items()):
                return event
        return None


def _format_event(event: dict[str, Any]) -> str:
    stamp = str(event.get("timestamp", ""))[11:19]
    parts = [stamp, str(event.get("event"))]
    for key, value in event.items():
        if key in HIDDEN_FIELDS or value is None:
            continue
        text = str(value)
        if text.startswith("arn:aws:"):
            text = text.rsplit("/", 1)[-1]  # web:2, not the whole ARN
        elif key in ("revision", "newer") and len(text) == 40:
            text = text[:12]
        if len(text) > 140:
            text = text[:137] + "..."
        parts.append(f"{key}={text}" if " " not in text else f"{key}={text!r}")
    return " ".join(parts)


def _event_color(event: dict[str, Any]) -> str:
    level = event.get("level")
    if level in ("error", "critical"):
        return "31"
    return "33" if level == "warning" else "34"


class AgentProcess:
    """``gitopsd run`` in a subprocess, its log in a file."""

    def __init__(self, config: Path, log_path: Path, env: dict[str, str]) -> None:
        self.log = AgentLog(log_path)
        self._file: IO[bytes] = log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gitopsd",
                "run",
                "-c",
                str(config),
                "--log-level",
                "info",
                "--log-format",
                "json",
                "--color",
                "never",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._file,
            stderr=subprocess.STDOUT,
        )
        self.url = ""
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def running(self) -> bool:
        return self.proc.poll() is None

    def get(self, path: str) -> tuple[int, Any]:
        return self._request(urllib.request.Request(self.url + path))

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        return self._request(urllib.request.Request(self.url + path, data=body, headers=headers))

    def _request(self, request: urllib.request.Request) -> tuple[int, Any]:
        """The status and the JSON body of an answer, an error status included."""
        try:
            with self._opener.open(request, timeout=5) as r:
                return int(r.status), json.loads(r.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def app(self, name: str) -> dict[str, Any]:
        _, body = self.get("/api/v1/apps")
        app: dict[str, Any] = next(a for a in body["apps"] if a["app"] == name)
        return app

    def condition(self, app: str, kind: str) -> dict[str, Any]:
        found: dict[str, Any] = next(c for c in self.app(app)["conditions"] if c["type"] == kind)
        return found

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait (kill after ``timeout``); the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._file.close()
        self.log.pump()
        return self.proc.returncode


class Demo:
    def __init__(self, workdir: Path, aws: LocalAws) -> None:
        self.work = workdir
        self.aws = aws
        self.ecs = aws.boto3_client("ecs")
        self.repo = workdir / "deploy"
        self.bare = workdir / "deploy.git"
        self.config = workdir / "gitopsd.toml"
        self.log_path = workdir / "agent.log"
        self.secret = secrets.token_hex(16)
        self.agent: AgentProcess | None = None
        self.base_config = ""

    # -- helpers ---------------------------------------------------------------
    def git(self, *args: str, cwd: Path | None = None) -> str:
        env = dict(
            os.environ,
            GIT_AUTHOR_NAME="Demo",
            GIT_AUTHOR_EMAIL="demo@example.com",
            GIT_COMMITTER_NAME="Demo",
            GIT_COMMITTER_EMAIL="demo@example.com",
        )
        out = subprocess.run(
            ["git", *args],
            cwd=cwd or self.repo,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        self.git("push", "-q", "origin", "main")
        sha = self.git("rev-parse", "HEAD")
        shell(f"git commit -m {message!r} && git push   # {sha[:7]}")
        return sha

    def env(self) -> dict[str, str]:
        # The local endpoint accepts any credentials; real ones are never needed here.
        env = dict(
            os.environ,
            GITOPSD_CONFIG=str(self.config),
            AWS_ACCESS_KEY_ID=DUMMY_ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=DUMMY_SECRET_KEY,
            PYTHONUNBUFFERED="1",
        )
        env.pop("AWS_PROFILE", None)
        return env

    def gitopsd(self, *args: str, expect: Sequence[int] = (0,)) -> int:
        shell(f"gitopsd {' '.join(args)}")
        code = subprocess.run(
            [sys.executable, "-m", "gitopsd", *args, "--color", "always" if _TTY else "never"],
            env=self.env(),
            stdin=subprocess.DEVNULL,
            check=False,
            timeout=120,  # a deadline, as for every wait
        ).returncode
        print(_style(f"(exit status {code})", "2"), flush=True)
        if code not in expect:
            raise DemoFailed(f"'gitopsd {' '.join(args)}' exited {code}, expected {expect}")
        self.pump()
        return code

    def edit(self, rel: str, old: str, new: str) -> None:
        path = self.repo / rel
        text = path.read_text()
        if old not in text:
            raise DemoFailed(f"{rel} does not contain {old!r}")
        path.write_text(text.replace(old, new))

    @property
    def a(self) -> AgentProcess:
        if self.agent is None:
            raise DemoFailed("the agent is not running")
        return self.agent

    def pump(self) -> None:
        if self.agent is not None:
            self.agent.log.pump()

    def wait_for(self, what: str, check: Callable[[], T | None], timeout: float = 60.0) -> T:
        """Poll ``check`` until it returns something true; the agent must stay up."""
        deadline = time.monotonic() + timeout
        while True:
            self.pump()
            if self.agent is not None and not self.agent.running():
                raise DemoFailed(
                    f"the agent exited {self.agent.proc.returncode} while the demo waited "
                    f"for {what}"
                )
            found = check()
            if found:
                return found
            if time.monotonic() > deadline:
                raise DemoFailed(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(POLL)  # a polling interval, bounded by the deadline

    def service(self, name: str) -> dict[str, Any] | None:
        out = self.ecs.describe_services(cluster="demo", services=[name])
        services: list[dict[str, Any]] = out["services"]
        return services[0] if services and services[0].get("status") == "ACTIVE" else None

    def completed(self, name: str, revision: str) -> bool:
        """The service runs ``revision`` (``web:2``) and its rollout is COMPLETED."""
        svc = self.service(name)
        if svc is None:
            return False
        primary = next((d for d in svc["deployments"] if d["status"] == "PRIMARY"), None)
        return bool(
            primary is not None
            and len(svc["deployments"]) == 1
            and str(svc["taskDefinition"]).endswith("/" + revision)
            and primary.get("rolloutState") == "COMPLETED"
            and svc["runningCount"] == svc["desiredCount"]
        )

    def desired(self, name: str) -> int:
        svc = self.service(name)
        return -1 if svc is None else int(svc["desiredCount"])

    def writes(self) -> list[str]:
        return [c for c in self.aws.calls() if not c.startswith(("Describe", "List", "Get"))]

    def _readyz(self) -> tuple[int, Any] | None:
        code, body = self.a.get("/readyz")
        return (code, body) if code == 200 else None

    def verdict(self, app: str, commit: str, reason: str = "ReconciliationSucceeded") -> None:
        """Wait for the agent's own verdict on ``commit``: its pass of ``app`` ended so."""
        self.wait_for(
            f"the agent's pass of {app} at {commit[:12]} to end with {reason}",
            lambda: self.a.log.find("reconcile.done", app=app, revision=commit, reason=reason),
        )

    def ready(self, app: str) -> bool:
        return bool(self.a.condition(app, "Ready")["status"] == "True")

    def start_agent(self) -> AgentProcess:
        shell(f"{HOOK_SECRET_ENV}=... gitopsd run -c {self.config.name} --log-format json &")
        env = self.env()
        env[HOOK_SECRET_ENV] = self.secret
        self.agent = AgentProcess(self.config, self.log_path, env)
        mark = len(self.agent.log.events)
        started = self.wait_for(
            "the agent to start", lambda: self.a.log.find("agent.started", mark), timeout=30
        )
        self.agent.url = str(started["url"])
        return self.agent

    def sign(self, body: bytes) -> str:
        return "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()

    # -- the story -------------------------------------------------------------
    def setup(self) -> None:
        self.git("init", "-q", "--bare", "-b", "main", str(self.bare), cwd=self.work)
        self.git("init", "-q", "-b", "main", str(self.repo), cwd=self.work)
        shutil.copytree(EXAMPLES / "apps", self.repo / "apps")
        self.git("remote", "add", "origin", str(self.bare))
        self.commit("Add the web and worker apps")
        self.aws.create_cluster("demo")
        self.base_config = example_config(
            f"file://{self.bare}", self.aws.endpoint_url, timeout="2m"
        )
        self.config.write_text(agent_config(self.base_config))

    def run(self) -> None:
        step(0, "Set-up")
        say(
            f"""
            A local ECS endpoint runs at {self.aws.endpoint_url} (moto, with ECS deployments
            simulated: tasks start over time; images matching {FAIL_PATTERN!r} never start).
            A Git repository was built from examples/: apps 'web' (with a production
            overlay) and 'worker'. The config is config/example.toml pointed at them, with
            short intervals for the demo ([daemon] interval = "{DAEMON_INTERVAL:g}s", the
            source's interval = "{SOURCE_INTERVAL:g}s") and, for the agent's HTTP server:
            """
        )
        self.setup()
        print(textwrap.indent(AGENT_SETTINGS, "    "), end="", flush=True)

        self.first_sync()
        self.pushed_commit()
        self.webhook()
        self.broken_image()
        self.drift_warned()
        self.drift_healed()
        self.canary_approved()
        self.canary_alarm()
        self.stop()

    def first_sync(self) -> None:
        step(1, "Start the agent: its first pass syncs Git to ECS")
        self.aws.clear_calls()
        agent = self.start_agent()
        say(f"The agent is up; its HTTP server is at {agent.url}. Waiting for the rollouts:")
        self.wait_for(
            "web:1 and worker:1 rolled out",
            lambda: self.completed("web", "web:1") and self.completed("worker", "worker:1"),
        )
        code, body = self.wait_for("/readyz to answer 200", self._readyz, timeout=30)
        shell(f"curl {agent.url}/readyz")
        print(f"{code} {json.dumps(body)}", flush=True)
        self.wait_for("both apps Ready", lambda: self.ready("web") and self.ready("worker"))
        writes = Counter(self.writes())
        said = ", ".join(f"{n} {op}" for op, n in sorted(writes.items()))
        say(
            f"""
            web:1 and worker:1 are COMPLETED in ECS, and nobody typed `gitopsd sync`.
            The agent made {writes.total()} write calls: {said}.
            `gitopsd status` asks the running agent (over its control socket):
            """
        )
        self.gitopsd("status")

    def pushed_commit(self) -> None:
        step(2, "A pushed commit is applied by the agent")
        self.edit(WEB_TD, "nginx:1.27", "nginx:1.28")
        mark = len(self.a.log.events)
        sha = self.commit("web: nginx 1.28")
        pushed = time.monotonic()
        self.wait_for(
            "the agent to register web:2",
            lambda: self.a.log.find("apply.task_definition", mark, app="web"),
        )
        seen = time.monotonic() - pushed
        self.wait_for("web:2 rolled out", lambda: self.completed("web", "web:2"))
        self.verdict("web", sha)
        done = time.monotonic() - pushed
        say(
            f"""
            The agent fetched the commit on its own {SOURCE_INTERVAL:g}s source interval,
            registered web:2 {seen:.1f}s after the push and followed the rollout to
            COMPLETED ({done:.1f}s after the push), with no command typed. The worker
            app's pass found that the commit does not change it: nothing planned.
            """
        )

    def webhook(self) -> None:
        step(3, "A signed webhook makes the next commit immediate")
        path = f"/hooks/{HOOK_NAME}"
        body = b'{"ref": "refs/heads/main"}'
        shell(f"curl -X POST {self.a.url}{path} -H 'X-Signature-256: sha256=00' ...")
        mark = len(self.a.log.events)
        code, answer = self.a.post(path, body, {"X-Signature-256": "sha256=00"})
        print(f"{code} {json.dumps(answer)}", flush=True)
        if code != 401:
            raise DemoFailed(f"a bad signature was answered {code}, expected 401")
        self.wait_for(
            "the agent to log the rejected webhook",
            lambda: self.a.log.find("webhook rejected", mark, name=HOOK_NAME),
            timeout=10,
        )
        if self.a.log.find("agent.triggered", mark):
            raise DemoFailed("a webhook with a bad signature triggered a fetch")
        self.edit(WEB_TD, "nginx:1.28", "nginx:1.29")
        mark = len(self.a.log.events)
        sha = self.commit("web: nginx 1.29")
        signature = self.sign(body)
        shell(f"curl -X POST {self.a.url}{path} -H 'X-Signature-256: {signature[:20]}...' ...")
        posted = time.monotonic()
        code, answer = self.a.post(path, body, {"X-Signature-256": signature})
        print(f"{code} {json.dumps(answer)}", flush=True)
        if code != 202:
            raise DemoFailed(f"the signed webhook was answered {code}, expected 202")
        self.wait_for(
            "the agent to register web:3",
            lambda: self.a.log.find("apply.task_definition", mark, app="web"),
            timeout=30,
        )
        took = time.monotonic() - posted
        self.wait_for("web:3 rolled out", lambda: self.completed("web", "web:3"))
        self.verdict("web", sha)
        say(
            f"""
            The webhook's signature was checked (a wrong one got 401 and fetched nothing),
            the agent fetched at once and registered web:3 {took:.1f}s after the POST,
            instead of at the next poll of the source (every {SOURCE_INTERVAL:g}s, jittered;
            in production that interval is minutes). web:3 is COMPLETED.
            """
        )

    def broken_image(self) -> None:
        step(4, "A commit with an image that cannot start")
        self.edit(WEB_TD, "nginx:1.29", "nginx:broken")
        mark = len(self.a.log.events)
        alerts = len(self.a.log.alerts)
        bad = self.commit("web: try a broken build")
        self.wait_for(
            "the agent to report the failed rollout",
            lambda: self.a.log.find("agent.app_failed", mark, app="web"),
        )
        self.wait_for("the ALERT line", lambda: len(self.a.log.alerts) > alerts, timeout=10)
        self.wait_for(
            "the failed commit remembered", lambda: self.a.app("web")["failed_commit"] == bad
        )
        self.wait_for("web back on web:3", lambda: self.completed("web", "web:3"))
        say(
            """
            The new tasks failed to start; the deployment circuit breaker marked the
            rollout FAILED and ECS rolled the service back to web:3, which runs again.
            The agent judged the outcome by the PRIMARY deployment (not by "stable"),
            raised an alert (the ALERT line above) and remembered the failed commit.
            Does it redeploy it on the next intervals? Counting write calls:
            """
        )
        before = self.writes()
        passes = int(self.a.app("web")["passes"])
        self.wait_for(
            "three more passes of web",
            lambda: int(self.a.app("web")["passes"]) >= passes + 3,
            timeout=30,
        )
        after = self.writes()
        now = int(self.a.app("web")["passes"])
        print(
            f"web passes: {passes} -> {now}; write calls to ECS: {len(before)} -> {len(after)}",
            flush=True,
        )
        if after != before:
            raise DemoFailed(f"the agent wrote again: {after[len(before) :]}")
        stalled = self.a.condition("web", "Stalled")
        say(
            f"""
            Zero writes: the failed commit is not retried until Git moves (or
            `gitopsd reconcile web --force`); the old version keeps running. Stalled is
            {stalled["status"]} ({stalled["reason"]}): {stalled["message"]}
            """
        )
        self.gitopsd("status")
        say("A commit that fixes it makes web Ready again (web:3 already runs that image):")
        self.edit(WEB_TD, "nginx:broken", "nginx:1.29")
        fixed = self.commit("web: back to nginx 1.29")
        self.wait_for(
            "web Ready at the fixing commit",
            lambda: (
                (w := self.a.app("web"))["last_applied"] == fixed
                and not w["failed_commit"]
                and self.ready("web")
            ),
        )
        self.wait_for("web on web:3", lambda: self.completed("web", "web:3"))
        ready = self.a.condition("web", "Ready")
        say(f"web is Ready again ({ready['reason']}: {ready['message']}), nothing rolled out.")

    def drift_warned(self) -> None:
        step(5, "A change made behind Git's back")
        mark = len(self.a.log.events)
        self.ecs.update_service(cluster="demo", service="worker", desiredCount=4)
        shell("aws ecs update-service --cluster demo --service worker --desired-count 4")
        self.wait_for(
            "the agent to report the drift",
            lambda: self.a.log.find("agent.drift_detected", mark, app="worker"),
            timeout=30,
        )
        passes = int(self.a.app("worker")["passes"])
        self.wait_for(
            "two more passes of worker",
            lambda: int(self.a.app("worker")["passes"]) >= passes + 2,
            timeout=30,
        )
        if self.desired("worker") != 4:
            raise DemoFailed(f"worker desiredCount is {self.desired('worker')}, expected 4")
        ready = self.a.condition("worker", "Ready")
        say(
            f"""
            The agent's drift check (every {DAEMON_INTERVAL:g}s) found it and reported it:
            worker is {ready["reason"]}: {ready["message"]}
            With the default drift = "warn" it is left alone: desiredCount is still 4.
            """
        )

    def drift_healed(self) -> None:
        step(6, 'Switch worker to drift = "heal" (SIGHUP reloads the config)')
        self.config.write_text(agent_config(self.base_config, heal_worker=True))
        shell(f'$EDITOR {self.config.name}   # the worker app\'s [apps.sync]: drift = "heal"')
        mark = len(self.a.log.events)
        shell(f"kill -HUP {self.a.proc.pid}")
        self.a.proc.send_signal(signal.SIGHUP)
        restarted = self.wait_for(
            "the agent to reload", lambda: self.a.log.find("agent.started", mark), timeout=30
        )
        self.a.url = str(restarted["url"])  # port 0: the reloaded server has a new one
        self.wait_for("worker desiredCount back to 1", lambda: self.desired("worker") == 1)
        self.wait_for("worker:1 steady", lambda: self.completed("worker", "worker:1"))
        say(
            f"""
            The agent reloaded its configuration and started over with a full pass, which
            applied Git to worker again: desiredCount 4 -> 1. From now on worker's drift
            check (every {DAEMON_INTERVAL:g}s) heals instead of reporting. Another change
            made behind Git's back:
            """
        )
        mark = len(self.a.log.events)
        self.ecs.update_service(cluster="demo", service="worker", desiredCount=5)
        changed = time.monotonic()
        shell("aws ecs update-service --cluster demo --service worker --desired-count 5")
        self.wait_for(
            "the agent to heal the drift",
            lambda: self.a.log.find("agent.drift_healed", mark, app="worker"),
            timeout=30,
        )
        self.wait_for("worker desiredCount back to 1", lambda: self.desired("worker") == 1)
        took = time.monotonic() - changed
        self.wait_for("worker:1 steady", lambda: self.completed("worker", "worker:1"))
        say(f"Reverted {took:.1f}s later: worker runs desiredCount 1, as Git says.")
        self.gitopsd("status")

    # -- progressive delivery ----------------------------------------------------
    def api_deployment(self) -> dict[str, Any] | None:
        """The api service's newest service deployment, described (None before one)."""
        briefs = self.ecs.list_service_deployments(cluster="demo", service="api")
        found = briefs.get("serviceDeployments") or []
        if not found:
            return None
        arn = found[0]["serviceDeploymentArn"]
        described = self.ecs.describe_service_deployments(serviceDeploymentArns=[arn])
        deployments: list[dict[str, Any]] = described.get("serviceDeployments") or []
        return deployments[0] if deployments else None

    def api_status(self, *statuses: str) -> dict[str, Any] | None:
        sd = self.api_deployment()
        return sd if sd is not None and sd.get("status") in statuses else None

    def approve(self, mark: int, *args: str) -> None:
        """Wait for the agent to ask for an approval of api, show it, and give it."""
        self.wait_for(
            "the agent to say api needs an approval",
            lambda: self.a.log.find("approval.needed", mark, app="api"),
        )
        rollouts = self.a.app("api").get("progress") or self.a.app("api").get("rollouts")
        say(f"The deployment waits at its PAUSE hook. The agent's status of api: {rollouts}")
        self.gitopsd("status")
        self.gitopsd("approve", "api", *args)

    def canary_approved(self) -> None:
        step(7, "Progressive delivery: a canary that waits for an approval")
        cloudwatch = self.aws.boto3_client("cloudwatch")
        cloudwatch.put_metric_alarm(
            AlarmName=API_ALARM,
            Namespace="AWS/ApplicationELB",
            MetricName="HTTPCode_Target_5XX_Count",
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=5,
            ComparisonOperator="GreaterThanThreshold",
        )
        shell(f"aws cloudwatch put-metric-alarm --alarm-name {API_ALARM} ...   # 5xx > 5/min")
        shutil.copytree(EXAMPLES / "progressive", self.repo / "progressive")
        self.commit("Add the api app: a canary release with an approval")
        say(
            f"""
            examples/progressive/api.yaml asks ECS for its own CANARY strategy: test traffic
            first, a PAUSE hook (POST_TEST_TRAFFIC_SHIFT) that waits for an approval, 10% of
            production traffic for a 2-minute canary bake, then 100% and a 5-minute bake;
            the alarm {API_ALARM} rolls it back. (This endpoint runs a "minute" in
            {MINUTE_SECONDS:g}s.) The app is added to the config; SIGHUP reloads it:
            """
        )
        self.config.write_text(agent_config(self.base_config, heal_worker=True, api=True))
        mark = len(self.a.log.events)
        shell(f"kill -HUP {self.a.proc.pid}")
        self.a.proc.send_signal(signal.SIGHUP)
        restarted = self.wait_for(
            "the agent to reload", lambda: self.a.log.find("agent.started", mark), timeout=30
        )
        self.a.url = str(restarted["url"])
        self.approve(mark)
        sd = self.wait_for(
            "api's deployment to succeed", lambda: self.api_status("SUCCESSFUL"), timeout=90
        )
        self.wait_for("api:1 rolled out", lambda: self.completed("api", "api:1"))
        self.wait_for("api Ready", lambda: self.ready("api"))
        say(
            f"""
            Approved through the running agent (it made the ContinueServiceDeployment call
            and recorded who). ECS then shifted traffic and baked; the agent followed
            each stage (the rollout.stage lines) and reported the service deployment
            {sd["status"]}. api is Ready. (The bake countdown reads configured minutes;
            this endpoint runs each in {MINUTE_SECONDS:g}s.)
            """
        )

    def canary_alarm(self) -> None:
        step(8, "The next canary: approved, then its alarm fires during the bake")
        self.edit(API_MANIFEST, "nginx:1.27", "nginx:1.28")
        mark = len(self.a.log.events)
        self.commit("api: nginx 1.28")
        self.approve(mark, "--by", "alice", "--reason", "test traffic looks fine")
        self.wait_for(
            "api's deployment to reach BAKE_TIME",
            lambda: (
                (sd := self.api_deployment()) is not None
                and sd.get("lifecycleStage") == "BAKE_TIME"
                and sd.get("status") == "IN_PROGRESS"
            ),
            timeout=90,
        )
        cloudwatch = self.aws.boto3_client("cloudwatch")
        cloudwatch.set_alarm_state(
            AlarmName=API_ALARM, StateValue="ALARM", StateReason="5xx rate above 5 a minute"
        )
        shell(f"aws cloudwatch set-alarm-state --alarm-name {API_ALARM} --state-value ALARM ...")
        failed = self.wait_for(
            "the agent to report the rollback",
            lambda: self.a.log.find("agent.app_failed", mark, app="api"),
        )
        sd = self.wait_for(
            "ECS's rollback to finish",
            lambda: self.api_status("ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED"),
        )
        svc = self.service("api") or {}
        if sd["status"] != "ROLLBACK_SUCCESSFUL" or not str(svc.get("taskDefinition")).endswith(
            "/api:1"
        ):
            raise DemoFailed(f"api was not rolled back to api:1: {sd['status']}")
        message = str(failed.get("message") or failed.get("error") or "")
        if API_ALARM not in json.dumps(failed) and API_ALARM not in message:
            raise DemoFailed(f"the agent's report does not name the alarm: {failed}")
        cloudwatch.set_alarm_state(AlarmName=API_ALARM, StateValue="OK", StateReason="recovered")
        say(
            f"""
            ECS saw {API_ALARM} go to ALARM during the bake and rolled the deployment back
            (traffic back on api:1); the agent reported the failed rollout naming the alarm
            and will not redeploy that commit. `gitopsd history api` keeps both decisions
            next to their deployments:
            """
        )
        self.gitopsd("history", "api")

    def stop(self) -> None:
        step(9, "Stop the agent")
        agent = self.a
        shell(f"kill -TERM {agent.proc.pid}")
        agent.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while agent.running():
            agent.log.pump()
            if time.monotonic() > deadline:
                raise DemoFailed("the agent did not exit within 30s of SIGTERM")
            time.sleep(POLL)  # a polling interval, bounded by the deadline
        code = agent.stop()
        self.agent = None
        print(_style(f"(exit status {code})", "2"), flush=True)
        if code != 0 or not agent.log.find("agent.stopped"):
            raise DemoFailed(f"the agent exited {code} on SIGTERM, expected 0 and agent.stopped")
        say("The agent stopped cleanly (exit 0). Live state matches Git. That is gitopsd.")

    def log_tail(self, n: int = 40) -> list[str]:
        """The agent's last log lines (read from its file: the agent may be gone)."""
        try:
            return self.log_path.read_text(errors="replace").splitlines()[-n:]
        except OSError:
            return []

    def close(self) -> None:
        if self.agent is not None:
            self.agent.stop()
            self.agent = None


def main() -> int:
    if shutil.which("git") is None:
        print("demo: the git command is needed (apt-get install git)", file=sys.stderr)
        return 2
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gitopsd-demo-") as tmp:
        demo: Demo | None = None
        try:
            with LocalAws() as aws:
                aws.configure(pace=4.0, fail_images=[FAIL_PATTERN], minute_seconds=MINUTE_SECONDS)
                demo = Demo(Path(tmp), aws)
                try:
                    demo.run()
                finally:
                    demo.close()
        except KeyboardInterrupt:
            print("\ndemo: interrupted; cleaned up", file=sys.stderr)
            return 130
        except Exception as exc:
            if not isinstance(exc, DemoFailed):
                traceback.print_exc()
            print(_style(f"\ndemo: FAILED: {exc}", "1;31"), file=sys.stderr)
            if demo is not None:
                print("demo: the agent's last log lines:", file=sys.stderr)
                for line in demo.log_tail():
                    print("  " + line, file=sys.stderr)
            return 1
    print(_style(f"\nDemo finished in {time.monotonic() - started:.0f}s.", "1;32"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
