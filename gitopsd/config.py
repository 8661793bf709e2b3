"""Typed configuration loaded from one TOML file.

Validation happens at load time, so a bad key is reported before any Git or
AWS call; every message names the key path (``apps[2].cluster: required``)
and what to do about it. Pydantic does the type checking; this module only
shapes its errors and adds the cross-references (an app's ``source`` must name
a declared source, names must be unique).
"""

from __future__ import annotations

import datetime
import difflib
import json
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeGuard

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from gitopsd.errors import ConfigError

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails


def describe_value(value: object) -> str:
    """A value as TOML spells it, with its type: ``"six" (a string)``, ``6 (an integer)``."""
    if isinstance(value, bool):
        return f"{'true' if value else 'false'} (a boolean)"
    if isinstance(value, int):
        return f"{value} (an integer)"
    if isinstance(value, float):
        return f"{value!r} (a number)"
    if isinstance(value, str):
        shown = json.dumps(value if len(value) <= 60 else value[:57] + "...", ensure_ascii=False)
        return f"{shown} (a string)"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return f"{value.isoformat()} (a date/time)"
    return type(value).__name__


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


_DURATION_EXAMPLES = 'a duration such as 30 (seconds), "30s", "5m", "1h" or "250ms"'


def parse_duration(value: object) -> float:
    """Seconds from ``30``, ``"30s"``, ``"5m"``, ``"1h"`` or ``"250ms"``."""
    if isinstance(value, bool):
        raise ValueError(f"expected {_DURATION_EXAMPLES}, got {describe_value(value)}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError(f"expected {_DURATION_EXAMPLES}, got {describe_value(value)}")
    if seconds <= 0:
        raise ValueError(f"must be greater than zero, got {describe_value(value)}")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]

#: The default cap on the size of one manifest file: 1 MiB.
DEFAULT_MAX_FILE_SIZE = 1024 * 1024

#: ``[manifests].secret_env_names`` by default: container environment variable names
#: (shell patterns, case-insensitive) whose values are secret.
DEFAULT_SECRET_ENV_NAMES: tuple[str, ...] = (
    "*PASSWORD*",
    "*SECRET*",
    "*TOKEN*",
    "*_KEY",
    "*APIKEY*",
    "*CREDENTIAL*",
)

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?\s*$", re.IGNORECASE)
#: Binary units are powers of 1024 (KiB, MiB, GiB), decimal ones powers of 1000 (kB, MB, GB).
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_SIZE_EXAMPLES = 'a size such as 1048576 (bytes), "512KiB", "1MiB" or "2MB"'


def parse_size(value: object) -> int:
    """Bytes from ``1048576``, ``"512KiB"``, ``"1MiB"``, ``"2MB"`` or ``"100B"``.

    KiB, MiB and GiB are powers of 1024; kB (or KB), MB and GB powers of 1000.
    Units are case-insensitive; a number without a unit is bytes.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected {_SIZE_EXAMPLES}, got {describe_value(value)}")
    if isinstance(value, int):
        size = value
    elif m := _SIZE.match(value):
        size = int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()])
    else:
        raise ValueError(
            f"expected {_SIZE_EXAMPLES}, got {describe_value(value)} "
            "(1 KiB = 1024 bytes, 1 kB = 1000 bytes; likewise MiB, GiB and MB, GB)"
        )
    if size <= 0:
        raise ValueError(f"must be greater than zero, got {describe_value(value)}")
    return size


def format_size(size: int) -> str:
    """``size`` bytes for messages: ``"100 bytes"``, ``"1 MiB"``, ``"27.3 MiB"``."""
    for unit, name in ((1024**3, "GiB"), (1024**2, "MiB"), (1024, "KiB")):
        if size >= unit:
            amount = f"{size // unit}" if size % unit == 0 else f"{size / unit:.1f}"
            return f"{amount} {name}"
    return f"{size} byte" if size == 1 else f"{size} bytes"


Size = Annotated[int, BeforeValidator(parse_size)]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
COMMIT_PATTERN = r"^[0-9a-f]{7,40}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class _Strict(BaseModel):
    # Each field's docstring is its description: config/reference.toml and docs/config.md
    # are generated from them (gitopsd.config_reference).
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # No name, path or URL holds a NUL; the OS would refuse it later, far from the key.
        if _has_nul(value):
            raise ValueError("must not contain a NUL character (\\0)")
        return value


def _has_nul(value: object) -> bool:
    if isinstance(value, str | Path):
        return "\0" in str(value)
    if isinstance(value, Mapping):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return any(_has_nul(v) for v in value)
    return False


class AuthConfig(_Strict):
    """Credentials for a Git remote. Secrets come from env vars or files, never inline."""

    token_env: str | None = None
    """Environment variable holding an HTTPS token (the password of user ``x-access-token``
    unless ``username`` is set)."""
    token_file: Path | None = None
    """File holding the HTTPS token; instead of ``token_env``."""
    username: str | None = None
    """HTTPS user name."""
    password_env: str | None = None
    """Environment variable holding the HTTPS password (needs ``username``)."""
    password_file: Path | None = None
    """File holding the HTTPS password; instead of ``password_env``."""
    ssh_key_file: Path | None = None
    """Private key for ``ssh://`` remotes."""
    known_hosts_file: Path | None = None
    """Known-hosts file for ``ssh://`` remotes; host keys are checked strictly."""

    @model_validator(mode="after")
    def _one_secret(self) -> AuthConfig:
        if self.token_env and self.token_file:
            raise ValueError("set token_env or token_file, not both")
        if self.password_env and self.password_file:
            raise ValueError("set password_env or password_file, not both")
        if (self.password_env or self.password_file) and not self.username:
            raise ValueError("a password needs a username")
        return self


