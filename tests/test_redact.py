"""Secrets: the config that marks them, every place that reads one registers it, outputs mask.

The redaction mechanism itself is :mod:`gitopsd.redact`; these tests cover what feeds
it (config, Git credentials, HTTP secrets, render, the ECS schema) and what the
command output does with it (diffs show ``*** -> ***``, JSON and YAML masked).
"""

from __future__ import annotations

import functools
import io
import json
import os
import secrets
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from gitopsd.backends.ecs.schema import ecs_schema
from gitopsd.backends.ecs.secrets import secret_values, task_definition_secrets
from gitopsd.config import (
    DEFAULT_SECRET_ENV_NAMES,
    AppConfig,
    AuthConfig,
    HttpConfig,
    SourceConfig,
    WebhookConfig,
    parse_config,
)
from gitopsd.engine.outcome import Outcome
from gitopsd.errors import ConfigError, ManifestError
from gitopsd.http import _load_webhooks, serve_http
from gitopsd.manifests.render import dump_resources, read_directory, render_app
from gitopsd.manifests.schema import Schema
from gitopsd.manifests.secrets import app_variables, name_matches
from gitopsd.manifests.substitute import substitute_text
from gitopsd.model import (
    MISSING,
    Action,
    ChangeSet,
    FieldChange,
    Origin,
    Resource,
    ResourceChange,
)
from gitopsd.output import (
    Painter,
    RedactingStream,
    dump_json,
    format_outcomes,
    mask_change,
    redacted_stdio,
    write_json,
)
from gitopsd.redact import MASK, REDACTOR, redact
from gitopsd.source.auth import Transport, resolve_credentials


@pytest.fixture(autouse=True)
def _no_registered_secrets() -> Iterator[None]:
    """Each test starts and ends with nothing registered (the redactor is process-wide)."""
    REDACTOR.forget_all()
    yield
    REDACTOR.forget_all()


def planted() -> str:
    return f"s3cr3t-{secrets.token_hex(6)}"


def masked(value: str) -> bool:
    return redact(f"<{value}>") == f"<{MASK}>"


# --- configuration ----------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "sources": [{"name": "s", "url": "/srv/git/r.git"}],
    "apps": [{"name": "a", "source": "s", "cluster": "c"}],
}


def config_with(app: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    return {**BASE, **top, "apps": [{**BASE["apps"][0], **(app or {})}]}


def config_error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "gitopsd.toml")
    return str(info.value)


def test_secret_keys_default_to_the_documented_patterns_and_nothing_secret() -> None:
    cfg = parse_config(config_with())
    assert cfg.manifests.secret_env_names == [
        "*PASSWORD*",
        "*SECRET*",
        "*TOKEN*",
        "*_KEY",
        "*APIKEY*",
        "*CREDENTIAL*",
    ]
    assert tuple(cfg.manifests.secret_env_names) == DEFAULT_SECRET_ENV_NAMES
    assert cfg.apps[0].secret_vars == []
    assert cfg.apps[0].vars_from_env == {}


def test_secret_keys_are_read() -> None:
    cfg = parse_config(
        config_with(
            {"vars": {"PASS": "x"}, "secret_vars": ["PASS"], "vars_from_env": {"KEY": "APP_KEY"}},
            manifests={"secret_env_names": ["*DSN*"]},
        )
    )
    assert cfg.manifests.secret_env_names == ["*DSN*"]
    assert cfg.apps[0].secret_vars == ["PASS"]
    assert cfg.apps[0].vars_from_env == {"KEY": "APP_KEY"}


def test_a_secret_var_missing_from_vars_names_its_key() -> None:
    message = config_error(
        config_with({"vars": {"ENV": "prod", "PASS": "x"}, "secret_vars": ["PASS", "PASSWD"]})
    )
    assert message == (
        "gitopsd.toml: invalid configuration\n"
        "  apps[0].secret_vars[1]: no var named 'PASSWD' in apps[0].vars (vars: ENV, PASS)"
    )


def test_vars_from_env_problems_name_their_keys() -> None:
    message = config_error(
        config_with({"vars": {"DB": "x"}, "vars_from_env": {"DB": "DB_VAR", "1x": "A", "B": ""}})
    )
    assert message.splitlines()[1:] == [
        "  apps[0].vars_from_env.DB: 'DB' is also set in apps[0].vars; define it in one place",
        "  apps[0].vars_from_env.1x: '1x' cannot be used as ${1x}: names are letters, digits "
        "and '_', not starting with a digit",
        '  apps[0].vars_from_env.B: "" (a string) is not an environment variable name',
    ]


