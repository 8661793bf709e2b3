"""gitopsd deploying itself: the shipped ``examples/self`` manifests and ``config/self.toml``.

docs/self-deploy.md tells operators to copy those two into their deploy repository
and run one ``gitopsd sync self`` by hand; these tests do exactly that against the
local endpoint (over HTTP, with moto's EC2 for the awsvpc network and its DynamoDB
for the state table) and a ``git daemon`` on loopback. They check what the
walkthrough promises: the service runs one task with the circuit breaker on and
never two agents at once, the task definition carries the roles, the log
configuration and the health check, and an upgrade is one commit that rolls out
like any other.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from support.gitserver import GitDaemon, make_repo

from gitopsd.local_aws.testing import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY, LocalAws

from .conftest import EXAMPLES, Env

ROOT = EXAMPLES.parent
SELF_CONFIG = ROOT / "config" / "self.toml"
SELF_CLUSTER = "ops"
SELF_TD = "self/task-definition.yaml"
TABLE = "gitopsd-state"
ACCOUNT = "123456789012"


@dataclass(frozen=True)
class Network:
    subnets: tuple[str, str]
    security_group: str


def create_network(aws: LocalAws) -> Network:
    """What an awsvpc service needs to exist first: a VPC, two subnets, a security group."""
    ec2 = aws.boto3_client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = tuple(
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24")["Subnet"]["SubnetId"]
        for i in (1, 2)
    )
    group = ec2.create_security_group(GroupName="gitopsd", Description="gitopsd agent", VpcId=vpc)[
        "GroupId"
    ]
    return Network((subnets[0], subnets[1]), group)


def create_state_table(aws: LocalAws) -> None:
    """The state table as docs/state.md creates it (gitopsd never creates it)."""
    aws.boto3_client("dynamodb").create_table(
        TableName=TABLE,
        AttributeDefinitions=[
            {"AttributeName": "ns", "AttributeType": "S"},
            {"AttributeName": "key", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "ns", "KeyType": "HASH"},
            {"AttributeName": "key", "KeyType": "RANGE"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def create_parameters(aws: LocalAws) -> None:
    """The SSM parameters config/self.toml's task definition names (docs/self-deploy.md):
    gitopsd checks that each valueFrom exists before it registers the task definition."""
    ssm = boto3.client(
        "ssm",
        region_name="eu-west-1",
        endpoint_url=aws.endpoint_url,
        aws_access_key_id=DUMMY_ACCESS_KEY,
        aws_secret_access_key=DUMMY_SECRET_KEY,
    )
    for name in ("config", "git-token", "control-token"):
        ssm.put_parameter(Name=f"/gitopsd/{name}", Value="x", Type="SecureString")


def _set(text: str, key: str, value: str) -> str:
    """Set every ``key = "..."`` line of the shipped TOML, failing if it has none."""
    text, count = re.subn(
        rf'^(\s*){re.escape(key)} = "[^"]*"', rf'\g<1>{key} = "{value}"', text, flags=re.M
    )
    assert count, f"config/self.toml has no {key!r}"
    return text


def self_config(url: str, aws: LocalAws, network: Network, state_dir: Path) -> str:
    """config/self.toml as shipped, pointed at the test's git daemon, endpoint and network.

    Only what differs between an AWS account and the local endpoint is changed; the
    app, its vars (roles, log group, config parameter), the state table and the sync
    policy are the shipped ones.
    """
    text = SELF_CONFIG.read_text()
    # git:// from the test's daemon needs no token.
    text, count = re.subn(
        r"^\s*\[sources\.auth\]\n(\s*#.*\n)*\s*token_env = .*\n", "", text, flags=re.M
    )
    assert count == 1, "config/self.toml: the source's auth block moved"
    for key, value in (
        ("region", aws.region),
        ("url", url),
        ("state_dir", str(state_dir)),
        ("REGION", aws.region),
        ("SUBNET_A", network.subnets[0]),
        ("SUBNET_B", network.subnets[1]),
        ("SECURITY_GROUP", network.security_group),
        ("address", "127.0.0.1:0"),
    ):
        text = _set(text, key, value)
    return text.replace(
        f'[aws]\nregion = "{aws.region}"\n',
        f'[aws]\nregion = "{aws.region}"\nendpoint_url = "{aws.endpoint_url}"\nmax_attempts = 2\n',
    ).replace("[daemon]\n", '[daemon]\nrollout_poll_interval = "50ms"\n')


@pytest.fixture
def self_env(tmp_path: Path, aws: LocalAws, capsys: pytest.CaptureFixture[str]) -> Iterator[Env]:
    """A deploy repository holding ``self/`` (examples/self), served by git daemon."""
    aws.create_cluster(SELF_CLUSTER)
    network = create_network(aws)
    create_state_table(aws)
    create_parameters(aws)
    aws.clear_calls()
    repo = make_repo(tmp_path / "work")
    repo.copy_tree(EXAMPLES / "self", "self")
    repo.commit("gitopsd deploys itself")
    repo.publish(tmp_path / "served" / "deploy.git")
    with GitDaemon(tmp_path / "served") as daemon:
        config = tmp_path / "gitopsd.toml"
        config.write_text(self_config(daemon.url("deploy"), aws, network, tmp_path / "state"))
        yield Env(repo, aws, config, capsys)


def gitopsd_service(env: Env) -> dict[str, Any]:
    out = env.ecs().describe_services(cluster=SELF_CLUSTER, services=["gitopsd"], include=["TAGS"])
    services: list[dict[str, Any]] = out["services"]
    assert services, "the gitopsd service does not exist"
    return services[0]


def task_definition(env: Env, arn: str) -> dict[str, Any]:
    answer = env.ecs().describe_task_definition(taskDefinition=arn, include=["TAGS"])
    td: dict[str, Any] = {**answer["taskDefinition"], "tags": answer.get("tags", [])}
    return td


def test_the_self_manifests_validate_with_the_shipped_config() -> None:
    from gitopsd.cli import main

    assert main(["validate", "-c", str(SELF_CONFIG), "--dir", str(EXAMPLES), "self"]) == 0


def test_first_sync_by_hand_creates_the_gitopsd_service(self_env: Env) -> None:
    env = self_env
    assert env.gitopsd("validate", "self").code == 0
    run = env.gitopsd("sync", "self")
    assert run.code == 0, run.out + run.err
    assert "rollout Service/gitopsd: COMPLETED" in run.out
    writes = Counter(env.writes())
    assert writes["RegisterTaskDefinition"] == 1
    assert writes["CreateService"] == 1

    service = gitopsd_service(env)
    assert service["status"] == "ACTIVE"
    assert service["desiredCount"] == 1
    assert service["launchType"] == "FARGATE"
    deployment = service["deploymentConfiguration"]
    assert deployment["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    # Never two agents: the old task stops before the new one starts.
    assert deployment["minimumHealthyPercent"] == 0
    assert deployment["maximumPercent"] == 100
    vpc = service["networkConfiguration"]["awsvpcConfiguration"]
    assert len(vpc["subnets"]) == 2
    assert len(vpc["securityGroups"]) == 1
    tags = {t["key"]: t["value"] for t in service["tags"]}
    assert tags["gitopsd:app"] == "self"
    td_tags = {
        t["key"]: t["value"] for t in task_definition(env, service["taskDefinition"])["tags"]
    }
    assert td_tags["gitopsd:revision"] == env.repo.head()

    td = task_definition(env, service["taskDefinition"])
    assert td["family"] == "gitopsd"
    assert td["taskRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/gitopsd-task"
    assert td["executionRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/gitopsd-execution"
    assert td["networkMode"] == "awsvpc"
    assert td["requiresCompatibilities"] == ["FARGATE"]
    (container,) = td["containerDefinitions"]
    assert container["image"] == f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/gitopsd:0.1.0"
    logs = container["logConfiguration"]
    assert logs["logDriver"] == "awslogs"
    assert logs["options"]["awslogs-group"] == "/ecs/gitopsd"
    assert logs["options"]["awslogs-region"] == env.aws.region
    assert container["healthCheck"]["command"] == ["CMD", "python", "-m", "gitopsd.healthcheck"]
    assert container["portMappings"][0]["containerPort"] == 8099
    # The configuration and the secrets it names by variable, injected by ECS from SSM.
    secrets = {s["name"]: s["valueFrom"] for s in container["secrets"]}
    parameter = f"arn:aws:ssm:eu-west-1:{ACCOUNT}:parameter/gitopsd"
    assert secrets == {
        "GITOPSD_CONFIG_TOML": f"{parameter}/config",
        "GIT_TOKEN": f"{parameter}/git-token",
        "GITOPSD_CONTROL_TOKEN": f"{parameter}/control-token",
    }
    # ECS waits stopTimeout before SIGKILL: longer than the agent's grace period (30s).
    assert container["stopTimeout"] > 30

    # The applied commit is recorded in the DynamoDB state table, not on the task's disk.
    items = env.aws.boto3_client("dynamodb").scan(TableName=TABLE)["Items"]
    assert {(i["ns"]["S"], i["key"]["S"]) for i in items} >= {("applied", "self")}

    env.aws.clear_calls()
    again = env.gitopsd("sync", "self")
    assert again.code == 0, again.out + again.err
    assert "in sync: nothing to do" in again.out
    assert env.writes() == []


def test_upgrading_gitopsd_is_one_commit_and_a_normal_rollout(self_env: Env) -> None:
    env = self_env
    first = env.gitopsd("sync", "self")
    assert first.code == 0, first.out + first.err
    old = gitopsd_service(env)["taskDefinition"]

    env.edit(SELF_TD, "/gitopsd:0.1.0", "/gitopsd:0.2.0")
    upgrade = env.commit("gitopsd 0.2.0")
    diff = env.gitopsd("diff", "self")
    assert diff.code == 1
    assert "gitopsd:0.2.0" in diff.out
    env.aws.clear_calls()
    run = env.gitopsd("sync", "self")
    assert run.code == 0, run.out + run.err
    assert "rollout Service/gitopsd: COMPLETED" in run.out
    writes = Counter(env.writes())
    assert writes["RegisterTaskDefinition"] == 1
    assert writes["UpdateService"] == 1
    assert writes["CreateService"] == 0

    service = gitopsd_service(env)
    assert service["taskDefinition"] != old
    assert service["taskDefinition"].endswith("task-definition/gitopsd:2")
    (deployment,) = service["deployments"]  # the old agent's deployment is gone: one writer
    assert deployment["status"] == "PRIMARY"
    assert deployment["rolloutState"] == "COMPLETED"
    assert deployment["taskDefinition"] == service["taskDefinition"]
    td_tags = {
        t["key"]: t["value"] for t in task_definition(env, service["taskDefinition"])["tags"]
    }
    assert td_tags["gitopsd:revision"] == upgrade
    (container,) = task_definition(env, service["taskDefinition"])["containerDefinitions"]
    assert container["image"].endswith("/gitopsd:0.2.0")
    assert env.gitopsd("diff", "self").code == 0
