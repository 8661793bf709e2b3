"""Deployment alarms looked up before the first write (gitopsd.backends.ecs.alarm_checks).

Against the local endpoint (moto's CloudWatch over real HTTP): names are looked up 100
a call, missing ones refuse with file, line and field, alarms in ALARM warn, only
services about to be written count, and failures come out classified.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from aiobotocore.session import AioSession

from gitopsd.backends.ecs.alarm_checks import (
    ALARM_NAMES_PER_CALL,
    alarm_states,
    changeset_alarms,
    check_alarms,
)
from gitopsd.config import AwsConfig
from gitopsd.errors import BackendRejected, BackendUnavailable, PlanError
from gitopsd.local_aws.testing import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY, LocalAws
from gitopsd.model import Action, ChangeSet, Origin, ResourceChange

REGION = "us-east-1"


@pytest.fixture(scope="module")
def server() -> Iterator[LocalAws]:
    with LocalAws(clock="manual", pace=1.0) as aws:
        yield aws


@pytest.fixture
def aws(server: LocalAws, monkeypatch: pytest.MonkeyPatch) -> LocalAws:
    server.reset()
    server.clear_faults()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DUMMY_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DUMMY_SECRET_KEY)
    return server


def config(aws: LocalAws) -> AwsConfig:
    return AwsConfig(region=REGION, endpoint_url=aws.endpoint_url)


def put_alarms(aws: LocalAws, *names: str, state: str = "OK") -> None:
    cloudwatch = aws.boto3_client("cloudwatch")
    for name in names:
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            MetricName="CPUUtilization",
            Namespace="AWS/ECS",
            Statistic="Average",
            Period=60,
            EvaluationPeriods=1,
            Threshold=90.0,
            ComparisonOperator="GreaterThanThreshold",
        )
        if state != "OK":
            cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason="test")
    aws.clear_calls()


def service(
    names: list[str], action: Action = Action.UPDATE, enable: bool = True, name: str = "web"
) -> ResourceChange:
    spec: dict[str, Any] = {
        "serviceName": name,
        "deploymentConfiguration": {
            "alarms": {"alarmNames": names, "enable": enable, "rollback": True}
        },
    }
    origin = Origin(f"app/{name}.yaml", 3)
    return ResourceChange("Service", name, action, origin=origin, details={"spec": spec})


def changeset(*changes: ResourceChange) -> ChangeSet:
    return ChangeSet(app="shop", revision=None, resources=changes)


def run_check(aws: LocalAws, changes: ChangeSet) -> list[str]:
    async def go() -> list[str]:
        return await check_alarms(AioSession(), config(aws), changes, region=REGION)

    return anyio.run(go)


def test_names_are_looked_up_a_hundred_a_call(aws: LocalAws) -> None:
    names = [f"alarm-{i:03d}" for i in range(ALARM_NAMES_PER_CALL + 30)]
    put_alarms(aws, *names[:-1])  # the last one does not exist

    async def go() -> dict[str, str]:
        return await alarm_states(AioSession(), config(aws), REGION, names)

    states = anyio.run(go)
    assert set(states) == set(names[:-1])
    assert set(states.values()) <= {"OK", "INSUFFICIENT_DATA"}
    assert Counter(aws.calls())["DescribeAlarms"] == 2


def test_a_missing_alarm_refuses_with_file_line_field_and_name(aws: LocalAws) -> None:
    put_alarms(aws, "cpu-high")
    with pytest.raises(PlanError) as caught:
        run_check(aws, changeset(service(["cpu-high", "5xx"])))
    assert str(caught.value) == (
        "deployment alarms named in the manifest do not exist (ECS would never roll back on "
        "them); nothing was written: create them, or fix the names:\n"
        "  app/web.yaml:3: deploymentConfiguration.alarms.alarmNames[1]: alarm '5xx' does not "
        "exist in CloudWatch"
    )


def test_an_alarm_in_alarm_warns_only_when_the_service_uses_its_alarms(aws: LocalAws) -> None:
    put_alarms(aws, "cpu-high", state="ALARM")
    warnings = run_check(aws, changeset(service(["cpu-high"])))
    assert warnings == [
        "app/web.yaml:3: deploymentConfiguration.alarms.alarmNames[0]: alarm 'cpu-high' is "
        "already in ALARM: ECS ignores it for this deployment"
    ]
    assert run_check(aws, changeset(service(["cpu-high"], enable=False))) == []


def test_only_services_about_to_be_written_count(aws: LocalAws) -> None:
    unchanged = service(["gone"], action=Action.NOOP, name="api")
    assert changeset_alarms(changeset(unchanged)) == []
    assert run_check(aws, changeset(unchanged, service([], name="web"))) == []
    assert aws.calls() == []  # nothing named: no CloudWatch call at all
    created = service(["gone"], action=Action.CREATE)
    with pytest.raises(PlanError):
        run_check(aws, changeset(created))


@pytest.mark.parametrize(
    ("error", "kind"),
    [("ThrottlingException", BackendUnavailable), ("AccessDeniedException", BackendRejected)],
)
def test_failures_are_classified(aws: LocalAws, error: str, kind: type[Exception]) -> None:
    aws.inject_fault("DescribeAlarms", error, count=5)
    with pytest.raises(kind) as caught:
        run_check(aws, changeset(service(["cpu-high"])))
    assert str(caught.value).startswith("checking deployment alarms: cloudwatch:DescribeAlarms")
    if kind is BackendRejected:
        assert "gitopsd needs cloudwatch:DescribeAlarms in the app's account" in str(caught.value)
