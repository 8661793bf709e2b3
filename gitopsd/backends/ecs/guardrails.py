"""Guard-rails: what an app may deploy, and where, checked before anything is written.

Whoever can push to the branch can deploy; the guard-rails bound what such a
push can do. ``[policy]`` in the configuration holds for every app and
``apps[].policy`` narrows it (a value must pass both, so an app's policy can
never widen the global one):

- the cluster (name or ARN) and region an app deploys to, and the AWS account
  its credentials belong to (``sts:GetCallerIdentity``, see
  :mod:`gitopsd.backends.ecs.accounts`);
- the task and execution roles a task definition names (shell patterns on the
  ARN, :func:`fnmatch.fnmatchcase`);
- privileged settings: ``privileged: true``, ``networkMode: host``,
  ``pidMode: host`` and added Linux capabilities, refused unless allowed;
- plaintext ``environment`` values whose names look secret (``allow``,
  ``warn`` or ``refuse``; the fix is ``secrets`` with ``valueFrom``).

The rules are pure functions of an app's configuration and a task
definition's spec. They run three times: in ``gitopsd validate`` and every
render (:func:`check_documents`, with the line of each field), in the apply
pre-flight on the very requests about to be sent (:func:`check_specs`), and
for the account once the app's credentials are known (:func:`account_problem`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from gitopsd.config import PLAINTEXT_SECRET_MODES, AppConfig
from gitopsd.errors import Problem
from gitopsd.manifests.loader import LocatedDoc
from gitopsd.manifests.secrets import name_matches
from gitopsd.model import Origin
from gitopsd.pointer import child_pointer, display_path

log = structlog.get_logger(__name__)

#: Where messages say config-level problems are (the config file's path is not known here).
CONFIG_FILE = "gitopsd configuration"


@dataclass(frozen=True)
class Allow:
    """One allow-list: the config key that sets it and its patterns."""

    key: str
    patterns: tuple[str, ...]

    def allows(self, *values: str, fold: bool = False) -> bool:
        """Whether one of ``values`` (spellings of the same thing) matches a pattern."""
        for value in values:
            for pattern in self.patterns:
                if fold and fnmatch.fnmatchcase(value.casefold(), pattern.casefold()):
                    return True
                if not fold and fnmatch.fnmatchcase(value, pattern):
                    return True
        return False

    def refusal(self, value: str) -> str:
        allowed = ", ".join(self.patterns) or "nothing"
        return f"{value} is not allowed by {self.key} (allowed: {allowed})"


@dataclass(frozen=True)
class Flag:
    """A privileged setting: allowed or not, and the key that decides."""

    allowed: bool
    key: str


@dataclass(frozen=True)
class Guardrails:
    """An app's effective guard-rails: ``[policy]`` narrowed by ``apps[].policy``."""

    clusters: tuple[Allow, ...] = ()
    regions: tuple[Allow, ...] = ()
    accounts: tuple[Allow, ...] = ()
    task_roles: tuple[Allow, ...] = ()
    execution_roles: tuple[Allow, ...] = ()
    capabilities: tuple[Allow, ...] = ()
    privileged: Flag = Flag(False, "[policy].privileged")
    host_network: Flag = Flag(False, "[policy].host_network")
    host_pid: Flag = Flag(False, "[policy].host_pid")
    plaintext_secrets: str = "warn"
    plaintext_key: str = "[policy].plaintext_secrets"
    secret_env_names: tuple[str, ...] = ()
    check_secret_refs: bool = True


#: A :class:`PolicyConfig` as a mapping (its keys are looked up by name).
_Settings = Mapping[str, Any]


def _allows(
    key: str, glob: _Settings, own: _Settings, prefix: str, *, default: Sequence[str] | None
) -> tuple[Allow, ...]:
    out = []
    first = glob[key]
    if first is not None or default is not None:
        out.append(Allow(f"[policy].{key}", tuple(first if first is not None else default or ())))
    second = own[key]
    if second is not None:
        out.append(Allow(f"{prefix}.{key}", tuple(second)))
    return tuple(out)


def _flag(key: str, glob: _Settings, own: _Settings, prefix: str) -> Flag:
    if not glob[key]:
        return Flag(False, f"[policy].{key}")
    if own[key] is False:
        return Flag(False, f"{prefix}.{key}")
    return Flag(True, f"[policy].{key}")


