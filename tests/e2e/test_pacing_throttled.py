"""A rollout of many services against an endpoint that throttles: paced, adapted, no failure.

The local endpoint's throttling fault rule refuses a share of every write with
``ThrottlingException``. gitopsd's buckets (one per operation class, shared by both
apps of the run) must slow down when that happens and the retries must absorb the
rest: every service ends on its new image, the run exits 0, and no throttle is
surfaced as a failure. AWS's buckets are sped up here (the same bursts, rates and
recovery 20x faster) so that the test takes seconds; the bucket maths are in
tests/backends/test_pacing.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.gitserver import GitDaemon, GitRepo, make_repo

from gitopsd.backends.ecs import pacing
from gitopsd.backends.ecs.pacing import Rate
from gitopsd.local_aws.testing import LocalAws

from .conftest import CLUSTER, Env

APPS = ("alpha", "beta")
PER_APP = 15
IMAGE = "public.ecr.aws/docker/library/busybox"
WRITES = ("RegisterTaskDefinition", "UpdateService", "CreateService")


def manifest(name: str, image: str) -> str:
    return (
        f"kind: TaskDefinition\nfamily: {name}\nrequiresCompatibilities: [EC2]\n"
        f"containerDefinitions:\n  - name: main\n    image: {image}\n    memory: 64\n"
        f"---\nkind: Service\nserviceName: {name}\ntaskDefinition: {name}\n"
        f"desiredCount: 1\nlaunchType: EC2\n"
    )


def config(url: str, endpoint: str) -> str:
    text = (
        f'[aws]\nregion = "us-east-1"\nendpoint_url = "{endpoint}"\nmax_attempts = 10\n'
        'pacing = "aws"\n'
        '\n[daemon]\nstate_dir = "state"\nrollout_poll_interval = "50ms"\n'
        f'\n[[sources]]\nname = "deploy"\nurl = "{url}"\nbranch = "main"\n'
    )
    for app in APPS:
        text += (
            f'\n[[apps]]\nname = "{app}"\nsource = "deploy"\npath = "apps/{app}"\n'
            f'cluster = "{CLUSTER}"\n'
        )
    return text


def write_fleet(repo: GitRepo, tag: str) -> None:
    for app in APPS:
        for i in range(PER_APP):
            name = f"{app}-{i:02d}"
            repo.write(f"apps/{app}/{name}.yaml", manifest(name, f"{IMAGE}:{tag}"))


@pytest.fixture
def fleet(tmp_path: Path, aws: LocalAws, capsys: pytest.CaptureFixture[str]) -> Iterator[Env]:
    repo = make_repo(tmp_path / "work")
    write_fleet(repo, "1.0")
    repo.commit("first")
    repo.publish(tmp_path / "served" / "deploy.git")
    with GitDaemon(tmp_path / "served") as daemon:
        path = tmp_path / "gitopsd.toml"
        path.write_text(config(daemon.url("deploy"), aws.endpoint_url))
        yield Env(repo, aws, path, capsys)


@pytest.fixture
def fast_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS's buckets 20x faster (same bursts, recovery 20x quicker): a rollout in seconds."""
    for name, rate in pacing.AWS_RATES.items():
        monkeypatch.setitem(
            pacing.AWS_RATES, name, Rate(per_second=rate.per_second * 20, burst=rate.burst)
        )
    monkeypatch.setattr(pacing, "RECOVERY_SECONDS", pacing.RECOVERY_SECONDS / 20)
    pacing.reset_shared()


@pytest.mark.usefixtures("fast_buckets")
def test_a_throttled_rollout_of_many_services_completes_without_throttling_failures(
    fleet: Env,
) -> None:
    first = fleet.gitopsd("sync", "--no-wait")
    assert first.code == 0, first.out + first.err

    write_fleet(fleet.repo, "2.0")
    fleet.commit("new image everywhere")
    fleet.aws.clear_calls()
    fleet.aws.arm_fault(list(WRITES), "ThrottlingException", rate=0.3, seed=10)

    run = fleet.gitopsd("sync", "--no-wait", "--log-level", "info")

    faults = fleet.aws.faults()
    injected = Counter(i["operation"] for i in faults["injected"])
    assert injected["RegisterTaskDefinition"] > 0
    assert injected["UpdateService"] > 0
    assert run.code == 0, run.out + run.err
    assert "ApplyFailed" not in run.out
    assert "aws.pacing_reduced" in run.err  # the buckets slowed down for both apps
    calls = Counter(fleet.aws.calls())
    total = len(APPS) * PER_APP
    # Every refused call was sent again, and nothing else was written.
    assert calls["RegisterTaskDefinition"] == total + injected["RegisterTaskDefinition"]
    assert calls["UpdateService"] == total + injected["UpdateService"]
    assert calls["CreateService"] == 0
    for app in APPS:
        for i in range(PER_APP):
            service = fleet.service(f"{app}-{i:02d}")
            td = fleet.ecs().describe_task_definition(taskDefinition=service["taskDefinition"])
            image = td["taskDefinition"]["containerDefinitions"][0]["image"]
            assert image == f"{IMAGE}:2.0"
