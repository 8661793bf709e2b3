"""A throttled or failing AWS API: retried with backoff, then a clear temporary error.

The e2e config allows 2 attempts per call (``[aws].max_attempts = 2``).
"""

from __future__ import annotations

from collections import Counter

from .conftest import Env


def test_throttling_is_retried_transparently(env: Env) -> None:
    env.aws.inject_fault("DescribeServices", "ThrottlingException", count=1)
    env.aws.inject_fault("CreateService", "ServerException", count=1)
    run = env.gitopsd("sync")
    assert run.code == 0, run.out + run.err
    calls = Counter(env.aws.calls())
    assert calls["CreateService"] == 3  # two services, one of them retried once
    assert env.service("web")["status"] == "ACTIVE"
    assert env.service("worker")["status"] == "ACTIVE"


def test_lasting_throttling_fails_the_app_cleanly_and_a_later_sync_recovers(env: Env) -> None:
    env.aws.inject_fault("RegisterTaskDefinition", "ThrottlingException", count=2)
    run = env.gitopsd("sync", "web")
    assert run.code == 2
    assert (
        "error (ApplyFailed, temporary): TaskDefinition/web "
        "(apps/web/base/task-definition.yaml:2): ECS RegisterTaskDefinition failed:" in run.out
    )
    assert "ThrottlingException: Rate exceeded" in run.out
    # Nothing half-applied: no service was created without its task definition.
    assert Counter(env.writes()) == Counter({"RegisterTaskDefinition": 2})
    assert env.ecs().describe_services(cluster="demo", services=["web"])["services"] == []

    again = env.gitopsd("sync", "web")
    assert again.code == 0, again.out
    assert env.service("web")["status"] == "ACTIVE"


def test_permanent_errors_are_not_retried(env: Env) -> None:
    env.aws.inject_fault("DescribeServices", "AccessDeniedException", count=5)
    run = env.gitopsd("diff", "web")
    assert run.code == 2
    assert "error (PlanFailed, permanent): ECS DescribeServices failed: AccessDeniedException" in (
        run.out
    )
    assert "check the AWS credentials and IAM permissions" in run.out
    assert Counter(env.aws.calls())["DescribeServices"] == 1
