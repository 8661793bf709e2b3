"""Build gitopsd's IAM policy documents from the operations its code calls.

The actions come from :func:`gitopsd.iam.collect.collect` through the table in
:mod:`gitopsd.iam.actions`; this module only decides, per statement, the
resources and conditions, from a :class:`Target` (account, regions and
clusters, task-definition families, the roles task definitions pass, the state
table, the configuration parameter). The default target is made of documented
placeholders (``ACCOUNT_ID``, ``REGION``, ``CLUSTER``...): that is what
``config/iam/*.json`` hold; ``gitopsd iam-policy`` fills in real values.

Two documents: the full policy for ``sync`` and ``run``, and a read-only one
(List and Read actions only) for ``validate``, ``diff``, ``status`` and
``history``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gitopsd.backends.ecs.ownership import APP_TAG
from gitopsd.iam.actions import Action, Scope, actions_for
from gitopsd.iam.collect import Operation, collect

POLICY_VERSION = "2012-10-17"
ECS_TASKS = "ecs-tasks.amazonaws.com"
PLACEHOLDER_ACCOUNT = "ACCOUNT_ID"
PLACEHOLDER_REGION = "REGION"
PLACEHOLDER_CLUSTER = "CLUSTER"
DEFAULT_TABLE = "gitopsd-state"
DEFAULT_PARAMETER = "/gitopsd/config"
#: The role apps assume (``apps[].aws.role_arn``), when a configuration names none.
PLACEHOLDER_ASSUME_ROLES = (f"arn:aws:iam::{PLACEHOLDER_ACCOUNT}:role/DEPLOY_ROLE",)
PLACEHOLDER_ROLES = (
    f"arn:aws:iam::{PLACEHOLDER_ACCOUNT}:role/EXECUTION_ROLE",
    f"arn:aws:iam::{PLACEHOLDER_ACCOUNT}:role/TASK_ROLE",
)


@dataclass(frozen=True)
class Target:
    """Where gitopsd works: what the policy's resources are made of."""

    account: str = PLACEHOLDER_ACCOUNT
    partition: str = "aws"
    #: (region, cluster name) pairs gitopsd manages services in.
    clusters: tuple[tuple[str, str], ...] = ((PLACEHOLDER_REGION, PLACEHOLDER_CLUSTER),)
    #: Task-definition family names (or patterns with ``*``) gitopsd registers.
    families: tuple[str, ...] = ("*",)
    #: Role ARNs the task definitions name (``taskRoleArn``, ``executionRoleArn``).
    roles: tuple[str, ...] = PLACEHOLDER_ROLES
    #: The DynamoDB state table (None: the state directory, no DynamoDB statement).
    table: str | None = DEFAULT_TABLE
    table_region: str = PLACEHOLDER_REGION
    #: The SSM parameter holding the configuration, a name or an ARN (None: no SSM).
    parameter: str | None = DEFAULT_PARAMETER
    parameter_region: str = PLACEHOLDER_REGION
    #: A customer managed KMS key encrypting the parameter (adds ``kms:Decrypt`` via SSM).
    kms_key: str | None = None
    #: Roles apps assume (``apps[].aws.role_arn``); empty: no AssumeRole statement.
    assume_roles: tuple[str, ...] = PLACEHOLDER_ASSUME_ROLES
    #: Operations to grant (default: what the code calls).
    operations: frozenset[Operation] | None = field(default=None, compare=False)

    @property
    def regions(self) -> list[str]:
        return sorted({region for region, _ in self.clusters})

    def arn(self, service: str, region: str, resource: str) -> str:
        return f"arn:{self.partition}:{service}:{region}:{self.account}:{resource}"

    def cluster_arns(self) -> list[str]:
        return [self.arn("ecs", r, f"cluster/{c}") for r, c in self.clusters]

    def ecs_arns(self, kind: str) -> list[str]:
        """``service/CLUSTER/*``-style ARNs for every managed cluster."""
        return [self.arn("ecs", r, f"{kind}/{c}/*") for r, c in self.clusters]

    def task_definition_arns(self) -> list[str]:
        return [
            self.arn("ecs", r, f"task-definition/{f}:*")
            for r in self.regions
            for f in self.families
        ]

    def parameter_arn(self) -> str:
        name = self.parameter or ""
        if name.startswith("arn:"):
            return name
        return self.arn("ssm", self.parameter_region, f"parameter/{name.lstrip('/')}")

    def parameter_region_of(self) -> str:
        name = self.parameter or ""
        return name.split(":")[3] if name.startswith("arn:") else self.parameter_region