def test_secret_env_names_must_be_non_empty_strings() -> None:
    message = config_error(config_with(manifests={"secret_env_names": ["*PASS*", "", 3]}))
    assert message.splitlines()[1:] == [
        '  manifests.secret_env_names[1]: must have at least 1 character(s), got "" (a string)',
        "  manifests.secret_env_names[2]: expected a string, got 3 (an integer)",
    ]


def test_unknown_secret_key_suggests_the_right_one() -> None:
    message = config_error(config_with({"secret_var": ["X"]}))
    assert "apps[0].secret_var: unknown key; did you mean 'secret_vars'?" in message


# --- name patterns ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "DB_PASSWORD",
        "password",
        "MyPasswordFile",
        "CLIENT_SECRET",
        "GITHUB_TOKEN",
        "tokens",
        "AWS_SECRET_ACCESS_KEY",
        "STRIPE_KEY",
        "signing_key",
        "APIKEY",
        "X_APIKEY_2",
        "GOOGLE_CREDENTIALS",
    ],
)
def test_default_patterns_match_secret_names(name: str) -> None:
    assert name_matches(name, DEFAULT_SECRET_ENV_NAMES)


@pytest.mark.parametrize("name", ["ENVIRONMENT", "GREETING", "KEYBOARD", "KEY_ID", "PORT", ""])
def test_default_patterns_leave_other_names(name: str) -> None:
    assert not name_matches(name, DEFAULT_SECRET_ENV_NAMES)


def test_patterns_are_shell_patterns_ignoring_case() -> None:
    assert name_matches("db_dsn", ["*DSN"])
    assert name_matches("KEY1", ["key?"])
    assert not name_matches("KEY10", ["key?"])
    assert name_matches("b", ["[abc]"])
    assert not name_matches("anything", [])


# --- Git credentials --------------------------------------------------------------------------


def source(url: str = "https://host/r.git", **auth: object) -> SourceConfig:
    return SourceConfig(name="platform", url=url, auth=AuthConfig.model_validate(auth))


def test_a_token_from_the_environment_is_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    token = planted()
    monkeypatch.setenv("GIT_TOKEN", f" {token}\n")
    creds = resolve_credentials(source(token_env="GIT_TOKEN"), Transport.HTTP)
    assert creds.password == token  # read as is: only output is masked
    assert masked(token)
    assert redact(f"fatal: auth failed for {token}") == "fatal: auth failed for ***"


def test_a_token_from_a_file_is_registered(tmp_path: Path) -> None:
    token = planted()
    (tmp_path / "token").write_text(token + "\n")
    resolve_credentials(source(token_file=tmp_path / "token"), Transport.HTTP)
    assert masked(token)


def test_a_password_is_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    password = planted()
    monkeypatch.setenv("GIT_PASSWORD", password)
    resolve_credentials(source(username="me", password_env="GIT_PASSWORD"), Transport.HTTP)
    assert masked(password)
    assert not masked("me")


def test_credentials_in_the_url_are_registered() -> None:
    token = planted()
    creds = resolve_credentials(source(f"https://user:{token}@host/r.git"), Transport.HTTP)
    assert (creds.username, creds.password) == ("user", token)
    assert masked(token)
    assert not masked("user")
    # Anywhere, not only inside a URL.
    assert redact(f"password {token} rejected") == "password *** rejected"


def test_percent_encoded_url_passwords_are_registered_both_ways() -> None:
    token = planted()
    resolve_credentials(source(f"https://user:{token}%2Fx@host/r.git"), Transport.HTTP)
    assert masked(f"{token}/x")
    assert masked(f"{token}%2Fx")


def test_a_lone_token_as_url_user_is_registered() -> None:
    token = planted()
    resolve_credentials(source(f"https://{token}@host/r.git"), Transport.HTTP)
    assert masked(token)


def test_ssh_user_names_are_not_secrets() -> None:
    resolve_credentials(source("ssh://gituser@host/r.git"), Transport.SSH)
    assert REDACTOR.count == 0


# --- HTTP secrets -----------------------------------------------------------------------------


