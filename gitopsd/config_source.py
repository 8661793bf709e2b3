"""Where the configuration comes from: a file, an environment variable or an SSM parameter.

On a host the configuration is a file (``--config``, ``$GITOPSD_CONFIG``, else
``./gitopsd.toml``). On Fargate there is no file to mount without EFS, but a
task definition can inject a secret into an environment variable (``secrets``
from Secrets Manager or SSM), and the task role can read an SSM parameter. So
besides a path, the configuration's TOML text can come from:

- ``$GITOPSD_CONFIG_TOML``: the whole TOML text in the variable;
- ``$GITOPSD_CONFIG_SSM``: an SSM parameter name or ARN, read with
  ``ssm:GetParameter`` (decrypted) at start-up and again on every SIGHUP.

``--config`` on the command line wins; then ``$GITOPSD_CONFIG_TOML`` or
``$GITOPSD_CONFIG_SSM`` (not both); then ``$GITOPSD_CONFIG``; then
``./gitopsd.toml``. Messages name where the text came from, with the line
when TOML names one (``$GITOPSD_CONFIG_TOML:3``, ``ssm:/gitopsd/config:3``).

``$GITOPSD_HTTP_ADDRESS`` is ``[http].address`` when the configuration does
not set it: the container image sets ``0.0.0.0:8099`` so that the health
check and webhooks reach the agent from outside the container.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
from pydantic import ValidationError

from gitopsd.config import Config, HttpConfig, load_config, parse_config
from gitopsd.errors import ConfigError, TemporaryError

ENV_PATH = "GITOPSD_CONFIG"
ENV_TOML = "GITOPSD_CONFIG_TOML"
ENV_SSM = "GITOPSD_CONFIG_SSM"
ENV_HTTP_ADDRESS = "GITOPSD_HTTP_ADDRESS"
DEFAULT_PATH = "gitopsd.toml"

#: Seconds to connect to SSM, and to wait for its answer (per attempt; botocore retries 5 times).
SSM_CONNECT_TIMEOUT = 10.0
SSM_READ_TIMEOUT = 20.0

_TOML_AT = re.compile(r"^(?P<msg>.*?)\s*\(at line (?P<line>\d+), column (?P<col>\d+)\)$")
_TOML_EOF = re.compile(r"^(?P<msg>.*?)\s*\(at end of document\)$")
_ARN_REGION = re.compile(r"^arn:[^:]+:ssm:(?P<region>[^:]+):")
_THROTTLED = {"ThrottlingException", "TooManyUpdates", "RequestLimitExceeded"}


@dataclass(frozen=True)
class ConfigSource:
    """Where the configuration is read from: ``kind`` and the path, variable or parameter."""

    kind: Literal["file", "env", "ssm"]
    #: The file's path, the environment variable's name, or the SSM parameter's name (or ARN).
    ref: str

    @property
    def label(self) -> str:
        """How messages name it: ``gitopsd.toml``, ``$GITOPSD_CONFIG_TOML``, ``ssm:/gitopsd/c``."""
        if self.kind == "env":
            return f"${self.ref}"
        if self.kind == "ssm":
            return f"ssm:{self.ref}"
        return self.ref

    def exists(self) -> bool:
        """False only for a file that is not there (commands that can do without one)."""
        return self.kind != "file" or Path(self.ref).exists()


def resolve(explicit: str | None, environ: Mapping[str, str] | None = None) -> ConfigSource:
    """The source for ``--config`` (``explicit``, None when not given) and the environment."""
    env = os.environ if environ is None else environ
    if explicit is not None:
        return ConfigSource("file", explicit)
    inline = [name for name in (ENV_TOML, ENV_SSM) if name in env]
    if len(inline) > 1:
        raise ConfigError(
            f"both ${ENV_TOML} and ${ENV_SSM} are set: the configuration comes from one "
            "place; unset one of them"
        )
    if inline == [ENV_TOML]:
        return ConfigSource("env", ENV_TOML)
    if inline == [ENV_SSM]:
        name = env[ENV_SSM].strip()
        if not name:
            raise ConfigError(
                f"${ENV_SSM} is empty: set it to an SSM parameter name (e.g. /gitopsd/config) "
                "or ARN, or unset it"
            )
        return ConfigSource("ssm", name)
    return ConfigSource("file", env.get(ENV_PATH) or DEFAULT_PATH)


def load(source: ConfigSource, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the configuration (outside an event loop: the CLI's commands)."""
    if source.kind == "ssm":
        return anyio.run(aload, source, environ)
    return _finish(_read_local(source, environ), environ)


async def aload(source: ConfigSource, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the configuration (in the event loop: the agent, on start and SIGHUP)."""
    if source.kind == "ssm":
        text = await fetch_ssm_parameter(source.ref)
        return _finish(parse_text(text, source.label), environ)
    return _finish(_read_local(source, environ), environ)


def _read_local(source: ConfigSource, environ: Mapping[str, str] | None) -> Config:
    if source.kind == "file":
        return load_config(source.ref)
    env = os.environ if environ is None else environ
    text = env.get(source.ref, "")
    if not text.strip():
        raise ConfigError(
            f"${source.ref} is empty: it must hold the whole TOML configuration (in an ECS "
            "task definition, a `secrets` entry whose valueFrom is the Secrets Manager secret "
            "or SSM parameter holding it); unset it to read a file instead"
        )
    return parse_text(text, source.label)


def parse_text(text: str, origin: str, base: Path | None = None) -> Config:
    """Validate TOML ``text`` read from ``origin`` (a label for messages).

    A relative ``[daemon].state_dir`` is taken from ``base`` (default: the working
    directory), as a file's is taken from the file's directory.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_toml_error(str(exc), origin)) from None
    cfg = parse_config(data, origin)
    if cfg.daemon.state_dir.is_absolute():
        return cfg
    state_dir = ((base or Path.cwd()) / cfg.daemon.state_dir).resolve()
    return cfg.model_copy(update={"daemon": cfg.daemon.model_copy(update={"state_dir": state_dir})})


