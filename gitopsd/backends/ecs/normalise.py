"""What ECS fills in, reorders and hides, as rule tables, and the functions plan calls.

``describe_task_definition`` and ``describe_services`` never return exactly what
``RegisterTaskDefinition`` / ``CreateService`` were given (docs/ecs-facts.md
section 1). Both sides of a comparison go through the same tables below, so a
freshly created resource diffs clean and only real differences remain. Each
rule says why it exists: "AWS default" (absent means this value), "AWS
reorders" (order carries no meaning and is not kept), or "shape" (the live
object is spelled differently from the write call's input).

Normalised form (what FieldChange paths and user ignore pointers refer to):
lists of named things become maps keyed by the name, the name leaving the
entry (``/containerDefinitions/web/image``,
``/containerDefinitions/web/environment/FOO/value``,
``/containerDefinitions/web/secrets/DB_URL/valueFrom``, ``/volumes/data/host``);
tags become ``/tags/<key>`` -> value; other order-free lists are sorted and
compared by index. Task cpu/memory are strings of units/MiB.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from gitopsd.backends.ecs.ownership import is_reserved_tag
from gitopsd.backends.ecs.service_model import ecs_model, input_members, input_shape
from gitopsd.model import MISSING
from gitopsd.plan.normalise import (
    AnyOf,
    Contains,
    Default,
    Drop,
    DropKeys,
    Equals,
    HasItem,
    KeyBy,
    Not,
    Project,
    Rename,
    Rule,
    Sibling,
    SortBy,
    Transform,
    normalise,
)

# --- value transforms (each idempotent) ---------------------------------------------

_VCPU = re.compile(r"^(\d+(?:\.\d+)?|\.\d+)\s*vcpus?$", re.IGNORECASE)
_GB = re.compile(r"^(\d+(?:\.\d+)?|\.\d+)\s*gi?b$", re.IGNORECASE)
_ROLE_ARN = re.compile(r"^arn:aws[\w-]*:iam::\d{12}:role/(?P<name>.+)$")


def _scaled(value: Any, unit: re.Pattern[str], factor: int) -> Any:
    """An int, a numeric string or ``<n> <unit>`` as the string of an integer, else as given."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        return value
    text = value.strip()
    match = unit.match(text)
    try:
        number = Decimal(match.group(1)) * factor if match else Decimal(text)
    except InvalidOperation:
        return value
    if not number.is_finite() or number != number.to_integral_value():
        return value
    return str(int(number))


def cpu_units(value: Any) -> Any:
    """Task cpu as ECS stores it: ``"1 vCPU"``, ``"1vcpu"``, ``1024`` -> ``"1024"``."""
    return _scaled(value, _VCPU, 1024)


def memory_mib(value: Any) -> Any:
    """Task memory as ECS stores it: ``"2 GB"``, ``"2gb"``, ``2048`` -> ``"2048"`` (MiB)."""
    return _scaled(value, _GB, 1024)


def role_name(value: Any) -> Any:
    """A service role by name (the input takes a name or an ARN; describe returns the ARN).

    The ECS service-linked role (path ``aws-service-role/``) is what ECS uses
    when no role is given, and describe reports it anyway: it means "absent".
    """
    if not isinstance(value, str):
        return value
    match = _ROLE_ARN.match(value)
    name = match.group("name") if match else value
    return None if name.startswith("aws-service-role/") else name


# --- task definitions ------------------------------------------------------------

_C = "/containerDefinitions/*"
_FARGATE = ("FARGATE", "FARGATE_SPOT")

#: Absent means this value (applied to both sides, after projection).
TASK_DEFINITION_DEFAULTS: tuple[Rule, ...] = (
    # AWS default: networkMode "bridge" on EC2 Linux when unset; Fargate requires awsvpc.
    Default("/networkMode", "bridge", when=Not(Contains("/requiresCompatibilities", "FARGATE"))),
    # AWS default: describe reports enableFaultInjection false when it was not set.
    Default("/enableFaultInjection", False),
    # AWS default: a container is essential unless it says otherwise.
    Default(f"{_C}/essential", True),
    # AWS default: describe reports container cpu 0 when it was not set.
    Default(f"{_C}/cpu", 0),
    # AWS default: port mappings are tcp.
    Default(f"{_C}/portMappings/*/protocol", "tcp"),
    # AWS default: with awsvpc or host networking the host port is the container port.
    Default(
        f"{_C}/portMappings/*/hostPort",
        Sibling("containerPort"),
        when=AnyOf((Equals("/networkMode", "awsvpc"), Equals("/networkMode", "host"))),
    ),
    # AWS default: in bridge mode an unset host port is dynamic, reported as 0.
    Default(f"{_C}/portMappings/*/hostPort", 0, when=Equals("/networkMode", "bridge")),
    # AWS default: an EFS volume mounts the file system root, without transit encryption.
    Default("/volumes/*/efsVolumeConfiguration/rootDirectory", "/"),
    Default("/volumes/*/efsVolumeConfiguration/transitEncryption", "DISABLED"),
)

