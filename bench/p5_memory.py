"""P5, memory: peak RSS of ``gitopsd run`` holding a fleet in sync, pass after pass.

The agent starts on a fleet already in sync (so every pass is a steady-state
drift check) with a short interval; after each pass over every app the bench
reads the process's VmRSS and VmHWM (/proc/PID/status). Goals (issue 10): at
most 150 MB with 1,000 services (Flux's kustomize-controller: 175 MiB for 1,000
Kustomizations), at most 300 MB with 10,000, flat over passes (the last pass's
RSS against the second's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.agent import AGENT_CONFIG, Agent, agent_daemon_settings
from bench.fleet import write_config
from bench.seed import deploy_fleet
from bench.servers import GitDaemon, LocalAws

MB = 1024 * 1024
GOALS_MB = {1000: 150, 10000: 300}


def measure_one(
    workdir: Path, services: int, aws: LocalAws, daemon: GitDaemon, passes: int
) -> dict[str, Any]:
    dep = deploy_fleet(workdir, services, aws, daemon, name=f"p5-{services}")
    config = write_config(
        dep.fleet,
        dep.config.with_name(f"p5-{services}-agent.toml"),
        source_url=daemon.url(f"p5-{services}"),
        endpoint_url=aws.endpoint_url,
        state_dir=workdir / f"p5-{services}-state",
        extra_daemon=agent_daemon_settings("1s"),
        extra=AGENT_CONFIG,
    )
    agent = Agent(config, dep.env())
    per_pass: list[dict[str, float]] = []
    try:
        agent.started()
        seen = 0
        for _ in range(passes):
            target = seen + 1

            def reached(t: int = target) -> int | None:
                done = agent.min_passes()
                return done if done >= t else None

            seen = agent.wait_for(f"pass {target}", reached)
            rss, hwm = agent.rss()
            per_pass.append(
                {"pass": seen, "rss_mb": round(rss / MB, 1), "hwm_mb": round(hwm / MB, 1)}
            )
    finally:
        agent.stop()
    peak = max(p["hwm_mb"] for p in per_pass)
    goal = GOALS_MB.get(services)
    second = per_pass[1]["rss_mb"] if len(per_pass) > 1 else per_pass[0]["rss_mb"]
    return {
        "services": services,
        "passes": per_pass,
        "peak_mb": peak,
        "goal_mb": goal,
        "growth_mb": round(per_pass[-1]["rss_mb"] - second, 1),
    }


def measure(
    workdir: Path, sizes: list[int], aws: LocalAws, daemon: GitDaemon, passes: int
) -> list[dict[str, Any]]:
    return [measure_one(workdir, n, aws, daemon, passes) for n in sizes]
