"""P4, latency: a signed webhook received -> the changed service updated, at fleet scale.

``gitopsd run`` holds a fleet in sync (source interval one hour, so only the
webhook makes it fetch). For each of ``commits`` commits, each changing the image
of one service of one app (a different app each time): push, POST the signed
webhook (t0), then watch the endpoint's call log until UpdateService arrives
(t1); latency = t1 - t0 (resolution: the 20 ms the log is polled at). The next
commit waits until every app has attempted the commit. The baseline, measured
in between, is the API time of that app's writes: a RegisterTaskDefinition and an
UpdateService sent directly with boto3. Goal (issue 10): p50 at most 1 s plus
the API time of the app's writes.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from bench.agent import AGENT_CONFIG, Agent, agent_daemon_settings
from bench.fleet import set_image_tag, write_config
from bench.seed import Deployed, deploy_fleet
from bench.servers import GitDaemon, LocalAws

POLL = 0.02
PROBE_CLUSTER = "bench-probe"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _wait_update(aws: LocalAws, deadline: float) -> float:
    while time.monotonic() < deadline:
        if "UpdateService" in aws.calls():
            return time.perf_counter()
        time.sleep(POLL)  # polling the call log with a deadline
    raise RuntimeError("no UpdateService within the deadline")


def _probe(aws: LocalAws) -> Any:
    ecs = aws.boto3_client()
    ecs.create_cluster(clusterName=PROBE_CLUSTER)
    td = {
        "family": "probe",
        "containerDefinitions": [{"name": "app", "image": "busybox:1", "memory": 64}],
    }
    arn = ecs.register_task_definition(**td)["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(
        cluster=PROBE_CLUSTER, serviceName="probe", taskDefinition=arn, desiredCount=1
    )
    return ecs, td


def _api_time(ecs: Any, td: dict[str, Any], i: int) -> float:
    started = time.perf_counter()
    body = {
        **td,
        "containerDefinitions": [{**td["containerDefinitions"][0], "image": f"busybox:{i}"}],
    }
    arn = ecs.register_task_definition(**body)["taskDefinition"]["taskDefinitionArn"]
    ecs.update_service(cluster=PROBE_CLUSTER, service="probe", taskDefinition=arn)
    return time.perf_counter() - started


def run_commits(dep: Deployed, agent: Agent, commits: int) -> dict[str, Any]:
    aws = dep.aws
    ecs, td = _probe(aws)
    apps = list(dep.fleet.apps)
    latencies: list[float] = []
    api: list[float] = []
    for i in range(commits):
        app = apps[i % len(apps)]
        service = dep.fleet.apps[app][i // len(apps) % len(dep.fleet.apps[app])]
        set_image_tag(dep.repo.path, dep.fleet, [service], f"p4-{i}")
        dep.repo.git("add", "-A")
        commit = dep.repo.commit(f"p4: {service} image p4-{i}")
        dep.repo.push()
        aws.clear_calls()
        started = time.perf_counter()
        agent.webhook()
        latencies.append(_wait_update(aws, time.monotonic() + 120) - started)

        def attempted(c: str = commit) -> bool:
            return all(a["last_attempted"] == c for a in agent.apps())

        agent.wait_for("every app to attempt the commit", attempted, 300)
        api.append(_api_time(ecs, td, i))
    p50, api50 = statistics.median(latencies), statistics.median(api)
    return {
        "commits": commits,
        "latency": {
            "p50": round(p50, 3),
            "p95": round(percentile(latencies, 0.95), 3),
            "values": [round(v, 3) for v in latencies],
        },
        "api_writes": {"p50": round(api50, 3), "values": [round(v, 3) for v in api]},
        "goal_p50": round(1.0 + api50, 3),
        "met": p50 <= 1.0 + api50,
    }


def measure(
    workdir: Path, services: int, aws: LocalAws, daemon: GitDaemon, commits: int
) -> dict[str, Any]:
    dep = deploy_fleet(workdir, services, aws, daemon, name="p4")
    config = write_config(
        dep.fleet,
        dep.config.with_name("p4-agent.toml"),
        source_url=daemon.url("p4"),
        endpoint_url=aws.endpoint_url,
        state_dir=workdir / "p4-state",
        extra_daemon=agent_daemon_settings("10m"),
        extra=AGENT_CONFIG,
    )
    text = config.read_text().replace('branch = "main"\n', 'branch = "main"\ninterval = "1h"\n', 1)
    config.write_text(text)
    agent = Agent(config, dep.env())
    try:
        agent.started()
        head = dep.repo.head()
        agent.wait_for(
            "the first passes", lambda: all(a["last_attempted"] == head for a in agent.apps()), 600
        )
        out = run_commits(dep, agent, commits)
    finally:
        agent.stop()
    out["services"] = services
    return out
