"""Secrets end to end: applied to AWS, never shown by ``diff``, ``render``, ``sync``, ``status``.

The example repository is served over smart HTTP with basic auth, the token in the
source URL. Planted values (``s3cr3t-<random>``) sit in a manifest environment entry
named ``DB_PASSWORD``, in a var marked secret, in a var read from the environment, in
an ECS ``secrets[].valueFrom`` and in the URL. Every command's stdout and its
debug JSON log on stderr must not contain any of them, while the task definition on
the local ECS endpoint holds the real values.
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

from gitopsd.local_aws.testing import LocalAws
from gitopsd.redact import REDACTOR

from .conftest import EXAMPLES, Env, Run, write_config

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