class VerifyConfig(_Strict):
    """Signature verification of a source's commits: an unverified commit is never applied."""

    mode: Literal["gpg", "ssh"]
    """``gpg``: OpenPGP signatures checked against ``keys``/``keys_env``; ``ssh``: SSH
    signatures checked against ``allowed_signers`` (as git's ``gpg.ssh.allowedSignersFile``)."""
    keys: list[Path] | None = None
    """gpg: files holding the trusted signers' public keys (armored or binary); only these
    keys are trusted, never the user's keyring."""
    keys_env: list[str] = []
    """gpg: environment variables holding trusted armored public keys; with ``keys``."""
    allowed_signers: Path | None = None
    """ssh: an ``allowed_signers`` file (``principal [options] key-type key`` a line, as
    ``ssh-keygen -Y verify`` reads it; ``valid-before``/``valid-after`` are honoured)."""
    revoked_keys: Path | None = None
    """ssh: revoked keys (a KRL or public keys a line, as ``ssh-keygen -r``)."""
    tags: bool = False
    """Require the source's ``tag`` to be a signed annotated tag (its signature is checked
    instead of the commit's); needs ``tag`` on the source."""

    @model_validator(mode="after")
    def _trusted(self) -> VerifyConfig:
        if self.mode == "gpg":
            if not (self.keys or self.keys_env):
                raise ValueError("mode gpg needs the trusted public keys: set keys or keys_env")
            if self.allowed_signers or self.revoked_keys:
                raise ValueError("allowed_signers and revoked_keys are for mode ssh")
        else:
            if self.allowed_signers is None:
                raise ValueError("mode ssh needs allowed_signers (an allowed_signers file)")
            if self.keys or self.keys_env:
                raise ValueError("keys and keys_env are for mode gpg")
        return self


class SourceConfig(_Strict):
    """A Git repository gitopsd reads. Exactly one of branch, tag or commit (default: main)."""

    name: Name
    """Referred to by ``apps[].source``; letters, digits, ``-``, ``_`` or ``.``."""
    url: str
    """Local path, ``file://``, ``git://``, ``http(s)://``, ``ssh://`` or ``user@host:path``."""
    branch: str | None = None
    """Follow this branch (``main`` when no branch, tag or commit is set)."""
    tag: str | None = None
    """Or follow this tag (annotated tags are peeled)."""
    commit: Annotated[str, Field(pattern=COMMIT_PATTERN)] | None = None
    """Or pin this commit (7 to 40 hex digits); set at most one of branch, tag and commit."""
    auth: AuthConfig = AuthConfig()
    """Credentials for the remote, read from environment variables or files."""
    timeout: Duration = 60.0
    """Timeout of one fetch."""
    allow_history_rewrite: bool = True
    """Whether a new commit that does not descend from the last applied one may be applied
    (a force-push or branch reset). Either way it is reported."""
    interval: Duration | None = None
    """How often the agent polls the remote (default: ``[daemon].interval``); webhooks make
    it immediate."""
    verify: VerifyConfig | None = None
    """Verify signatures before anything is applied: ``{ mode = "gpg", keys = [...] }`` or
    ``{ mode = "ssh", allowed_signers = "..." }`` (docs/security.md, Signed commits)."""

    @model_validator(mode="after")
    def _one_ref(self) -> SourceConfig:
        set_refs = [k for k in ("branch", "tag", "commit") if getattr(self, k)]
        if len(set_refs) > 1:
            raise ValueError(f"set only one of branch, tag or commit (got {', '.join(set_refs)})")
        if self.verify is not None and self.verify.tags and not self.tag:
            raise ValueError("verify.tags = true needs tag: only a tag can be a signed tag")
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
    """Only resources of this kind (``TaskDefinition`` or ``Service``); unset: any."""
    name: str | None = None
    """Only the resource of this name (``*``: any); unset: any."""
    pointers: list[str]
    """JSON pointers into the normalised form that ``gitopsd diff`` shows; ``*`` matches a
    segment."""

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

    mode: Literal["auto", "manual"] = "auto"
    """``auto``: the agent applies new commits; ``manual``: it reports OutOfSync and applies
    only on ``gitopsd sync``."""
    wait: bool = True
    """After applying, watch the rollout until it is steady (``sync --no-wait`` overrides)."""
    timeout: Duration = 600.0
    """Give up waiting for a rollout (and roll back, see ``rollback``) after this long."""
    rollback: bool = True
    """When a rollout fails and ECS did not roll it back, return the service to the last task
    definition that reached COMPLETED."""
    drift: Literal["off", "warn", "heal"] = "warn"
    """Between commits, what the agent does when live state differs from the applied revision:
    ``off``, ``warn`` (report it) or ``heal`` (apply the revision again)."""
    self_heal: bool = False
    """Deprecated spelling of ``drift = "heal"``."""
    prune: bool = False
    """Delete the resources removed from Git."""
    prune_max_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    """A pass that would prune more than this share of the app's services waits for
    ``gitopsd sync APP --confirm-prune``."""

    @property
    def drift_mode(self) -> str:
        return "heal" if self.self_heal and self.drift == "warn" else self.drift