def guardrails(app: AppConfig) -> Guardrails:
    """The app's effective guard-rails (see the module's docstring for the merge)."""
    ctx = app.policy_context
    glob, own = ctx.policy, app.policy
    prefix = f"apps[{ctx.index}].policy" if ctx.index is not None else f"app {app.name!r} policy"
    modes = [(glob.plaintext_secrets or "warn", "[policy].plaintext_secrets")]
    if own.plaintext_secrets is not None:
        modes.append((own.plaintext_secrets, f"{prefix}.plaintext_secrets"))
    mode, mode_key = max(modes, key=lambda m: PLAINTEXT_SECRET_MODES.index(m[0]))
    names = list(glob.secret_env_names or ctx.secret_env_names)
    names += [n for n in own.secret_env_names or () if n not in names]
    check_refs = (glob.check_secret_refs is not False) or bool(own.check_secret_refs)
    g, o = glob.model_dump(), own.model_dump()
    return Guardrails(
        clusters=_allows("clusters", g, o, prefix, default=None),
        regions=_allows("regions", g, o, prefix, default=None),
        accounts=_allows("accounts", g, o, prefix, default=None),
        task_roles=_allows("task_roles", g, o, prefix, default=None),
        execution_roles=_allows("execution_roles", g, o, prefix, default=None),
        capabilities=_allows("capabilities", g, o, prefix, default=()),
        privileged=_flag("privileged", g, o, prefix),
        host_network=_flag("host_network", g, o, prefix),
        host_pid=_flag("host_pid", g, o, prefix),
        plaintext_secrets=mode,
        plaintext_key=mode_key,
        secret_env_names=tuple(names),
        check_secret_refs=check_refs,
    )


# --- the target: cluster, region, account ------------------------------------------------------


def app_region(app: AppConfig) -> str | None:
    """The region the app deploys to as the configuration says: its cluster ARN's, its
    ``region``, or ``[aws].region`` (None: the environment decides)."""
    parts = app.cluster.split(":")
    if app.cluster.startswith("arn:") and len(parts) > 3 and parts[3]:
        return parts[3]
    return app.region or app.policy_context.region


def target_problems(app: AppConfig, region: str | None = None) -> list[tuple[str, str]]:
    """``(config key, message)`` for a cluster or region outside the guard-rails.

    ``region`` is the region the app's client resolved, when known; else the
    configuration's (:func:`app_region`); an unknown region is checked later.
    """
    rails = guardrails(app)
    index = app.policy_context.index
    where = f"apps[{index}]" if index is not None else f"app {app.name!r}"
    out = []
    name = app.cluster.rsplit("/", 1)[-1] if app.cluster.startswith("arn:") else app.cluster
    for rule in rails.clusters:
        if not rule.allows(app.cluster, name):
            out.append((f"{where}.cluster", f"cluster {rule.refusal(app.cluster)}"))
    region = region or app_region(app)
    if region is not None:
        key = f"{where}.region" if app.region else "[aws].region"
        for rule in rails.regions:
            if not rule.allows(region):
                out.append((key, f"region {rule.refusal(region)}"))
    return out


def account_problem(app: AppConfig, account: str) -> str | None:
    """Why the app may not deploy with credentials of ``account``, or None."""
    for rule in guardrails(app).accounts:
        if not rule.allows(account):
            via = f" (the role {app.aws.role_arn})" if app.aws else " (gitopsd's own credentials)"
            return (
                f"app {app.name!r}: account {rule.refusal(account)}{via}; nothing was "
                "written: deploy with credentials of an allowed account (apps[].aws.role_arn) "
                "or allow the account"
            )
    return None


# --- a task definition -------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    """One value outside the guard-rails: where (a JSON pointer), why, and whether it only
    warns (``plaintext_secrets = "warn"``)."""

    pointer: str
    message: str
    warning: bool = False


def _items(value: Any) -> list[tuple[int, Mapping[str, Any]]]:
    if not isinstance(value, list):
        return []
    return [(i, v) for i, v in enumerate(value) if isinstance(v, Mapping)]


def _flag_refusal(flag: Flag, what: str) -> str:
    return (
        f"{what} is not allowed by {flag.key} (set {flag.key} = true to allow it, "
        "or remove it from the manifest)"
    )


def spec_violations(kind: str, spec: Mapping[str, Any], rails: Guardrails) -> list[Violation]:
    """Everything in one resource's spec outside ``rails`` (services hold nothing checked)."""
    if kind != "TaskDefinition":
        return []
    out: list[Violation] = []
    for field, rules in (
        ("taskRoleArn", rails.task_roles),
        ("executionRoleArn", rails.execution_roles),
    ):
        value = spec.get(field)
        if isinstance(value, str) and value:
            out += [Violation(f"/{field}", r.refusal(value)) for r in rules if not r.allows(value)]
    if spec.get("networkMode") == "host" and not rails.host_network.allowed:
        out.append(Violation("/networkMode", _flag_refusal(rails.host_network, "networkMode host")))
    if spec.get("pidMode") == "host" and not rails.host_pid.allowed:
        out.append(Violation("/pidMode", _flag_refusal(rails.host_pid, "pidMode host")))
    for i, container in _items(spec.get("containerDefinitions")):
        out += _container_violations(child_pointer("/containerDefinitions", i), container, rails)
    return out