def _toml_error(message: str, origin: str) -> str:
    """``ssm:/gitopsd/config:3:7: not valid TOML: ...`` from tomllib's ``... (at line 3, ...)``."""
    if m := _TOML_AT.match(message):
        return f"{origin}:{m['line']}:{m['col']}: not valid TOML: {m['msg']}"
    if m := _TOML_EOF.match(message):
        return f"{origin}: not valid TOML at the end of the text: {m['msg']}"
    return f"{origin}: not valid TOML: {message}"


def _finish(cfg: Config, environ: Mapping[str, str] | None) -> Config:
    """Apply ``$GITOPSD_HTTP_ADDRESS`` when the configuration leaves ``[http].address`` unset."""
    env = os.environ if environ is None else environ
    address = env.get(ENV_HTTP_ADDRESS)
    if address is None or "address" in cfg.http.model_fields_set:
        return cfg
    try:
        HttpConfig.model_validate({"address": address})
    except ValidationError:
        raise ConfigError(
            f"${ENV_HTTP_ADDRESS}: {address!r} is not HOST:PORT (e.g. '0.0.0.0:8099'; an empty "
            "value turns the HTTP server off); it is [http].address when the configuration "
            "does not set it"
        ) from None
    return cfg.model_copy(update={"http": cfg.http.model_copy(update={"address": address})})


async def fetch_ssm_parameter(name: str) -> str:
    """The decrypted value of SSM parameter ``name`` (a name or an ARN).

    The region, endpoint and credentials are AWS's defaults (``AWS_REGION``,
    ``AWS_ENDPOINT_URL_SSM``, the task role): the configuration that would name
    them is what is being read. An ARN's own region wins; ``AWS_REGION`` is read
    too (botocore alone reads only ``AWS_DEFAULT_REGION``).
    """
    from aiobotocore.config import AioConfig
    from aiobotocore.session import AioSession
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    where = f"ssm:{name} (${ENV_SSM})"
    kwargs: dict[str, Any] = {
        "config": AioConfig(
            connect_timeout=SSM_CONNECT_TIMEOUT,
            read_timeout=SSM_READ_TIMEOUT,
            retries={"mode": "standard", "total_max_attempts": 5},
        )
    }
    session = AioSession()
    # botocore reads AWS_DEFAULT_REGION only; ECS also sets AWS_REGION, which other SDKs read.
    arn = _ARN_REGION.match(name)
    region = (arn["region"] if arn else session.get_config_variable("region")) or os.environ.get(
        "AWS_REGION"
    )
    if region:
        kwargs["region_name"] = region
    try:
        async with session.create_client("ssm", **kwargs) as ssm:
            answer = await ssm.get_parameter(Name=name, WithDecryption=True)
    except NoRegionError:
        raise ConfigError(
            f"{where}: no AWS region to read the parameter from: set AWS_REGION or "
            "AWS_DEFAULT_REGION (ECS sets both in a task), or give the parameter's ARN"
        ) from None
    except NoCredentialsError:
        raise ConfigError(
            f"{where}: no AWS credentials: give the task a task role (or set AWS_PROFILE / "
            "AWS_ACCESS_KEY_ID) allowed ssm:GetParameter on the parameter"
        ) from None
    except ClientError as exc:
        raise _classify(exc, name, where) from None
    except BotoCoreError as exc:
        raise TemporaryError(f"{where}: cannot reach SSM: {exc}; it is tried again") from None
    value = answer["Parameter"]["Value"]
    if not isinstance(value, str):  # pragma: no cover - the API's shape
        raise ConfigError(f"{where}: the parameter has no text value")
    if not value.strip():
        raise ConfigError(f"{where}: the parameter is empty: put the TOML configuration in it")
    return value


def _classify(exc: Any, name: str, where: str) -> ConfigError | TemporaryError:
    """A permanent error naming what to do, or a temporary one (throttling, 5xx)."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    detail = str(error.get("Message") or code)
    if code == "ParameterNotFound":
        return ConfigError(
            f"{where}: no such parameter in this account and region: create it (aws ssm "
            f"put-parameter --name {name} --type SecureString --value file://gitopsd.toml) "
            f"or fix ${ENV_SSM}"
        )
    if code in ("AccessDeniedException", "AccessDenied") or status == 403:
        return ConfigError(
            f"{where}: access denied ({detail}): allow the task role ssm:GetParameter on the "
            "parameter, and kms:Decrypt on its key for a SecureString"
        )
    if code == "ValidationException":
        return ConfigError(f"{where}: not a valid parameter name ({detail}): fix ${ENV_SSM}")
    if code in _THROTTLED or status >= 500:
        return TemporaryError(f"{where}: SSM answered {code or status} ({detail}); try again")
    return ConfigError(f"{where}: SSM refused the request: {code}: {detail}")