def check_metric_queries(queries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``queries`` against botocore's GetMetricData ``MetricDataQueries`` (API case):
    raise ``ValueError("[0].MetricStat: ...")`` naming the first bad one."""
    import botocore.session  # only configurations with gates pay for it
    from botocore.exceptions import ParamValidationError
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("cloudwatch")
    shape = model.operation_model("GetMetricData").input_shape.members["MetricDataQueries"]
    # ``period`` stands in for a MetricStat's Period the query leaves out.
    filled = [
        {**q, "MetricStat": {"Period": 60, **q["MetricStat"]}}
        if isinstance(q, dict) and isinstance(q.get("MetricStat"), dict)
        else q
        for q in queries
    ]
    report = ParamValidator().validate(filled, shape)
    if report.has_errors():
        problems = str(ParamValidationError(report=report.generate_report()))
        problems = problems.replace("Parameter validation failed:\n", "").replace("\n", "; ")
        raise ValueError(
            "not a GetMetricData MetricDataQueries list (API case: Id, MetricStat, "
            f"Expression, ReturnData...): {problems}"
        )
    for i, q in enumerate(queries):
        if ("MetricStat" in q) == ("Expression" in q):
            raise ValueError(f"[{i}]: give exactly one of MetricStat and Expression")
    ids = [str(q.get("Id")) for q in queries]
    if len(set(ids)) != len(ids):
        raise ValueError(f"query Ids must be unique, got {ids}")
    return queries


class CloudWatchGateConfig(_Strict):
    """The built-in ``cloudwatch`` gate: GetMetricData queries compared with a threshold."""

    queries: Annotated[list[dict[str, Any]], Field(min_length=1)]
    """GetMetricData ``MetricDataQueries`` in API case (``Id``, ``MetricStat``, ``Expression``,
    ``ReturnData``...); the newest value of each series returned is compared."""
    threshold: float
    """The value the newest data point is compared with."""
    comparison: Literal[
        "GreaterThanOrEqualToThreshold",
        "GreaterThanThreshold",
        "LessThanThreshold",
        "LessThanOrEqualToThreshold",
    ]
    """When a check fails, in CloudWatch's alarm words (``GreaterThanThreshold``: fails when
    the value is above ``threshold``)."""
    period: Annotated[int, Field(ge=1, le=86400)] = 60
    """Seconds per data point, for queries that give no ``Period`` of their own."""
    lookback: Duration = 300.0
    """How far back each check reads (GetMetricData's StartTime is now minus this)."""

    @field_validator("queries")
    @classmethod
    def _queries_shape(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        check_metric_queries(value)
        if not any(q.get("ReturnData", True) for q in value):
            raise ValueError("at least one query must return data (ReturnData)")
        return value


class GateConfig(_Strict):
    """One metric gate (Flagger's analysis): a check gitopsd runs while a deployment goes on."""

    name: Name
    """Unique within the app; names the gate in progress, verdicts and traces."""
    type: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")] = "cloudwatch"
    """``cloudwatch`` (built in: set ``cloudwatch``), or a type a plugin provides through
    ``gitopsd_gate`` (set ``options``)."""
    interval: Duration = 60.0
    """How often the check runs while the deployment goes on."""
    failure_limit: Annotated[int, Field(ge=0, le=1000)] = 1
    """Failed checks tolerated: the gate fails (and the deployment is rolled back) on the next
    one (Flagger's ``threshold: N`` is ``failure_limit = N - 1``)."""
    services: list[str] | None = None
    """The services whose deployments the gate watches (default: every service of the app)."""
    during: Annotated[list[Literal["progressing", "bake"]], Field(min_length=1)] = [
        "progressing",
        "bake",
    ]
    """When the gate runs: ``progressing`` (scaling up, shifting traffic, at hooks) and/or
    ``bake`` (ECS's BAKE_TIME and the waits between linear/canary steps)."""
    cloudwatch: CloudWatchGateConfig | None = None
    """The queries, threshold and comparison of a ``cloudwatch`` gate."""
    options: dict[str, Any] = {}
    """Options of a plugin gate type, handed to the plugin as they are."""

    @model_validator(mode="after")
    def _type_matches(self) -> GateConfig:
        if self.type == "cloudwatch" and self.cloudwatch is None:
            raise ValueError(
                "a cloudwatch gate needs a cloudwatch table (queries, threshold, comparison; "
                "see docs/gates.md)"
            )
        if self.type != "cloudwatch" and self.cloudwatch is not None:
            raise ValueError(
                f'cloudwatch: only for type = "cloudwatch" (this gate\'s type is {self.type!r}; '
                "a plugin gate takes options)"
            )
        return self


#: How strictly ``policy.plaintext_secrets`` treats a secret-looking plaintext value, loosest first.
PLAINTEXT_SECRET_MODES: tuple[str, ...] = ("allow", "warn", "refuse")
_ROLE_ARN_PATTERN = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]+$"


class PolicyConfig(_Strict):
    """Guard-rails: what apps may deploy (docs/security.md, Guard-rails and accounts).

    ``[policy]`` holds for every app; ``apps[].policy`` can only narrow it: a value must
    pass both. Patterns are shell globs (``fnmatch``: ``*``, ``?``, ``[...]``).
    """

    clusters: list[str] | None = None
    """Clusters apps may deploy to: patterns on the cluster name or ARN (``["staging-*"]``);
    unset: any."""
    regions: list[str] | None = None
    """Regions apps may deploy to (patterns, ``["eu-*"]``); unset: any."""
    accounts: list[str] | None = None
    """AWS account ids apps may deploy to, checked with ``sts:GetCallerIdentity`` under the
    app's credentials before the first write; unset: any."""
    task_roles: list[str] | None = None
    """Role ARNs (patterns, ``["arn:aws:iam::*:role/app-*"]``) a task definition's
    ``taskRoleArn`` may name; unset: any. No task role is always allowed."""
    execution_roles: list[str] | None = None
    """Role ARNs (patterns) a task definition's ``executionRoleArn`` may name; unset: any."""
    privileged: bool | None = None
    """Allow containers with ``privileged: true`` (default false: refused)."""
    host_network: bool | None = None
    """Allow ``networkMode: host`` (default false: refused)."""
    host_pid: bool | None = None
    """Allow ``pidMode: host`` (default false: refused)."""
    capabilities: list[str] | None = None
    """Linux capabilities containers may add (``linuxParameters.capabilities.add``), as
    patterns (``["NET_BIND_SERVICE"]``, ``["*"]``: any); default none."""
    plaintext_secrets: Literal["allow", "warn", "refuse"] | None = None
    """A container ``environment`` entry whose name looks secret (``secret_env_names``) with
    a plaintext value: ``allow``, ``warn`` (the default: logged) or ``refuse``; the fix is
    ``secrets`` with ``valueFrom``. The stricter of ``[policy]`` and the app's wins."""
    secret_env_names: list[Annotated[str, Field(min_length=1)]] | None = None
    """Name patterns (case-insensitive) ``plaintext_secrets`` looks for; default
    ``[manifests].secret_env_names``; an app's are added to the global ones."""
    check_secret_refs: bool | None = None
    """Before a task definition is registered, check that every ``secrets[].valueFrom`` it
    names exists (``ssm:DescribeParameters``, ``secretsmanager:DescribeSecret``; values are
    never read); default true. An app cannot turn off what ``[policy]`` turns on."""


class AppAwsConfig(_Strict):
    """The AWS identity an app deploys with: a role assumed from gitopsd's own credentials."""

    role_arn: Annotated[str, Field(pattern=_ROLE_ARN_PATTERN)]
    """The IAM role to assume (``arn:aws:iam::111122223333:role/gitopsd-deployer``);
    credentials are refreshed before they expire."""
    external_id: Annotated[str, Field(min_length=2, max_length=1224)] | None = None
    """The ``ExternalId`` the role's trust policy asks for."""
    session_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_+=,.@-]{2,64}$")] | None = None
    """The role session name CloudTrail shows (default ``gitopsd-APP``)."""
    duration: Annotated[int, Field(ge=900, le=43200)] = 3600
    """Seconds the assumed credentials last (900 to 43200; refreshed before they expire)."""


