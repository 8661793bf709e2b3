"""Property tests: what AWS does to a resource never shows as a difference.

Minimal manifests are generated over a realistic subset of fields; a "live"
twin is then built the way ECS answers describe calls (every default filled
in, every order-free list shuffled, read-only fields and foreign tags added,
the service spelled as describe_services spells it). The builders below are
written from docs/ecs-facts.md independently of the rule tables, so they
check the tables rather than repeat them.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gitopsd.backends.ecs.normalise import (
    normalise_service,
    normalise_task_definition,
    unowned_service_pointers,
)
from gitopsd.plan.diff import diff

ACCOUNT = "123456789012"
WHEN = dt.datetime(2025, 1, 2, tzinfo=dt.UTC)
FOREIGN_TAG = "cost-center"  # another tool's tag, ignored through ignore_tag_keys
PROPERTY_SETTINGS = settings(max_examples=60, deadline=None)

_names = st.text(alphabet="abcdefgh", min_size=1, max_size=4)
_values = st.text(alphabet="xyz019-", max_size=4)


def _shuffled(data: st.DataObject, items: list[Any]) -> list[Any]:
    return list(data.draw(st.permutations(items))) if items else []


def _tags() -> st.SearchStrategy[list[dict[str, str]]]:
    return st.lists(
        st.fixed_dictionaries({"key": _names.map(lambda k: "t-" + k), "value": _values}),
        max_size=3,
        unique_by=lambda t: t["key"],
    )


def _live_tags(data: st.DataObject, tags: list[dict[str, str]]) -> list[dict[str, str]]:
    """AWS's tag list: the manifest's, gitopsd's own, AWS's and another tool's, in any order."""
    extra = [
        {"key": "gitopsd:app", "value": "shop"},
        {"key": "gitopsd:revision", "value": "f" * 40},
        {"key": "aws:cloudformation:stack-name", "value": "stack"},
        {"key": FOREIGN_TAG, "value": "42"},
    ]
    return _shuffled(data, copy.deepcopy(tags) + extra)


# --- task definitions ------------------------------------------------------------------

_CPU = {256: ["256", 256, "0.25 vCPU", ".25 vcpu"], 1024: ["1024", 1024, "1 vCPU", "1vcpu"]}
_MEMORY = {512: ["512", 512, "0.5 GB", ".5gb"], 2048: ["2048", 2048, "2 GB", "2GB"]}


@st.composite
def task_definitions(draw: st.DrawFn) -> dict[str, Any]:
    """A minimal RegisterTaskDefinition input, written the way people write manifests."""
    fargate = draw(st.booleans())
    mode = "awsvpc" if fargate else draw(st.sampled_from([None, "bridge", "awsvpc", "host"]))
    td: dict[str, Any] = {"family": "shop-" + draw(_names)}
    if fargate:
        td["requiresCompatibilities"] = ["FARGATE"]
    if mode is not None:
        td["networkMode"] = mode
    if fargate or draw(st.booleans()):
        td["cpu"] = draw(st.sampled_from(_CPU[draw(st.sampled_from(sorted(_CPU)))]))
        td["memory"] = draw(st.sampled_from(_MEMORY[draw(st.sampled_from(sorted(_MEMORY)))]))
    volumes: list[dict[str, Any]] = draw(
        st.lists(
            st.fixed_dictionaries(
                {"name": _names},
                optional={
                    "efsVolumeConfiguration": st.fixed_dictionaries(
                        {"fileSystemId": st.just("fs-1")},
                        optional={"rootDirectory": st.sampled_from(["/", "/data"])},
                    )
                },
            ),
            max_size=2,
            unique_by=lambda v: v["name"],
        )
    )
    if volumes:
        td["volumes"] = volumes
    td["containerDefinitions"] = draw(
        st.lists(
            _containers(mode, [v["name"] for v in volumes]),
            min_size=1,
            max_size=3,
            unique_by=lambda c: c["name"],
        )
    )
    if not fargate and draw(st.booleans()):
        td["placementConstraints"] = [
            {"type": "memberOf", "expression": f"attribute:ecs.az in [{az}]"}
            for az in draw(st.lists(st.sampled_from(["a", "b", "c"]), unique=True, min_size=1))
        ]
    tags = draw(_tags())
    if tags:
        td["tags"] = tags
    return td


