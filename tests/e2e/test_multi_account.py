"""Two apps in two AWS accounts, each through an assumed role, side by side.

The local endpoint is moto, whose STS answers AssumeRole with credentials of the
role's account and keeps one set of backends per account: a cluster created in
account 111111111111 does not exist in 222222222222 nor in the default account
(123456789012). So where each service lands shows which credentials each app used.
"""

from __future__ import annotations

import datetime
from typing import Any

import boto3
import pytest

from gitopsd.backends.ecs.accounts import Accounts
from gitopsd.config import parse_config
from gitopsd.local_aws.testing import LocalAws

from .conftest import CLUSTER, Env

WEB_ROLE = "arn:aws:iam::111111111111:role/gitopsd-deployer"
WORKER_ROLE = "arn:aws:iam::222222222222:role/gitopsd-deployer"


def assumed(aws: LocalAws, role: str, service: str = "ecs") -> Any:
    """A boto3 client of ``service`` with credentials of ``role`` (as an operator would)."""
    creds = aws.boto3_client("sts").assume_role(RoleArn=role, RoleSessionName="test")
    keys = creds["Credentials"]
    return boto3.client(
        service,
        region_name=aws.region,
        endpoint_url=aws.endpoint_url,
        aws_access_key_id=keys["AccessKeyId"],
        aws_secret_access_key=keys["SecretAccessKey"],
        aws_session_token=keys["SessionToken"],
    )


def with_roles(env: Env, roles: dict[str, str], policy: str = "") -> None:
    text = env.config.read_text()
    for app, role in roles.items():
        old = f'name = "{app}"\n'
        assert old in text
        text = text.replace(
            old, f'{old}aws = {{ role_arn = "{role}", external_id = "ext-{app}" }}\n'
        )
    env.config.write_text(text + (f"\n[policy]\n{policy}\n" if policy else ""))


def service_names(client: Any) -> list[str]:
    arns = client.list_services(cluster=CLUSTER)["serviceArns"]
    return sorted(a.rsplit("/", 1)[-1] for a in arns)


def test_two_apps_in_two_accounts_sync_side_by_side(env: Env) -> None:
    web_ecs, worker_ecs = assumed(env.aws, WEB_ROLE), assumed(env.aws, WORKER_ROLE)
    web_ecs.create_cluster(clusterName=CLUSTER)
    worker_ecs.create_cluster(clusterName=CLUSTER)
    env.aws.clear_calls()
    with_roles(
        env,
        {"web": WEB_ROLE, "worker": WORKER_ROLE},
        'accounts = ["111111111111", "222222222222"]',
    )

    run = env.gitopsd("sync", "--no-wait")
    assert run.code == 0, run.out + run.err

    assert service_names(web_ecs) == ["web"]
    assert service_names(worker_ecs) == ["worker"]
    assert service_names(env.ecs()) == []  # gitopsd's own account got nothing
    web_td = web_ecs.describe_services(cluster=CLUSTER, services=["web"])["services"][0]
    assert web_td["taskDefinition"].startswith("arn:aws:ecs:us-east-1:111111111111:")
    calls = env.aws.calls()
    assert calls.count("AssumeRole") == 2  # one per role, shared by every client of it
    assert calls.count("GetCallerIdentity") == 2  # once per credentials

    # a second pass reuses the cached credentials and accounts
    env.aws.clear_calls()
    assert env.gitopsd("diff").code == 0
    assert "RegisterTaskDefinition" not in env.aws.calls()


def test_an_assumed_role_in_an_account_outside_the_policy_writes_nothing(env: Env) -> None:
    assumed(env.aws, WORKER_ROLE).create_cluster(clusterName=CLUSTER)
    env.aws.clear_calls()
    with_roles(env, {"worker": WORKER_ROLE}, 'accounts = ["111111111111", "123456789012"]')

    run = env.gitopsd("sync", "--no-wait")
    assert run.code != 0
    assert (
        "app 'worker': account 222222222222 is not allowed by [policy].accounts "
        f"(allowed: 111111111111, 123456789012) (the role {WORKER_ROLE})" in run.out + run.err
    )
    assert service_names(assumed(env.aws, WORKER_ROLE)) == []
    assert service_names(env.ecs()) == ["web"]  # the other app, in its account, went on


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_assumed_credentials_are_refreshed_before_they_expire(aws: LocalAws) -> None:
    now = [datetime.datetime.now(datetime.UTC)]
    cfg = parse_config(
        {
            "aws": {"region": aws.region, "endpoint_url": aws.endpoint_url},
            "sources": [{"name": "s", "url": "file:///x"}],
            "apps": [
                {
                    "name": "web",
                    "source": "s",
                    "cluster": CLUSTER,
                    "aws": {"role_arn": WEB_ROLE, "duration": 3600},
                }
            ],
        }
    )
    accounts = Accounts(cfg.aws, time_fetcher=lambda: now[0])
    app = cfg.apps[0]
    assert await accounts.account(app) == "111111111111"
    credentials = await accounts.session(app).get_credentials()
    first = await credentials.get_frozen_credentials()
    assert accounts.assumed == {WEB_ROLE: 1}

    now[0] += datetime.timedelta(minutes=30)  # well before expiry: the same credentials
    assert (await credentials.get_frozen_credentials()).access_key == first.access_key
    assert accounts.assumed == {WEB_ROLE: 1}

    now[0] += datetime.timedelta(minutes=25)  # 5 minutes before expiry: refreshed first
    second = await credentials.get_frozen_credentials()
    assert accounts.assumed == {WEB_ROLE: 2}
    assert second.access_key != first.access_key
    assert aws.calls().count("AssumeRole") == 2
