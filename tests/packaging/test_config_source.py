"""Configuration for Fargate: from ``$GITOPSD_CONFIG_TOML`` or an SSM parameter.

The SSM parameter is read from the local AWS endpoint (moto serves SSM) over
HTTP with gitopsd's own client, at start-up and again on SIGHUP; the commands
run are the real ``gitopsd validate`` and ``gitopsd run``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from gitopsd import config_source
from gitopsd.cli import main
from gitopsd.config_source import (
    ENV_HTTP_ADDRESS,
    ENV_PATH,
    ENV_SSM,
    ENV_TOML,
    ConfigSource,
    fetch_ssm_parameter,
    resolve,
)
from gitopsd.errors import ConfigError, TemporaryError
from gitopsd.healthcheck import probe
from gitopsd.local_aws.testing import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY, LocalAws

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
#: The shipped example configuration, as an operator would paste it into a secret.
EXAMPLE_TOML = (ROOT / "config" / "example.toml").read_text()
PARAMETER = "/gitopsd/config"

# ---------------------------------------------------------------- which source


@pytest.mark.parametrize(
    ("explicit", "environ", "expected"),
    [
        ("my.toml", {ENV_TOML: "x", ENV_PATH: "other.toml"}, ConfigSource("file", "my.toml")),
        (None, {ENV_TOML: "[daemon]", ENV_PATH: "f.toml"}, ConfigSource("env", ENV_TOML)),
        (None, {ENV_SSM: PARAMETER, ENV_PATH: "f.toml"}, ConfigSource("ssm", PARAMETER)),
        (
            None,
            {ENV_PATH: "/etc/gitopsd/gitopsd.toml"},
            ConfigSource("file", "/etc/gitopsd/gitopsd.toml"),
        ),
        (None, {}, ConfigSource("file", "gitopsd.toml")),
    ],
)
def test_the_command_line_then_the_inline_variables_then_the_path_variable_then_the_default(
    explicit: str | None, environ: dict[str, str], expected: ConfigSource
) -> None:
    assert resolve(explicit, environ) == expected


def test_toml_and_ssm_variables_together_are_refused_naming_both() -> None:
    with pytest.raises(ConfigError, match=r"both \$GITOPSD_CONFIG_TOML and \$GITOPSD_CONFIG_SSM"):
        resolve(None, {ENV_TOML: "", ENV_SSM: PARAMETER})


def test_an_empty_variable_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^\$GITOPSD_CONFIG_SSM is empty"):
        resolve(None, {ENV_SSM: " "})
    source = resolve(None, {ENV_TOML: "\n"})
    with pytest.raises(ConfigError, match=r"^\$GITOPSD_CONFIG_TOML is empty: it must hold"):
        config_source.load(source, {ENV_TOML: "\n"})


def test_sources_are_labelled_as_messages_name_them() -> None:
    assert ConfigSource("env", ENV_TOML).label == "$GITOPSD_CONFIG_TOML"
    assert ConfigSource("ssm", PARAMETER).label == "ssm:/gitopsd/config"
    assert ConfigSource("file", "/etc/gitopsd/gitopsd.toml").label == "/etc/gitopsd/gitopsd.toml"


# ------------------------------------------------------------- $GITOPSD_HTTP_ADDRESS


def test_the_http_address_variable_applies_only_when_the_configuration_leaves_it_unset() -> None:
    unset = {ENV_TOML: "[daemon]\ninterval = 5\n", ENV_HTTP_ADDRESS: "0.0.0.0:8099"}
    assert config_source.load(ConfigSource("env", ENV_TOML), unset).http.address == "0.0.0.0:8099"
    chosen = {ENV_TOML: '[http]\naddress = "127.0.0.1:9000"\n', ENV_HTTP_ADDRESS: "0.0.0.0:8099"}
    cfg = config_source.load(ConfigSource("env", ENV_TOML), chosen)
    assert cfg.http.address == "127.0.0.1:9000"


def test_a_bad_http_address_variable_is_refused_naming_it() -> None:
    environ = {ENV_TOML: "[daemon]\n", ENV_HTTP_ADDRESS: "8099"}
    with pytest.raises(ConfigError, match=r"^\$GITOPSD_HTTP_ADDRESS: '8099' is not HOST:PORT"):
        config_source.load(ConfigSource("env", ENV_TOML), environ)


# ------------------------------------------------------------- $GITOPSD_CONFIG_TOML


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No configuration variables, dummy AWS credentials, a working directory with no file."""
    for name in (ENV_PATH, ENV_TOML, ENV_SSM, ENV_HTTP_ADDRESS, "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DUMMY_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DUMMY_SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", "us-east-1")  # as ECS sets it (botocore reads the other)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def validate(capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``gitopsd validate --dir examples`` with no ``--config``: offline, no Git."""
    capsys.readouterr()
    code = main(["validate", "--dir", str(EXAMPLES), "--color", "never"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_validate_reads_the_whole_configuration_from_the_toml_variable(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV_TOML, EXAMPLE_TOML)
    code, out, err = validate(capsys)
    assert code == 0, err
    assert "ok  app web:" in out
    assert "ok  app worker:" in out
    # A relative state_dir is taken from the working directory (the image's WORKDIR).
    cfg = config_source.load(resolve(None))
    assert cfg.daemon.state_dir == clean_env.resolve() / ".gitopsd-state"


def test_a_toml_error_in_the_variable_names_the_variable_and_the_line(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV_TOML, '[aws]\nregion = "us-east-1"\nendpoint_url = \n')
    code, _, err = validate(capsys)
    assert code == 2
    assert re.search(r"^gitopsd: \$GITOPSD_CONFIG_TOML:3:\d+: not valid TOML: ", err, re.M), err


def test_a_bad_key_in_the_variable_names_the_variable_and_the_key(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV_TOML, EXAMPLE_TOML.replace('cluster = "demo"', 'clustr = "demo"', 1))
    code, _, err = validate(capsys)
    assert code == 2
    assert "gitopsd: $GITOPSD_CONFIG_TOML: invalid configuration" in err
    assert "apps[0].clustr: unknown key; did you mean 'cluster'?" in err


# ------------------------------------------------------------------ SSM parameter


@pytest.fixture(scope="module")
def local_aws_server() -> Iterator[LocalAws]:
    """The local AWS endpoint (moto answers SSM as well as ECS), for this module."""
    with LocalAws() as server:
        yield server


@pytest.fixture
def aws(local_aws_server: LocalAws, clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> LocalAws:
    """The endpoint, reset, and gitopsd's SSM client pointed at it by AWS's own variable."""
    local_aws_server.reset()
    local_aws_server.clear_faults()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", local_aws_server.endpoint_url)
    return local_aws_server


def put_parameter(aws: LocalAws, value: str, name: str = PARAMETER) -> None:
    aws.boto3_client("ssm").put_parameter(
        Name=name, Value=value, Type="SecureString", Overwrite=True
    )


def test_validate_reads_the_configuration_from_an_ssm_parameter(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    put_parameter(aws, EXAMPLE_TOML)
    monkeypatch.setenv(ENV_SSM, PARAMETER)
    aws.clear_calls()
    code, out, err = validate(capsys)
    assert code == 0, err
    assert "ok  app web:" in out
    assert aws.calls().count("GetParameter") == 1


def test_an_ssm_parameter_arn_is_read_in_its_own_region(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_parameter(aws, "[daemon]\ninterval = 7\n")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")  # the ARN's region wins
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    arn = f"arn:aws:ssm:us-east-1:123456789012:parameter{PARAMETER}"
    assert anyio.run(fetch_ssm_parameter, arn) == "[daemon]\ninterval = 7\n"


def test_a_toml_error_in_the_parameter_names_the_parameter_and_the_line(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    put_parameter(aws, "[daemon]\ninterval = = 5\n")
    monkeypatch.setenv(ENV_SSM, PARAMETER)
    code, _, err = validate(capsys)
    assert code == 2
    assert re.search(r"^gitopsd: ssm:/gitopsd/config:2:\d+: not valid TOML: ", err, re.M), err


def test_a_missing_parameter_says_how_to_create_it(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV_SSM, "/gitopsd/nothing")
    code, _, err = validate(capsys)
    assert code == 2
    assert "ssm:/gitopsd/nothing ($GITOPSD_CONFIG_SSM): no such parameter" in err
    assert "aws ssm put-parameter --name /gitopsd/nothing --type SecureString" in err


def test_no_region_is_a_configuration_error_saying_what_to_set(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match=r"no AWS region .*: set AWS_REGION"):
        anyio.run(fetch_ssm_parameter, PARAMETER)


def test_ssm_throttling_that_outlasts_the_retries_is_temporary(aws: LocalAws) -> None:
    put_parameter(aws, "[daemon]\n")
    aws.inject_fault("GetParameter", "ThrottlingException", count=5)
    with pytest.raises(TemporaryError, match=r"SSM answered ThrottlingException .*try again"):
        anyio.run(fetch_ssm_parameter, PARAMETER)
    assert aws.calls().count("GetParameter") == 5  # botocore's standard retries, then us


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(check: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def healthy(port: int) -> bool:
    ok, _ = probe(f"http://127.0.0.1:{port}/healthz", timeout=2.0)
    return ok


def test_the_agent_reads_the_parameter_again_on_sighup_and_keeps_its_config_if_bad(
    aws: LocalAws, clean_env: Path
) -> None:
    first, second = free_port(), free_port()
    agent_config = '[daemon]\nstate_dir = "state"\ninterval = "1h"\n[http]\naddress = "{}"\n'
    put_parameter(aws, agent_config.format(f"127.0.0.1:{first}"))
    log = clean_env / "agent.log"
    env = {**os.environ, ENV_SSM: PARAMETER, "PYTHONUNBUFFERED": "1"}
    aws.clear_calls()
    with log.open("w") as sink:
        agent = subprocess.Popen(
            [sys.executable, "-m", "gitopsd", "run", "--log-format", "json", "--log-level", "info"],
            env=env,
            cwd=clean_env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: healthy(first), "the agent on the first address")

        put_parameter(aws, agent_config.format(f"127.0.0.1:{second}"))
        agent.send_signal(signal.SIGHUP)
        wait_until(lambda: healthy(second), "the agent on the address of the new parameter")
        assert not healthy(first)

        put_parameter(aws, "[http]\naddress = \n")
        agent.send_signal(signal.SIGHUP)
        wait_until(lambda: "agent.reload_refused" in log.read_text(), "the refused reload")
        assert healthy(second)
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=30) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    text = log.read_text()
    assert re.search(r"ssm:/gitopsd/config:2:\d+: not valid TOML", text), text
    assert '"config": "ssm:/gitopsd/config"' in text  # agent.reloading names the source
    # Start-up: once for `gitopsd run`'s check, the loaded config is reused; then each SIGHUP.
    assert aws.calls().count("GetParameter") == 3
