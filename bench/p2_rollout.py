"""P2, fleet rollout: one commit changes the image of many services.

On a fleet in sync, each trial commits a new image tag for ``changed`` services
(spread over the apps) and measures, alternately with the baseline:

* **no-wait**: ``gitopsd sync --no-wait`` (pacing off: the local endpoint does not
  throttle) until it exits with every changed service updated, vs ``ecs-deploy``
  (the PyPI tool, in bench/.venv-ecs-deploy, pointed at the endpoint with
  ``AWS_ENDPOINT_URL``) run once per service with ``--timeout -1`` (fire and
  forget) and ``--no-deregister`` (gitopsd keeps old revisions too);
* **until COMPLETED**: ``gitopsd sync`` (it verifies the rollouts) vs ``ecs-deploy``
  fire-and-forget followed by the bench polling DescribeServices until every
  rollout is COMPLETED (ecs-deploy's own wait counts RUNNING tasks with
  ListTasks/DescribeTasks, which the local endpoint does not simulate, so it
  would never return);
* **rate limits in gitopsd**: ``gitopsd sync --no-wait`` with ``[aws].pacing =
  "aws"`` (AWS's buckets) vs the token-bucket floor :func:`bucket_floor`;
* **rate limits in the endpoint**: the endpoint throttles as AWS does (a
  ``bucket`` fault rule per operation class), for gitopsd (pacing on) and
  ecs-deploy: time and ThrottlingExceptions received.

Goals (issue 10): at least 20x faster than ecs-deploy per service; with rate
limits on, within 1.2x of the token-bucket floor and no throttling storm.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.fleet import set_image_tag
from bench.seed import Deployed, deploy_fleet
from bench.servers import ROOT, GitDaemon, LocalAws
from bench.stats import Samples, compare

ECS_DEPLOY = ROOT / "bench" / ".venv-ecs-deploy" / "bin" / "ecs"
#: AWS's token buckets (ecs-facts.md section 3), as gitopsd's pacing models them.
BUCKETS: dict[str, tuple[list[str], int, float]] = {
    "task-definition-write": (["RegisterTaskDefinition", "DeregisterTaskDefinition"], 20, 1.0),
    "service-write": (["CreateService", "UpdateService", "DeleteService"], 20, 2.0),
}


def bucket_floor(n: int) -> float:
    """Seconds the buckets need for n registrations, each followed by its UpdateService."""
    _, td_burst, td_rate = BUCKETS["task-definition-write"]
    _, svc_burst, svc_rate = BUCKETS["service-write"]
    last = 0.0
    for i in range(n):
        registered = max(0.0, (i - td_burst + 1) / td_rate)
        last = max(registered, max(0.0, (i - svc_burst + 1) / svc_rate))
    return last


def endpoint_rules() -> list[dict[str, Any]]:
    return [
        {"operation": ops, "bucket": {"burst": burst, "refill": rate}}
        for ops, burst, rate in BUCKETS.values()
    ]


class Trials:
    """Commits and runs for one deployed fleet."""

    def __init__(self, dep: Deployed, changed: list[str], workdir: Path) -> None:
        self.dep = dep
        self.changed = changed
        self.n = 0
        self.configs = {mode: self._config(workdir, mode) for mode in ("off", "aws")}

    def _config(self, workdir: Path, pacing: str) -> Path:
        """The fleet's config with ``[aws].pacing`` set."""
        path = workdir / f"p2-{pacing}.toml"
        text = self.dep.config.read_text()
        path.write_text(text.replace("[aws]\n", f'[aws]\npacing = "{pacing}"\n', 1))
        return path

    def next_tag(self) -> str:
        self.n += 1
        return f"p2-{self.n}"

    def commit(self, tag: str) -> None:
        repo = self.dep.repo
        set_image_tag(repo.path, self.dep.fleet, self.changed, tag)
        repo.git("add", "-A")
        repo.commit(f"p2: {len(self.changed)} services to {tag}")
        repo.push()

    def gitopsd(self, pacing: str, wait: bool) -> dict[str, Any]:
        tag = self.next_tag()
        self.commit(tag)
        aws = self.dep.aws
        aws.clear_calls()
        args = [sys.executable, "-m", "gitopsd", "sync", "-c", str(self.configs[pacing])]
        args += ["--color", "never"] + ([] if wait else ["--no-wait"])
        started = time.perf_counter()
        proc = subprocess.run(args, cwd=ROOT, env=self.dep.env(), capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"gitopsd sync exited {proc.returncode}: {proc.stdout[-2000:]}")
        self.check(tag)
        calls = aws.calls()
        return {"seconds": seconds, "calls": len(calls), "throttled": self.throttled()}

    def ecs_deploy(self, wait: bool) -> dict[str, Any]:
        tag = self.next_tag()
        env = self.dep.env()
        self.dep.aws.clear_calls()
        failures = 0
        started = time.perf_counter()
        for name in self.changed:
            app = self.dep.fleet.app_of(name)
            args = [
                str(ECS_DEPLOY), "deploy", self.dep.fleet.cluster_of[app], name,
                "--image", "app", f"public.ecr.aws/docker/library/busybox:{tag}",
                "--no-deregister", "--region", "us-east-1",
                "--timeout", "-1",
            ]  # fmt: skip
            proc = subprocess.run(args, env=env, capture_output=True, text=True)
            failures += proc.returncode != 0
        if wait:  # ecs-deploy's own wait needs ListTasks/DescribeTasks: see the module doc
            self.wait_completed()
        seconds = time.perf_counter() - started
        if not failures:
            self.check(tag)
        return {
            "seconds": seconds,
            "calls": len(self.dep.aws.calls()),
            "throttled": self.throttled(),
            "failures": failures,
        }

    def wait_completed(self, timeout: float = 600) -> None:
        """Poll (with a deadline) until every changed service's rollout is COMPLETED."""
        ecs = self.dep.aws.boto3_client()
        deadline = time.monotonic() + timeout
        pending = list(self.changed)
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(pending)} rollouts not COMPLETED: {pending[:5]}")
            still = []
            for cluster, names in self._by_cluster(pending).items():
                for i in range(0, len(names), 10):
                    answer = ecs.describe_services(cluster=cluster, services=names[i : i + 10])
                    for svc in answer["services"]:
                        primary = next(d for d in svc["deployments"] if d["status"] == "PRIMARY")
                        if primary.get("rolloutState") != "COMPLETED":
                            still.append(svc["serviceName"])
            pending = still
            if pending:
                time.sleep(0.1)  # polling with a deadline

    def _by_cluster(self, names: list[str]) -> dict[str, list[str]]:
        by_cluster: dict[str, list[str]] = {}
        for name in names:
            cluster = self.dep.fleet.cluster_of[self.dep.fleet.app_of(name)]
            by_cluster.setdefault(cluster, []).append(name)
        return by_cluster

    def throttled(self) -> int:
        injected = self.dep.aws.faults()["injected"]
        return sum(1 for i in injected if i["error"] == "ThrottlingException")

    def check(self, tag: str) -> None:
        """Every changed service runs a task definition with the new image."""
        ecs = self.dep.aws.boto3_client()
        wrong = []
        for cluster, names in self._by_cluster(self.changed).items():
            for i in range(0, len(names), 10):
                services = ecs.describe_services(cluster=cluster, services=names[i : i + 10])
                for svc in services["services"]:
                    td = ecs.describe_task_definition(taskDefinition=svc["taskDefinition"])
                    image = td["taskDefinition"]["containerDefinitions"][0]["image"]
                    if not image.endswith(f":{tag}"):
                        wrong.append(svc["serviceName"])
        if wrong:
            raise RuntimeError(f"{len(wrong)} services not updated to {tag}: {wrong[:5]}")


