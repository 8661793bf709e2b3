"""Check that the secrets a task definition references exist, before it is registered.

ECS accepts a task definition whose ``secrets[].valueFrom`` names an SSM
parameter or a Secrets Manager secret that does not exist; the failure comes
later, when every task of the rollout fails to start (``ResourceInitializationError``)
and the service is stuck or rolled back. gitopsd checks the references of
every task definition it is about to register, in the app's account (with the
app's credentials), before the first write, and refuses naming file, line and
field.

Values are never read: SSM parameters are looked up with ``DescribeParameters``
(a ``Name`` filter; ``GetParameter`` would return the value) and Secrets
Manager secrets with ``DescribeSecret`` (metadata only). A reference to another
account's parameter or secret cannot be checked from this one and is skipped.
Messages never quote the reference (it is masked like a secret: see
:mod:`gitopsd.backends.ecs.secrets`); they name its file, line and field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import structlog
from aiobotocore.session import AioSession
from botocore.exceptions import BotoCoreError, ClientError

from gitopsd.backends.ecs.accounts import aws_span, sts_kwargs
from gitopsd.backends.ecs.client import classify
from gitopsd.config import AwsConfig
from gitopsd.errors import BackendRejected, BackendUnavailable, PlanError
from gitopsd.model import Action, ChangeSet, Origin
from gitopsd.pointer import child_pointer, display_path

log = structlog.get_logger(__name__)

#: DescribeParameters takes at most 50 values in one filter.
SSM_NAMES_PER_CALL = 50


@dataclass(frozen=True)
class Reference:
    """One ``valueFrom`` of a task definition: where it is and what it names."""

    origin: Origin | None
    pointer: str
    value: str
    #: ``ssm`` or ``secretsmanager``.
    service: str
    region: str | None
    account: str | None
    #: SSM: the parameter names it can stand for; Secrets Manager: the secret id.
    names: tuple[str, ...]

    def where(self) -> str:
        at = f"{self.origin.file}:{self.origin.line}: " if self.origin else ""
        return f"{at}{display_path(self.pointer)}"


def parse_reference(value: str, origin: Origin | None, pointer: str) -> Reference:
    """What a ``valueFrom`` names: an SSM parameter (name or ARN) or a Secrets Manager
    secret (ARN, maybe with ``:json-key:version-stage:version-id``)."""
    parts = value.split(":")
    if value.startswith("arn:") and len(parts) >= 7 and parts[2] == "secretsmanager":
        secret_id = ":".join(parts[:7])
        return Reference(
            origin, pointer, value, "secretsmanager", parts[3] or None, parts[4] or None,
            (secret_id,),
        )  # fmt: skip
    if value.startswith("arn:") and len(parts) >= 6 and parts[2] == "ssm":
        rest = ":".join(parts[5:]).removeprefix("parameter")
        bare = rest.lstrip("/")
        names = (f"/{bare}",) if "/" in bare else (bare, f"/{bare}")
        return Reference(origin, pointer, value, "ssm", parts[3] or None, parts[4] or None, names)
    return Reference(origin, pointer, value, "ssm", None, None, (value,))


def references(spec: Mapping[str, Any], origin: Origin | None) -> list[Reference]:
    """The ``secrets[].valueFrom`` and ``logConfiguration.secretOptions[].valueFrom`` of a
    task definition's containers."""
    out = []
    containers = spec.get("containerDefinitions")
    for i, container in enumerate(containers if isinstance(containers, list) else []):
        if not isinstance(container, Mapping):
            continue
        at = child_pointer("/containerDefinitions", i)
        lists: list[tuple[str, Any]] = [(child_pointer(at, "secrets"), container.get("secrets"))]
        logging = container.get("logConfiguration")
        if isinstance(logging, Mapping):
            lists.append(
                (child_pointer(child_pointer(at, "logConfiguration"), "secretOptions"),
                 logging.get("secretOptions"))
            )  # fmt: skip
        for base, items in lists:
            for j, item in enumerate(items if isinstance(items, list) else []):
                value = item.get("valueFrom") if isinstance(item, Mapping) else None
                if isinstance(value, str) and value:
                    pointer = child_pointer(child_pointer(base, j), "valueFrom")
                    out.append(parse_reference(value, origin, pointer))
    return out


def changeset_references(changeset: ChangeSet) -> list[Reference]:
    """The references of the task definitions the change set registers."""
    out = []
    for change in changeset.resources:
        if change.kind != "TaskDefinition" or change.action is Action.NOOP:
            continue
        if change.details.get("retag"):
            continue  # only its tags change: nothing new is registered
        out += references(change.details.get("spec", {}), change.origin)
    return out


