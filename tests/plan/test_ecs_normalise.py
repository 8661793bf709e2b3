"""ECS normalisation on realistic describe output: fresh resources diff clean, real changes show."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from gitopsd.backends.ecs.normalise import (
    SERVICE_DEFAULTS,
    TASK_DEFINITION_DEFAULTS,
    cpu_units,
    immutable_service_fields,
    memory_mib,
    normalise_service,
    normalise_task_definition,
    role_name,
    service_update_fields,
    unowned_service_pointers,
)
from gitopsd.backends.ecs.service_model import input_members
from gitopsd.model import MISSING, FieldChange
from gitopsd.plan.diff import diff

ACCOUNT = "123456789012"
WHEN = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)

MANIFEST_TD: dict[str, Any] = {
    "family": "shop-web",
    "cpu": "1 vCPU",
    "memory": "2 GB",
    "networkMode": "awsvpc",
    "requiresCompatibilities": ["FARGATE"],
    "executionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/shop-exec",
    "containerDefinitions": [
        {
            "name": "web",
            "image": "example/web:1.2.3",
            "portMappings": [{"containerPort": 8080}, {"containerPort": 9090, "protocol": "udp"}],
            "environment": [{"name": "MODE", "value": "prod"}, {"name": "LOG", "value": "info"}],
            "secrets": [{"name": "DB_URL", "valueFrom": "arn:aws:ssm:eu-west-1:1:parameter/db"}],
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {"awslogs-group": "/shop/web", "awslogs-region": "eu-west-1"},
            },
            "dependsOn": [{"containerName": "envoy", "condition": "HEALTHY"}],
        },
        {"name": "envoy", "image": "envoyproxy/envoy:v1.30", "essential": False},
    ],
    "tags": [{"key": "team", "value": "shop"}],
}


def live_task_definition() -> dict[str, Any]:
    """describe_task_definition()["taskDefinition"] for MANIFEST_TD, tags merged in."""
    return {
        "taskDefinitionArn": f"arn:aws:ecs:eu-west-1:{ACCOUNT}:task-definition/shop-web:7",
        "containerDefinitions": [
            {
                "name": "envoy",
                "image": "envoyproxy/envoy:v1.30",
                "cpu": 0,
                "portMappings": [],
                "essential": False,
                "environment": [],
                "mountPoints": [],
                "volumesFrom": [],
                "systemControls": [],
            },
            {
                "name": "web",
                "image": "example/web:1.2.3",
                "cpu": 0,
                "portMappings": [
                    {"containerPort": 9090, "hostPort": 9090, "protocol": "udp"},
                    {"containerPort": 8080, "hostPort": 8080, "protocol": "tcp"},
                ],
                "essential": True,
                "environment": [
                    {"name": "LOG", "value": "info"},
                    {"name": "MODE", "value": "prod"},
                ],
                "mountPoints": [],
                "volumesFrom": [],
                "secrets": [
                    {"name": "DB_URL", "valueFrom": "arn:aws:ssm:eu-west-1:1:parameter/db"}
                ],
                "dependsOn": [{"containerName": "envoy", "condition": "HEALTHY"}],
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {"awslogs-region": "eu-west-1", "awslogs-group": "/shop/web"},
                    "secretOptions": [],
                },
                "systemControls": [],
            },
        ],
        "family": "shop-web",
        "executionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/shop-exec",
        "networkMode": "awsvpc",
        "revision": 7,
        "volumes": [],
        "status": "ACTIVE",
        "requiresAttributes": [
            {"name": "com.amazonaws.ecs.capability.logging-driver.awslogs"},
            {"name": "ecs.capability.task-eni"},
        ],
        "placementConstraints": [],
        "compatibilities": ["EC2", "FARGATE"],
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "1024",
        "memory": "2048",
        "enableFaultInjection": False,
        "registeredAt": WHEN,
        "registeredBy": f"arn:aws:sts::{ACCOUNT}:assumed-role/deployer/gitopsd",
        "tags": [
            {"key": "gitopsd:app", "value": "shop"},
            {"key": "team", "value": "shop"},
            {"key": "gitopsd:revision", "value": "0" * 40},
        ],
    }


def test_fresh_task_definition_diffs_clean() -> None:
    desired = normalise_task_definition(MANIFEST_TD)
    live = normalise_task_definition(live_task_definition())
    assert diff(desired, live) == ()
    assert desired == live


def test_changed_image_is_one_change() -> None:
    manifest = copy.deepcopy(MANIFEST_TD)
    manifest["containerDefinitions"][0]["image"] = "example/web:1.2.4"
    changes = diff(
        normalise_task_definition(manifest), normalise_task_definition(live_task_definition())
    )
    assert changes == (
        FieldChange("/containerDefinitions/web/image", "example/web:1.2.3", "example/web:1.2.4"),
    )


def test_environment_and_container_changes_have_readable_pointers() -> None:
    manifest = copy.deepcopy(MANIFEST_TD)
    web = manifest["containerDefinitions"][0]
    web["environment"][0]["value"] = "debug"
    web["environment"].append({"name": "NEW", "value": "1"})
    manifest["containerDefinitions"].append({"name": "worker", "image": "w:1"})
    changes = diff(
        normalise_task_definition(manifest), normalise_task_definition(live_task_definition())
    )
    assert [(c.path, c.op) for c in changes] == [
        ("/containerDefinitions/web/environment/MODE/value", "replace"),
        ("/containerDefinitions/web/environment/NEW", "add"),
        ("/containerDefinitions/worker", "add"),
    ]
    assert changes[-1].after == {"image": "w:1", "essential": True, "cpu": 0}


def test_task_definition_tags() -> None:
    live = live_task_definition()
    live["tags"].append({"key": "cost-center", "value": "42"})
    assert diff(normalise_task_definition(MANIFEST_TD), normalise_task_definition(live)) == (
        FieldChange("/tags/cost-center", "42", MISSING),
    )
    assert (
        diff(
            normalise_task_definition(MANIFEST_TD, ignore_tag_keys={"cost-center"}),
            normalise_task_definition(live, ignore_tag_keys={"cost-center"}),
        )
        == ()
    )


def test_read_only_fields_never_count() -> None:
    out = normalise_task_definition(live_task_definition())
    for name in (
        "taskDefinitionArn",
        "revision",
        "status",
        "requiresAttributes",
        "compatibilities",
        "registeredAt",
        "registeredBy",
    ):
        assert name not in out
    assert set(out) <= input_members("RegisterTaskDefinition")


@pytest.mark.parametrize(
    ("mode", "compat", "host_port"),
    [("awsvpc", None, 8080), ("host", None, 8080), ("bridge", None, 0), (None, None, 0)],
)
def test_host_port_defaults_follow_the_network_mode(
    mode: str | None, compat: list[str] | None, host_port: int
) -> None:
    td: dict[str, Any] = {
        "family": "f",
        "containerDefinitions": [
            {"name": "c", "image": "i", "portMappings": [{"containerPort": 8080}]}
        ],
    }
    if mode:
        td["networkMode"] = mode
    out = normalise_task_definition(td)
    assert out["networkMode"] == (mode or "bridge")
    assert out["containerDefinitions"]["c"]["portMappings"] == [
        {"containerPort": 8080, "hostPort": host_port, "protocol": "tcp"}
    ]


def test_fargate_task_definition_has_no_bridge_default() -> None:
    out = normalise_task_definition({"family": "f", "requiresCompatibilities": ["FARGATE"]})
    assert "networkMode" not in out


def test_empty_lists_count_as_absent() -> None:
    bare = {"family": "f", "containerDefinitions": [{"name": "c", "image": "i"}]}
    noisy = {
        "family": "f",
        "volumes": [],
        "placementConstraints": [],
        "containerDefinitions": [
            {
                "name": "c",
                "image": "i",
                "mountPoints": [],
                "volumesFrom": [],
                "environment": [],
                "portMappings": [],
                "secrets": [],
                "dockerLabels": {},
                "ulimits": None,
            }
        ],
    }
    assert normalise_task_definition(bare) == normalise_task_definition(noisy)


@pytest.mark.parametrize(
    ("given", "units"),
    [
        ("1 vCPU", "1024"),
        ("1vcpu", "1024"),
        ("0.25 vCPU", "256"),
        (".5 VCPU", "512"),
        ("2 vCPUs", "2048"),
        (1024, "1024"),
        ("1024", "1024"),
        (" 256 ", "256"),
        ("0.3 vCPU", "0.3 vCPU"),  # not a whole number of units: as given
        ("lots", "lots"),
    ],
)
def test_cpu_units(given: Any, units: str) -> None:
    assert cpu_units(given) == units
    assert cpu_units(cpu_units(given)) == units


@pytest.mark.parametrize(
    ("given", "mib"),
    [("2 GB", "2048"), ("2gb", "2048"), ("0.5 GB", "512"), ("1 GiB", "1024"), (512, "512")],
)
def test_memory_mib(given: Any, mib: str) -> None:
    assert memory_mib(given) == mib
    assert memory_mib(memory_mib(given)) == mib


def test_role_name() -> None:
    assert role_name(f"arn:aws:iam::{ACCOUNT}:role/ecsServiceRole") == "ecsServiceRole"
    assert role_name(f"arn:aws:iam::{ACCOUNT}:role/team/lb-role") == "team/lb-role"
    assert role_name("ecsServiceRole") == "ecsServiceRole"
    linked = f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS"
    assert role_name(linked) is None


# --- services ----------------------------------------------------------------------

MANIFEST_SVC: dict[str, Any] = {
    "serviceName": "shop-web",
    "cluster": "prod",
    "taskDefinition": "shop-web:7",
    "desiredCount": 3,
    "launchType": "FARGATE",
    "networkConfiguration": {
        "awsvpcConfiguration": {"subnets": ["subnet-b", "subnet-a"], "securityGroups": ["sg-1"]}
    },
    "loadBalancers": [
        {
            "targetGroupArn": f"arn:aws:elasticloadbalancing:eu-west-1:{ACCOUNT}:targetgroup/web/1",
            "containerName": "web",
            "containerPort": 8080,
        }
    ],
    "deploymentConfiguration": {"deploymentCircuitBreaker": {"enable": True, "rollback": True}},
    "serviceConnectConfiguration": {"enabled": True, "namespace": "shop"},
    "tags": [{"key": "team", "value": "shop"}],
}


def live_service() -> dict[str, Any]:
    """One element of describe_services(include=["TAGS"])["services"] for MANIFEST_SVC."""
    td_arn = f"arn:aws:ecs:eu-west-1:{ACCOUNT}:task-definition/shop-web:7"
    return {
        "serviceArn": f"arn:aws:ecs:eu-west-1:{ACCOUNT}:service/prod/shop-web",
        "serviceName": "shop-web",
        "clusterArn": f"arn:aws:ecs:eu-west-1:{ACCOUNT}:cluster/prod",
        "loadBalancers": copy.deepcopy(MANIFEST_SVC["loadBalancers"]),
        "serviceRegistries": [],
        "status": "ACTIVE",
        "desiredCount": 3,
        "runningCount": 3,
        "pendingCount": 0,
        "launchType": "FARGATE",
        "platformVersion": "LATEST",
        "platformFamily": "Linux",
        "taskDefinition": "shop-web:7",  # the backend puts family:revision on both sides
        "deploymentConfiguration": {
            "deploymentCircuitBreaker": {"enable": True, "rollback": True},
            "maximumPercent": 200,
            "minimumHealthyPercent": 100,
            "alarms": {"alarmNames": [], "rollback": False, "enable": False},
            "strategy": "ROLLING",
        },
        "deployments": [
            {
                "id": "ecs-svc/1234567890",
                "status": "PRIMARY",
                "taskDefinition": td_arn,
                "desiredCount": 3,
                "pendingCount": 0,
                "runningCount": 3,
                "failedTasks": 0,
                "createdAt": WHEN,
                "updatedAt": WHEN,
                "launchType": "FARGATE",
                "platformVersion": "1.4.0",
                "platformFamily": "Linux",
                "networkConfiguration": {
                    "awsvpcConfiguration": {
                        "subnets": ["subnet-a", "subnet-b"],
                        "securityGroups": ["sg-1"],
                        "assignPublicIp": "DISABLED",
                    }
                },
                "rolloutState": "COMPLETED",
                "rolloutStateReason": "ECS deployment ecs-svc/1234567890 completed.",
                "serviceConnectConfiguration": {"enabled": True, "namespace": "shop"},
            }
        ],
        "roleArn": (
            f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS"
        ),
        "events": [
            {
                "id": "e1",
                "createdAt": WHEN,
                "message": "(service shop-web) has reached a steady state.",
            }
        ],
        "createdAt": WHEN,
        "placementConstraints": [],
        "placementStrategy": [],
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": ["subnet-a", "subnet-b"],
                "securityGroups": ["sg-1"],
                "assignPublicIp": "DISABLED",
            }
        },
        "healthCheckGracePeriodSeconds": 0,
        "schedulingStrategy": "REPLICA",
        "deploymentController": {"type": "ECS"},
        "createdBy": f"arn:aws:iam::{ACCOUNT}:role/deployer",
        "enableECSManagedTags": False,
        "propagateTags": "NONE",
        "enableExecuteCommand": False,
        "availabilityZoneRebalancing": "DISABLED",
        "tags": [
            {"key": "gitopsd:app", "value": "shop"},
            {"key": "aws:cloudformation:stack-name", "value": "other"},
            {"key": "team", "value": "shop"},
        ],
    }


def _svc_diff(manifest: dict[str, Any], live: dict[str, Any], **kw: Any) -> tuple[FieldChange, ...]:
    ignore = list(unowned_service_pointers(manifest))
    return diff(normalise_service(manifest, **kw), normalise_service(live, **kw), ignore)


def test_fresh_service_diffs_clean() -> None:
    assert _svc_diff(MANIFEST_SVC, live_service()) == ()


def test_service_never_compares_read_only_or_placement_fields() -> None:
    out = normalise_service(live_service())
    assert set(out) <= input_members("CreateService") - {"cluster", "clientToken"}
    assert "role" not in out  # the service-linked role means "none given"
    assert out["serviceConnectConfiguration"] == {"enabled": True, "namespace": "shop"}


def test_desired_count_difference_shows() -> None:
    live = live_service()
    live["desiredCount"] = 5
    changes = _svc_diff(MANIFEST_SVC, live)
    assert changes == (FieldChange("/desiredCount", 5, 3),)


def test_desired_count_is_left_to_autoscaling_when_unset() -> None:
    manifest = {k: v for k, v in MANIFEST_SVC.items() if k != "desiredCount"}
    live = live_service()
    live["desiredCount"] = 11
    assert "/desiredCount" in unowned_service_pointers(manifest)
    assert _svc_diff(manifest, live) == ()


def test_unowned_pointers() -> None:
    assert unowned_service_pointers(MANIFEST_SVC) == ("/availabilityZoneRebalancing",)
    bare = {"serviceName": "s", "taskDefinition": "t"}
    assert unowned_service_pointers(bare) == (
        "/desiredCount",
        "/availabilityZoneRebalancing",
        "/launchType",
        "/capacityProviderStrategy",
        "/platformVersion",  # the cluster's default strategy may be Fargate
    )
    pinned = {**bare, "platformVersion": "1.4.0"}
    assert "/platformVersion" not in unowned_service_pointers(pinned)
    assert "/launchType" in unowned_service_pointers(pinned)
    cps = {"capacityProviderStrategy": [{"capacityProvider": "FARGATE"}], "desiredCount": 0}
    assert unowned_service_pointers(cps) == ("/availabilityZoneRebalancing",)


def test_service_tags() -> None:
    live = live_service()
    live["tags"].append({"key": "cost-center", "value": "42"})
    # The unignored foreign tag shows; gitopsd's and AWS's reserved tags never do.
    assert _svc_diff(MANIFEST_SVC, live) == (FieldChange("/tags/cost-center", "42", MISSING),)
    manifest = copy.deepcopy(MANIFEST_SVC)
    manifest["tags"] = [{"key": "team", "value": "checkout"}, {"key": "tier", "value": "1"}]
    changes = _svc_diff(manifest, live, ignore_tag_keys=["cost-center"])
    assert changes == (
        FieldChange("/tags/team", "shop", "checkout"),
        FieldChange("/tags/tier", MISSING, "1"),
    )


@pytest.mark.parametrize(
    "key", ["aws:cloudformation:stack-name", "aws:ecs:serviceName", "aws:", "AWS:x", "gitopsd:app"]
)
def test_reserved_tags_never_count_on_either_side(key: str) -> None:
    tag = {"key": key, "value": "x"}
    bare = {"serviceName": "s", "tags": [{"key": "team", "value": "shop"}]}
    tagged = dict(bare, tags=[*bare["tags"], tag])
    assert normalise_service(tagged) == normalise_service(bare)
    assert normalise_service(tagged)["tags"] == {"team": "shop"}
    td = {"family": "f", "tags": [tag]}
    assert "tags" not in normalise_task_definition(td)


def test_aws_lookalike_tags_still_count() -> None:
    out = normalise_service({"serviceName": "s", "tags": [{"key": "awsome"}, {"key": "x:aws:"}]})
    assert out["tags"] == {"awsome": "", "x:aws:": ""}


def test_partly_written_deployment_configuration_keeps_other_defaults() -> None:
    manifest = copy.deepcopy(MANIFEST_SVC)
    manifest["deploymentConfiguration"] = {"maximumPercent": 150}
    changes = _svc_diff(manifest, live_service())
    assert changes == (
        FieldChange("/deploymentConfiguration/deploymentCircuitBreaker/enable", True, False),
        FieldChange("/deploymentConfiguration/deploymentCircuitBreaker/rollback", True, False),
        FieldChange("/deploymentConfiguration/maximumPercent", 200, 150),
    )


def test_daemon_deployment_defaults() -> None:
    out = normalise_service({"serviceName": "s", "schedulingStrategy": "DAEMON"})
    assert out["deploymentConfiguration"]["maximumPercent"] == 100
    assert out["deploymentConfiguration"]["minimumHealthyPercent"] == 0
    assert "platformVersion" not in out
    assert out["launchType"] == "EC2"


def test_capacity_provider_services() -> None:
    manifest = {
        "serviceName": "s",
        "capacityProviderStrategy": [
            {"capacityProvider": "FARGATE_SPOT", "weight": 3},
            {"capacityProvider": "FARGATE", "weight": 1, "base": 1},
        ],
    }
    live = {
        "serviceName": "s",
        "capacityProviderStrategy": [
            {"capacityProvider": "FARGATE", "weight": 1, "base": 1},
            {"capacityProvider": "FARGATE_SPOT", "weight": 3, "base": 0},
        ],
        "platformVersion": "LATEST",
    }
    assert normalise_service(manifest) == normalise_service(live)
    assert "launchType" not in normalise_service(manifest)


def test_role_names_and_arns_compare_equal() -> None:
    manifest = {"serviceName": "s", "role": "ecsServiceRole"}
    live = {"serviceName": "s", "roleArn": f"arn:aws:iam::{ACCOUNT}:role/ecsServiceRole"}
    assert normalise_service(manifest) == normalise_service(live)
    assert normalise_service(live)["role"] == "ecsServiceRole"


def test_code_deploy_target_groups_are_not_compared() -> None:
    def svc(controller: str, tg: str) -> dict[str, Any]:
        return {
            "serviceName": "s",
            "deploymentController": {"type": controller},
            "loadBalancers": [{"targetGroupArn": tg, "containerName": "web", "containerPort": 80}],
        }

    swapped = normalise_service(svc("CODE_DEPLOY", "green"))
    assert normalise_service(svc("CODE_DEPLOY", "blue")) == swapped
    assert normalise_service(svc("ECS", "blue")) != normalise_service(svc("ECS", "green"))


def test_primary_deployment_settings_do_not_override_top_level() -> None:
    live = live_service()
    live["serviceConnectConfiguration"] = {"enabled": True, "namespace": "other"}
    assert normalise_service(live)["serviceConnectConfiguration"] == {
        "enabled": True,
        "namespace": "other",
    }
    live = live_service()
    live["deployments"][0]["status"] = "ACTIVE"  # no PRIMARY: nothing to lift
    assert "serviceConnectConfiguration" not in normalise_service(live)


@pytest.mark.parametrize(
    "reported",
    [
        {"enabled": False},
        {"enabled": False, "services": [], "logConfiguration": {"options": {}}},
    ],
)
def test_service_connect_turned_off_equals_absent(reported: dict[str, Any]) -> None:
    manifest = {k: v for k, v in MANIFEST_SVC.items() if k != "serviceConnectConfiguration"}
    on_service = live_service()
    on_service["serviceConnectConfiguration"] = reported
    on_primary = live_service()
    on_primary["deployments"][0]["serviceConnectConfiguration"] = reported
    for live in (on_service, on_primary):
        assert _svc_diff(manifest, live) == ()
    assert normalise_service({"serviceName": "s", "serviceConnectConfiguration": reported}) == (
        normalise_service({"serviceName": "s"})
    )


def test_service_connect_counts_unless_just_turned_off() -> None:
    kept = {"enabled": False, "namespace": "shop"}
    out = normalise_service({"serviceName": "s", "serviceConnectConfiguration": kept})
    assert out["serviceConnectConfiguration"] == kept
    manifest = {k: v for k, v in MANIFEST_SVC.items() if k != "serviceConnectConfiguration"}
    live = live_service()
    live["deployments"][0]["serviceConnectConfiguration"] = {"enabled": True, "namespace": "shop"}
    assert _svc_diff(manifest, live) == (
        FieldChange(
            "/serviceConnectConfiguration", {"enabled": True, "namespace": "shop"}, MISSING
        ),
    )


def test_update_and_immutable_fields_come_from_the_model() -> None:
    update = service_update_fields()
    assert {"desiredCount", "taskDefinition", "networkConfiguration"} <= update
    assert update == input_members("UpdateService")
    assert immutable_service_fields() == {"launchType", "role", "schedulingStrategy"}


def test_rule_tables_are_plain_data() -> None:
    # Tables are tuples of frozen rule objects, comparable and printable.
    assert isinstance(TASK_DEFINITION_DEFAULTS, tuple)
    assert all(repr(rule) for rule in SERVICE_DEFAULTS)


def test_inputs_are_not_mutated() -> None:
    td, svc = live_task_definition(), live_service()
    td_copy, svc_copy = copy.deepcopy(td), copy.deepcopy(svc)
    normalise_task_definition(td, ignore_tag_keys={"team"})
    normalise_service(svc, ignore_tag_keys={"team"})
    assert td == td_copy
    assert svc == svc_copy