def _container_violations(
    pointer: str, container: Mapping[str, Any], rails: Guardrails
) -> list[Violation]:
    out: list[Violation] = []
    if container.get("privileged") is True and not rails.privileged.allowed:
        out.append(
            Violation(
                child_pointer(pointer, "privileged"),
                _flag_refusal(rails.privileged, "a privileged container"),
            )
        )
    linux = container.get("linuxParameters")
    capabilities = linux.get("capabilities") if isinstance(linux, Mapping) else None
    added = capabilities.get("add") if isinstance(capabilities, Mapping) else None
    for j, capability in enumerate(added if isinstance(added, list) else []):
        if not isinstance(capability, str):
            continue
        bare = capability.upper().removeprefix("CAP_")
        at = child_pointer(
            child_pointer(child_pointer(pointer, "linuxParameters"), "capabilities"), "add"
        )
        for rule in rails.capabilities:
            if not rule.allows(bare, capability, fold=True):
                out.append(
                    Violation(child_pointer(at, j), f"capability {rule.refusal(capability)}")
                )
    if rails.plaintext_secrets != "allow":
        for j, entry in _items(container.get("environment")):
            name = entry.get("name")
            if isinstance(name, str) and name_matches(name, rails.secret_env_names):
                at = child_pointer(child_pointer(pointer, "environment"), j)
                out.append(
                    Violation(
                        child_pointer(at, "name"),
                        f"{name} looks secret ({rails.plaintext_key} = "
                        f'"{rails.plaintext_secrets}", names like '
                        f"{', '.join(rails.secret_env_names)}) but its value is plaintext in "
                        "the manifest: move it to the container's secrets with valueFrom "
                        "(an SSM parameter or a Secrets Manager secret ARN)",
                        warning=rails.plaintext_secrets == "warn",
                    )
                )
    return out


# --- where the checks run -----------------------------------------------------------------------

#: (app, file, pointer) warned about already: a warning is logged once per process.
_warned: set[tuple[str, str, str]] = set()


def _warn(app: AppConfig, where: Origin, pointer: str, message: str) -> None:
    key = (app.name, where.file, pointer)
    if key not in _warned:
        _warned.add(key)
        log.warning(
            "guardrails.plaintext_secret",
            app=app.name,
            at=f"{where.file}:{where.line}",
            field=display_path(pointer),
            problem=message,
        )


def check_documents(docs: Sequence[LocatedDoc], app: AppConfig) -> list[Problem]:
    """The guard-rail problems of an app's rendered documents, each at its field's line
    (the ECS schema's ``validate_app``: ``gitopsd validate`` and every render run it)."""
    rails = guardrails(app)
    problems = [Problem(CONFIG_FILE, None, key, msg) for key, msg in target_problems(app)]
    for doc in docs:
        for v in spec_violations(doc.kind or "", doc.spec, rails):
            if v.warning:
                _warn(app, doc.where(v.pointer), v.pointer, v.message)
            else:
                problems.append(doc.problem(v.pointer, v.message))
    return problems


def check_specs(
    app: AppConfig, specs: Iterable[tuple[str, Mapping[str, Any], Origin | None]]
) -> list[str]:
    """Guard-rail problems of the requests about to be sent, ``file:line: field: why`` (the
    line is the document's; the apply pre-flight refuses on any)."""
    rails = guardrails(app)
    out = []
    for kind, spec, origin in specs:
        where = f"{origin.file}:{origin.line}" if origin else kind
        for v in spec_violations(kind, spec, rails):
            if not v.warning:
                out.append(f"{where}: {display_path(v.pointer)}: {v.message}")
    return out