async def missing_references(
    session: AioSession,
    aws: AwsConfig,
    refs: Sequence[Reference],
    *,
    region: str | None,
    account: str,
) -> list[str]:
    """``where: why`` for each reference that names nothing (looked up in ``account``)."""
    mine = [r for r in refs if r.account in (None, account)]
    for r in refs:
        if r not in mine:
            log.info("secret_refs.skipped", at=r.where(), reason="in another account")
    missing: list[str] = []
    by_region: dict[str | None, list[Reference]] = {}
    for r in mine:
        by_region.setdefault(r.region or region, []).append(r)
    for where, group in by_region.items():
        ssm = [r for r in group if r.service == "ssm"]
        secrets = [r for r in group if r.service == "secretsmanager"]
        if ssm:
            found = await _ssm_names(session, aws, where, {n for r in ssm for n in r.names})
            missing += [
                f"{r.where()}: names an SSM parameter that does not exist in account "
                f"{account} ({where or 'the default region'})"
                for r in ssm
                if not found.intersection(r.names)
            ]
        if secrets:
            gone = await _missing_secrets(session, aws, where, {r.names[0] for r in secrets})
            missing += [
                f"{r.where()}: names a Secrets Manager secret that does not exist in "
                f"account {account} ({where or 'the default region'})"
                for r in secrets
                if r.names[0] in gone
            ]
    return missing


async def check_references(
    session: AioSession,
    aws: AwsConfig,
    changeset: ChangeSet,
    *,
    region: str | None,
    account: str,
) -> None:
    """Raise :class:`PlanError` when a task definition about to be registered references an
    SSM parameter or Secrets Manager secret that does not exist."""
    refs = changeset_references(changeset)
    if not refs:
        return
    missing = await missing_references(session, aws, refs, region=region, account=account)
    if missing:
        raise PlanError(
            "secrets referenced by valueFrom do not exist (the tasks would fail to start); "
            "nothing was written: create them, or fix valueFrom "
            "([policy].check_secret_refs = false skips this check):\n  " + "\n  ".join(missing)
        )


async def _ssm_names(
    session: AioSession, aws: AwsConfig, region: str | None, names: Iterable[str]
) -> set[str]:
    """Which of ``names`` are SSM parameters (DescribeParameters: metadata, never values)."""
    wanted = sorted(names)
    found: set[str] = set()
    try:
        async with session.create_client("ssm", **sts_kwargs(aws, region)) as ssm:
            for i in range(0, len(wanted), SSM_NAMES_PER_CALL):
                chunk = wanted[i : i + SSM_NAMES_PER_CALL]
                token: str | None = None
                while True:
                    params: dict[str, Any] = {
                        "ParameterFilters": [{"Key": "Name", "Option": "Equals", "Values": chunk}],
                        "MaxResults": 50,
                    }
                    if token:
                        params["NextToken"] = token
                    with anyio.fail_after(aws.call_timeout), aws_span("SSM", "DescribeParameters"):
                        answer = await ssm.describe_parameters(**params)
                    found.update(str(p.get("Name")) for p in answer.get("Parameters", []))
                    token = answer.get("NextToken")
                    if not token:
                        break
    except (BotoCoreError, ClientError, TimeoutError) as exc:
        raise _lookup_error("ssm:DescribeParameters", exc) from exc
    return found


async def _missing_secrets(
    session: AioSession, aws: AwsConfig, region: str | None, ids: Iterable[str]
) -> set[str]:
    """Which of the secret ``ids`` do not exist (DescribeSecret: metadata, never values)."""
    gone: set[str] = set()
    try:
        async with session.create_client(
            "secretsmanager", **sts_kwargs(aws, region)
        ) as secretsmanager:
            for secret_id in sorted(ids):
                try:
                    with (
                        anyio.fail_after(aws.call_timeout),
                        aws_span("SecretsManager", "DescribeSecret"),
                    ):
                        await secretsmanager.describe_secret(SecretId=secret_id)
                except ClientError as exc:
                    code = exc.response.get("Error", {}).get("Code", "")
                    if code != "ResourceNotFoundException":
                        raise
                    gone.add(secret_id)
    except (BotoCoreError, ClientError, TimeoutError) as exc:
        raise _lookup_error("secretsmanager:DescribeSecret", exc) from exc
    return gone


def _lookup_error(action: str, exc: BaseException) -> BackendUnavailable | BackendRejected:
    error = classify(action, exc)
    text = str(error).removeprefix("ECS ")
    if isinstance(error, BackendUnavailable):
        return BackendUnavailable(f"checking secrets referenced by valueFrom: {text}")
    return BackendRejected(
        f"checking secrets referenced by valueFrom: {text} (gitopsd needs {action} in the "
        "app's account, or set [policy].check_secret_refs = false)"
    )
