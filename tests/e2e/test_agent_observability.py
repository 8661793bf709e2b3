"""The agent process observed as an operator does: OTLP traces and metrics, ``/metrics``,
and alerts from a failing rollout through the notifiers (real receivers on loopback)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.otlp import OtlpReceiver, ReceivedSpan

from .conftest import Env
from .test_agent import WEB_TD, AgentProcess, agent, completed

__all__ = ["agent"]  # the fixture, imported for these tests

HOOK_SECRET = "whsec-4f9a1c"


@pytest.fixture
def otlp(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # export spans within 50 ms
    with OtlpReceiver() as receiver:
        yield receiver


def with_telemetry(env: Env, endpoint: str) -> None:
    env.config.write_text(
        env.config.read_text()
        + f'\n[telemetry]\nendpoint = "{endpoint}"\nmetric_export_interval = "200ms"\n'
    )


def metrics_text(a: AgentProcess) -> str:
    with urllib.request.urlopen(a.url + "/metrics", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        return str(r.read().decode())


def families(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    out: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        out[family.name] = [(s.name, dict(s.labels), float(s.value)) for s in family.samples]
    return out


def test_the_agents_sync_is_one_trace_over_otlp_and_metrics_go_to_otlp_and_metrics_endpoint(
    env: Env,
    otlp: OtlpReceiver,
    agent: Callable[..., AgentProcess],
) -> None:
    with_telemetry(env, otlp.endpoint)
    a = agent(source_interval="0.5s")
    a.wait_for("the first sync", lambda: completed(env, "web", "web:1"))

    def web_trace() -> list[ReceivedSpan]:
        roots = [
            s
            for s in list(otlp.spans)
            if s.name == "reconcile"
            and s.attributes.get("gitopsd.app") == "web"
            and s.attributes.get("gitopsd.mode") == "sync"
            and s.attributes.get("gitopsd.result") == "ReconciliationSucceeded"
        ]
        if not roots:
            return []
        trace = [s for s in list(otlp.spans) if s.trace_id == roots[0].trace_id]
        return trace if any(s.name == "notify" for s in trace) else []

    trace = a.wait_for("the sync's trace over OTLP", web_trace, 20)
    (root,) = [s for s in trace if s.name == "reconcile"]
    assert root.parent_span_id == ""
    assert root.service == "gitopsd"
    assert len(str(root.attributes["vcs.ref.head.revision"])) == 40
    stages = {s.name for s in trace if s.parent_span_id == root.span_id}
    assert {"source", "render", "plan", "apply", "verify", "notify"} <= stages
    aws = [s for s in trace if s.name.startswith("ECS/")]
    assert {"ECS/RegisterTaskDefinition", "ECS/CreateService"} <= {s.name for s in aws}
    assert all(s.attributes["rpc.system"] == "aws-api" for s in aws)
    assert all(s.attributes.get("aws.request_id") for s in aws)
    (rollout,) = [s for s in trace if s.name == "rollout"]
    assert str(rollout.attributes["aws.ecs.service_deployment.arn"]).startswith("arn:aws:ecs:")

    wanted = {"gitopsd.reconcile.duration", "gitopsd.aws.calls", "rpc.client.duration"}
    a.wait_for("metrics over OTLP", lambda: wanted <= otlp.metric_names, 20)

    found = families(metrics_text(a))
    assert any(
        labels.get("gitopsd_app") == "web" and name.endswith("_count") and value >= 1
        for name, labels, value in found["gitopsd_reconcile_duration_seconds"]
    )
    assert any(
        labels.get("rpc_method") == "CreateService" and labels.get("gitopsd_outcome") == "ok"
        for _, labels, _ in found["gitopsd_aws_calls"]
    )
    ready = {
        labels["gitopsd_status"]: value
        for _, labels, value in found["gitopsd_app_condition"]
        if labels["gitopsd_app"] == "web" and labels["gitopsd_condition"] == "Ready"
    }
    assert set(ready) == {"True", "False", "Unknown"}
    assert sum(ready.values()) == 1


class HookServer:
    """A webhook receiver on loopback that checks the signature of every request."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.bad_signatures = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                expected = (
                    "sha256=" + hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
                )
                if not hmac.compare_digest(
                    self.headers.get("X-Gitopsd-Signature-256", ""), expected
                ):
                    outer.bad_signatures += 1
                    self.send_response(401)
                else:
                    outer.bodies.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def kinds(self) -> list[str]:
        return [b["kind"] for b in list(self.bodies)]


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[HookServer]:
    monkeypatch.setenv("GITOPSD_TEST_HOOK_SECRET", HOOK_SECRET)
    server = HookServer()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_a_failing_rollout_is_one_alert_per_notifier_repeats_are_counted_recovery_once(
    env: Env, hook: HookServer, agent: Callable[..., AgentProcess]
) -> None:
    env.config.write_text(
        env.config.read_text()
        + "\n[plugins.webhook]\n"
        + f'url = "{hook.url}"\nsecret_env = "GITOPSD_TEST_HOOK_SECRET"\n'
        + 'min_severity = "warning"\n'
    )
    a = agent(source_interval="0.3s")
    a.wait_for("the first sync", lambda: completed(env, "web", "web:1"))
    env.edit(WEB_TD, "nginx:1.27", "nginx:broken")
    bad = env.commit("web: a build that cannot start")
    a.wait_for("the failed commit remembered", lambda: a.app("web")["failed_commit"] == bad, 40)

    problems = ("rolled_back", "rollout_failed", "error")
    a.wait_for("the alert", lambda: any(k in problems for k in hook.kinds()))
    # The same failure again (a forced retry of the same commit): suppressed and counted.
    forced = env.gitopsd("reconcile", "web", "--force")
    assert forced.code == 0, forced.out + forced.err

    def suppressed() -> float:
        found = families(metrics_text(a)).get("gitopsd_notifier_deliveries", [])
        return sum(
            v
            for _, labels, v in found
            if labels.get("gitopsd_notifier") == "webhook"
            and labels.get("gitopsd_result") == "suppressed"
        )

    a.wait_for("the repeat suppressed", lambda: suppressed() >= 1, 40)
    alerts = [b for b in hook.bodies if b["kind"] in problems]
    assert len(alerts) == 1, hook.bodies
    (alert,) = alerts
    assert (alert["app"], alert["revision"]) == ("web", bad)
    assert alert["commit_message"] == "web: a build that cannot start"
    console = [line for line in a.log.read_text().splitlines() if line.startswith("ALERT app web")]
    assert len(console) == 1, console  # the console notifier: one line, too

    env.edit(WEB_TD, "nginx:broken", "nginx:1.28")
    good = env.commit("web: fixed")
    a.wait_for("recovered", lambda: "recovered" in hook.kinds(), 40)
    passes = a.app("web")["passes"]
    a.wait_for("two more passes", lambda: a.app("web")["passes"] >= passes + 2)
    recoveries = [b for b in hook.bodies if b["kind"] == "recovered"]
    assert len(recoveries) == 1
    assert recoveries[0]["revision"] == good
    assert recoveries[0]["title"] == f"web is Ready again at {good[:12]}"
    assert hook.bad_signatures == 0
