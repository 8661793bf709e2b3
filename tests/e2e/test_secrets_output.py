"""Secrets end to end: applied to AWS, never shown by ``diff``, ``render``, ``sync``, ``status``,
nor by the agent's logs, spans, metrics, status API and alerts.

The example repository is served over smart HTTP with basic auth, the token in the
source URL. Planted values (``s3cr3t-<random>``) sit in a manifest environment entry
named ``DB_PASSWORD``, in a var marked secret, in a var read from the environment, in
an ECS ``secrets[].valueFrom`` and in the URL. Every command's stdout and its
debug JSON log on stderr must not contain any of them, while the task definition on
the local ECS endpoint holds the real values. The last test runs ``gitopsd run`` with
an OTLP/HTTP receiver and a webhook notifier on loopback (whose HMAC secret, and an
OTLP header, are planted too) and searches every byte they received.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.gitserver import GitHttpServer, GitRepo, make_repo
from support.otlp import OtlpReceiver

from gitopsd.local_aws.testing import LocalAws
from gitopsd.redact import REDACTOR

from . import test_agent_observability as observability
from .conftest import EXAMPLES, Env, Run, write_config
from .test_agent import AgentProcess, agent_config, completed

WEB_TD = "apps/web/base/task-definition.yaml"
USER = "deployer"
LOG = ("--log-level", "debug", "--log-format", "json")


def planted(what: str) -> str:
    return f"s3cr3t-{what}-{secrets.token_hex(8)}"


@dataclass
class Planted:
    db_password: str
    secret_var: str
    env_var: str
    value_from: str
    url_token: str

    def all(self) -> dict[str, str]:
        return dict(vars(self))


@dataclass
class SecretEnv:
    env: Env
    planted: Planted
    server: GitHttpServer

    def gitopsd(self, *args: str) -> Run:
        run = self.env.gitopsd(*args, *LOG)
        self.assert_hidden(run, " ".join(args))
        return run

    def assert_hidden(self, run: Run, command: str) -> None:
        for what, value in self.planted.all().items():
            assert value not in run.out, f"`gitopsd {command}` printed {what}:\n{run.out}"
            assert value not in run.err, f"`gitopsd {command}` logged {what}:\n{run.err}"
            # Not even a recognisable part of it.
            assert value.rsplit("-", 1)[1] not in run.out + run.err

    def container(self) -> dict[str, Any]:
        """The web task definition's one container, as the local ECS endpoint describes it."""
        td = self.env.ecs().describe_task_definition(taskDefinition="web")["taskDefinition"]
        (container,) = td["containerDefinitions"]
        found: dict[str, Any] = container
        return found


@pytest.fixture(autouse=True)
def _no_registered_secrets() -> Iterator[None]:
    """Each test shows what its own commands register (the redactor is process-wide)."""
    REDACTOR.forget_all()
    yield
    REDACTOR.forget_all()


def plant_manifest(repo: GitRepo, value: Planted) -> None:
    path = repo.path / WEB_TD
    text = path.read_text()
    anchor = "      - name: GREETING\n        value: hello\n"
    assert anchor in text
    text = text.replace(
        anchor,
        anchor
        + f"      - name: DB_PASSWORD\n        value: {value.db_password}\n"
        # Names no pattern matches: only secret_vars / vars_from_env mark these.
        + "      - name: SESSION_SEED\n        value: seed-${DB_PASS}-end\n"
        + "      - name: UPSTREAM_AUTH\n        value: ${API_KEY}\n",
    )
    text += f"    secrets:\n      - name: FROM_SSM\n        valueFrom: {value.value_from}\n"
    repo.write(WEB_TD, text)


def configure(path: Path, url: str, endpoint: str, value: Planted) -> Path:
    write_config(path, url, endpoint)
    text = path.read_text()
    old = 'vars = { ENV = "production" }\n'
    assert old in text
    text = text.replace(
        old,
        f'vars = {{ ENV = "production", DB_PASS = "{value.secret_var}" }}\n'
        'secret_vars = ["DB_PASS"]\n'
        'vars_from_env = { API_KEY = "E2E_WEB_API_KEY" }\n',
    )
    path.write_text(text)
    return path