@dataclass(frozen=True)
class PolicyContext:
    """What an app's guard-rails are merged with: set by :class:`Config` on each app."""

    #: ``[policy]``.
    policy: PolicyConfig
    #: ``[aws].region``, the region of apps that set none.
    region: str | None = None
    #: ``[manifests].secret_env_names``.
    secret_env_names: tuple[str, ...] = DEFAULT_SECRET_ENV_NAMES
    #: The app's index in ``apps`` (for the config keys messages name).
    index: int | None = None


class AppConfig(_Strict):
    """One application: a directory of manifests deployed to one cluster."""

    name: Name
    """Unique; letters, digits, ``-``, ``_`` or ``.``."""
    source: str
    """The ``sources[].name`` the manifests are read from."""
    path: str = "."
    """Directory of the base manifests in the repository (read recursively)."""
    overlays: list[str] = []
    """Directories of patch documents applied in order (see docs/manifests.md)."""
    cluster: str
    """ECS cluster name or ARN."""
    region: str | None = None
    """Region of the cluster (default: ``[aws].region``)."""
    vars: dict[str, str] = {}
    """Values for ``${VAR}`` in manifests; an undefined variable is an error."""
    ignore: list[IgnoreRule] = []
    """Differences never reported or fixed: JSON pointers, per kind and resource name."""
    ignore_tag_keys: list[str] = []
    """Tag keys other tools own (cost allocation...): never a difference, never removed."""
    sync: SyncPolicy = SyncPolicy()
    """How the app is synced and verified."""
    interval: Duration | None = None
    """How often the agent reconciles the app, drift checks included (default
    ``[daemon].interval``)."""
    depends_on: list[str] = []
    """Apps that must be Ready at their current revision before this one is applied."""
    secret_vars: list[str] = []
    """Names in ``vars`` whose values are secret: masked in every output (see "Secrets"
    in docs/config.md)."""
    vars_from_env: dict[str, str] = {}
    """``{NAME = "ENV_VAR"}``: vars read from the environment at render time; always secret."""
    policy: PolicyConfig = PolicyConfig()
    """Guard-rails for this app, narrowing ``[policy]`` (an unset key inherits it)."""
    aws: AppAwsConfig | None = None
    """Deploy with an assumed role (another account): ``{ role_arn = "...", external_id =
    "..." }``; unset: gitopsd's own credentials."""
    gates: list[GateConfig] = []
    """Metric gates checked while a deployment goes on; a failing one rolls it back
    (see docs/gates.md)."""

    _context: PolicyContext | None = PrivateAttr(default=None)

    @property
    def policy_context(self) -> PolicyContext:
        """The global guard-rails this app's are merged with (set by :class:`Config`)."""
        return self._context or PolicyContext(PolicyConfig())

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        if value.startswith("/") or ".." in Path(value).parts:
            raise ValueError("must be a path inside the repository (relative, no '..')")
        return value.strip("/") or "."

    @field_validator("overlays")
    @classmethod
    def _overlays_inside(cls, value: list[str]) -> list[str]:
        for i, item in enumerate(value):
            if item.startswith("/") or ".." in Path(item).parts:
                raise ValueError(
                    f"{item!r} (overlays[{i}]) must be a path inside the repository "
                    "(relative, no '..')"
                )
        return value

    @field_validator("gates")
    @classmethod
    def _gate_names_unique(cls, value: list[GateConfig]) -> list[GateConfig]:
        names = [g.name for g in value]
        doubles = sorted({n for n in names if names.count(n) > 1})
        if doubles:
            raise ValueError(f"gate names must be unique within the app: {', '.join(doubles)}")
        return value