#: Spellings ECS converts on registration.
TASK_DEFINITION_TRANSFORMS: tuple[Rule, ...] = (
    # AWS converts "1 vCPU" to "1024" CPU units and returns a string.
    Transform("/cpu", cpu_units),
    # AWS converts "2 GB" to "2048" MiB and returns a string.
    Transform("/memory", memory_mib),
)

#: Order that carries no meaning, which ECS does not keep (innermost lists first, so a
#: content sort sees nested lists already in order).
TASK_DEFINITION_ORDER: tuple[Rule, ...] = (
    # Sets inside linuxParameters: order means nothing.
    SortBy(f"{_C}/linuxParameters/capabilities/add"),
    SortBy(f"{_C}/linuxParameters/capabilities/drop"),
    SortBy(f"{_C}/linuxParameters/devices"),
    SortBy(f"{_C}/linuxParameters/tmpfs"),
    # AWS reorders environment and secrets; names are unique within a container.
    KeyBy(f"{_C}/environment", "name"),
    KeyBy(f"{_C}/secrets", "name"),
    KeyBy(f"{_C}/logConfiguration/secretOptions", "name"),
    # AWS reorders these by content.
    SortBy(f"{_C}/portMappings"),
    SortBy(f"{_C}/mountPoints"),
    SortBy(f"{_C}/volumesFrom"),
    SortBy(f"{_C}/extraHosts"),
    SortBy(f"{_C}/environmentFiles"),
    SortBy(f"{_C}/resourceRequirements"),
    # Named entries, one per name: key them.
    KeyBy(f"{_C}/ulimits", "name"),
    KeyBy(f"{_C}/dependsOn", "containerName"),
    KeyBy(f"{_C}/systemControls", "namespace"),
    # AWS reorders containers; they are named, so key them by name.
    KeyBy("/containerDefinitions", "name"),
    # Sets: order means nothing.
    SortBy("/requiresCompatibilities"),
    SortBy("/placementConstraints"),
    SortBy("/inferenceAccelerators"),
    # AWS reorders volumes; they are named.
    KeyBy("/volumes", "name"),
)

# --- services --------------------------------------------------------------------

_DAEMON = Equals("/schedulingStrategy", "DAEMON")

#: The live service is spelled differently from CreateService's input (before projection).
SERVICE_SHAPE: tuple[Rule, ...] = (
    # Shape: describe_services returns the input's ``role`` as ``roleArn``.
    Rename("/roleArn", "role"),
)

_DC = "/deploymentConfiguration"
_HOOK = f"{_DC}/lifecycleHooks/*"
_BREAKER = f"{_DC}/deploymentCircuitBreaker"