@pytest.fixture
def secret_env(
    tmp_path: Path,
    aws: LocalAws,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[SecretEnv]:
    value = Planted(
        db_password=planted("db"),
        secret_var=planted("var"),
        env_var=planted("env"),
        value_from="arn:aws:ssm:us-east-1:123456789012:parameter/" + planted("ssm"),
        url_token=planted("url"),
    )
    monkeypatch.setenv("E2E_WEB_API_KEY", value.env_var)
    # valueFrom must name a parameter that exists: gitopsd checks it before registering
    aws.boto3_client("ssm").put_parameter(
        Name=value.value_from.rsplit("/", 1)[-1], Value=planted("ssm-value"), Type="SecureString"
    )
    aws.clear_calls()
    repo = make_repo(tmp_path / "work")
    repo.copy_tree(EXAMPLES / "apps", "apps")
    plant_manifest(repo, value)
    repo.commit("example apps with secrets")
    repo.publish(tmp_path / "served" / "deploy.git")
    with GitHttpServer(tmp_path / "served", username=USER, password=value.url_token) as server:
        url = server.url("deploy", userinfo=f"{USER}:{value.url_token}")
        config = configure(tmp_path / "gitopsd.toml", url, aws.endpoint_url, value)
        yield SecretEnv(Env(repo, aws, config, capsys), value, server)


def test_secrets_are_applied_but_never_shown(secret_env: SecretEnv) -> None:
    value = secret_env.planted

    diff = secret_env.gitopsd("diff", "web")
    assert diff.code == 1, diff.out + diff.err
    assert "+ TaskDefinition/web  (create)" in diff.out
    assert secret_env.server.requests, "the source was fetched over HTTP"

    diff_json = secret_env.gitopsd("diff", "web", "-o", "json")
    assert diff_json.code == 1
    doc = json.loads(diff_json.out)
    assert doc["apps"][0]["app"] == "web"

    render = secret_env.gitopsd("render", "web")
    assert render.code == 0, render.err
    assert "value: seed-***-end" in render.out
    assert "name: DB_PASSWORD\n        value: '***'" in render.out
    assert "image: public.ecr.aws/nginx/nginx:1.27" in render.out  # the rest is shown

    sync = secret_env.gitopsd("sync", "web", "-o", "json")
    assert sync.code == 0, sync.out + sync.err
    assert json.loads(sync.out)["apps"][0]["ok"] is True
    assert sync.err.strip(), "the debug log was written"
    for line in sync.err.splitlines():
        if line.startswith("{"):
            json.loads(line)  # JSON log lines stay JSON after masking

    status = secret_env.gitopsd("status", "-o", "json")
    assert status.code == 0, status.out + status.err
    status_text = secret_env.gitopsd("status")
    assert "web" in status_text.out

    # The real values reached AWS: masking is for output only.
    container = secret_env.container()
    environment = {e["name"]: e["value"] for e in container["environment"]}
    assert environment["DB_PASSWORD"] == value.db_password
    assert environment["SESSION_SEED"] == f"seed-{value.secret_var}-end"
    assert environment["UPSTREAM_AUTH"] == value.env_var
    assert container["secrets"] == [{"name": "FROM_SSM", "valueFrom": value.value_from}]


def test_a_changed_secret_shows_as_changed_with_both_values_masked(
    secret_env: SecretEnv,
) -> None:
    assert secret_env.env.gitopsd("sync", "web").code == 0
    old = secret_env.planted.db_password
    new = planted("db-rotated")
    secret_env.env.edit(WEB_TD, old, new)
    secret_env.env.commit("web: rotate the database password")
    # A fresh process: the old value was never read from Git by it, only seen live.
    REDACTOR.forget_all()

    text = secret_env.gitopsd("diff", "web")
    assert text.code == 1, text.out + text.err
    assert "~ /containerDefinitions/web/environment/DB_PASSWORD/value: *** -> ***" in text.out
    assert old not in text.out + text.err
    assert new not in text.out + text.err

    doc = json.loads(secret_env.gitopsd("diff", "web", "-o", "json").out)
    (td,) = [r for r in doc["apps"][0]["resources"] if r["kind"] == "TaskDefinition"]
    assert {
        "path": "/containerDefinitions/web/environment/DB_PASSWORD/value",
        "op": "replace",
        "before": "***",
        "after": "***",
    } in td["changes"]

    sync = secret_env.gitopsd("sync", "web")
    assert sync.code == 0, sync.out + sync.err
    assert old not in sync.out + sync.err
    assert new not in sync.out + sync.err
    assert {"name": "DB_PASSWORD", "value": new} in secret_env.container()["environment"]


def test_a_fetch_with_a_rejected_url_token_does_not_show_it(
    secret_env: SecretEnv, tmp_path: Path
) -> None:
    wrong = planted("wrong")
    text = secret_env.env.config.read_text()
    secret_env.env.config.write_text(text.replace(secret_env.planted.url_token, wrong))
    for args in (("diff", "web"), ("diff", "web", "-o", "json"), ("sync", "web", "-o", "json")):
        run = secret_env.gitopsd(*args)
        assert run.code == 2, run.out + run.err
        assert wrong not in run.out + run.err
        assert "authentication failed (HTTP 401)" in run.out, run.out
        assert f"http://{USER}:***@127.0.0.1:{secret_env.server.port}/deploy.git" in run.out
    assert secret_env.env.writes() == []


class RawOtlpReceiver(OtlpReceiver):
    """An OTLP receiver that also keeps every decompressed request body, to search bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[bytes] = []

    def _traces(self, body: bytes) -> None:
        self.raw.append(body)
        super()._traces(body)

    def _metrics(self, body: bytes) -> None:
        self.raw.append(body)
        super()._metrics(body)


def test_the_agent_never_shows_a_secret_in_logs_spans_metrics_status_or_alerts(
    secret_env: SecretEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, value = secret_env.env, secret_env.planted
    hook_secret = planted("hook")
    otlp_token = planted("otlp")
    rotated = planted("db-rotated")
    drifted = planted("db-drift")  # set live by another writer: gitopsd never read it from Git
    hidden = {**value.all(), "hook_secret": hook_secret, "otlp_token": otlp_token}
    hidden.update(rotated=rotated, drifted=drifted)
    monkeypatch.setattr(observability, "HOOK_SECRET", hook_secret)  # what the receiver checks
    monkeypatch.setenv("E2E_HOOK_SECRET", hook_secret)
    monkeypatch.setenv("E2E_OTLP_HEADERS", f"authorization=Bearer {otlp_token}")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    hook = observability.HookServer()
    hook.thread.start()
    otlp = RawOtlpReceiver()
    with otlp:
        env.config.write_text(
            env.config.read_text()
            + f'\n[telemetry]\nendpoint = "{otlp.endpoint}"\nmetric_export_interval = "200ms"\n'
            + 'headers_env = "E2E_OTLP_HEADERS"\n'
            + f'\n[plugins.webhook]\nurl = "{hook.url}"\nsecret_env = "E2E_HOOK_SECRET"\n'
            + 'kinds = ["*"]\n'
        )
        agent_config(env, source_interval="0.3s")
        a = AgentProcess(env)
        try:
            a.started()
            a.wait_for("the first sync", lambda: completed(env, "web", "web:1"), 40)
            env.edit(WEB_TD, value.db_password, rotated)
            commit = env.commit("web: rotate the database password")

            def rotation_alert() -> dict[str, Any] | None:
                return next(
                    (
                        b
                        for b in list(hook.bodies)
                        if b["kind"] == "changes_applied" and b["revision"] == commit
                    ),
                    None,
                )

            applied = a.wait_for("the rotation applied and alerted", rotation_alert, 40)
            a.wait_for("web:2 rolled out", lambda: completed(env, "web", "web:2"), 40)
            a.wait_for(
                "the rollout alerted",
                lambda: any(
                    b["kind"] == "rollout_completed" and b["revision"] == commit
                    for b in list(hook.bodies)
                ),
            )
            a.wait_for(
                "the rotation's rollout span over OTLP",
                lambda: any(
                    s.name == "rollout"
                    and str(s.attributes.get("aws.ecs.task_definition.arn", "")).endswith("web:2")
                    for s in list(otlp.spans)
                ),
            )
            # Another writer points the service at a revision with another password: drift.
            ecs = env.ecs()
            td = ecs.describe_task_definition(taskDefinition="web")["taskDefinition"]
            for c in td["containerDefinitions"]:
                for e in c["environment"]:
                    if e["name"] == "DB_PASSWORD":
                        e["value"] = drifted
            keep = ("family", "containerDefinitions", "cpu", "memory", "networkMode")
            arn = ecs.register_task_definition(**{k: td[k] for k in keep if k in td})[
                "taskDefinition"
            ]["taskDefinitionArn"]
            ecs.update_service(cluster="demo", service="web", taskDefinition=arn)
            drift = a.wait_for(
                "the drift alerted",
                lambda: next((b for b in list(hook.bodies) if b["kind"] == "drift_detected"), None),
                40,
            )
            # The Git server stops accepting the token: a source failure names the URL.
            secret_env.server._server.credentials = (USER, planted("other"))
            a.wait_for(
                "the source failure in status",
                lambda: "HTTP 401" in json.dumps(a.get("/api/v1/apps")[1]),
                40,
            )
            a.wait_for("metrics over OTLP", lambda: "gitopsd.aws.calls" in otlp.metric_names)
            metrics = observability.metrics_text(a)
            api = a.get("/api/v1/apps")[1]
            status_json = secret_env.gitopsd("status", "-o", "json")  # checks its own output
        finally:
            a.stop()
            hook.server.shutdown()
            hook.server.server_close()

    # The rotation shows as a change with both sides masked.
    fields = [f for c in applied["changes"] for f in c["fields"]]
    assert {
        "path": "/containerDefinitions/web/environment/DB_PASSWORD/value",
        "before": '"***"',
        "after": '"***"',
    } in fields, fields
    drift_fields = [f for c in drift["changes"] for f in c["fields"]]
    assert any(f["before"] == '"***"' or f["after"] == '"***"' for f in drift_fields), drift
    assert status_json.code == 0, status_json.out + status_json.err
    assert {x["app"] for x in json.loads(status_json.out)["apps"]} == {"web", "worker"}
    assert hook.bad_signatures == 0
    log = a.log.read_text()
    assert "agent.started" in log
    outputs = {
        "the agent's log": log,
        "the spans and metrics received over OTLP": b"".join(otlp.raw).decode("latin-1"),
        "/metrics": metrics,
        "/api/v1/apps": json.dumps(api),
        "the webhook alerts": json.dumps(list(hook.bodies)),
    }
    assert "gitopsd_aws_calls" in metrics
    for where in ("the agent's log", "/api/v1/apps", "the webhook alerts"):
        assert f"{USER}:***@127.0.0.1" in outputs[where], f"{where} does not name the source"
    assert {b["kind"] for b in hook.bodies} >= {"changes_applied", "rollout_progressed"}
    for where, text in outputs.items():
        for what, secret in hidden.items():
            assert secret not in text, f"{where} shows {what}"
            assert secret.rsplit("-", 1)[1] not in text, f"{where} shows part of {what}"

    # AWS holds the real values: web:2 is the rotation, the service runs the other writer's.
    td = env.ecs().describe_task_definition(taskDefinition="web:2")["taskDefinition"]
    (container,) = td["containerDefinitions"]
    environment = {e["name"]: e["value"] for e in container["environment"]}
    assert environment["DB_PASSWORD"] == rotated
    live = {e["name"]: e["value"] for e in secret_env.container()["environment"]}
    assert live["DB_PASSWORD"] == drifted
    assert environment["SESSION_SEED"] == f"seed-{value.secret_var}-end"
    assert environment["UPSTREAM_AUTH"] == value.env_var
    assert container["secrets"] == [{"name": "FROM_SSM", "valueFrom": value.value_from}]