def _pair(trials: Trials, repeat: int, wait: bool) -> dict[str, Any]:
    ours, base = Samples(), Samples()
    extra: dict[str, Any] = {}
    for i in range(repeat):
        runs: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("ours", lambda: trials.gitopsd("off", wait)),
            ("base", lambda: trials.ecs_deploy(wait)),
        ]
        for who, fn in runs if i % 2 == 0 else runs[::-1]:
            result = fn()
            (ours if who == "ours" else base).add(result["seconds"])
            extra[f"{who}_calls"] = result["calls"]
            if who == "base":
                extra["ecs_deploy_failures"] = result["failures"]
    out = compare(ours, base)
    n = len(trials.changed)
    out.update(extra)
    out["per_service_ms"] = {
        "gitopsd": round(ours.median / n * 1000, 1),
        "ecs_deploy": round(base.median / n * 1000, 1),
    }
    out["speedup_median"] = round(base.median / ours.median, 1) if ours.median else None
    return out


def measure(
    workdir: Path,
    services: int,
    changed: int,
    aws: LocalAws,
    daemon: GitDaemon,
    repeat: int,
) -> dict[str, Any]:
    dep = deploy_fleet(workdir, services, aws, daemon, name="p2")
    names = [name for names in dep.fleet.apps.values() for name in names]
    step = max(1, len(names) // changed)
    trials = Trials(dep, names[::step][:changed], workdir)
    n = len(trials.changed)
    out: dict[str, Any] = {"services": services, "changed": n}
    if ECS_DEPLOY.exists():
        out["no_wait"] = _pair(trials, repeat, wait=False)
        out["completed"] = _pair(trials, repeat, wait=True)
    else:
        out["ecs_deploy_missing"] = f"{ECS_DEPLOY} (make bench installs it)"
    floor = bucket_floor(n)
    paced = Samples()
    throttled = []
    for _ in range(max(1, repeat // 2)):
        result = trials.gitopsd("aws", wait=False)
        paced.add(result["seconds"])
        throttled.append(result["throttled"])
    out["paced"] = {
        "gitopsd": paced.to_json(),
        "floor_seconds": round(floor, 2),
        "ratio_median": round(paced.median / floor, 3) if floor else None,
        "throttled": throttled,
    }
    aws.inject_faults(endpoint_rules())
    try:
        ours = trials.gitopsd("aws", wait=False)
        aws.clear_faults()
        aws.inject_faults(endpoint_rules())
        theirs = trials.ecs_deploy(wait=False) if ECS_DEPLOY.exists() else None
    finally:
        aws.clear_faults()
    out["endpoint_throttling"] = {
        "floor_seconds": round(floor, 2),
        "gitopsd": {k: round(v, 3) if isinstance(v, float) else v for k, v in ours.items()},
        "ecs_deploy": theirs,
    }
    return out