def _containers(mode: str | None, volumes: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    direct = mode in ("awsvpc", "host")

    @st.composite
    def port(draw: st.DrawFn, container_port: int) -> dict[str, Any]:
        mapping: dict[str, Any] = {"containerPort": container_port}
        if draw(st.booleans()):
            mapping["protocol"] = draw(st.sampled_from(["tcp", "udp"]))
        if draw(st.booleans()):
            mapping["hostPort"] = container_port if direct else draw(st.integers(0, 40000))
        return mapping

    @st.composite
    def container(draw: st.DrawFn) -> dict[str, Any]:
        c: dict[str, Any] = {"name": draw(_names), "image": "repo/" + draw(_names) + ":1"}
        if draw(st.booleans()):
            c["essential"] = draw(st.booleans())
        if draw(st.booleans()):
            c["cpu"] = draw(st.sampled_from([0, 128, 256]))
        if draw(st.booleans()):
            c["memory"] = draw(st.sampled_from([256, 512]))
        ports = draw(st.lists(st.integers(1, 9000), unique=True, max_size=3))
        if ports:
            c["portMappings"] = [draw(port(p)) for p in ports]
        env = draw(
            st.lists(
                st.fixed_dictionaries({"name": _names.map(str.upper), "value": _values}),
                max_size=3,
                unique_by=lambda e: e["name"],
            )
        )
        if env:
            c["environment"] = env
        if draw(st.booleans()):
            c["secrets"] = [{"name": "S_" + draw(_names), "valueFrom": "arn:aws:ssm:::p/x"}]
        if draw(st.booleans()) and volumes:
            c["mountPoints"] = [
                {"sourceVolume": v, "containerPath": "/mnt/" + v}
                for v in draw(st.lists(st.sampled_from(volumes), unique=True, min_size=1))
            ]
        if draw(st.booleans()):
            c["command"] = draw(st.lists(_names, min_size=1, max_size=3))  # ordered: kept
        if draw(st.booleans()):
            c["dockerLabels"] = draw(st.dictionaries(_names, _values, min_size=1, max_size=2))
        return c

    return container()


def _canonical(spellings: dict[int, list[Any]], value: Any) -> str:
    return next(str(n) for n, written in spellings.items() if value in written)


def live_task_definition(data: st.DataObject, td: dict[str, Any]) -> dict[str, Any]:
    """What describe_task_definition (tags merged in) answers for a registered ``td``."""
    live = copy.deepcopy(td)
    fargate = "FARGATE" in td.get("requiresCompatibilities", [])
    mode = live.setdefault("networkMode", "awsvpc" if fargate else "bridge")
    if "cpu" in live:  # ECS stores units and MiB as strings of integers
        live["cpu"] = _canonical(_CPU, live["cpu"])
        live["memory"] = _canonical(_MEMORY, live["memory"])
    for c in live["containerDefinitions"]:
        c.setdefault("essential", True)
        c.setdefault("cpu", 0)
        for key in ("environment", "mountPoints", "volumesFrom", "systemControls"):
            c.setdefault(key, [])
        for p in c.setdefault("portMappings", []):
            p.setdefault("protocol", "tcp")
            p.setdefault("hostPort", p["containerPort"] if mode in ("awsvpc", "host") else 0)
        for key in ("portMappings", "environment", "mountPoints"):
            c[key] = _shuffled(data, c[key])
    live["containerDefinitions"] = _shuffled(data, live["containerDefinitions"])
    for v in live.setdefault("volumes", []):
        efs = v.get("efsVolumeConfiguration")
        if efs is not None:
            efs.setdefault("rootDirectory", "/")
            efs.setdefault("transitEncryption", "DISABLED")
        else:
            v.setdefault("host", {})
    live["volumes"] = _shuffled(data, live["volumes"])
    live["placementConstraints"] = _shuffled(data, live.get("placementConstraints", []))
    live["tags"] = _live_tags(data, td.get("tags", []))
    live.update(
        taskDefinitionArn=f"arn:aws:ecs:eu-west-1:{ACCOUNT}:task-definition/{td['family']}:3",
        revision=3,
        status="ACTIVE",
        requiresAttributes=[{"name": "ecs.capability.task-eni"}],
        compatibilities=["EC2", "FARGATE"] if fargate else ["EC2"],
        registeredAt=WHEN,
        registeredBy=f"arn:aws:sts::{ACCOUNT}:assumed-role/deployer/gitopsd",
        enableFaultInjection=False,
    )
    return live


@PROPERTY_SETTINGS
@given(task_definitions(), st.data())
def test_task_definition_normalisation_is_idempotent(
    td: dict[str, Any], data: st.DataObject
) -> None:
    for doc in (td, live_task_definition(data, td)):
        once = normalise_task_definition(doc, ignore_tag_keys={FOREIGN_TAG})
        assert normalise_task_definition(once, ignore_tag_keys={FOREIGN_TAG}) == once


@PROPERTY_SETTINGS
@given(task_definitions(), st.data())
def test_registered_task_definition_diffs_clean(td: dict[str, Any], data: st.DataObject) -> None:
    live = live_task_definition(data, td)
    desired_n = normalise_task_definition(td, ignore_tag_keys={FOREIGN_TAG})
    live_n = normalise_task_definition(live, ignore_tag_keys={FOREIGN_TAG})
    assert diff(desired_n, live_n) == ()


@PROPERTY_SETTINGS
@given(task_definitions(), st.data())
def test_a_changed_image_is_exactly_one_change(td: dict[str, Any], data: st.DataObject) -> None:
    live = live_task_definition(data, td)
    changed = copy.deepcopy(td)
    target = data.draw(st.sampled_from(changed["containerDefinitions"]))
    target["image"] += "-next"
    changes = diff(
        normalise_task_definition(changed, ignore_tag_keys={FOREIGN_TAG}),
        normalise_task_definition(live, ignore_tag_keys={FOREIGN_TAG}),
    )
    assert [c.path for c in changes] == [f"/containerDefinitions/{target['name']}/image"]


# --- services --------------------------------------------------------------------------


@st.composite
def services(draw: st.DrawFn) -> dict[str, Any]:
    """A minimal CreateService input."""
    svc: dict[str, Any] = {"serviceName": "svc-" + draw(_names), "taskDefinition": "shop-web:7"}
    optional = st.booleans()
    if draw(optional):
        svc["cluster"] = "prod"
    daemon = draw(st.booleans()) and draw(st.booleans())
    if daemon:
        svc["schedulingStrategy"] = "DAEMON"
    elif draw(optional):
        svc["schedulingStrategy"] = "REPLICA"
    if not daemon and draw(optional):
        svc["desiredCount"] = draw(st.integers(0, 10))
    placement = draw(st.sampled_from(["none", "EC2", "FARGATE", "providers"]))
    if daemon and placement in ("FARGATE", "providers"):
        placement = "EC2"
    if placement in ("EC2", "FARGATE"):
        svc["launchType"] = placement
    elif placement == "providers":
        svc["capacityProviderStrategy"] = draw(
            st.lists(
                st.fixed_dictionaries(
                    {"capacityProvider": st.sampled_from(["FARGATE", "FARGATE_SPOT", "asg-a"])},
                    optional={"weight": st.integers(0, 3), "base": st.integers(0, 2)},
                ),
                min_size=1,
                max_size=3,
                unique_by=lambda p: p["capacityProvider"],
            )
        )
    awsvpc = placement in ("FARGATE", "providers") or draw(st.booleans())
    if awsvpc:
        vpc: dict[str, Any] = {
            "subnets": draw(
                st.lists(
                    st.sampled_from(["subnet-a", "subnet-b", "subnet-c"]), min_size=1, unique=True
                )
            ),
            "securityGroups": draw(
                st.lists(st.sampled_from(["sg-1", "sg-2"]), min_size=1, unique=True)
            ),
        }
        if draw(optional):
            vpc["assignPublicIp"] = draw(st.sampled_from(["ENABLED", "DISABLED"]))
        svc["networkConfiguration"] = {"awsvpcConfiguration": vpc}
    elif draw(optional):
        svc["role"] = "ecsServiceRole"
    conf = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "maximumPercent": st.sampled_from([100, 150, 200]),
                "minimumHealthyPercent": st.sampled_from([0, 50, 100]),
                "deploymentCircuitBreaker": st.fixed_dictionaries(
                    {}, optional={"enable": st.booleans(), "rollback": st.booleans()}
                ),
            },
        )
    )
    if conf:
        svc["deploymentConfiguration"] = conf
    lbs = draw(st.lists(st.sampled_from(["tg-a", "tg-b", "tg-c"]), unique=True, max_size=2))
    if lbs:
        svc["loadBalancers"] = [
            {"targetGroupArn": tg, "containerName": "web", "containerPort": 8080} for tg in lbs
        ]
    if not awsvpc and draw(optional):
        svc["placementStrategy"] = [
            {"type": "spread", "field": "attribute:ecs.availability-zone"},
            {"type": "binpack", "field": "memory"},
        ]
    for name, values in (
        ("enableExecuteCommand", [True, False]),
        ("propagateTags", ["NONE", "SERVICE", "TASK_DEFINITION"]),
        ("healthCheckGracePeriodSeconds", [0, 30]),
        ("availabilityZoneRebalancing", ["ENABLED", "DISABLED"]),
    ):
        if draw(optional):
            svc[name] = draw(st.sampled_from(values))
    if draw(optional):
        svc["serviceConnectConfiguration"] = {"enabled": True, "namespace": "shop"}
    tags = draw(_tags())
    if tags:
        svc["tags"] = tags
    return svc


