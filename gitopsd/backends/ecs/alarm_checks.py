"""Check the CloudWatch alarms a service's deployment is to watch, before the first write.

``deploymentConfiguration.alarms.alarmNames`` is a list of plain names: ECS accepts a
name no alarm has, and the deployment then has no alarm-based rollback at all, which
nobody notices until the rollback that never comes. And an alarm already in ALARM
when a deployment starts is ignored by ECS for that deployment (docs/ecs-facts.md
section 2a). So for each service about to be created or updated, ``diff`` and ``sync``
look the named alarms up (``cloudwatch:DescribeAlarms``, 100 names a call, in the
app's account and region with the app's credentials): a name no alarm has is an
error naming the file, line (the document's), field and alarm; an alarm in ALARM is
a warning. ``gitopsd validate`` stays offline and does not run this.

Nothing is called when no service with a pending change names an alarm, so a no-op
pass costs no CloudWatch call.
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

#: DescribeAlarms takes at most 100 names in one call (AlarmNames) and returns at most 100.
ALARM_NAMES_PER_CALL = 100
#: ECS deployment alarms may be metric or composite alarms; DescribeAlarms returns only
#: metric alarms unless asked for both.
ALARM_TYPES = ["MetricAlarm", "CompositeAlarm"]
_NAMES = "/deploymentConfiguration/alarms/alarmNames"


@dataclass(frozen=True)
class AlarmRef:
    """One name in a service's ``deploymentConfiguration.alarms.alarmNames``."""

    origin: Origin | None
    pointer: str
    name: str
    #: Whether the service's deployment alarms are on (``alarms.enable``).
    enabled: bool

    def where(self) -> str:
        at = f"{self.origin.file}:{self.origin.line}: " if self.origin else ""
        return f"{at}{display_path(self.pointer)}"


def alarm_references(spec: Mapping[str, Any], origin: Origin | None) -> list[AlarmRef]:
    """The alarm names of one Service spec (CreateService input shape)."""
    config = spec.get("deploymentConfiguration")
    alarms = config.get("alarms") if isinstance(config, Mapping) else None
    if not isinstance(alarms, Mapping):
        return []
    names = alarms.get("alarmNames")
    enabled = alarms.get("enable") is True
    return [
        AlarmRef(origin, child_pointer(_NAMES, i), name, enabled)
        for i, name in enumerate(names if isinstance(names, list) else [])
        if isinstance(name, str) and name
    ]


def changeset_alarms(changeset: ChangeSet) -> list[AlarmRef]:
    """The alarm names of the services the change set creates or updates."""
    out: list[AlarmRef] = []
    for change in changeset.resources:
        if change.kind == "Service" and change.action is not Action.NOOP:
            out += alarm_references(change.details.get("spec", {}), change.origin)
    return out


def findings(refs: Sequence[AlarmRef], states: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """(errors, warnings) for ``refs`` given the alarms found (name -> StateValue)."""
    errors = [
        f"{r.where()}: alarm {r.name!r} does not exist in CloudWatch"
        for r in refs
        if r.name not in states
    ]
    warnings = [
        f"{r.where()}: alarm {r.name!r} is already in ALARM: ECS ignores it for this deployment"
        for r in refs
        if r.enabled and states.get(r.name) == "ALARM"
    ]
    return errors, warnings


async def check_alarms(
    session: AioSession, aws: AwsConfig, changeset: ChangeSet, *, region: str | None
) -> list[str]:
    """Raise :class:`PlanError` when a service about to be written names an alarm that does not
    exist; log (and return) a warning for each enabled alarm already in ALARM."""
    refs = changeset_alarms(changeset)
    if not refs:
        return []
    states = await alarm_states(session, aws, region, {r.name for r in refs})
    errors, warnings = findings(refs, states)
    if errors:
        raise PlanError(
            "deployment alarms named in the manifest do not exist (ECS would never roll back "
            "on them); nothing was written: create them, or fix the names:\n  "
            + "\n  ".join(errors)
        )
    for warning in warnings:
        log.warning("alarms.already_in_alarm", app=changeset.app, problem=warning)
    return warnings


async def alarm_states(
    session: AioSession, aws: AwsConfig, region: str | None, names: Iterable[str]
) -> dict[str, str]:
    """Name -> state (OK, ALARM, INSUFFICIENT_DATA) of those of ``names`` that exist."""
    wanted = sorted(names)
    found: dict[str, str] = {}
    try:
        async with session.create_client("cloudwatch", **sts_kwargs(aws, region)) as cloudwatch:
            for i in range(0, len(wanted), ALARM_NAMES_PER_CALL):
                chunk = wanted[i : i + ALARM_NAMES_PER_CALL]
                token: str | None = None
                while True:
                    params: dict[str, Any] = {
                        "AlarmNames": chunk,
                        "AlarmTypes": ALARM_TYPES,
                        "MaxRecords": ALARM_NAMES_PER_CALL,
                    }
                    if token:
                        params["NextToken"] = token
                    with (
                        anyio.fail_after(aws.call_timeout),
                        aws_span("CloudWatch", "DescribeAlarms"),
                    ):
                        answer = await cloudwatch.describe_alarms(**params)
                    for kind in ("MetricAlarms", "CompositeAlarms"):
                        for alarm in answer.get(kind, []):
                            found[str(alarm.get("AlarmName"))] = str(alarm.get("StateValue", ""))
                    token = answer.get("NextToken")
                    if not token:
                        break
    except (BotoCoreError, ClientError, TimeoutError) as exc:
        raise _lookup_error(exc) from exc
    return found


def _lookup_error(exc: BaseException) -> BackendUnavailable | BackendRejected:
    action = "cloudwatch:DescribeAlarms"
    error = classify(action, exc)
    text = str(error).removeprefix("ECS ")
    if isinstance(error, BackendUnavailable):
        return BackendUnavailable(f"checking deployment alarms: {text}")
    return BackendRejected(
        f"checking deployment alarms: {text} (gitopsd needs {action} in the app's account)"
    )
