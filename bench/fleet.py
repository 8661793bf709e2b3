"""Generate a Git repository of N ECS services and the gitopsd config that deploys it.

The benchmark needs fleets of 20 to 10,000 services spread over several apps and
clusters, in the manifest format of ``examples/`` (a task definition and a service
per service, here in one multi-document file). Every service lives in an app of
at most ``per_app`` services; apps are spread round-robin over ``clusters``.
Images carry a tag so that P2 and P4 can change some of them in one commit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

SERVICE_TEMPLATE = """\
kind: TaskDefinition
family: {name}
requiresCompatibilities: [EC2]
containerDefinitions:
  - name: app
    image: public.ecr.aws/docker/library/busybox:{tag}
    command: ["sh", "-c", "while true; do sleep 30; done"]
    memory: 64
    environment:
      - name: APP
        value: {app}
---
kind: Service
serviceName: {name}
taskDefinition: {name}
desiredCount: 1
"""


@dataclass(frozen=True)
class Fleet:
    """Where each service lives: apps (name -> services) and each app's cluster."""

    services: int
    apps: dict[str, list[str]] = field(default_factory=dict)
    cluster_of: dict[str, str] = field(default_factory=dict)

    @property
    def clusters(self) -> list[str]:
        return sorted(set(self.cluster_of.values()))

    def app_of(self, service: str) -> str:
        return next(app for app, names in self.apps.items() if service in names)

    def path(self, service: str) -> str:
        """The manifest's path in the repository."""
        return f"apps/{self.app_of(service)}/{service}.yaml"


def plan_fleet(services: int, *, per_app: int = 100, clusters: int = 3) -> Fleet:
    """Spread ``services`` over ``ceil(services / per_app)`` apps and up to ``clusters``."""
    n_apps = max(1, math.ceil(services / per_app))
    fleet = Fleet(services)
    for i in range(n_apps):
        app = f"app-{i:03d}"
        first = i * per_app
        fleet.apps[app] = [f"s{j:05d}" for j in range(first, min(services, first + per_app))]
        fleet.cluster_of[app] = f"bench-{i % max(1, min(clusters, n_apps))}"
    return fleet


def write_manifests(fleet: Fleet, root: Path, *, tag: str = "1.36") -> None:
    """Write every service's manifest under ``root/apps/APP/``."""
    for app, names in fleet.apps.items():
        directory = root / "apps" / app
        directory.mkdir(parents=True, exist_ok=True)
        for name in names:
            (directory / f"{name}.yaml").write_text(
                SERVICE_TEMPLATE.format(name=name, app=app, tag=tag)
            )


def set_image_tag(root: Path, fleet: Fleet, services: list[str], tag: str) -> None:
    """Rewrite the image tag of some services (the change P2 and P4 commit)."""
    for name in services:
        path = root / fleet.path(name)
        text = path.read_text()
        head, _, rest = text.partition("busybox:")
        old_tag = rest.split("\n", 1)[0]
        path.write_text(head + "busybox:" + tag + rest[len(old_tag) :])


def write_config(
    fleet: Fleet,
    path: Path,
    *,
    source_url: str,
    endpoint_url: str,
    state_dir: Path,
    extra_daemon: str = "",
    extra: str = "",
    max_concurrency: int = 8,
) -> Path:
    """A gitopsd config deploying every app of ``fleet`` from ``source_url``."""
    lines = [
        "[aws]",
        'region = "us-east-1"',
        f'endpoint_url = "{endpoint_url}"',
        f"max_concurrency = {max_concurrency}",
        "",
        "[daemon]",
        f'state_dir = "{state_dir}"',
        'rollout_poll_interval = "0.5s"',
        f"max_parallel_apps = {min(16, max(1, len(fleet.apps)))}",
        extra_daemon,
        "[[sources]]",
        'name = "fleet"',
        f'url = "{source_url}"',
        'branch = "main"',
        "",
    ]
    for app in fleet.apps:
        lines += [
            "[[apps]]",
            f'name = "{app}"',
            'source = "fleet"',
            f'path = "apps/{app}"',
            f'cluster = "{fleet.cluster_of[app]}"',
            "",
        ]
    path.write_text("\n".join(lines) + extra)
    return path
