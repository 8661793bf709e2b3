"""``gitopsd config check`` validates without Git or AWS; ``gitopsd config show`` masks secrets."""

from __future__ import annotations

import json
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitopsd.cli import main

ROOT = Path(__file__).resolve().parent.parent

#: Network events seen while :data:`_WATCHING` is set (an audit hook, installed once).
_NETWORK: list[tuple[str, str]] = []
_WATCHING: list[bool] = []


def _audit(event: str, args: tuple[object, ...]) -> None:
    if _WATCHING and event in ("socket.connect", "socket.getaddrinfo", "subprocess.Popen"):
        _NETWORK.append((event, repr(args)[:200]))


sys.addaudithook(_audit)


@pytest.fixture
def network() -> Iterator[list[tuple[str, str]]]:
    """Every connection, name lookup and subprocess started in the body."""
    _NETWORK.clear()
    _WATCHING.append(True)
    try:
        yield _NETWORK
    finally:
        _WATCHING.clear()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gitopsd.toml"
    path.write_text(text)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", ["config/example.toml", "config/reference.toml"])
def test_check_passes_on_the_shipped_files(
    name: str, capsys: pytest.CaptureFixture[str], network: list[tuple[str, str]]
) -> None:
    code, out, err = run(capsys, "config", "check", "-c", str(ROOT / name))
    assert (code, err) == (0, "")
    assert out.count("\n") == 1
    assert ": valid (" in out
    assert network == []


def test_check_touches_neither_git_nor_aws(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], network: list[tuple[str, str]]
) -> None:
    path = write(
        tmp_path,
        """
[aws]
endpoint_url = "http://192.0.2.1:9"   # TEST-NET-1: unreachable
region = "eu-west-1"

[[sources]]
name = "platform"
url = "https://git.invalid/platform.git"
  [sources.auth]
  token_env = "GITOPSD_TEST_UNSET_TOKEN"

[[apps]]
name = "web"
source = "platform"
cluster = "prod"

[plugins.sns]
topic_arn = "arn:aws:sns:eu-west-1:123456789012:alerts"
endpoint_url = "http://192.0.2.1:9"
""",
    )
    code, out, err = run(capsys, "config", "check", "-c", str(path))
    assert (code, err) == (0, "")
    assert out == f"{path}: valid (1 source, 1 app, 0 webhooks; notifiers: console, sns)\n"
    assert network == []


def test_check_names_each_bad_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(
        tmp_path,
        """
[daemon]
interval = "soon"

[[sources]]
name = "platform"
url = "https://git.example.com/platform.git"

[[apps]]
name = "web"
source = "platfrom"
clustr = "prod"
""",
    )
    code, out, err = run(capsys, "config", "check", "-c", str(path))
    assert (code, out) == (2, "")
    assert f"{path}: invalid configuration" in err
    assert "daemon.interval: expected a duration" in err
    assert "apps[0].clustr: unknown key; did you mean 'cluster'?" in err
    assert "apps[0].cluster: required" in err


def test_check_asks_the_plugins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, '[plugins.webhook]\nmin_severity = "warning"\n')
    code, out, err = run(capsys, "config", "check", "-c", str(path))
    assert (code, out) == (2, "")
    assert f"{path}: invalid plugin options" in err
    assert "plugins.webhook.url: required" in err


def test_check_reports_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "config", "check", "-c", str(tmp_path / "nope.toml"))
    assert code == 2
    assert "nope.toml: cannot read configuration" in err


SECRETS = {
    "url": "s3cr3t-git-token",
    "var": "hunter2-database-password",
    "plugin": "plugin-api-key-value",
    "plugin_url": "hooks-path-token-xyz",
    "otel": "otel-header-secret",
}


@pytest.fixture
def secret_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ALERT_URL", f"https://hooks.example.com/services/{SECRETS['plugin_url']}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"api-key={SECRETS['otel']}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gitopsd-prod")
    return write(
        tmp_path,
        f"""
[[sources]]
name = "platform"
url = "https://deploy:{SECRETS["url"]}@git.example.com/platform.git"
  [sources.auth]
  token_file = "/etc/gitopsd/git-token"

[[apps]]
name = "web"
source = "platform"
cluster = "prod"
vars = {{ ENV = "production", DB_PASS = "{SECRETS["var"]}" }}
secret_vars = ["DB_PASS"]
vars_from_env = {{ API_KEY = "WEB_API_KEY" }}

[telemetry]
headers_env = "OTLP_HEADERS"

[plugins.webhook]
url_env = "ALERT_URL"
headers = {{ "X-Api-Key" = "{SECRETS["plugin"]}" }}
min_severity = "warning"
""",
    )


def assert_masked(text: str) -> None:
    for what, secret in SECRETS.items():
        assert secret not in text, f"the {what} secret is shown"


def test_show_masks_secrets_as_toml(
    secret_config: Path, capsys: pytest.CaptureFixture[str], network: list[tuple[str, str]]
) -> None:
    code, out, err = run(capsys, "config", "show", "-c", str(secret_config))
    assert (code, err) == (0, "")
    assert_masked(out)
    doc = tomllib.loads(out)
    assert doc["sources"][0]["url"] == "https://deploy:***@git.example.com/platform.git"
    assert doc["apps"][0]["vars"] == {"ENV": "production", "DB_PASS": "***"}
    assert doc["plugins"]["webhook"]["headers"] == {"X-Api-Key": "***"}
    # Names of variables and files say where secrets come from; they are shown.
    assert doc["plugins"]["webhook"]["url_env"] == "ALERT_URL"
    assert doc["sources"][0]["auth"]["token_file"] == "/etc/gitopsd/git-token"
    assert doc["apps"][0]["vars_from_env"] == {"API_KEY": "WEB_API_KEY"}
    assert doc["telemetry"]["headers_env"] == "OTLP_HEADERS"
    # Defaults are filled in, spelt as a user writes them.
    assert doc["daemon"]["interval"] == "1m"
    assert doc["http"]["max_body"] == "1MiB"
    assert doc["apps"][0]["sync"]["mode"] == "auto"
    assert "# The environment overrides [telemetry]: OTEL_SERVICE_NAME=gitopsd-prod" in out
    assert "OTEL_EXPORTER_OTLP_HEADERS=api-key=***" in out
    assert network == []


