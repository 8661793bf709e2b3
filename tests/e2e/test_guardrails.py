"""Guard-rails end to end: a manifest or app outside ``[policy]`` is refused before any write.

The real CLI against the local endpoint and a git daemon; writes are counted on the
server side (its call log), so "nothing was written" is what AWS saw.
"""

from __future__ import annotations

from .conftest import Env

TD = "apps/web/base/task-definition.yaml"
ADMIN = "arn:aws:iam::123456789012:role/admin"


def with_policy(env: Env, policy: str) -> None:
    """Append a ``[policy]`` table to the test's configuration."""
    env.config.write_text(env.config.read_text() + "\n[policy]\n" + policy + "\n")


def line_of(env: Env, rel: str, text: str) -> int:
    lines = (env.repo.path / rel).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def test_a_task_role_outside_the_policy_is_refused_before_any_write(env: Env) -> None:
    with_policy(env, 'task_roles = ["arn:aws:iam::*:role/app-*"]')
    env.edit(TD, "networkMode: bridge\n", f"networkMode: bridge\ntaskRoleArn: {ADMIN}\n")
    env.commit("web: admin role")
    line = line_of(env, TD, "taskRoleArn")
    expected = (
        f"{TD}:{line}: taskRoleArn: {ADMIN} is not allowed by [policy].task_roles "
        "(allowed: arn:aws:iam::*:role/app-*)"
    )

    run = env.gitopsd("validate")
    assert run.code != 0
    assert expected in run.out + run.err
    assert env.aws.calls() == []  # validate never calls AWS

    run = env.gitopsd("sync", "--no-wait")
    assert run.code != 0
    assert expected in run.out + run.err
    # the other app goes on; web wrote nothing
    families = [
        td.rsplit("/", 1)[-1].split(":")[0]
        for td in env.ecs().list_task_definitions()["taskDefinitionArns"]
    ]
    assert "web" not in families
    assert "worker" in families
    assert env.ecs().describe_services(cluster="demo", services=["web"])["services"] == []


def test_a_cluster_outside_the_policy_is_refused_with_the_config_key(env: Env) -> None:
    with_policy(env, 'clusters = ["staging-*"]')
    run = env.gitopsd("validate", "web")
    assert run.code != 0
    assert (
        "apps[0].cluster: cluster demo is not allowed by [policy].clusters (allowed: staging-*)"
        in run.out + run.err
    )
    run = env.gitopsd("sync", "web", "--no-wait")
    assert run.code != 0
    assert "[policy].clusters" in run.out + run.err
    assert env.writes() == []


def test_an_account_outside_the_policy_is_refused_after_get_caller_identity(env: Env) -> None:
    with_policy(env, 'accounts = ["111111111111"]')
    assert env.gitopsd("validate").code == 0  # the account needs credentials: not offline
    run = env.gitopsd("sync", "web", "--no-wait")
    assert run.code != 0
    assert (
        "account 123456789012 is not allowed by [policy].accounts (allowed: 111111111111)"
        in run.out + run.err
    )
    assert "GetCallerIdentity" in env.aws.calls()
    assert env.writes() == []


def test_privileged_settings_are_refused_unless_allowed(env: Env) -> None:
    env.edit(TD, "networkMode: bridge", "networkMode: host")
    env.edit(TD, "  - name: web\n", "  - name: web\n    privileged: true\n")
    env.commit("web: host network, privileged")
    run = env.gitopsd("validate", "web")
    assert run.code != 0
    out = run.out + run.err
    assert f"{TD}:{line_of(env, TD, 'networkMode')}: networkMode: networkMode host is not " in out
    assert (
        f"{TD}:{line_of(env, TD, 'privileged')}: containerDefinitions[0].privileged: a "
        "privileged container is not allowed by [policy].privileged" in out
    )
    with_policy(env, "host_network = true\nprivileged = true")
    assert env.gitopsd("validate", "web").code == 0


def test_a_plaintext_secret_is_refused_with_the_fix(env: Env) -> None:
    with_policy(env, 'plaintext_secrets = "refuse"')
    env.edit(TD, "      - name: GREETING\n", "      - name: DB_PASSWORD\n        value: "
             "hunter2-plain\n      - name: GREETING\n")  # fmt: skip
    env.commit("web: a password in the manifest")
    run = env.gitopsd("validate", "web")
    assert run.code != 0
    out = run.out + run.err
    assert (
        f"{TD}:{line_of(env, TD, 'DB_PASSWORD')}: containerDefinitions[0].environment[1].name: "
        'DB_PASSWORD looks secret ([policy].plaintext_secrets = "refuse"' in out
    )
    assert "move it to the container's secrets with valueFrom" in out
    assert "hunter2-plain" not in out
    run = env.gitopsd("sync", "web", "--no-wait")
    assert run.code != 0
    assert env.writes() == []


def test_a_missing_ssm_parameter_is_refused_before_the_first_write(env: Env) -> None:
    env.edit(
        TD,
        "    portMappings:\n",
        "    secrets:\n      - name: DB_PASSWORD\n        valueFrom: /web/db-password\n"
        "    portMappings:\n",
    )
    env.commit("web: a secret from SSM")
    assert env.gitopsd("validate", "web").code == 0  # offline: existence needs AWS

    run = env.gitopsd("diff", "web")
    assert run.code != 0
    expected = (
        f"{TD}:2: containerDefinitions[0].secrets[0].valueFrom: names an SSM parameter that "
        "does not exist in account 123456789012 (us-east-1)"
    )
    assert expected in run.out + run.err
    run = env.gitopsd("sync", "web", "--no-wait")
    assert run.code != 0
    assert expected in run.out + run.err
    assert "DescribeParameters" in env.aws.calls()
    assert env.writes() == []
    assert "GetParameter" not in env.aws.calls()  # values are never read

    env.aws.boto3_client("ssm").put_parameter(
        Name="/web/db-password", Value="s3cret", Type="SecureString"
    )
    run = env.gitopsd("sync", "web", "--no-wait")
    assert run.code == 0, run.out + run.err
    assert "RegisterTaskDefinition" in env.writes()
    assert "GetParameter" not in env.aws.calls()
