"""End-to-end fixtures: the example repository served by ``git daemon``, a config, the CLI.

Everything is real: gitopsd fetches over git:// from a git daemon on loopback and
talks to the local ECS endpoint over HTTP; tests observe AWS through the
endpoint's own call log, not through gitopsd.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.gitserver import GitDaemon, GitRepo, make_repo

from gitopsd.backends.ecs import pacing
from gitopsd.cli import main
from gitopsd.demo import example_config
from gitopsd.local_aws.testing import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY, LocalAws

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CLUSTER = "demo"
READ_PREFIXES = ("Describe", "List", "Get")


@dataclass
class Run:
    code: int
    out: str
    err: str


class Env:
    """A configured gitopsd with its Git repository and AWS endpoint."""

    def __init__(
        self, repo: GitRepo, aws: LocalAws, config: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        self.repo = repo
        self.aws = aws
        self.config = config
        self.capsys = capsys

    def gitopsd(self, *args: str) -> Run:
        self.capsys.readouterr()
        code = main([*args[:1], "-c", str(self.config), "--color", "never", *args[1:]])
        captured = self.capsys.readouterr()
        return Run(code, captured.out, captured.err)

    def commit(self, message: str) -> str:
        sha = self.repo.commit(message)
        self.repo.push()
        return sha

    def edit(self, rel: str, old: str, new: str) -> None:
        path = self.repo.path / rel
        text = path.read_text()
        assert old in text, f"{rel} does not contain {old!r}"
        self.repo.write(rel, text.replace(old, new))

    def writes(self) -> list[str]:
        return [c for c in self.aws.calls() if not c.startswith(READ_PREFIXES)]

    def ecs(self) -> Any:
        return self.aws.boto3_client("ecs")

    def service(self, name: str) -> dict[str, Any]:
        out = self.ecs().describe_services(cluster=CLUSTER, services=[name], include=["TAGS"])
        services: list[dict[str, Any]] = out["services"]
        assert services, f"service {name} does not exist"
        return services[0]


@pytest.fixture(scope="session")
def e2e_aws() -> Iterator[LocalAws]:
    with LocalAws(clock="real", pace=50.0) as server:
        yield server


@pytest.fixture
def aws(e2e_aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> LocalAws:
    e2e_aws.reset()
    e2e_aws.configure(clock="real", pace=50.0, fail_images=["*:broken*"])
    e2e_aws.create_cluster(CLUSTER)
    e2e_aws.clear_calls()
    pacing.reset_shared()  # full token buckets for each test (they are per process)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DUMMY_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DUMMY_SECRET_KEY)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return e2e_aws


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[GitRepo, GitDaemon]]:
    repo = make_repo(tmp_path / "work")
    repo.copy_tree(EXAMPLES / "apps", "apps")
    repo.commit("example apps")
    repo.publish(tmp_path / "served" / "deploy.git")
    with GitDaemon(tmp_path / "served") as daemon:
        yield repo, daemon


def write_config(path: Path, url: str, endpoint: str) -> Path:
    """The shipped config/example.toml, pointed at the test's git daemon and endpoint."""
    text = example_config(url, endpoint, poll="50ms", timeout="30s")
    # Two attempts per call keep the throttling tests short.
    text = text.replace(
        f'endpoint_url = "{endpoint}"\n', f'endpoint_url = "{endpoint}"\nmax_attempts = 2\n'
    )
    path.write_text(text)
    return path


@pytest.fixture
def env(
    tmp_path: Path,
    served: tuple[GitRepo, GitDaemon],
    aws: LocalAws,
    capsys: pytest.CaptureFixture[str],
) -> Env:
    repo, daemon = served
    config = write_config(tmp_path / "gitopsd.toml", daemon.url("deploy"), aws.endpoint_url)
    return Env(repo, aws, config, capsys)