def _resources(target: Target, scope: Scope) -> str | list[str]:
    if scope in (Scope.SERVICES, Scope.CREATE_SERVICE, Scope.DELETE_OWNED):
        return target.ecs_arns("service")
    if scope is Scope.SERVICE_DEPLOYMENTS:
        return (
            target.ecs_arns("service")
            + target.ecs_arns("service-deployment")
            + target.ecs_arns("service-revision")
        )
    if scope in (Scope.CLUSTER_CONDITION, Scope.ANY_TASK_DEFINITION):
        return "*"
    if scope is Scope.REGISTER:
        return target.task_definition_arns()
    if scope is Scope.TAGGING:
        return target.ecs_arns("service") + target.task_definition_arns()
    if scope is Scope.PASS_ROLE:
        return list(target.roles)
    if scope is Scope.STATE_TABLE:
        return target.arn("dynamodb", target.table_region, f"table/{target.table}")
    if scope is Scope.CONFIG_PARAMETER:
        return target.parameter_arn()
    if scope in (
        Scope.CALLER_IDENTITY,
        Scope.SECRET_PARAMETERS,
        Scope.DEPLOYMENT_ALARMS,
        Scope.METRICS,
    ):
        return "*"
    if scope is Scope.ASSUME_ROLE:
        return list(target.assume_roles)
    if scope is Scope.SECRETS:
        return [target.arn("secretsmanager", r, "secret:*") for r in target.regions]
    raise AssertionError(scope)  # pragma: no cover - every Scope is handled above


def _condition(target: Target, scope: Scope) -> dict[str, Any] | None:
    if scope is Scope.CLUSTER_CONDITION:
        return {"ArnEquals": {"ecs:cluster": target.cluster_arns()}}
    if scope in (Scope.REGISTER, Scope.CREATE_SERVICE):
        return {"Null": {f"aws:RequestTag/{APP_TAG}": "false"}}
    if scope is Scope.DELETE_OWNED:
        return {"Null": {f"aws:ResourceTag/{APP_TAG}": "false"}}
    if scope is Scope.PASS_ROLE:
        return {"StringEquals": {"iam:PassedToService": ECS_TASKS}}
    return None


def _wanted(target: Target, actions: Iterable[Action]) -> list[Action]:
    out = []
    for action in actions:
        if action.scope is Scope.STATE_TABLE and target.table is None:
            continue
        if action.scope is Scope.CONFIG_PARAMETER and target.parameter is None:
            continue
        if action.scope is Scope.PASS_ROLE and not target.roles:
            continue
        if action.scope is Scope.ASSUME_ROLE and not target.assume_roles:
            continue
        out.append(action)
    return out


