"""Which IAM actions each AWS operation gitopsd calls needs, and how far each can be scoped.

This is the knowledge the code cannot tell by itself, taken from the Service
Authorization Reference (the "Actions, resources, and condition keys" page of
each service): an operation may need more than its namesake action (a
CreateService or RegisterTaskDefinition that carries tags also needs
``ecs:TagResource``; a task definition naming a task or execution role needs
``iam:PassRole`` on it), and each action supports resource-level permissions for
some resource types only (``ecs:DescribeTaskDefinition`` supports none, so its
statement's resource must be ``*``).

Each action belongs to one :class:`Scope`, the statement of the policy that grants
it; gitopsd.iam.policy turns a scope into resource ARNs and conditions. A test
fails when an operation the code calls has no entry here, or an entry is never
called.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from gitopsd.iam.collect import Operation


class Access(Enum):
    """The access level the Service Authorization Reference gives an action."""

    LIST = "List"
    READ = "Read"
    WRITE = "Write"
    TAGGING = "Tagging"
    PERMISSIONS = "Permissions management"

    @property
    def read_only(self) -> bool:
        return self in (Access.LIST, Access.READ)


class Scope(Enum):
    """The statement an action goes in: what its resources and conditions can be."""

    #: Resource ``service/CLUSTER/*`` (the services of the managed clusters).
    SERVICES = "EcsServices"
    #: Services plus their service deployments and revisions (both resource types required).
    SERVICE_DEPLOYMENTS = "EcsServiceDeployments"
    #: Resource ``*`` (no resource-level permissions) with the ``ecs:cluster`` condition.
    CLUSTER_CONDITION = "EcsListServices"
    #: Resource ``*``: the action supports no resource-level permissions at all.
    ANY_TASK_DEFINITION = "EcsTaskDefinitionsNoResourceLevel"
    #: Resource ``task-definition/FAMILY:*``, only with gitopsd's ownership tag in the request.
    REGISTER = "EcsRegisterTaggedTaskDefinitions"
    #: Resource ``service/CLUSTER/*``, only with gitopsd's ownership tag in the request.
    CREATE_SERVICE = "EcsCreateTaggedServices"
    #: Resource ``service/CLUSTER/*`` carrying gitopsd's ownership tag (prune deletes only those).
    DELETE_OWNED = "EcsDeleteOwnedServices"
    #: Services and task definitions (tags on create, and retagging).
    TAGGING = "EcsTagServicesAndTaskDefinitions"
    #: The declared task and execution roles, passed to ``ecs-tasks.amazonaws.com`` only.
    PASS_ROLE = "PassDeclaredTaskRoles"
    #: The state store's DynamoDB table.
    STATE_TABLE = "StateTable"
    #: The SSM parameter holding the configuration.
    CONFIG_PARAMETER = "ConfigParameter"
    #: Resource ``*``: who gitopsd is (sts:GetCallerIdentity needs no permission; listed so
    #: the policy names every call).
    CALLER_IDENTITY = "CallerIdentity"
    #: The roles apps deploy with (``apps[].aws.role_arn``).
    ASSUME_ROLE = "AssumeAppRoles"
    #: Resource ``*``: ssm:DescribeParameters has no resource-level permissions (metadata only,
    #: never values).
    SECRET_PARAMETERS = "DescribeSecretParameters"
    #: The Secrets Manager secrets task definitions reference (metadata only, never values).
    SECRETS = "DescribeReferencedSecrets"
    #: Resource ``*``: the CloudWatch alarms services name for their deployments (composite
    #: alarms are described only with DescribeAlarms scoped to ``*``).
    DEPLOYMENT_ALARMS = "DescribeDeploymentAlarms"
    #: Resource ``*``: cloudwatch:GetMetricData has no resource-level permissions (gates).
    METRICS = "ReadGateMetrics"


@dataclass(frozen=True)
class Action:
    """One IAM action with its access level and the statement it goes in."""

    name: str
    access: Access
    scope: Scope


def _a(name: str, access: Access, scope: Scope) -> Action:
    return Action(name, access, scope)


_TAG = _a("ecs:TagResource", Access.TAGGING, Scope.TAGGING)
_PASS = _a("iam:PassRole", Access.WRITE, Scope.PASS_ROLE)

#: Every operation gitopsd calls -> the IAM actions it needs.
ACTIONS: dict[Operation, tuple[Action, ...]] = {
    # ECS reads
    Operation("ecs", "DescribeServices"): (
        _a("ecs:DescribeServices", Access.READ, Scope.SERVICES),
    ),
    Operation("ecs", "ListServiceDeployments"): (
        _a("ecs:ListServiceDeployments", Access.LIST, Scope.SERVICES),
    ),
    Operation("ecs", "DescribeServiceDeployments"): (
        _a("ecs:DescribeServiceDeployments", Access.READ, Scope.SERVICE_DEPLOYMENTS),
    ),
    Operation("ecs", "DescribeServiceRevisions"): (
        _a("ecs:DescribeServiceRevisions", Access.READ, Scope.SERVICE_DEPLOYMENTS),
    ),
    Operation("ecs", "ListServices"): (
        _a("ecs:ListServices", Access.LIST, Scope.CLUSTER_CONDITION),
    ),
    Operation("ecs", "DescribeTaskDefinition"): (
        _a("ecs:DescribeTaskDefinition", Access.READ, Scope.ANY_TASK_DEFINITION),
    ),
    Operation("ecs", "ListTaskDefinitions"): (
        _a("ecs:ListTaskDefinitions", Access.LIST, Scope.ANY_TASK_DEFINITION),
    ),
    # ECS writes
    Operation("ecs", "RegisterTaskDefinition"): (
        _a("ecs:RegisterTaskDefinition", Access.WRITE, Scope.REGISTER),
        _TAG,  # the request carries gitopsd's tags (tag on create)
        _PASS,  # taskRoleArn / executionRoleArn
    ),
    Operation("ecs", "DeregisterTaskDefinition"): (
        _a("ecs:DeregisterTaskDefinition", Access.WRITE, Scope.ANY_TASK_DEFINITION),
    ),
    Operation("ecs", "CreateService"): (
        _a("ecs:CreateService", Access.WRITE, Scope.CREATE_SERVICE),
        _TAG,  # the request carries gitopsd's tags (tag on create)
    ),
    Operation("ecs", "UpdateService"): (_a("ecs:UpdateService", Access.WRITE, Scope.SERVICES),),
    Operation("ecs", "ContinueServiceDeployment"): (
        _a("ecs:ContinueServiceDeployment", Access.WRITE, Scope.SERVICE_DEPLOYMENTS),
    ),
    # metric gates: a failing gate (or the deadline) rolls a deployment back
    Operation("ecs", "StopServiceDeployment"): (
        _a("ecs:StopServiceDeployment", Access.WRITE, Scope.SERVICE_DEPLOYMENTS),
    ),
    Operation("ecs", "DeleteService"): (_a("ecs:DeleteService", Access.WRITE, Scope.DELETE_OWNED),),
    Operation("ecs", "TagResource"): (_TAG,),
    Operation("ecs", "UntagResource"): (_a("ecs:UntagResource", Access.TAGGING, Scope.TAGGING),),
    # the state store ([state] backend = "dynamodb")
    Operation("dynamodb", "GetItem"): (_a("dynamodb:GetItem", Access.READ, Scope.STATE_TABLE),),
    Operation("dynamodb", "Query"): (_a("dynamodb:Query", Access.READ, Scope.STATE_TABLE),),
    Operation("dynamodb", "PutItem"): (_a("dynamodb:PutItem", Access.WRITE, Scope.STATE_TABLE),),
    Operation("dynamodb", "DeleteItem"): (
        _a("dynamodb:DeleteItem", Access.WRITE, Scope.STATE_TABLE),
    ),
    # metric gates of type "cloudwatch" (apps[].gates)
    Operation("cloudwatch", "GetMetricData"): (
        _a("cloudwatch:GetMetricData", Access.READ, Scope.METRICS),
    ),
    # who gitopsd deploys as: the account checked against [policy].accounts, assumed roles
    Operation("sts", "GetCallerIdentity"): (
        _a("sts:GetCallerIdentity", Access.READ, Scope.CALLER_IDENTITY),
    ),
    # Write in the Service Authorization Reference; READ here because it changes nothing by
    # itself (the role's own policy bounds what follows) and diff needs it for such apps.
    Operation("sts", "AssumeRole"): (_a("sts:AssumeRole", Access.READ, Scope.ASSUME_ROLE),),
    # secrets[].valueFrom checked to exist before a task definition is registered
    Operation("ssm", "DescribeParameters"): (
        _a("ssm:DescribeParameters", Access.LIST, Scope.SECRET_PARAMETERS),
    ),
    Operation("secretsmanager", "DescribeSecret"): (
        _a("secretsmanager:DescribeSecret", Access.READ, Scope.SECRETS),
    ),
    # deploymentConfiguration.alarms checked to exist (and not already in ALARM) before a write
    Operation("cloudwatch", "DescribeAlarms"): (
        _a("cloudwatch:DescribeAlarms", Access.LIST, Scope.DEPLOYMENT_ALARMS),
    ),
    # the configuration from SSM ($GITOPSD_CONFIG_SSM)
    Operation("ssm", "GetParameter"): (
        _a("ssm:GetParameter", Access.READ, Scope.CONFIG_PARAMETER),
    ),
}


def actions_for(operations: frozenset[Operation]) -> list[Action]:
    """The actions the operations need, each once, sorted by name.

    Raises ``KeyError`` naming the operations ACTIONS has no entry for.
    """
    unknown = sorted(operations - ACTIONS.keys())
    if unknown:
        raise KeyError(
            "no IAM actions known for "
            + ", ".join(map(str, unknown))
            + ": add them to ACTIONS in gitopsd/iam/actions.py (see the Service "
            "Authorization Reference for the action, its access level and resource types)"
        )
    found = {a.name: a for op in operations for a in ACTIONS[op]}
    return [found[name] for name in sorted(found)]