class AwsConfig(_Strict):
    """How gitopsd reaches AWS. Unset values fall back to the default credential chain."""

    region: str | None = None
    """Region of the apps that set none (default: from the environment or profile)."""
    profile: str | None = None
    """A named profile from ``~/.aws/config``; unset: the default credential chain."""
    endpoint_url: str | None = None
    """Send AWS calls here (``http://127.0.0.1:4566`` for ``gitopsd local-aws``);
    ``AWS_ENDPOINT_URL`` works too."""
    max_concurrency: Annotated[int, Field(ge=1, le=64)] = 8
    """AWS calls in flight at once (1 to 64)."""
    call_timeout: Duration = 30.0
    """Timeout of one AWS call."""
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 6
    """Attempts per call; throttling, 5xx and network errors are retried with exponential
    backoff and jitter (1 to 20)."""
    pacing: Literal["aws", "off"] = "aws"
    """Client-side pacing of ECS writes: ``aws`` spends one token bucket per operation class
    as AWS sizes them (RegisterTaskDefinition: a burst of 20, then 1 a second), shared by
    every app of the process, halving its rate when ECS throttles and recovering after;
    ``off``: writes as fast as ``max_concurrency`` allows (an endpoint that never throttles,
    e.g. ``gitopsd local-aws``; throttles are still retried)."""
    pacing_share: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    """The share of AWS's bucket sizes and rates gitopsd may spend, when other tools write to
    the same account and region at the same time (above 0, at most 1)."""


class DaemonConfig(_Strict):
    """The long-running process."""

    interval: Duration = 60.0
    """How often the agent polls each source and reconciles each app, drift checks included."""
    state_dir: Path = Path("/var/lib/gitopsd")
    """Git caches and per-app records; a relative path is relative to the config file."""
    rollout_poll_interval: Duration = 5.0
    """How often a rollout being verified is polled (DescribeServices, one call per 10
    services)."""
    lock_timeout: Duration = 30.0
    """How long a sync waits for another gitopsd process that holds the same app's lock."""
    jitter: Annotated[float, Field(ge=0.0, le=0.5)] = 0.1
    """Each interval is stretched by a random share of up to this much (0 to 0.5)."""
    max_parallel_apps: Annotated[int, Field(ge=1, le=256)] = 4
    """Apps planned or applied at once; rollout waits do not count."""
    backoff_min: Duration = 10.0
    """Retry delay after a temporary failure: doubles from ``backoff_min`` up to
    ``backoff_max``."""
    backoff_max: Duration = 600.0
    """The longest retry delay after repeated temporary failures."""
    grace_period: Duration = 30.0
    """On SIGTERM, how long in-flight applies may take to finish before they are cancelled."""


