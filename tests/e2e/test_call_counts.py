"""The exact AWS calls of a no-op pass over 300 services (issue 10, point 3).

Three apps of 100 services each, generated here, are put in place with boto3
(as gitopsd would have: same content, gitopsd's tags), so that gitopsd finds
everything in sync. The calls are counted on the server side (the local
endpoint's call log). They are deterministic: 10 services per
DescribeServices, and a task definition is described once per ARN and then
comes from the cache (in the process, and persisted for the next one-shot run).
No time is asserted.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from faults.fleet import CLUSTER, SOURCE, config_text, manifest
from support.gitserver import GitDaemon, make_repo

from gitopsd.backends.ecs.backend import EcsBackend
from gitopsd.backends.ecs.tdcache import cache_file, drop_shared, namespace_of
from gitopsd.config import load_config
from gitopsd.engine.reconcile import Mode, Reconciler
from gitopsd.engine.sources import SourceSet
from gitopsd.local_aws.testing import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY, LocalAws
from gitopsd.state import StateDir

from .conftest import Run

APPS = ("calls-a", "calls-b", "calls-c")
PER_APP = 100
SERVICES = len(APPS) * PER_APP
IMAGE = "public.ecr.aws/docker/library/busybox:1.36.1"
#: The floor of a no-op pass: the live services, 10 a call.
FLOOR = Counter({"DescribeServices": SERVICES // 10})
#: Who the credentials are (guard rails, gitopsd.backends.ecs.accounts): asked only when an
#: account rule or a secret reference to check needs it, so never in a no-op pass here.
IDENTITY = "GetCallerIdentity"


def ecs_calls(calls: Counter[str]) -> Counter[str]:
    """The ECS calls of one process, after checking it never asked who it is."""
    assert calls[IDENTITY] == 0, calls
    return Counter({op: n for op, n in calls.items() if op != IDENTITY})


def families(app: str) -> list[str]:
    return [f"{app}-{i:03d}" for i in range(PER_APP)]


def desired_count(family: str) -> int:
    return 1 + int(family.rsplit("-", 1)[1]) % 2


def seed_fleet(aws: LocalAws) -> None:
    """Every app's task definitions and services, as a sync by gitopsd leaves them."""
    ecs = aws.boto3_client("ecs")
    aws.create_cluster(CLUSTER)
    for app in APPS:
        tags = [{"key": "gitopsd:app", "value": app}, {"key": "gitopsd:source", "value": SOURCE}]
        for family in families(app):
            ecs.register_task_definition(
                family=family,
                requiresCompatibilities=["EC2"],
                containerDefinitions=[
                    {
                        "name": "main",
                        "image": IMAGE,
                        "command": ["sh", "-c", f"while true; do echo {family}; sleep 30; done"],
                        "memory": 128,
                    }
                ],
                tags=tags,
            )
            ecs.create_service(
                cluster=CLUSTER,
                serviceName=family,
                taskDefinition=family,
                desiredCount=desired_count(family),
                launchType="EC2",
                deploymentConfiguration={
                    "deploymentCircuitBreaker": {"enable": True, "rollback": True}
                },
                tags=tags,
            )


def wait_steady(aws: LocalAws, timeout: float = 30.0) -> None:
    """Poll (with a deadline) until every service's only deployment is COMPLETED."""
    ecs = aws.boto3_client("ecs")
    names = [f for app in APPS for f in families(app)]
    deadline = time.monotonic() + timeout
    while True:
        unsteady = []
        for i in range(0, len(names), 10):
            out = ecs.describe_services(cluster=CLUSTER, services=names[i : i + 10])
            for svc in out["services"]:
                states = [(d["status"], d.get("rolloutState")) for d in svc["deployments"]]
                if states != [("PRIMARY", "COMPLETED")]:
                    unsteady.append(svc["serviceName"])
        if not unsteady:
            return
        assert time.monotonic() < deadline, f"not steady after {timeout}s: {unsteady[:5]}..."
        time.sleep(0.1)


