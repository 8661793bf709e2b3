"""The guard-rail rules: glob matching, the merge of ``[policy]`` and ``apps[].policy``,
privileged settings, plaintext secrets, and where ``gitopsd validate`` reports them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from structlog.testing import capture_logs

from gitopsd.backends.ecs import guardrails as g
from gitopsd.backends.ecs.applier import Request, check_guardrails
from gitopsd.backends.ecs.schema import ecs_schema
from gitopsd.backends.ecs.secret_refs import parse_reference, references
from gitopsd.config import Config, parse_config
from gitopsd.errors import ConfigError, ManifestError, PlanError
from gitopsd.manifests.render import render_app
from gitopsd.model import Origin

ADMIN = "arn:aws:iam::111111111111:role/admin"
APP_ROLE = "arn:aws:iam::111111111111:role/app-web"


def config(glob: Mapping[str, Any] | None = None, **app: Any) -> Config:
    data: dict[str, Any] = {
        "aws": {"region": "eu-west-1"},
        "sources": [{"name": "s", "url": "file:///nowhere"}],
        "apps": [{"name": "web", "source": "s", "cluster": "staging-web", **app}],
    }
    if glob is not None:
        data["policy"] = dict(glob)
    return parse_config(data)


def td(**fields: Any) -> dict[str, Any]:
    container = {"name": "web", "image": "nginx", "memory": 128}
    container.update(fields.pop("container", {}))
    return {"family": "web", "containerDefinitions": [container], **fields}


def messages(cfg: Config, spec: dict[str, Any]) -> list[str]:
    rails = g.guardrails(cfg.apps[0])
    return [f"{v.pointer}: {v.message}" for v in g.spec_violations("TaskDefinition", spec, rails)]


def test_role_globs_and_the_rule_that_refused() -> None:
    cfg = config({"task_roles": ["arn:aws:iam::*:role/app-*"]})
    assert messages(cfg, td(taskRoleArn=APP_ROLE)) == []
    assert messages(cfg, td(taskRoleArn=ADMIN)) == [
        f"/taskRoleArn: {ADMIN} is not allowed by [policy].task_roles "
        "(allowed: arn:aws:iam::*:role/app-*)"
    ]
    assert messages(cfg, td()) == []  # no task role is always allowed
    cfg = config({"execution_roles": ["arn:aws:iam::111111111111:role/exec"]})
    assert messages(cfg, td(executionRoleArn="arn:aws:iam::222222222222:role/exec")) == [
        "/executionRoleArn: arn:aws:iam::222222222222:role/exec is not allowed by "
        "[policy].execution_roles (allowed: arn:aws:iam::111111111111:role/exec)"
    ]


def test_an_app_policy_only_narrows() -> None:
    glob = {"task_roles": ["arn:aws:iam::*:role/app-*"]}
    narrower = config(glob, policy={"task_roles": ["arn:aws:iam::*:role/app-web"]})
    assert messages(narrower, td(taskRoleArn=APP_ROLE)) == []
    assert messages(narrower, td(taskRoleArn="arn:aws:iam::1:role/app-api")) == [
        "/taskRoleArn: arn:aws:iam::1:role/app-api is not allowed by "
        "apps[0].policy.task_roles (allowed: arn:aws:iam::*:role/app-web)"
    ]
    wider = config(glob, policy={"task_roles": ["*"]})  # cannot widen [policy]
    assert messages(wider, td(taskRoleArn=ADMIN)) == [
        f"/taskRoleArn: {ADMIN} is not allowed by [policy].task_roles "
        "(allowed: arn:aws:iam::*:role/app-*)"
    ]


def test_privileged_settings_are_refused_unless_allowed() -> None:
    spec = td(
        networkMode="host",
        pidMode="host",
        container={
            "privileged": True,
            "linuxParameters": {"capabilities": {"add": ["SYS_ADMIN", "NET_BIND_SERVICE"]}},
        },
    )
    found = messages(config(), spec)
    assert [m.split(":")[0] for m in found] == [
        "/networkMode",
        "/pidMode",
        "/containerDefinitions/0/privileged",
        "/containerDefinitions/0/linuxParameters/capabilities/add/0",
        "/containerDefinitions/0/linuxParameters/capabilities/add/1",
    ]
    assert "not allowed by [policy].host_network (set [policy].host_network = true" in found[0]
    assert found[3].endswith("capability SYS_ADMIN is not allowed by [policy].capabilities "
                             "(allowed: nothing)")  # fmt: skip
    allowed = config(
        {
            "host_network": True,
            "host_pid": True,
            "privileged": True,
            "capabilities": ["NET_*", "sys_admin"],
        }
    )
    assert messages(allowed, spec) == []
    # the app turns one off again; the message names its key
    narrowed = config({"privileged": True}, policy={"privileged": False})
    assert messages(narrowed, td(container={"privileged": True})) == [
        "/containerDefinitions/0/privileged: a privileged container is not allowed by "
        "apps[0].policy.privileged (set apps[0].policy.privileged = true to allow it, "
        "or remove it from the manifest)"
    ]


def test_an_app_cannot_allow_what_the_global_policy_forbids() -> None:
    with pytest.raises(ConfigError) as caught:
        config(policy={"privileged": True})
    assert "apps[0].policy.privileged: cannot allow what [policy].privileged forbids" in str(
        caught.value
    )


def test_clusters_regions_and_accounts() -> None:
    cfg = config({"clusters": ["staging-*"], "regions": ["eu-*"], "accounts": ["111111111111"]})
    assert g.target_problems(cfg.apps[0]) == []
    prod = config({"clusters": ["staging-*"]}, cluster="arn:aws:ecs:eu-west-1:1:cluster/prod")
    assert g.target_problems(prod.apps[0]) == [
        (
            "apps[0].cluster",
            "cluster arn:aws:ecs:eu-west-1:1:cluster/prod is not allowed by [policy].clusters "
            "(allowed: staging-*)",
        )
    ]
    by_arn = config(
        {"clusters": ["staging-*"]}, cluster="arn:aws:ecs:us-east-1:1:cluster/staging-x"
    )
    assert g.target_problems(by_arn.apps[0]) == []  # the name of an ARN matches
    east = config({"regions": ["eu-*"]}, region="us-east-1")
    assert g.target_problems(east.apps[0]) == [
        ("apps[0].region", "region us-east-1 is not allowed by [policy].regions (allowed: eu-*)")
    ]
    assert g.account_problem(cfg.apps[0], "111111111111") is None
    problem = g.account_problem(cfg.apps[0], "222222222222")
    assert problem is not None
    assert "account 222222222222 is not allowed by [policy].accounts (allowed: 111111111111)" in (
        problem
    )


def test_plaintext_secrets_warn_by_default_and_the_stricter_mode_wins() -> None:
    spec = td(container={"environment": [{"name": "DB_PASSWORD", "value": "hunter2"}]})
    rails = g.guardrails(config().apps[0])
    (warned,) = g.spec_violations("TaskDefinition", spec, rails)
    assert warned.warning
    assert warned.pointer == "/containerDefinitions/0/environment/0/name"
    refuse = config({"plaintext_secrets": "refuse"}, policy={"plaintext_secrets": "allow"})
    (refused,) = g.spec_violations("TaskDefinition", spec, g.guardrails(refuse.apps[0]))
    assert not refused.warning
    assert "move it to the container's secrets with valueFrom" in refused.message
    assert '[policy].plaintext_secrets = "refuse"' in refused.message
    assert "hunter2" not in refused.message
    # the app adds a pattern and turns the check stricter
    own = config(policy={"plaintext_secrets": "refuse", "secret_env_names": ["*_DSN"]})
    dsn = td(container={"environment": [{"name": "SENTRY_DSN", "value": "https://x"}]})
    (found,) = g.spec_violations("TaskDefinition", dsn, g.guardrails(own.apps[0]))
    assert "apps[0].policy.plaintext_secrets" in found.message
    off = config({"plaintext_secrets": "allow"})
    assert g.spec_violations("TaskDefinition", spec, g.guardrails(off.apps[0])) == []


def test_secret_refs_cannot_be_turned_off_by_an_app() -> None:
    assert g.guardrails(config(policy={"check_secret_refs": False}).apps[0]).check_secret_refs
    assert not g.guardrails(config({"check_secret_refs": False}).apps[0]).check_secret_refs


TASK_DEFINITION = """\
kind: TaskDefinition
family: web
taskRoleArn: arn:aws:iam::111111111111:role/admin
containerDefinitions:
  - name: web
    image: nginx
    memory: 128
    environment:
      - name: API_TOKEN
        value: s3cr3t-value