def as_float(value: Any) -> Any:
    """A number as a float (the model's ``Double``: ``10`` and ``10.0`` are one value)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


#: Native-strategy defaults (ECS API reference), each nested one on its own. A default is
#: applied to both sides, so one AWS does not echo back still never shows as a difference.
STRATEGY_DEFAULTS: tuple[Rule, ...] = (
    # AWS default (LinearConfiguration): steps of 10.0 percent, 6 minutes between steps.
    Default(f"{_DC}/linearConfiguration", {}, when=Equals(f"{_DC}/strategy", "LINEAR")),
    Default(f"{_DC}/linearConfiguration/stepPercent", 10.0),
    Default(f"{_DC}/linearConfiguration/stepBakeTimeInMinutes", 6),
    # AWS default (CanaryConfiguration): 5.0 percent, 10 minutes before the rest.
    Default(f"{_DC}/canaryConfiguration", {}, when=Equals(f"{_DC}/strategy", "CANARY")),
    Default(f"{_DC}/canaryConfiguration/canaryPercent", 5.0),
    Default(f"{_DC}/canaryConfiguration/canaryBakeTimeInMinutes", 10),
    # AWS default (DeploymentLifecycleHook): a hook invokes a Lambda function ...
    Default(f"{_HOOK}/targetType", "AWS_LAMBDA"),
    # ... and times out after 1440 minutes, then rolls back.
    Default(f"{_HOOK}/timeoutConfiguration", {}),
    Default(f"{_HOOK}/timeoutConfiguration/timeoutInMinutes", 1440),
    Default(f"{_HOOK}/timeoutConfiguration/action", "ROLLBACK"),
    # AWS default (DeploymentCircuitBreaker, 2026): a healthy task resets the failure count;
    # the threshold is the classic one (half the desired count, bounded 3..200).
    Default(f"{_BREAKER}/resetOnHealthyTask", True),
    Default(f"{_BREAKER}/thresholdConfiguration", {}),
    Default(f"{_BREAKER}/thresholdConfiguration/type", "BOUNDED_PERCENT"),
    Default(f"{_BREAKER}/thresholdConfiguration/value", 50),
    # AWS default (DeploymentEarlySuccessCriteria): off.
    Default(f"{_DC}/earlySuccessCriteria", {}),
    Default(f"{_DC}/earlySuccessCriteria/enable", False),
    # Shape: percentages are Doubles; a manifest may write 10 for 10.0.
    Transform(f"{_DC}/linearConfiguration/stepPercent", as_float),
    Transform(f"{_DC}/canaryConfiguration/canaryPercent", as_float),
)

#: Absent means this value (applied to both sides, after projection).
SERVICE_DEFAULTS: tuple[Rule, ...] = (
    # Shape: the input takes a role name or ARN; the service-linked role means "none given".
    Transform("/role", role_name),
    # AWS default: REPLICA scheduling.
    Default("/schedulingStrategy", "REPLICA"),
    # AWS reports launchType EC2 when neither launchType nor a capacity provider strategy was
    # given (and the cluster has no default strategy: see unowned_service_pointers).
    Default("/launchType", "EC2", when=Equals("/capacityProviderStrategy", MISSING)),
    # AWS default: Fargate runs the LATEST platform version.
    Default(
        "/platformVersion",
        "LATEST",
        when=AnyOf(
            (
                Equals("/launchType", "FARGATE"),
                HasItem("/capacityProviderStrategy", "capacityProvider", _FARGATE),
            )
        ),
    ),
    # AWS default: base 0 and weight 0 for a capacity provider.
    Default("/capacityProviderStrategy/*/base", 0),
    Default("/capacityProviderStrategy/*/weight", 0),
    # AWS default (ecs-facts): DISABLED. Note: CreateService now defaults to ENABLED, so
    # when the manifest leaves it unset the live value is not compared (unowned_service_pointers).
    Default("/availabilityZoneRebalancing", "DISABLED"),
    # AWS default: awsvpc tasks get no public IP.
    Default("/networkConfiguration/awsvpcConfiguration/assignPublicIp", "DISABLED"),
    # AWS default: the ECS (rolling) deployment controller.
    Default("/deploymentController", {}),
    Default("/deploymentController/type", "ECS"),
    # AWS defaults, each nested one on its own: 200/100 (DAEMON: 100/0), no circuit breaker,
    # no alarms, ROLLING, no bake time.
    Default("/deploymentConfiguration", {}),
    Default("/deploymentConfiguration/maximumPercent", 200, when=Not(_DAEMON)),
    Default("/deploymentConfiguration/maximumPercent", 100, when=_DAEMON),
    Default("/deploymentConfiguration/minimumHealthyPercent", 100, when=Not(_DAEMON)),
    Default("/deploymentConfiguration/minimumHealthyPercent", 0, when=_DAEMON),
    Default("/deploymentConfiguration/deploymentCircuitBreaker", {}),
    Default("/deploymentConfiguration/deploymentCircuitBreaker/enable", False),
    Default("/deploymentConfiguration/deploymentCircuitBreaker/rollback", False),
    Default("/deploymentConfiguration/alarms", {}),
    Default("/deploymentConfiguration/alarms/enable", False),
    Default("/deploymentConfiguration/alarms/rollback", False),
    Default("/deploymentConfiguration/strategy", "ROLLING"),
    Default("/deploymentConfiguration/bakeTimeInMinutes", 0),
    *STRATEGY_DEFAULTS,
    # Shape: ECS reports Service Connect turned off as {"enabled": false} (gitopsd turns it off
    # by sending that): with nothing else set, it is the same as never configured.
    Drop(
        "/serviceConnectConfiguration",
        when=Equals("/serviceConnectConfiguration", {"enabled": False}),
    ),
    # AWS defaults: no tag propagation, no managed tags, no ECS Exec, no grace period.
    Default("/propagateTags", "NONE"),
    Default("/enableECSManagedTags", False),
    Default("/enableExecuteCommand", False),
    Default("/healthCheckGracePeriodSeconds", 0),
    # Another owner: CodeDeploy swaps a CODE_DEPLOY service's target groups (blue/green).
    Drop(
        "/loadBalancers/*/targetGroupArn",
        when=Equals("/deploymentController/type", "CODE_DEPLOY"),
    ),
)

#: Order that carries no meaning, which ECS does not keep.
SERVICE_ORDER: tuple[Rule, ...] = (
    # Sets (assumed: ECS evaluates every alarm, runs a hook at each of its stages, and runs
    # all hooks of a stage before moving on, so neither order means anything).
    SortBy(f"{_DC}/alarms/alarmNames"),
    SortBy(f"{_HOOK}/lifecycleStages"),
    SortBy(f"{_DC}/lifecycleHooks"),
    # AWS reorders these by content.
    SortBy("/loadBalancers"),
    SortBy("/serviceRegistries"),
    SortBy("/placementConstraints"),
    SortBy("/placementStrategy"),
    SortBy("/capacityProviderStrategy"),
    # AWS reorders subnets and security groups (sets).
    SortBy("/networkConfiguration/awsvpcConfiguration/subnets"),
    SortBy("/networkConfiguration/awsvpcConfiguration/securityGroups"),
)

#: Tags: a set of key/value pairs, kept in any order; {key, value} list -> key -> value map.
TAG_RULES: tuple[Rule, ...] = (
    # The tag value is optional in the input; treat it as "".
    Default("/tags/*/value", ""),
    # AWS reorders tags.
    KeyBy("/tags", "key", value="value"),
)

#: Members of CreateService that never count: where the service lives and the idempotency token.
SERVICE_NOT_COMPARED = frozenset({"cluster", "clientToken"})

#: CreateService members UpdateService lacks that are not settings of the service.
_NOT_SETTINGS = frozenset({"tags", "clientToken", "cluster", "serviceName"})

#: Manifest fields that, when the manifest leaves them unset, another owner decides.
UNOWNED_WHEN_UNSET: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    # (fields left to AWS, when all of these are unset in the manifest)
    # Application Auto Scaling (or, for DAEMON, ECS) owns the count.
    (("desiredCount",), ("desiredCount",)),
    # CreateService defaults it to ENABLED, older services report DISABLED: AWS decides.
    (("availabilityZoneRebalancing",), ("availabilityZoneRebalancing",)),
    # The cluster's default capacity provider strategy decides where the service runs ...
    (("launchType", "capacityProviderStrategy"), ("launchType", "capacityProviderStrategy")),
    # ... and, when that is Fargate, ECS reports platformVersion LATEST.
    (("platformVersion",), ("launchType", "capacityProviderStrategy", "platformVersion")),
)


# --- resetting a service field the manifest no longer sets ---------------------------------
#
# UpdateService leaves a member it is not sent as it is, so a field the manifest drops
# would keep its old live value (and show as drift forever). The applier sends instead the
# value that means "as if never set", in UpdateService's input form. For each such value,
# normalise_service gives the same as for the field left out (tests/plan check both this
# and that botocore accepts every value).

#: deploymentConfiguration's percentages as if never set, by schedulingStrategy (AWS defaults).
_DEPLOYMENT_PERCENTS: dict[str, dict[str, int]] = {
    "REPLICA": {"maximumPercent": 200, "minimumHealthyPercent": 100},
    "DAEMON": {"maximumPercent": 100, "minimumHealthyPercent": 0},
}

#: The rest of deploymentConfiguration as if never set. Only the ECS deployment controller
#: supports these; UpdateService keeps alarms unless they are sent explicitly.
_ECS_CONTROLLER_DEPLOYMENT: dict[str, Any] = {
    "deploymentCircuitBreaker": {"enable": False, "rollback": False},
    "alarms": {"alarmNames": [], "enable": False, "rollback": False},
    "strategy": "ROLLING",
}

#: Top-level UpdateService members other than lists and their "never set" values.
_RESET_SCALARS: dict[str, Any] = {
    "enableExecuteCommand": False,
    "enableECSManagedTags": False,
    "healthCheckGracePeriodSeconds": 0,
    "propagateTags": "NONE",
    # Fargate only (service_reset_value gives none for a service known not to run there).
    "platformVersion": "LATEST",
    # How Service Connect is turned off; ECS then reports {"enabled": false} (normalised away).
    "serviceConnectConfiguration": {"enabled": False},
    # REPLICA with the ECS controller; service_reset_value picks by the service.
    "deploymentConfiguration": {**_DEPLOYMENT_PERCENTS["REPLICA"], **_ECS_CONTROLLER_DEPLOYMENT},
}

#: UpdateService members with no "never set" value to send: not settings (where the service
#: lives, the deployment trigger), always set by gitopsd (taskDefinition), left to another
#: owner when the manifest is silent (UNOWNED_WHEN_UNSET), or without a way back to unset in
#: ECS (networkConfiguration, deploymentController, monitoring): the manifest must keep them.
SERVICE_NO_RESET = frozenset(
    {
        "cluster",
        "service",
        "forceNewDeployment",
        "taskDefinition",
        "desiredCount",
        "availabilityZoneRebalancing",
        "networkConfiguration",
        "deploymentController",
        "monitoring",
    }
)


def _reset_values() -> dict[str, Any]:
    """Every list member of UpdateService (from botocore's model) resets to [], plus scalars."""
    members = input_shape("UpdateService").members
    lists: dict[str, Any] = {
        name: []
        for name, shape in members.items()
        if shape.type_name == "list" and name not in SERVICE_NO_RESET
    }
    return {**lists, **_RESET_SCALARS}


#: Top-level UpdateService member -> the value (input form) that means "as if never set",
#: for a REPLICA service with the ECS deployment controller. Prefer
#: :func:`service_reset_value`, which adapts it to the service. Members without an entry
#: are in :data:`SERVICE_NO_RESET`. Do not mutate.
SERVICE_RESET_VALUES: dict[str, Any] = _reset_values()


def service_reset_value(field: str, desired: Mapping[str, Any]) -> Any:
    """What to send in UpdateService for ``field`` when the manifest ``desired`` drops it.

    A fresh copy of :data:`SERVICE_RESET_VALUES`' entry, adapted to the service:
    deploymentConfiguration follows its schedulingStrategy (DAEMON: 100/0) and, for
    a CODE_DEPLOY or EXTERNAL controller, holds only the percentages. ``MISSING``
    when the field has none (:data:`SERVICE_NO_RESET`, unknown fields) or does not
    apply (platformVersion of a service the manifest puts on EC2 or EXTERNAL).
    ``desired`` is the manifest's spec (input form; the normalised form works too).
    """
    if field not in SERVICE_RESET_VALUES:
        return MISSING
    if field == "platformVersion" and _on_fargate(desired) is False:
        return MISSING
    if field == "deploymentConfiguration":
        daemon = desired.get("schedulingStrategy") == "DAEMON"
        value = dict(_DEPLOYMENT_PERCENTS["DAEMON" if daemon else "REPLICA"])
        controller = desired.get("deploymentController")
        kind = controller.get("type") if isinstance(controller, Mapping) else None
        if kind in (None, "ECS"):
            value.update(copy.deepcopy(_ECS_CONTROLLER_DEPLOYMENT))
        return value
    return copy.deepcopy(SERVICE_RESET_VALUES[field])


def _on_fargate(spec: Mapping[str, Any]) -> bool | None:
    """Whether the manifest puts the service on Fargate; None when the cluster decides."""
    launch_type = spec.get("launchType")
    if isinstance(launch_type, str) and launch_type:
        return launch_type == "FARGATE"
    providers = spec.get("capacityProviderStrategy")
    if isinstance(providers, list) and providers:
        return any(
            isinstance(p, Mapping) and p.get("capacityProvider") in _FARGATE for p in providers
        )
    return None


# --- the functions plan calls -------------------------------------------------------


def normalise_task_definition(
    spec: Mapping[str, Any], *, ignore_tag_keys: Collection[str] = ()
) -> dict[str, Any]:
    """The comparable form of a task definition: desired (input shape) or live (describe)."""
    return normalise(spec, _task_definition_rules() + _tag_filter(ignore_tag_keys))


def normalise_service(
    spec: Mapping[str, Any], *, ignore_tag_keys: Collection[str] = ()
) -> dict[str, Any]:
    """The comparable form of a service: desired (input shape) or live (describe element)."""
    return normalise(_lift_from_primary(spec), _service_rules() + _tag_filter(ignore_tag_keys))


def service_update_fields() -> frozenset[str]:
    """The members UpdateService accepts."""
    return input_members("UpdateService")


def immutable_service_fields() -> frozenset[str]:
    """CreateService settings UpdateService cannot change: a diff on one needs a replacement."""
    return input_members("CreateService") - input_members("UpdateService") - _NOT_SETTINGS


def unowned_service_pointers(desired: Mapping[str, Any]) -> tuple[str, ...]:
    """Pointers to leave out of a service diff because the manifest leaves them to AWS.

    For ``diff``'s ``ignore``: ``/desiredCount`` when the manifest has no
    desiredCount, and likewise for the other :data:`UNOWNED_WHEN_UNSET` entries
    (fields are left to AWS only when every field of the entry's condition is unset).
    """
    return tuple(
        f"/{name}"
        for fields, when_unset in UNOWNED_WHEN_UNSET
        if all(_unset(desired.get(name)) for name in when_unset)
        for name in fields
    )


# --- assembly --------------------------------------------------------------------


@functools.cache
def _task_definition_rules() -> tuple[Rule, ...]:
    return (
        Project(input_shape("RegisterTaskDefinition")),
        *TASK_DEFINITION_DEFAULTS,
        *TASK_DEFINITION_TRANSFORMS,
        *TASK_DEFINITION_ORDER,
        *TAG_RULES,
    )


@functools.cache
def _service_rules() -> tuple[Rule, ...]:
    return (
        *SERVICE_SHAPE,
        Project(input_shape("CreateService"), exclude=SERVICE_NOT_COMPARED),
        *SERVICE_DEFAULTS,
        *SERVICE_ORDER,
        *TAG_RULES,
    )


@dataclass(frozen=True)
class _UnwantedTag:
    """Tags that never count, on either side.

    Under ``ownership.RESERVED_TAG_PREFIXES``: gitopsd's own (``gitopsd:``) and those
    AWS reserves (``aws:``, e.g. ``aws:cloudformation:stack-name``), which users
    cannot change or remove. Keys another tool owns come per app (``ignore_tag_keys``).
    """

    ignored: frozenset[str]

    def __call__(self, key: str) -> bool:
        return is_reserved_tag(key) or key in self.ignored


def _tag_filter(ignore_tag_keys: Collection[str]) -> tuple[Rule, ...]:
    return (DropKeys("/tags", _UnwantedTag(frozenset(ignore_tag_keys))),)


@functools.cache
def _primary_only_fields() -> tuple[str, ...]:
    """CreateService members describe_services reports only on deployments, not the service."""
    model = ecs_model()
    deployment = set(model.shape_for("Deployment").members)
    service = set(model.shape_for("Service").members)
    return tuple(sorted((input_members("CreateService") & deployment) - service))


def _lift_from_primary(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    """Shape: a live service with its PRIMARY deployment's settings lifted to the top level."""
    deployments = spec.get("deployments")
    if not isinstance(deployments, list):
        return spec
    primary = next(
        (d for d in deployments if isinstance(d, Mapping) and d.get("status") == "PRIMARY"), None
    )
    if primary is None:
        return spec
    lifted = dict(spec)
    for name in _primary_only_fields():
        if _unset(lifted.get(name)) and not _unset(primary.get(name)):
            lifted[name] = primary[name]
    return lifted


def _unset(value: Any) -> bool:
    return value is None or (isinstance(value, list | dict) and not value)