def live_service(data: st.DataObject, svc: dict[str, Any]) -> dict[str, Any]:
    """What describe_services(include=["TAGS"]) answers for a service created from ``svc``."""
    live = copy.deepcopy(svc)
    live.pop("cluster", None)
    daemon = live.setdefault("schedulingStrategy", "REPLICA") == "DAEMON"
    # Not the manifest's to decide when it is silent: AWS or autoscaling picks.
    live.setdefault("desiredCount", data.draw(st.integers(0, 20)))
    live.setdefault(
        "availabilityZoneRebalancing", data.draw(st.sampled_from(["ENABLED", "DISABLED"]))
    )
    providers = live.get("capacityProviderStrategy", [])
    if not providers:
        live.setdefault("launchType", "EC2")
    for p in providers:
        p.setdefault("weight", 0)
        p.setdefault("base", 0)
    fargate = live.get("launchType") == "FARGATE" or any(
        p["capacityProvider"].startswith("FARGATE") for p in providers
    )
    if fargate:
        live["platformVersion"] = "LATEST"
    vpc = live.get("networkConfiguration", {}).get("awsvpcConfiguration")
    if vpc is not None:
        vpc.setdefault("assignPublicIp", "DISABLED")
        vpc["subnets"] = _shuffled(data, vpc["subnets"])
        vpc["securityGroups"] = _shuffled(data, vpc["securityGroups"])
    conf = live.setdefault("deploymentConfiguration", {})
    conf.setdefault("maximumPercent", 100 if daemon else 200)
    conf.setdefault("minimumHealthyPercent", 0 if daemon else 100)
    breaker = conf.setdefault("deploymentCircuitBreaker", {})
    breaker.setdefault("enable", False)
    breaker.setdefault("rollback", False)
    conf["alarms"] = {"alarmNames": [], "enable": False, "rollback": False}
    conf["strategy"] = "ROLLING"
    live.setdefault("deploymentController", {"type": "ECS"})
    live.setdefault("propagateTags", "NONE")
    live.setdefault("enableECSManagedTags", False)
    live.setdefault("enableExecuteCommand", False)
    live.setdefault("healthCheckGracePeriodSeconds", 0)
    for key in ("loadBalancers", "placementStrategy", "placementConstraints", "serviceRegistries"):
        live[key] = _shuffled(data, live.get(key, []))
    live["capacityProviderStrategy"] = _shuffled(data, providers)
    # describe_services spells some things differently from CreateService.
    role = live.pop("role", None)
    if role is not None:
        live["roleArn"] = f"arn:aws:iam::{ACCOUNT}:role/{role}"
    elif data.draw(st.booleans()):
        live["roleArn"] = (
            f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS"
        )
    primary: dict[str, Any] = {
        "id": "ecs-svc/1",
        "status": "PRIMARY",
        "taskDefinition": f"arn:aws:ecs:eu-west-1:{ACCOUNT}:task-definition/shop-web:7",
        "desiredCount": live["desiredCount"],
        "runningCount": live["desiredCount"],
        "pendingCount": 0,
        "failedTasks": 0,
        "createdAt": WHEN,
        "updatedAt": WHEN,
        "rolloutState": "COMPLETED",
    }
    connect = live.pop("serviceConnectConfiguration", None)
    if connect is None and data.draw(st.booleans()):
        connect = {"enabled": False}  # how ECS reports Service Connect once turned off
    if connect is not None:
        primary["serviceConnectConfiguration"] = connect
    old = {"id": "ecs-svc/0", "status": "ACTIVE", "serviceConnectConfiguration": {"enabled": False}}
    live["deployments"] = _shuffled(data, [primary, old])
    live["tags"] = _live_tags(data, svc.get("tags", []))
    live.update(
        serviceArn=f"arn:aws:ecs:eu-west-1:{ACCOUNT}:service/prod/{svc['serviceName']}",
        clusterArn=f"arn:aws:ecs:eu-west-1:{ACCOUNT}:cluster/prod",
        status="ACTIVE",
        runningCount=live["desiredCount"],
        pendingCount=0,
        events=[{"id": "e", "createdAt": WHEN, "message": "has reached a steady state."}],
        createdAt=WHEN,
        createdBy=f"arn:aws:iam::{ACCOUNT}:role/deployer",
        platformFamily="Linux",
    )
    return live