class WebhookConfig(_Strict):
    """A webhook receiver: a signed request makes the agent fetch its sources at once."""

    name: Name
    """The webhook's path is ``/hooks/NAME``."""
    kind: Literal["github", "gitlab", "hmac"]
    """``github`` (X-Hub-Signature-256), ``gitlab`` (X-Gitlab-Token) or ``hmac``
    (``X-Signature-256: sha256=<hex HMAC-SHA256 of the body>``)."""
    secret_env: str | None = None
    """Environment variable holding the shared secret; exactly one of ``secret_env`` and
    ``secret_file``."""
    secret_file: Path | None = None
    """File holding the shared secret; instead of ``secret_env``."""
    sources: list[str] = []
    """Sources fetched when the webhook fires (default: every source)."""

    @model_validator(mode="after")
    def _one_secret(self) -> WebhookConfig:
        if bool(self.secret_env) == bool(self.secret_file):
            raise ValueError("set exactly one of secret_env or secret_file")
        return self

    @property
    def path(self) -> str:
        return f"/hooks/{self.name}"


class HttpConfig(_Strict):
    """The agent's HTTP server: health, readiness, metrics, status and webhooks."""

    address: str = "127.0.0.1:8099"
    """``HOST:PORT`` serving /healthz, /readyz, /metrics, /api/v1/apps and the webhooks; an
    empty string turns the server off."""
    max_body: Size = 1024 * 1024
    """The largest webhook body accepted."""
    delivery_retention: Duration = 86400.0
    """How long webhook delivery ids are remembered: a delivery seen again within it is ignored."""
    webhooks: list[WebhookConfig] = []
    """Webhook receivers: a signed request to ``/hooks/NAME`` fetches sources at once."""
    control_token_env: str | None = None
    """Environment variable holding a bearer token that also allows the write actions
    (``POST /api/v1/control``) on the HTTP address; unset, they are only on the control
    socket."""
    control_token_file: Path | None = None
    """File holding the control token; instead of ``control_token_env``."""

    @model_validator(mode="after")
    def _one_token(self) -> HttpConfig:
        if self.control_token_env and self.control_token_file:
            raise ValueError("set control_token_env or control_token_file, not both")
        return self

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if value == "":
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{value!r} is not HOST:PORT (e.g. '127.0.0.1:8099')")
        return value


class ManifestsConfig(_Strict):
    """Limits on reading manifests."""

    max_file_size: Size = DEFAULT_MAX_FILE_SIZE
    """The largest manifest file read; a larger file is refused before parsing."""
    secret_env_names: list[Annotated[str, Field(min_length=1)]] = list(DEFAULT_SECRET_ENV_NAMES)
    """Shell patterns (case-insensitive) of container environment variable names whose
    values are secret: masked in every output."""


class TelemetryConfig(_Strict):
    """OpenTelemetry traces and metrics, and logs. The standard ``OTEL_*`` variables
    (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_SERVICE_NAME``, ``OTEL_TRACES_EXPORTER``,
    ``OTEL_TRACES_SAMPLER``...) override these, as in every OpenTelemetry SDK."""

    service_name: str = "gitopsd"
    """The service name on traces and metrics (``OTEL_SERVICE_NAME`` wins)."""
    traces_exporter: list[Literal["otlp", "console"]] | None = None
    """Where traces go: ``otlp`` (OTLP over HTTP, protobuf), ``console`` (stderr, for
    debugging), none when empty. Default: ``otlp`` when an endpoint is set."""
    metrics_exporter: list[Literal["otlp", "console"]] | None = None
    """Where metrics go besides the agent's ``/metrics`` (Prometheus text, always on)."""
    endpoint: str | None = None
    """The OTLP/HTTP base URL, e.g. ``http://collector:4318`` (``/v1/traces`` and
    ``/v1/metrics`` are appended)."""
    headers_env: str | None = None
    """Environment variable holding OTLP headers (``key=value,key2=value2``), e.g. an API
    key; the values are secret."""
    metric_export_interval: Duration = 60.0
    """How often metrics are pushed over OTLP."""
    sample_ratio: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    """The share of passes traced (1.0: all); ``OTEL_TRACES_SAMPLER`` overrides."""

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL (e.g. 'http://127.0.0.1:4318')")
        return value


