"""Reset values: what UpdateService is sent for a field the manifest no longer sets.

Each value must (1) pass botocore's parameter validation for UpdateService, so
the applier never sends a request the client refuses, and (2) normalise to the
same as leaving the field out, so once ECS holds it the service diffs clean.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.validate import ParamValidator

from gitopsd.backends.ecs.normalise import (
    SERVICE_NO_RESET,
    SERVICE_RESET_VALUES,
    normalise_service,
    service_reset_value,
)
from gitopsd.backends.ecs.service_model import input_members, input_shape
from gitopsd.model import MISSING

#: Manifests of the kinds of service the reset values must fit.
BASES: dict[str, dict[str, Any]] = {
    "fargate": {"serviceName": "s", "taskDefinition": "t:1", "launchType": "FARGATE"},
    "fargate-spot": {
        "serviceName": "s",
        "taskDefinition": "t:1",
        "capacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT", "weight": 1}],
    },
    "ec2-daemon": {
        "serviceName": "s",
        "taskDefinition": "t:1",
        "launchType": "EC2",
        "schedulingStrategy": "DAEMON",
    },
    "ec2-capacity-provider": {
        "serviceName": "s",
        "taskDefinition": "t:1",
        "capacityProviderStrategy": [{"capacityProvider": "my-asg", "base": 1, "weight": 1}],
    },
    "code-deploy": {
        "serviceName": "s",
        "taskDefinition": "t:1",
        "launchType": "FARGATE",
        "deploymentController": {"type": "CODE_DEPLOY"},
    },
    "external": {
        "serviceName": "s",
        "taskDefinition": "t:1",
        "launchType": "EXTERNAL",
        "deploymentController": {"type": "EXTERNAL"},
    },
    "cluster-default": {"serviceName": "s", "taskDefinition": "t:1"},
}

#: (base, field) pairs where the reset value does NOT normalise like an absent field, and why.
#: With neither launchType nor capacityProviderStrategy the cluster's default capacity
#: provider strategy decides whether the service runs on Fargate: the normaliser cannot know,
#: so it fills no platformVersion, while the reset value must be LATEST in case it does (ECS
#: reports a platformVersion only for Fargate services, so on EC2 it is never sent).
NOT_EQUIVALENT = {("cluster-default", "platformVersion"): "cluster decides the launch type"}

UPDATE_FIELDS = sorted(input_members("UpdateService"))
CASES = [(base, field) for base in BASES for field in UPDATE_FIELDS]


def _validation_report(params: dict[str, Any]) -> str:
    report: str = ParamValidator().validate(params, input_shape("UpdateService")).generate_report()
    return report


@pytest.mark.parametrize(("base", "field"), CASES)
def test_reset_value_is_valid_and_means_absent(base: str, field: str) -> None:
    desired = BASES[base]
    value = service_reset_value(field, desired)
    if value is MISSING:
        assert field in SERVICE_NO_RESET or field == "platformVersion"
        return
    params = {"cluster": "prod", "service": "s", field: value}
    assert _validation_report(params) == ""
    without = {k: v for k, v in desired.items() if k != field}
    reset = dict(without, **{field: value})
    if (base, field) in NOT_EQUIVALENT:
        assert normalise_service(reset) != normalise_service(without)
    else:
        assert normalise_service(reset) == normalise_service(without)


@pytest.mark.parametrize("field", sorted(SERVICE_RESET_VALUES))
def test_table_values_are_valid_update_service_input(field: str) -> None:
    params = {"cluster": "prod", "service": "s", field: SERVICE_RESET_VALUES[field]}
    assert _validation_report(params) == ""


def test_every_update_service_member_is_decided() -> None:
    # A member botocore adds later fails here until it gets a reset value or a reason not to.
    assert set(SERVICE_RESET_VALUES) | SERVICE_NO_RESET == input_members("UpdateService")
    assert not set(SERVICE_RESET_VALUES) & SERVICE_NO_RESET


def test_list_members_come_from_the_model() -> None:
    members = input_shape("UpdateService").members
    lists = {name for name, shape in members.items() if shape.type_name == "list"}
    assert lists - SERVICE_NO_RESET <= set(SERVICE_RESET_VALUES)
    for name in lists - SERVICE_NO_RESET:
        assert SERVICE_RESET_VALUES[name] == []
    assert {
        "loadBalancers",
        "serviceRegistries",
        "placementConstraints",
        "placementStrategy",
        "capacityProviderStrategy",
        "volumeConfigurations",
        "vpcLatticeConfigurations",
    } <= lists


def test_table_holds_the_documented_values() -> None:
    assert SERVICE_RESET_VALUES["enableExecuteCommand"] is False
    assert SERVICE_RESET_VALUES["enableECSManagedTags"] is False
    assert SERVICE_RESET_VALUES["healthCheckGracePeriodSeconds"] == 0
    assert SERVICE_RESET_VALUES["propagateTags"] == "NONE"
    assert SERVICE_RESET_VALUES["platformVersion"] == "LATEST"
    assert SERVICE_RESET_VALUES["serviceConnectConfiguration"] == {"enabled": False}
    assert SERVICE_RESET_VALUES["deploymentConfiguration"] == {
        "maximumPercent": 200,
        "minimumHealthyPercent": 100,
        "deploymentCircuitBreaker": {"enable": False, "rollback": False},
        "alarms": {"alarmNames": [], "enable": False, "rollback": False},
        "strategy": "ROLLING",
    }
    for name in ("networkConfiguration", "deploymentController", "desiredCount"):
        assert name not in SERVICE_RESET_VALUES


def test_deployment_configuration_follows_the_service() -> None:
    replica = service_reset_value("deploymentConfiguration", BASES["fargate"])
    assert replica == SERVICE_RESET_VALUES["deploymentConfiguration"]
    daemon = service_reset_value("deploymentConfiguration", BASES["ec2-daemon"])
    assert (daemon["maximumPercent"], daemon["minimumHealthyPercent"]) == (100, 0)
    assert daemon["deploymentCircuitBreaker"] == {"enable": False, "rollback": False}
    # Circuit breaker, alarms and strategy belong to the ECS controller only.
    for base in ("code-deploy", "external"):
        assert service_reset_value("deploymentConfiguration", BASES[base]) == {
            "maximumPercent": 200,
            "minimumHealthyPercent": 100,
        }


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("fargate", "LATEST"),
        ("fargate-spot", "LATEST"),
        ("cluster-default", "LATEST"),
        ("ec2-daemon", MISSING),
        ("ec2-capacity-provider", MISSING),
        ("external", MISSING),
    ],
)
def test_platform_version_only_where_fargate_may_run(base: str, expected: Any) -> None:
    assert service_reset_value("platformVersion", BASES[base]) == expected


@pytest.mark.parametrize("field", [*sorted(SERVICE_NO_RESET), "noSuchField"])
def test_fields_without_a_reset_value(field: str) -> None:
    assert service_reset_value(field, BASES["fargate"]) is MISSING


def test_reset_values_are_fresh_copies() -> None:
    first = service_reset_value("serviceConnectConfiguration", BASES["fargate"])
    first["enabled"] = True
    conf = service_reset_value("deploymentConfiguration", BASES["fargate"])
    conf["alarms"]["alarmNames"].append("x")
    assert SERVICE_RESET_VALUES["serviceConnectConfiguration"] == {"enabled": False}
    assert SERVICE_RESET_VALUES["deploymentConfiguration"]["alarms"]["alarmNames"] == []
    assert service_reset_value("loadBalancers", BASES["fargate"]) == []


def test_drift_behind_gits_back_is_undone_by_the_reset() -> None:
    # The manifest never set these; someone changed them in the console. Sending the reset
    # values brings the live service back to what the manifest means.
    desired = BASES["fargate"]
    drifted = dict(
        desired,
        enableExecuteCommand=True,
        propagateTags="SERVICE",
        serviceConnectConfiguration={"enabled": True, "namespace": "shop"},
        deploymentConfiguration={
            "maximumPercent": 150,
            "alarms": {"alarmNames": ["a"], "enable": True, "rollback": True},
        },
        placementStrategy=[{"type": "spread", "field": "attribute:ecs.availability-zone"}],
    )
    assert normalise_service(drifted) != normalise_service(desired)
    changed = set(drifted) - set(desired)
    repaired = dict(drifted, **{f: service_reset_value(f, desired) for f in changed})
    assert normalise_service(repaired) == normalise_service(desired)