def test_webhook_secrets_are_registered(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from_env, from_file = planted(), planted()
    monkeypatch.setenv("HOOK_SECRET", from_env)
    (tmp_path / "hook").write_text(from_file + "\n")
    config = HttpConfig(
        webhooks=[
            WebhookConfig(name="a", kind="github", secret_env="HOOK_SECRET"),
            WebhookConfig(name="b", kind="hmac", secret_file=tmp_path / "hook"),
        ]
    )
    hooks = _load_webhooks(config)
    assert [h.secret for h in hooks] == [from_env.encode(), from_file.encode()]
    assert masked(from_env)
    assert masked(from_file)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_control_token_is_registered(
    monkeypatch: pytest.MonkeyPatch, anyio_backend: str
) -> None:
    token = planted()
    monkeypatch.setenv("CONTROL_TOKEN", token)
    config = HttpConfig(address="127.0.0.1:0", control_token_env="CONTROL_TOKEN")
    async with anyio.create_task_group() as tg:
        await tg.start(functools.partial(serve_http, config, _NoView(), control_socket=None))
        assert masked(token)
        tg.cancel_scope.cancel()


class _NoView:
    """An agent view the test never queries."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the view was used: {name}")


# --- render -----------------------------------------------------------------------------------

TASK_DEFINITION = """\
kind: TaskDefinition
family: web
cpu: "256"
memory: "512"
containerDefinitions:
  - name: web
    image: nginx:${TAG}
    essential: true
    environment:
      - name: DB_PASSWORD
        value: ${DB_PASSWORD}
      - name: DATABASE_URL
        value: postgres://app:${DB_PASS}@db/app
      - name: API_KEY
        value: ${API_KEY}
      - name: GREETING
        value: hello world
    secrets:
      - name: SSM_VALUE
        valueFrom: arn:aws:ssm:eu-west-1:123456789012:parameter/web/db
"""


def write_app(root: Path, text: str = TASK_DEFINITION) -> None:
    (root / "app").mkdir(parents=True, exist_ok=True)
    (root / "app" / "td.yaml").write_text(textwrap.dedent(text))


def web_app(**changes: Any) -> AppConfig:
    data: dict[str, Any] = {
        "name": "web",
        "source": "git",
        "path": "app",
        "cluster": "prod",
        "vars": {"TAG": "1.27", "DB_PASSWORD": "manifest-pw-1", "DB_PASS": "var-pass-1"},
        "secret_vars": ["DB_PASS"],
        **changes,
    }
    return AppConfig.model_validate(data)


def test_render_registers_secret_vars_env_vars_and_what_the_schema_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api_key = planted()
    monkeypatch.setenv("WEB_API_KEY", api_key)
    write_app(tmp_path)
    app = web_app(vars_from_env={"API_KEY": "WEB_API_KEY"})
    (td,) = render_app(read_directory(tmp_path), app, ecs_schema())
    environment = {e["name"]: e["value"] for e in td.spec["containerDefinitions"][0]["environment"]}
    # The rendered (applied) document holds the real values...
    assert environment == {
        "DB_PASSWORD": "manifest-pw-1",
        "DATABASE_URL": "postgres://app:var-pass-1@db/app",
        "API_KEY": api_key,
        "GREETING": "hello world",
    }
    # ...and every output masks them.
    assert masked("manifest-pw-1")  # environment entry named *PASSWORD*
    assert masked("var-pass-1")  # a secret var, substituted into a longer string
    assert masked(api_key)  # from the environment: always secret
    assert masked("arn:aws:ssm:eu-west-1:123456789012:parameter/web/db")  # secrets[].valueFrom
    assert not masked("hello world")
    assert not masked("1.27")
    dumped = dump_resources([td])
    for value in ("manifest-pw-1", "var-pass-1", api_key, "parameter/web/db"):
        assert value not in dumped
    assert "value: postgres://app:***@db/app" in dumped
    assert "image: nginx:1.27" in dumped


def test_secret_vars_are_registered_even_when_unused(tmp_path: Path) -> None:
    write_app(tmp_path, TASK_DEFINITION.replace("${DB_PASS}", "plain").replace("${API_KEY}", "x"))
    render_app(read_directory(tmp_path), web_app(), ecs_schema())
    assert masked("var-pass-1")


def test_a_missing_env_var_names_the_key_and_the_variable(tmp_path: Path) -> None:
    write_app(tmp_path)
    os.environ.pop("NOT_SET_ANYWHERE", None)
    app = web_app(vars_from_env={"API_KEY": "NOT_SET_ANYWHERE"})
    with pytest.raises(ConfigError) as info:
        render_app(read_directory(tmp_path), app, ecs_schema())
    assert str(info.value) == (
        "apps[web].vars_from_env.API_KEY: the environment variable NOT_SET_ANYWHERE is not set "
        "(it holds the value of ${API_KEY})"
    )


def test_app_variables_merge_vars_and_env() -> None:
    app = web_app(vars_from_env={"API_KEY": "K"})
    variables = app_variables(app, {"K": "from-env"})
    assert dict(variables.values) == {
        "TAG": "1.27",
        "DB_PASSWORD": "manifest-pw-1",
        "DB_PASS": "var-pass-1",
        "API_KEY": "from-env",
    }
    assert variables.secret == {"DB_PASS", "API_KEY"}


def test_configured_patterns_replace_the_defaults(tmp_path: Path) -> None:
    write_app(tmp_path, TASK_DEFINITION.replace("${API_KEY}", "api-key-value"))
    render_app(read_directory(tmp_path), web_app(), ecs_schema(), secret_env_names=["GREET*"])
    assert masked("hello world")
    assert not masked("manifest-pw-1")  # *PASSWORD* is no longer a pattern
    assert masked("var-pass-1")  # secret_vars do not depend on patterns


def test_a_render_that_fails_still_masks_secrets_in_its_problems(tmp_path: Path) -> None:
    write_app(tmp_path, TASK_DEFINITION.replace("${API_KEY}", "api-key-value") + "bogus: 1\n")
    with pytest.raises(ManifestError) as info:
        render_app(read_directory(tmp_path), web_app(), ecs_schema())
    assert "bogus" in str(info.value)
    assert masked("manifest-pw-1")


def test_substitution_registers_only_secret_variables() -> None:
    text, errors = substitute_text("${A}/${B}", {"A": "value-a", "B": "value-b"}, {"B"})
    assert (text, errors) == ("value-a/value-b", [])
    assert not masked("value-a")
    assert masked("value-b")


def test_a_schema_without_a_finder_finds_nothing() -> None:
    schema = Schema.of([], lambda docs: [], "describe")
    resource = Resource("TaskDefinition", "web", {"x": "y"}, Origin("f", 1))
    assert schema.secret_values(resource, DEFAULT_SECRET_ENV_NAMES) == []


def test_multi_line_secrets_are_masked_in_rendered_yaml() -> None:
    key = "-----BEGIN KEY-----\nabc123\n-----END KEY-----"
    REDACTOR.register(key)
    resource = Resource("TaskDefinition", "web", {"family": "web", "x": key}, Origin("f", 1))
    dumped = dump_resources([resource])
    assert "abc123" not in dumped
    assert "x: '***'" in dumped


# --- the ECS schema ---------------------------------------------------------------------------


def td(**container: Any) -> Resource:
    spec = {"family": "web", "containerDefinitions": [{"name": "web", **container}]}
    return Resource("TaskDefinition", "web", spec, Origin("td.yaml", 1))


def test_ecs_secret_values_of_a_task_definition() -> None:
    resource = td(
        environment=[
            {"name": "DB_PASSWORD", "value": "pw-1"},
            {"name": "github_token", "value": "tok-1"},
            {"name": "GREETING", "value": "hello"},
        ],
        secrets=[
            {"name": "A", "valueFrom": "arn:aws:secretsmanager:eu-west-1:1:secret:a"},
            {"name": "B", "valueFrom": "/param/b"},
        ],
        logConfiguration={
            "logDriver": "splunk",
            "secretOptions": [{"name": "splunk-token", "valueFrom": "/param/splunk"}],
        },
        repositoryCredentials={"credentialsParameter": "arn:aws:secretsmanager:x:1:secret:r"},
    )
    assert ecs_schema().secret_values(resource, DEFAULT_SECRET_ENV_NAMES) == [
        "arn:aws:secretsmanager:eu-west-1:1:secret:a",
        "/param/b",
        "/param/splunk",
        "arn:aws:secretsmanager:x:1:secret:r",
        "pw-1",
        "tok-1",
    ]


def test_ecs_secret_values_cover_every_container() -> None:
    spec = {
        "family": "web",
        "containerDefinitions": [
            {"name": "a", "environment": [{"name": "A_SECRET", "value": "one"}]},
            {"name": "b", "secrets": [{"name": "B", "valueFrom": "two"}]},
        ],
    }
    assert task_definition_secrets(spec, DEFAULT_SECRET_ENV_NAMES) == ["one", "two"]


def test_ecs_secret_values_follow_the_patterns_given() -> None:
    resource = td(
        environment=[{"name": "DB_PASSWORD", "value": "pw"}, {"name": "DSN", "value": "d"}]
    )
    assert secret_values(resource, ["dsn"]) == ["d"]
    assert secret_values(resource, []) == []


def test_ecs_services_have_no_secret_values() -> None:
    service = Resource("Service", "web", {"serviceName": "web"}, Origin("s.yaml", 1))
    assert secret_values(service, DEFAULT_SECRET_ENV_NAMES) == []


@pytest.mark.parametrize(
    "container",
    [
        {"environment": "not a list"},
        {"environment": [None, {"name": 3, "value": "x"}, {"name": "TOKEN"}]},
        {"secrets": [{"name": "X", "valueFrom": 12}], "logConfiguration": "x"},
        {"repositoryCredentials": ["x"]},
    ],
)
def test_ecs_secret_values_skip_malformed_documents(container: dict[str, Any]) -> None:
    assert secret_values(td(**container), DEFAULT_SECRET_ENV_NAMES) == []
    broken = Resource("TaskDefinition", "web", {"containerDefinitions": {"a": 1}}, Origin("f", 1))
    assert secret_values(broken, DEFAULT_SECRET_ENV_NAMES) == []


# --- command output ---------------------------------------------------------------------------


def test_a_changed_secret_shows_as_masked_on_both_sides() -> None:
    REDACTOR.register("new-password")
    assert mask_change("old-password", "new-password") == (MASK, MASK)
    assert mask_change(MISSING, "new-password") == (MISSING, MASK)
    assert mask_change("new-password", MISSING) == (MASK, MISSING)
    assert mask_change("a", "b") == ("a", "b")


def test_only_the_secret_member_of_a_container_is_masked() -> None:
    REDACTOR.register("new-password")
    before = {"name": "DB_PASSWORD", "value": "old-password"}
    after = {"name": "DB_PASSWORD", "value": "new-password", "extra": ["x"]}
    assert mask_change(before, after) == (
        {"name": "DB_PASSWORD", "value": MASK},
        {"name": "DB_PASSWORD", "value": MASK, "extra": ["x"]},
    )
    assert mask_change(["a", "old-password"], ["a", "new-password"]) == (["a", MASK], ["a", MASK])
    assert mask_change({"v": "x"}, "new-password") == ({"v": "x"}, MASK)


def outcome_with_secret_change(secret: str) -> Outcome:
    path = "/containerDefinitions/web/environment/DB_PASSWORD/value"
    changes = (
        FieldChange(path, "old-value-1", secret),
        FieldChange("/containerDefinitions/web/image", "nginx:1.27", "nginx:1.28"),
        FieldChange("/containerDefinitions/web/command", MISSING, ["sh", "-c", f"echo {secret}"]),
    )
    rc = ResourceChange("TaskDefinition", "web", Action.UPDATE, changes, Origin("td.yaml", 1))
    return Outcome(
        app="web",
        changeset=ChangeSet("web", None, (rc,)),
        message=f"failed with {secret}",
    )


def test_diff_text_shows_that_a_secret_changed_but_not_its_values() -> None:
    secret = planted()
    REDACTOR.register(secret)
    text = format_outcomes([outcome_with_secret_change(secret)], Painter(io.StringIO(), "never"))
    assert "~ /containerDefinitions/web/environment/DB_PASSWORD/value: *** -> ***" in text
    assert "old-value-1" not in text
    assert '~ /containerDefinitions/web/image: "nginx:1.27" -> "nginx:1.28"' in text
    out = io.StringIO()
    RedactingStream(out).write(text)
    assert '+ /containerDefinitions/web/command: ["sh", "-c", "echo ***"]' in out.getvalue()
    assert secret not in out.getvalue()


def test_diff_json_masks_secrets_in_the_data() -> None:
    secret = planted() + '"\\quoted'  # JSON escapes these: masking happens before
    REDACTOR.register(secret)
    out = io.StringIO()
    write_json([outcome_with_secret_change(secret)], out)
    assert secret not in out.getvalue()
    assert json.dumps(secret)[1:-1] not in out.getvalue()
    doc = json.loads(out.getvalue())
    (resource,) = doc["apps"][0]["resources"]
    first = resource["changes"][0]
    assert (first["before"], first["after"]) == (MASK, MASK)
    assert resource["changes"][2]["after"] == ["sh", "-c", "echo ***"]


def test_dump_json_masks_before_escaping() -> None:
    secret = 'pa"ss\\word'
    REDACTOR.register(secret)
    assert dump_json({"v": f"x {secret} y"}, indent=None) == '{"v": "x *** y"}'


def test_redacted_stdio_masks_what_is_printed_and_restores_the_streams(
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = planted()
    REDACTOR.register(secret)
    out, err = sys.stdout, sys.stderr
    with redacted_stdio():
        print(f"stdout {secret}")
        print(f"stderr https://user:pw-in-url@host/r {secret}", file=sys.stderr, flush=True)
        assert sys.stdout.isatty() == out.isatty()
    assert (sys.stdout, sys.stderr) == (out, err)
    captured = capsys.readouterr()
    assert captured.out == "stdout ***\n"
    assert captured.err == "stderr https://user:***@host/r ***\n"