class Fleet300:
    """The generated repository, its config, and the calls of what gitopsd does to it."""

    def __init__(self, tmp_path: Path, aws: LocalAws, daemon: GitDaemon) -> None:
        self.aws = aws
        self.config = tmp_path / "gitopsd.toml"
        self.config.write_text(config_text(daemon.url("deploy"), aws.endpoint_url, APPS))
        self.cfg = load_config(self.config)
        namespace = namespace_of(self.cfg.aws.endpoint_url)
        self.cache_file = cache_file(self.cfg.daemon.state_dir, namespace)

    def new_process(self) -> None:
        """What a new gitopsd process starts with: no cache in memory."""
        drop_shared()

    def cli(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[Run, Counter[str]]:
        """One one-shot command (in this process, as a new one), and its calls by operation."""
        from gitopsd.cli import main

        self.new_process()
        self.aws.clear_calls()
        capsys.readouterr()
        code = main([args[0], "-c", str(self.config), "--color", "never", *args[1:]])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err), ecs_calls(Counter(self.aws.calls()))

    def daemon_passes(self, count: int) -> list[Counter[str]]:
        """``count`` sync passes by one long-lived reconciler, as the agent makes them."""

        async def passes() -> list[Counter[str]]:
            found: list[Counter[str]] = []
            sources = SourceSet(self.cfg)
            try:
                async with EcsBackend(self.cfg.aws, StateDir(self.cfg.daemon.state_dir)) as be:
                    reconciler = Reconciler(self.cfg, be, sources)
                    for _ in range(count):
                        self.aws.clear_calls()
                        outcomes = await reconciler.run(self.cfg.apps, Mode.SYNC)
                        assert [o.ok for o in outcomes] == [True] * len(APPS), outcomes
                        found.append(Counter(self.aws.calls()))
            finally:
                sources.close()
            return found

        self.new_process()
        found = anyio.run(passes)
        return [ecs_calls(found[0]), *(ecs_calls(c) for c in found[1:])]


@pytest.fixture(scope="module")
def seeded(
    e2e_aws: LocalAws, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalAws, GitDaemon]]:
    """The endpoint with the 300 services steady, and the repository served (once per module)."""
    root = tmp_path_factory.mktemp("calls")
    repo = make_repo(root / "work")
    for app in APPS:
        for family in families(app):
            repo.write(f"apps/{app}/{family}.yaml", manifest(family, IMAGE, desired_count(family)))
    repo.commit("300 services")
    repo.publish(root / "served" / "deploy.git")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", DUMMY_ACCESS_KEY)
        env.setenv("AWS_SECRET_ACCESS_KEY", DUMMY_SECRET_KEY)
        env.delenv("AWS_PROFILE", raising=False)
        e2e_aws.reset()
        e2e_aws.configure(clock="real", pace=1000.0, fail_images=[])  # steady at once
        seed_fleet(e2e_aws)
        wait_steady(e2e_aws)
        with GitDaemon(root / "served") as daemon:
            yield e2e_aws, daemon


@pytest.fixture
def fleet300(
    tmp_path: Path, seeded: tuple[LocalAws, GitDaemon], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Fleet300]:
    """The seeded fleet and a config with a state directory of its own (no cache yet)."""
    aws, daemon = seeded
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DUMMY_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DUMMY_SECRET_KEY)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield Fleet300(tmp_path, aws, daemon)
    drop_shared()


def test_no_op_diff_cold_then_warm(fleet300: Fleet300, capsys: pytest.CaptureFixture[str]) -> None:
    # Cold (no cache on disk): each service's task definition is described once.
    assert not fleet300.cache_file.exists()
    run, calls = fleet300.cli(capsys, "diff")
    assert run.code == 0, run.out + run.err
    assert calls == FLOOR + Counter({"DescribeTaskDefinition": SERVICES}), calls
    assert fleet300.cache_file.exists()

    # Warm: a new process reads the persisted cache and makes the floor calls only.
    run, calls = fleet300.cli(capsys, "diff")
    assert run.code == 0, run.out + run.err
    assert calls == FLOOR, calls

    # A sync on a warm cache: the same reads, and not one write.
    run, calls = fleet300.cli(capsys, "sync")
    assert run.code == 0, run.out + run.err
    assert calls == FLOOR, calls


def test_no_op_daemon_passes(fleet300: Fleet300) -> None:
    first, second = fleet300.daemon_passes(2)
    # The first pass of a new process with no cache on disk describes each revision once.
    assert first == FLOOR + Counter({"DescribeTaskDefinition": SERVICES}), first
    # The next pass: the floor only, no task definition, no write.
    assert second == FLOOR, second