def test_show_masks_secrets_as_json(
    secret_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "config", "show", "-c", str(secret_config), "-o", "json")
    assert code == 0
    assert_masked(out + err)
    doc = json.loads(out)
    assert doc["apps"][0]["vars"]["DB_PASS"] == "***"
    assert doc["aws"]["region"] is None  # unset keys are null in JSON
    assert "OTEL_EXPORTER_OTLP_HEADERS=api-key=***" in err


def test_show_masks_the_options_of_a_plugin_that_refused_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The plugin could not register its secrets (its URL variable is unset): its own
    # options are masked whole, the common ones shown, and the refusal said on stderr.
    path = write(
        tmp_path,
        '[plugins.webhook]\nurl_env = "GITOPSD_TEST_UNSET_URL"\n'
        'headers = { "X-Team" = "inline-value-1234" }\nmin_severity = "error"\n',
    )
    code, out, err = run(capsys, "config", "show", "-c", str(path))
    assert code == 0
    webhook = tomllib.loads(out)["plugins"]["webhook"]
    assert webhook == {"url_env": "***", "headers": "***", "min_severity": "error"}
    assert "url_env: the environment variable GITOPSD_TEST_UNSET_URL is not set" in err


def test_show_applies_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITOPSD_HTTP_ADDRESS", "0.0.0.0:8099")
    path = write(tmp_path, "[daemon]\nstate_dir = 'state'\n")
    code, out, _ = run(capsys, "config", "show", "-c", str(path))
    assert code == 0
    doc = tomllib.loads(out)
    assert doc["http"]["address"] == "0.0.0.0:8099"
    assert doc["daemon"]["state_dir"] == str(tmp_path / "state")


def test_the_network_watch_sees_a_connection(network: list[tuple[str, str]]) -> None:
    # What makes the "no Git or AWS" assertions above mean something.
    import socket

    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", 9))
    assert [event for event, _ in network] == ["socket.connect"]


def test_plugin_tables_no_plugin_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A misspelt plugin name is said (not an error: it may be installed where gitopsd runs);
    # a disabled or unknown plugin's options are masked by show: nothing said which are secret.
    path = write(
        tmp_path,
        '[plugins.slakc]\nurl_env = "SLACK_URL"\n\n'
        '[plugins.webhook]\nenabled = false\nurl = "https://hooks.example.com/inline-token-1"\n',
    )
    code, out, err = run(capsys, "config", "check", "-c", str(path))
    assert code == 0
    assert "valid" in out
    assert "plugins.slakc: no installed plugin has this name (installed: console," in err
    assert "plugins.webhook" not in err
    code, out, _ = run(capsys, "config", "show", "-c", str(path))
    assert code == 0
    plugins = tomllib.loads(out)["plugins"]
    assert plugins == {"slakc": {"url_env": "***"}, "webhook": {"enabled": False, "url": "***"}}


GATED_APP = """
[[sources]]
name = "platform"
url = "https://git.example.com/platform.git"

[[apps]]
name = "web"
source = "platform"
cluster = "prod"
[[apps.gates]]
name = "errors"
[apps.gates.cloudwatch]
threshold = 5
comparison = "GreaterThanThreshold"
[[apps.gates.cloudwatch.queries]]
Id = "errors"
Expression = "SUM(METRICS())"
[[apps.gates]]
name = "p99"
type = "prometheus"
options = { url = "http://prometheus:9090" }
"""


def test_check_finds_a_gate_type_no_plugin_provides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "config", "check", "-c", str(write(tmp_path, GATED_APP)))
    assert (code, out) == (2, "")
    assert "invalid gates" in err
    assert "apps[0].gates[1].type: no enabled plugin provides gate type 'prometheus'" in err
    assert "gates[0]" not in err  # the built-in cloudwatch gate needs no plugin


def test_check_accepts_a_gate_type_a_plugin_provides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gitopsd.plugins import PluginRegistry, hookimpl

    class Prometheus:
        @hookimpl
        def gitopsd_gate(self, name: str, type: str, options: dict[str, object]) -> object | None:
            if type != "prometheus":
                return None
            if "url" not in options:
                raise ValueError("options.url: required")
            return object()

    discover = PluginRegistry.discover

    def with_prometheus(*args: object, **kwargs: object) -> PluginRegistry:
        registry = discover(*args, **kwargs)  # type: ignore[arg-type]
        registry.register(Prometheus(), "prometheus")
        return registry

    monkeypatch.setattr(PluginRegistry, "discover", staticmethod(with_prometheus))
    code, out, err = run(capsys, "config", "check", "-c", str(write(tmp_path, GATED_APP)))
    assert (code, err) == (0, "")
    assert ": valid (" in out
    code, out, err = run(
        capsys,
        "config",
        "check",
        "-c",
        str(write(tmp_path, GATED_APP.replace('options = { url = "http://prometheus:9090" }', ""))),
    )
    assert code == 2
    assert "apps[0].gates[1].options:" in err
    assert "options.url: required" in err