class StateConfig(_Strict):
    """Where the agent keeps what must survive a restart (see docs/state.md)."""

    backend: Literal["dir", "dynamodb"] = "dir"
    """``dir``: files under ``[daemon].state_dir``; ``dynamodb``: an Amazon DynamoDB table
    (for Fargate, whose disk is lost when the task is replaced)."""
    table: str | None = None
    """The DynamoDB table (``backend = "dynamodb"``); gitopsd never creates it (docs/state.md)."""
    region: str | None = None
    """The table's region (default: ``[aws].region``); the endpoint is ``[aws].endpoint_url``."""

    @field_validator("table")
    @classmethod
    def _table_name(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[A-Za-z0-9_.-]{3,255}$", value):
            raise ValueError(
                f"{value!r} is not a DynamoDB table name (3 to 255 letters, digits, '_', '-', '.')"
            )
        return value

    @model_validator(mode="after")
    def _table_needed(self) -> StateConfig:
        if self.backend == "dynamodb" and not self.table:
            raise ValueError('backend = "dynamodb" needs table = "..." (see docs/state.md)')
        return self


class LogConfig(_Strict):
    """Logs (stderr): the command line's ``--log-level`` / ``--log-format`` win."""

    level: Literal["debug", "info", "warning", "error"] | None = None
    """The log level (default: warning); ``$GITOPSD_LOG_LEVEL`` and ``--log-level`` win."""
    format: Literal["auto", "console", "json"] | None = None
    """``auto`` (console on a terminal, JSON otherwise), ``console`` or ``json``."""


class Config(_Strict):
    """The whole configuration file."""

    aws: AwsConfig = AwsConfig()
    """How gitopsd reaches AWS."""
    daemon: DaemonConfig = DaemonConfig()
    """The long-running process."""
    manifests: ManifestsConfig = ManifestsConfig()
    """Limits on reading manifests."""
    http: HttpConfig = HttpConfig()
    """The agent's HTTP server."""
    telemetry: TelemetryConfig = TelemetryConfig()
    """OpenTelemetry traces and metrics."""
    log: LogConfig = LogConfig()
    """Logs."""
    state: StateConfig = StateConfig()
    """Where the agent keeps what must survive a restart."""
    policy: PolicyConfig = PolicyConfig()
    """Guard-rails for every app: clusters, regions, accounts, roles, privileged settings,
    secrets (docs/security.md)."""
    plugins: dict[str, dict[str, Any]] = {}
    """``[plugins.NAME]``: ``enabled`` (default true) and the plugin's own options, which the
    plugin validates (``gitopsd plugins`` lists what was found)."""
    sources: list[SourceConfig] = []
    """The Git repositories gitopsd reads."""
    apps: list[AppConfig] = []
    """The applications: each a directory of manifests deployed to one cluster."""

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
        problems += _dependency_problems(self.apps)
        problems += _secret_var_problems(self.apps)
        problems += _policy_problems(self.policy, self.apps)
        for i, a in enumerate(self.apps):
            names = tuple(self.manifests.secret_env_names)
            a._context = PolicyContext(self.policy, self.aws.region, names, i)
        for i, hook in enumerate(self.http.webhooks):
            for j, name in enumerate(hook.sources):
                if name not in seen:
                    problems.append(f"http.webhooks[{i}].sources[{j}]: no source named {name!r}")
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


def _dependency_problems(apps: list[AppConfig]) -> list[str]:
    """Unknown names and cycles in ``apps[].depends_on``, each naming the key."""
    names = {a.name: i for i, a in enumerate(apps)}
    problems = []
    for i, a in enumerate(apps):
        for j, dep in enumerate(a.depends_on):
            if dep not in names:
                known = ", ".join(n for n in names if n != a.name) or "none"
                problems.append(f"apps[{i}].depends_on[{j}]: no app named {dep!r} (apps: {known})")
            elif dep == a.name:
                problems.append(f"apps[{i}].depends_on[{j}]: an app cannot depend on itself")
    graph = {a.name: [d for d in a.depends_on if d in names and d != a.name] for a in apps}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in graph[node]:
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep] if dep in path else [node, dep]
            if state.get(dep) is None:
                found = visit(dep, [*path, dep])
                if found:
                    return found
        state[node] = 2
        return None

    for a in apps:
        if state.get(a.name) is None:
            cycle = visit(a.name, [a.name])
            if cycle:
                problems.append(
                    f"apps[{names[cycle[0]]}].depends_on: dependency cycle " + " -> ".join(cycle)
                )
                break
    return problems


def _policy_problems(policy: PolicyConfig, apps: list[AppConfig]) -> list[str]:
    """``apps[].policy`` allowing what ``[policy]`` forbids: it can only narrow."""
    problems = []
    for i, a in enumerate(apps):
        for key in ("privileged", "host_network", "host_pid"):
            if getattr(a.policy, key) and not getattr(policy, key):
                problems.append(
                    f"apps[{i}].policy.{key}: cannot allow what [policy].{key} forbids "
                    f"(an app's policy can only narrow [policy]); set [policy].{key} = true "
                    "or remove it here"
                )
    return problems


#: What ``${NAME}`` accepts as a variable name (see gitopsd.manifests.substitute).
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENV_NAME = re.compile(r"^[^=\0]+$")


def _secret_var_problems(apps: list[AppConfig]) -> list[str]:
    """``apps[].secret_vars`` naming no var, and bad or clashing ``apps[].vars_from_env``."""
    problems = []
    for i, a in enumerate(apps):
        for j, name in enumerate(a.secret_vars):
            if name not in a.vars and name not in a.vars_from_env:
                known = ", ".join(sorted(a.vars)) or "none"
                problems.append(
                    f"apps[{i}].secret_vars[{j}]: no var named {name!r} in apps[{i}].vars "
                    f"(vars: {known})"
                )
        for name, var in a.vars_from_env.items():
            key = f"apps[{i}].vars_from_env.{name}"
            if not _VAR_NAME.match(name):
                problems.append(
                    f"{key}: {name!r} cannot be used as ${{{name}}}: names are letters, "
                    "digits and '_', not starting with a digit"
                )
            if name in a.vars:
                problems.append(
                    f"{key}: {name!r} is also set in apps[{i}].vars; define it in one place"
                )
            if not _ENV_NAME.match(var):
                problems.append(f"{key}: {describe_value(var)} is not an environment variable name")
    return problems


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _is_internal(part):
            continue
        else:
            out += f".{part}" if out else part
    return out