def build_policy(target: Target | None = None, *, read_only: bool = False) -> dict[str, Any]:
    """The policy document for ``target`` (placeholders by default)."""
    target = target or Target()
    operations = target.operations
    if operations is None:
        operations = collect().operations
    actions = _wanted(target, actions_for(operations))
    if read_only:
        actions = [a for a in actions if a.access.read_only]
    statements: list[dict[str, Any]] = []
    for scope in Scope:
        names = sorted({a.name for a in actions if a.scope is scope})
        if not names:
            continue
        statement: dict[str, Any] = {
            "Sid": scope.value,
            "Effect": "Allow",
            "Action": names,
            "Resource": _resources(target, scope),
        }
        condition = _condition(target, scope)
        if condition is not None:
            statement["Condition"] = condition
        statements.append(statement)
    if (
        target.kms_key
        and target.parameter is not None
        and any(a.scope is Scope.CONFIG_PARAMETER for a in actions)
    ):
        statements.append(
            {
                "Sid": "DecryptConfigParameter",
                "Effect": "Allow",
                "Action": ["kms:Decrypt"],
                "Resource": target.kms_key,
                "Condition": {
                    "StringEquals": {
                        "kms:ViaService": f"ssm.{target.parameter_region_of()}.amazonaws.com"
                    }
                },
            }
        )
    return {"Version": POLICY_VERSION, "Statement": statements}


def render(policy: dict[str, Any]) -> str:
    """The document as written to ``config/iam/*.json`` and printed by the command."""
    return json.dumps(policy, indent=2) + "\n"


def policy_actions(policy: dict[str, Any]) -> set[str]:
    """Every action a policy document names."""
    out: set[str] = set()
    for statement in policy["Statement"]:
        action = statement["Action"]
        out.update([action] if isinstance(action, str) else action)
    return out


def target_from(
    *,
    account: str | None = None,
    region: str | None = None,
    clusters: Sequence[str] = (),
    families: Sequence[str] = (),
    roles: Sequence[str] = (),
    table: str | None = None,
    no_table: bool = False,
    parameter: str | None = None,
    no_parameter: bool = False,
    kms_key: str | None = None,
    partition: str | None = None,
    config_clusters: Sequence[tuple[str | None, str]] = (),
    config_table: tuple[str | None, str | None] | None = None,
    assume_roles: Sequence[str] = (),
    config_assume_roles: Sequence[str] | None = None,
) -> Target:
    """A target from command-line values, over a configuration's, over the placeholders.

    ``config_clusters`` are ``(region or None, cluster)`` from a configuration's apps;
    ``config_table`` is ``(table or None, region or None)`` from its ``[state]``;
    ``config_assume_roles`` the ``apps[].aws.role_arn`` of its apps (None: no configuration,
    a placeholder role; empty: no AssumeRole statement).
    """
    default = Target()
    home = region or PLACEHOLDER_REGION
    pairs = [_cluster(r or home, c) for r, c in config_clusters]
    pairs += [_cluster(home, c) for c in clusters]
    state_table, state_region = config_table if config_table else (default.table, None)
    chosen_table = None if no_table else (table or state_table)
    return Target(
        account=account or default.account,
        partition=partition or default.partition,
        clusters=tuple(sorted(set(pairs))) or ((home, PLACEHOLDER_CLUSTER),),
        families=tuple(families) or default.families,
        roles=tuple(roles) or default.roles,
        table=chosen_table,
        table_region=state_region or home,
        parameter=None if no_parameter else (parameter or default.parameter),
        parameter_region=home,
        kms_key=kms_key,
        assume_roles=_assume_roles(
            assume_roles, config_assume_roles, partition or default.partition, account
        ),
    )


def _assume_roles(
    given: Sequence[str], configured: Sequence[str] | None, partition: str, account: str | None
) -> tuple[str, ...]:
    if given or configured is not None:
        return tuple(sorted({*given, *(configured or ())}))
    return (f"arn:{partition}:iam::{account or PLACEHOLDER_ACCOUNT}:role/DEPLOY_ROLE",)


def _cluster(region: str, cluster: str) -> tuple[str, str]:
    """``(region, name)``; a cluster ARN gives its own region and name."""
    if cluster.startswith("arn:"):
        parts = cluster.split(":", 5)
        if len(parts) == 6 and parts[5].startswith("cluster/"):
            return parts[3], parts[5].removeprefix("cluster/")
    return region, cluster