@PROPERTY_SETTINGS
@given(services(), st.data())
def test_service_normalisation_is_idempotent(svc: dict[str, Any], data: st.DataObject) -> None:
    for doc in (svc, live_service(data, svc)):
        once = normalise_service(doc, ignore_tag_keys={FOREIGN_TAG})
        assert normalise_service(once, ignore_tag_keys={FOREIGN_TAG}) == once


@PROPERTY_SETTINGS
@given(services(), st.data())
def test_created_service_diffs_clean(svc: dict[str, Any], data: st.DataObject) -> None:
    live = live_service(data, svc)
    changes = diff(
        normalise_service(svc, ignore_tag_keys={FOREIGN_TAG}),
        normalise_service(live, ignore_tag_keys={FOREIGN_TAG}),
        unowned_service_pointers(svc),
    )
    assert changes == ()


@PROPERTY_SETTINGS
@given(services(), st.data(), st.integers(21, 99))
def test_a_desired_count_change_is_exactly_one_change(
    svc: dict[str, Any], data: st.DataObject, count: int
) -> None:
    live = live_service(data, svc)
    changed = dict(svc, desiredCount=count)
    changes = diff(
        normalise_service(changed, ignore_tag_keys={FOREIGN_TAG}),
        normalise_service(live, ignore_tag_keys={FOREIGN_TAG}),
        unowned_service_pointers(changed),
    )
    assert [(c.path, c.after) for c in changes] == [("/desiredCount", count)]
