"""`gitopsd run` reports each stage of a rollout once: ``rollout_progressed`` events through
the webhook notifier (a real receiver on loopback), and the stage in the status API.

The local endpoint's clock is manual while a commit rolls out; the test moves it one
simulated second at a time, each time after the agent has polled the service deployment
twice, so every stage ECS passes through is seen by the agent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .conftest import Env
from .test_agent import WEB_TD, AgentProcess, agent, completed
from .test_agent_observability import HookServer, hook

__all__ = ["agent", "hook"]  # the fixtures, imported for these tests


def progress_of(hook: HookServer, revision: str) -> list[dict[str, Any]]:
    return [
        b["rollout"]
        for b in list(hook.bodies)
        if b["kind"] == "rollout_progressed" and b["app"] == "web" and b["revision"] == revision
    ]


def stage(doc: dict[str, Any]) -> str:
    return "/".join(p for p in (doc["status"], doc["lifecycle"]) if p)


def steps(found: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(stage(p["previous"]), stage(p["stage"])) for p in found]


def drive_until(env: Env, a: AgentProcess, what: str, done: Callable[[], bool]) -> None:
    """Advance the endpoint's clock one second per two service-deployment polls until
    ``done``; fails after 60 s."""
    deadline = time.monotonic() + 60
    while not done():
        polls = env.aws.calls().count("DescribeServiceDeployments")

        def polled(since: int = polls) -> bool:
            return env.aws.calls().count("DescribeServiceDeployments") >= since + 2 or done()

        a.wait_for("two polls of the rollout", polled)
        env.aws.advance(1.0)
        assert time.monotonic() < deadline, f"timed out driving the clock until {what}"


def test_each_stage_of_a_rollout_is_one_event_and_shows_in_status(
    env: Env, hook: HookServer, agent: Callable[..., AgentProcess]
) -> None:
    env.config.write_text(
        env.config.read_text()
        + "\n[plugins.webhook]\n"
        + f'url = "{hook.url}"\nsecret_env = "GITOPSD_TEST_HOOK_SECRET"\n'
        + 'kinds = ["rollout_progressed", "rollout_completed", "rolled_back"]\n'
    )
    a = agent(source_interval="0.3s")
    a.wait_for("the first sync", lambda: completed(env, "web", "web:1"))
    env.aws.configure(clock="manual", pace=1.0)

    env.edit(WEB_TD, "nginx:1.27", "nginx:broken")
    bad = env.commit("web: a build that cannot start")
    a.wait_for("the first stage", lambda: progress_of(hook, bad), 40)
    web = a.wait_for("the stage in status", lambda: a.app("web")["rollouts"] and a.app("web"))
    assert web["rollouts"] == {"Service/web": "IN_PROGRESS"}
    assert web["progress"] == "Service/web: IN_PROGRESS"
    reconciling = next(c for c in web["conditions"] if c["type"] == "Reconciling")
    assert reconciling["status"] == "True"
    assert reconciling["message"] == "verify: Service/web: IN_PROGRESS"

    drive_until(env, a, "the rollback alert", lambda: "rolled_back" in hook.kinds())
    assert steps(progress_of(hook, bad)) == [
        ("", "IN_PROGRESS"),
        ("IN_PROGRESS", "ROLLBACK_REQUESTED"),
        ("ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS"),
        ("ROLLBACK_IN_PROGRESS", "ROLLBACK_SUCCESSFUL"),
    ]
    bodies = [b for b in hook.bodies if b["kind"] == "rollout_progressed" and b["revision"] == bad]
    (arn,) = {b["deployment"] for b in bodies}
    assert arn.startswith("arn:aws:ecs:")
    assert ":service-deployment/" in arn
    assert all(b["rollout"]["deployment"] == arn for b in bodies)
    assert all(b["rollout"]["key"] == "Service/web" for b in bodies)
    assert all(b["severity"] == "info" and b["stage"] == "verify" for b in bodies)
    assert bodies[1]["message"].startswith("Service/web: web:2: IN_PROGRESS -> ROLLBACK_REQUESTED")
    (rolled_back,) = [b for b in hook.bodies if b["kind"] == "rolled_back"]
    assert rolled_back["deployment"] == arn  # the same ARN follows the rollout to its verdict
    a.wait_for("the pass over", lambda: not a.app("web")["rollouts"])
    assert a.app("web")["progress"] == ""

    # The next commit: IN_PROGRESS, then SUCCESSFUL; nothing more while tasks start.
    env.edit(WEB_TD, "nginx:broken", "nginx:1.28")
    good = env.commit("web: fixed")
    a.wait_for("the first stage", lambda: progress_of(hook, good), 40)
    drive_until(env, a, "the completed alert", lambda: "rollout_completed" in {
        b["kind"] for b in hook.bodies if b["revision"] == good
    })  # fmt: skip
    assert steps(progress_of(hook, good)) == [("", "IN_PROGRESS"), ("IN_PROGRESS", "SUCCESSFUL")]
    passes = a.app("web")["passes"]
    a.wait_for("two more passes", lambda: a.app("web")["passes"] >= passes + 2)
    assert len(progress_of(hook, good)) == 2  # a drift check watches nothing: no more events
    assert hook.bad_signatures == 0