"""


def reader(files: Mapping[str, str]) -> Any:
    def read(prefix: str) -> dict[str, bytes]:
        return {
            p: c.encode() for p, c in files.items() if prefix == "." or p.startswith(prefix + "/")
        }

    return read


def test_validate_names_file_line_and_rule() -> None:
    cfg = config(
        {"task_roles": ["arn:aws:iam::*:role/app-*"], "clusters": ["prod-*"]},
        path="apps/web",
    )
    read = reader({"apps/web/task-definition.yaml": TASK_DEFINITION})
    with capture_logs() as logs, pytest.raises(ManifestError) as caught:
        render_app(read, cfg.apps[0], ecs_schema())
    lines = str(caught.value).splitlines()
    assert lines == [
        "apps/web/task-definition.yaml:3: taskRoleArn: arn:aws:iam::111111111111:role/admin "
        "is not allowed by [policy].task_roles (allowed: arn:aws:iam::*:role/app-*)",
        "gitopsd configuration: apps[0].cluster: cluster staging-web is not allowed by "
        "[policy].clusters (allowed: prod-*)",
    ]
    warned = [e for e in logs if e["event"] == "guardrails.plaintext_secret"]
    assert [(e["at"], e["field"]) for e in warned] == [
        ("apps/web/task-definition.yaml:9", "containerDefinitions[0].environment[0].name")
    ]
    assert "s3cr3t-value" not in str(warned)


def test_the_apply_preflight_refuses_the_requests_themselves() -> None:
    cfg = config({"task_roles": ["arn:aws:iam::*:role/app-*"]})
    origin = Origin("apps/web/td.yaml", 1)
    ok = Request("TaskDefinition/web", origin, "RegisterTaskDefinition", td(taskRoleArn=APP_ROLE))
    check_guardrails(cfg.apps[0], [ok])
    bad = Request("TaskDefinition/web", origin, "RegisterTaskDefinition", td(taskRoleArn=ADMIN))
    with pytest.raises(PlanError, match=r"apps/web/td.yaml:1: taskRoleArn: .*admin is not"):
        check_guardrails(cfg.apps[0], [ok, bad])


@pytest.mark.parametrize(
    ("value", "service", "region", "names"),
    [
        ("/app/db", "ssm", None, ("/app/db",)),
        ("db", "ssm", None, ("db",)),
        ("arn:aws:ssm:eu-west-1:111111111111:parameter/app/db", "ssm", "eu-west-1", ("/app/db",)),
        ("arn:aws:ssm:eu-west-1:111111111111:parameter/db", "ssm", "eu-west-1", ("db", "/db")),
        (
            "arn:aws:secretsmanager:eu-west-1:111111111111:secret:db-AbCdEf:password::",
            "secretsmanager",
            "eu-west-1",
            ("arn:aws:secretsmanager:eu-west-1:111111111111:secret:db-AbCdEf",),
        ),
    ],
)
def test_value_from_references(
    value: str, service: str, region: str | None, names: tuple[str, ...]
) -> None:
    ref = parse_reference(value, None, "/x")
    assert (ref.service, ref.region, ref.names) == (service, region, names)


def test_references_of_a_task_definition() -> None:
    spec = td(
        container={
            "secrets": [{"name": "DB", "valueFrom": "/app/db"}],
            "logConfiguration": {
                "logDriver": "awsfirelens",
                "secretOptions": [{"name": "k", "valueFrom": "/log/key"}],
            },
        }
    )
    found = references(spec, Origin("td.yaml", 1))
    assert [r.where() for r in found] == [
        "td.yaml:1: containerDefinitions[0].secrets[0].valueFrom",
        "td.yaml:1: containerDefinitions[0].logConfiguration.secretOptions[0].valueFrom",
    ]