#: What a value of the type a pydantic error type names is called in messages.
_EXPECTED = {
    "string_type": "a string",
    "string_unicode": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "a boolean (true or false)",
    "bool_parsing": "a boolean (true or false)",
    "list_type": "a list",
    "tuple_type": "a list",
    "set_type": "a list",
    "frozen_set_type": "a list",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "dataclass_type": "a table",
    "path_type": "a path (a string)",
}

#: How messages describe the patterns of ``Field(pattern=...)``.
_PATTERNS = {
    NAME_PATTERN: "must be letters, digits, '-', '_' or '.' "
    "(up to 63 characters, the first a letter or digit)",
    COMMIT_PATTERN: "must be a commit id: 7 to 40 lowercase hexadecimal digits",
    _ROLE_ARN_PATTERN: "must be an IAM role ARN (arn:aws:iam::111122223333:role/NAME)",
}

#: Bounds (``Field(ge=...)``): error type -> (ctx key, wording).
_BOUNDS = {
    "greater_than_equal": ("ge", "must be at least"),
    "greater_than": ("gt", "must be greater than"),
    "less_than_equal": ("le", "must be at most"),
    "less_than": ("lt", "must be less than"),
}


def _message(e: ErrorDetails) -> str:
    """Plain words for one pydantic error: what was expected and what was given."""
    kind, ctx, value = e["type"], e.get("ctx") or {}, e.get("input")
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return _unknown_key(tuple(e["loc"]))
    if kind in ("value_error", "assertion_error"):
        return e["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    got = describe_value(value)
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {got}"
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        wording = _PATTERNS.get(pattern, f"must match the pattern {pattern}")
        return f"{wording}, got {got}"
    if kind in _BOUNDS:
        key, wording = _BOUNDS[kind]
        return f"{wording} {ctx.get(key)}, got {got}"
    if kind in ("literal_error", "enum"):
        return f"must be one of {ctx.get('expected')}, got {got}"
    if kind in ("string_too_short", "too_short"):
        unit = "character" if kind == "string_too_short" else "item"
        return f"must have at least {ctx.get('min_length')} {unit}(s), got {got}"
    if kind in ("string_too_long", "too_long"):
        unit = "character" if kind == "string_too_long" else "item"
        return f"must have at most {ctx.get('max_length')} {unit}(s), got {got}"
    # Any other pydantic error: keep its meaning, not its "Input should be" wording.
    msg = e["msg"]
    if msg.startswith("Input should be "):
        return f"must be {msg.removeprefix('Input should be ')}, got {got}"
    if msg.startswith("Input "):
        return f"{msg.removeprefix('Input ')}; got {got}"
    return msg


def _is_model(tp: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _unwrap(tp: Any) -> Any:
    """``X`` from ``X | None`` and ``Annotated[X, ...]``."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(options) != 1:
                return tp
            tp = options[0]
        else:
            return tp


def _type_at(loc: tuple[int | str, ...]) -> Any:
    """The annotated type at ``loc`` below :class:`Config`, or None if the path leaves it."""
    tp: Any = Config
    for part in loc:
        tp = _unwrap(tp)
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if _is_model(tp) and isinstance(part, str) and part in tp.model_fields:
            tp = tp.model_fields[part].annotation
        elif origin in (list, tuple, set, frozenset) and isinstance(part, int) and args:
            tp = args[0]
        elif origin in (dict, Mapping) and isinstance(part, str) and len(args) == 2:
            tp = args[1]
        else:
            return None
    return _unwrap(tp)


def _unknown_key(loc: tuple[int | str, ...]) -> str:
    """``unknown key; did you mean 'cluster'?`` from the keys of the table at ``loc[:-1]``."""
    parts = tuple(p for p in loc if isinstance(p, int) or not _is_internal(p))
    model = _type_at(parts[:-1]) if parts else None
    key = parts[-1] if parts else None
    if not _is_model(model) or not isinstance(key, str):
        return "unknown key (check the spelling; see docs/config.md)"
    known = list(model.model_fields)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if not close:
        folded = {k.lower(): k for k in known}
        spelt = key.lower().replace("-", "_")
        close = [folded[spelt]] if spelt in folded else []
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    return f"unknown key (known keys: {', '.join(known)})"


def _is_internal(part: str) -> bool:
    """Parts of a pydantic error location that are not keys (validator and type tags)."""
    return part.startswith(("function-", "constrained-")) or part in ("int", "float", "str")


def _format(err: ValidationError, path: str) -> str:
    lines = []
    for e in err.errors():
        msg = _message(e)
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
