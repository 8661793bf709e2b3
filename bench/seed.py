"""Put a generated fleet in place: a served Git repository and every service in sync.

:func:`deploy_fleet` writes the manifests (:mod:`bench.fleet`), commits them,
publishes the repository to the directory the Git servers serve, writes the
gitopsd config, creates the clusters on the local endpoint and runs one sync
(gitopsd itself, in-process via :mod:`bench.driver`, its own write pacing off so
that 10,000 services take minutes, not hours), then settles the endpoint so every
rollout is COMPLETED. :func:`run_json` runs one of the bench's helper scripts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.fleet import Fleet, plan_fleet, write_config, write_manifests
from bench.servers import ROOT, GitDaemon, GitRepo, LocalAws, aws_env, make_repo


@dataclass
class Deployed:
    """A fleet in sync: its repository, config and the endpoint it lives on."""

    fleet: Fleet
    repo: GitRepo
    config: Path
    fleet_json: Path
    aws: LocalAws
    seed_seconds: float

    def env(self) -> dict[str, str]:
        return aws_env(dict(os.environ), self.aws.endpoint_url)


def run_json(args: list[str], env: dict[str, str], timeout: float = 3600) -> dict[str, Any]:
    """Run ``python -m ARGS...`` from the project root; its stdout's last line as JSON."""
    proc = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"{args[0]} exited {proc.returncode}: {proc.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(lines[-1])
    if proc.returncode != 0:
        raise RuntimeError(f"{args[0]} exited {proc.returncode}: {out} {proc.stderr[-2000:]}")
    return out


def deploy_fleet(
    workdir: Path,
    services: int,
    aws: LocalAws,
    daemon: GitDaemon,
    *,
    per_app: int = 100,
    clusters: int = 3,
    name: str = "fleet",
) -> Deployed:
    """Generate, publish, configure and sync a fleet of ``services`` (see module doc)."""
    aws.reset()
    aws.configure(clock="real", pace=1000.0, fail_images=[])
    fleet = plan_fleet(services, per_app=per_app, clusters=clusters)
    repo = make_repo(workdir / f"{name}-work")
    write_manifests(fleet, repo.path)
    repo.git("add", "-A")
    repo.commit(f"{services} services")
    repo.publish(daemon.root / f"{name}.git")
    config = write_config(
        fleet,
        workdir / f"{name}.toml",
        source_url=daemon.url(name),
        endpoint_url=aws.endpoint_url,
        state_dir=workdir / f"{name}-state",
    )
    fleet_json = workdir / f"{name}.json"
    fleet_json.write_text(
        json.dumps(
            {
                app: {"cluster": fleet.cluster_of[app], "services": names}
                for app, names in fleet.apps.items()
            }
        )
    )
    for cluster in fleet.clusters:
        aws.create_cluster(cluster)
    env = aws_env(dict(os.environ), aws.endpoint_url)
    started = time.perf_counter()
    run_json(["bench.driver", str(config), aws.endpoint_url, "--mode", "sync", "--unpaced"], env)
    seconds = time.perf_counter() - started
    aws.settle()
    aws.clear_calls()
    return Deployed(fleet, repo, config, fleet_json, aws, seconds)
