"""Typed configuration loaded from one TOML file.

Validation happens at load time, so a bad key is reported before any Git or
AWS call; every message names the key path (``apps[2].cluster: required``)
and what to do about it. Pydantic does the type checking; this module only
shapes its errors and adds the cross-references (an app's ``source`` must name
a declared source, names must be unique).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gitopsd.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> float:
    """Seconds from ``30``, ``"30s"``, ``"5m"``, ``"1h"`` or ``"250ms"``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30, '30s', '5m' or '1h'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration such as 30, '30s', '5m' or '1h'")
    if seconds <= 0:
        raise ValueError("must be greater than zero")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthConfig(_Strict):
    """Credentials for a Git remote. Secrets come from env vars or files, never inline."""

    token_env: str | None = None
    token_file: Path | None = None
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    ssh_key_file: Path | None = None
    known_hosts_file: Path | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> AuthConfig:
        if self.token_env and self.token_file:
            raise ValueError("set token_env or token_file, not both")
        if self.password_env and self.password_file:
            raise ValueError("set password_env or password_file, not both")
        if (self.password_env or self.password_file) and not self.username:
            raise ValueError("a password needs a username")
        return self


class SourceConfig(_Strict):
    """A Git repository gitopsd reads. Exactly one of branch, tag or commit (default: main)."""

    name: Name
    url: str
    branch: str | None = None
    tag: str | None = None
    commit: Annotated[str, Field(pattern=r"^[0-9a-f]{7,40}$")] | None = None
    auth: AuthConfig = AuthConfig()
    timeout: Duration = 60.0

    @model_validator(mode="after")
    def _one_ref(self) -> SourceConfig:
        set_refs = [k for k in ("branch", "tag", "commit") if getattr(self, k)]
        if len(set_refs) > 1:
            raise ValueError(f"set only one of branch, tag or commit (got {', '.join(set_refs)})")
        return self

    @property
    def ref(self) -> str:
        """The ref to resolve, fully qualified (or a commit id)."""
        if self.tag:
            return f"refs/tags/{self.tag}"
        if self.commit:
            return self.commit
        return f"refs/heads/{self.branch or 'main'}"


class IgnoreRule(_Strict):
    """JSON pointers (into the normalised form) whose differences never count."""

    kind: str | None = None
    name: str | None = None
    pointers: list[str]

    @field_validator("pointers")
    @classmethod
    def _pointers(cls, value: list[str]) -> list[str]:
        for p in value:
            if not p.startswith("/"):
                raise ValueError(f"{p!r} is not a JSON pointer; it must start with '/'")
        return value

    def matches(self, kind: str, name: str) -> bool:
        return (self.kind in (None, kind)) and (self.name in (None, "*", name))


class SyncPolicy(_Strict):
    """How an app is synced and verified."""

    wait: bool = True
    timeout: Duration = 600.0
    rollback: bool = True
    self_heal: bool = False
    prune: bool = False


class AppConfig(_Strict):
    """One application: a directory of manifests deployed to one cluster."""

    name: Name
    source: str
    path: str = "."
    overlays: list[str] = []
    cluster: str
    region: str | None = None
    vars: dict[str, str] = {}
    ignore: list[IgnoreRule] = []
    ignore_tag_keys: list[str] = []
    sync: SyncPolicy = SyncPolicy()

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        if value.startswith("/") or ".." in Path(value).parts:
            raise ValueError("must be a path inside the repository (relative, no '..')")
        return value.strip("/") or "."


class AwsConfig(_Strict):
    """How gitopsd reaches AWS. Unset values fall back to the default credential chain."""

    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    max_concurrency: Annotated[int, Field(ge=1, le=64)] = 8
    call_timeout: Duration = 30.0
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 6


class DaemonConfig(_Strict):
    """The long-running process."""

    interval: Duration = 60.0
    state_dir: Path = Path("/var/lib/gitopsd")
    #: How often a rollout being verified is polled (DescribeServices, one call per 10 services).
    rollout_poll_interval: Duration = 5.0


class Config(_Strict):
    """The whole configuration file."""

    aws: AwsConfig = AwsConfig()
    daemon: DaemonConfig = DaemonConfig()
    sources: list[SourceConfig] = []
    apps: list[AppConfig] = []

    @model_validator(mode="after")
    def _references(self) -> Config:
        problems: list[str] = []
        seen: set[str] = set()
        for i, s in enumerate(self.sources):
            if s.name in seen:
                problems.append(f"sources[{i}].name: duplicate source name {s.name!r}")
            seen.add(s.name)
        app_names: set[str] = set()
        for i, a in enumerate(self.apps):
            if a.name in app_names:
                problems.append(f"apps[{i}].name: duplicate app name {a.name!r}")
            app_names.add(a.name)
            if a.source not in seen:
                known = ", ".join(sorted(seen)) or "none declared"
                problems.append(
                    f"apps[{i}].source: no source named {a.source!r} (sources: {known})"
                )
        if problems:
            raise ValueError("\n  ".join(problems))
        return self

    def source(self, name: str) -> SourceConfig:
        return next(s for s in self.sources if s.name == name)

    def app(self, name: str) -> AppConfig:
        for a in self.apps:
            if a.name == name:
                return a
        known = ", ".join(a.name for a in self.apps) or "none"
        raise ConfigError(f"no app named {name!r} in the configuration (apps: {known})")


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "constrained-")) or part in ("int", "float", "str"):
            continue
        else:
            out += f".{part}" if out else part
    return out


_FRIENDLY = {
    "missing": "required",
    "extra_forbidden": "unknown key (check the spelling; see docs/config.md)",
}


def _format(err: ValidationError, path: str) -> str:
    lines = []
    for e in err.errors():
        msg = _FRIENDLY.get(e["type"], e["msg"].removeprefix("Value error, "))
        key = _loc(tuple(e["loc"]))
        lines.append(f"{key}: {msg}" if key else msg)
    return f"{path}: invalid configuration\n  " + "\n  ".join(dict.fromkeys(lines))


def parse_config(data: Mapping[str, Any], path: str = "<config>") -> Config:
    """Validate an already-parsed TOML document."""
    try:
        return Config.model_validate(dict(data))
    except ValidationError as err:
        raise ConfigError(_format(err, path)) from None


def load_config(path: Path | str) -> Config:
    """Read and validate the TOML file at ``path``."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read configuration: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    cfg = parse_config(data, str(p))
    if not cfg.daemon.state_dir.is_absolute():
        cfg = cfg.model_copy(
            update={
                "daemon": cfg.daemon.model_copy(
                    update={"state_dir": (p.parent / cfg.daemon.state_dir).resolve()}
                )
            }
        )
    return cfg
