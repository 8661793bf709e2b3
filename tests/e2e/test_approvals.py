"""Approvals at PAUSE hooks end to end (issue 11.5), against the local ECS endpoint.

A blue/green web service with a PAUSE hook at POST_TEST_TRAFFIC_SHIFT: the real CLI
syncs it, the endpoint's manual clock walks the deployment to the hook, and
``gitopsd approve`` (no agent running: the CLI acts itself) continues it, or with
``--reject`` rolls it back; both decisions show in ``gitopsd history`` with who made
them. An approver plugin decides the same way while a sync waits; nothing awaiting
approval is a clear error. Time only moves when the test advances the clock.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from gitopsd import config_source
from gitopsd.backends.ecs.backend import EcsBackend
from gitopsd.engine.approvals import read_decisions
from gitopsd.engine.outcome import Outcome
from gitopsd.engine.reconcile import Mode, Reconciler
from gitopsd.engine.sources import SourceSet
from gitopsd.events import APPROVAL_DECIDED, APPROVAL_NEEDED, ApprovalRequest, Decision, Event
from gitopsd.plugins import ApproverEntry
from gitopsd.state import StateDir
from gitopsd.statestore.dirstore import DirStore

from .conftest import CLUSTER, Env
from .test_agent import AgentProcess, agent  # noqa: F401 (the agent fixture)

SERVICE = "apps/web/base/service.yaml"
TASK_DEFINITION = "apps/web/base/task-definition.yaml"
TG = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup"
RULE = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/shop/1/2"
ROLE = "arn:aws:iam::123456789012:role/ecs-infrastructure"

BLUE_GREEN_WITH_PAUSE = f"""\
kind: Service
serviceName: web
taskDefinition: web
desiredCount: 2
launchType: EC2
loadBalancers:
  - targetGroupArn: {TG}/blue/1
    containerName: web
    containerPort: 80
    advancedConfiguration:
      alternateTargetGroupArn: {TG}/green/1
      productionListenerRule: {RULE}/3
      roleArn: {ROLE}
deploymentConfiguration:
  strategy: BLUE_GREEN
  lifecycleHooks:
    - targetType: PAUSE
      lifecycleStages: [POST_TEST_TRAFFIC_SHIFT]
      timeoutConfiguration:
        timeoutInMinutes: 60
        action: ROLLBACK
"""

#: Simulated seconds the clock may move before a test gives up on a state.
LIMIT = 300


def blue_green(env: Env) -> None:
    env.aws.configure(clock="manual", pace=1.0)
    env.repo.write(SERVICE, BLUE_GREEN_WITH_PAUSE)
    env.commit("web: blue/green with a pause for approval")


def newest(env: Env) -> dict[str, Any]:
    """The web service's newest service deployment, described."""
    ecs = env.ecs()
    briefs = ecs.list_service_deployments(cluster=CLUSTER, service="web")["serviceDeployments"]
    assert briefs, "web has no service deployment"
    arns = [b["serviceDeploymentArn"] for b in briefs]
    found = ecs.describe_service_deployments(serviceDeploymentArns=arns)["serviceDeployments"]
    return dict(max(found, key=lambda sd: sd["createdAt"]))


def paused(sd: dict[str, Any]) -> bool:
    return sd["status"] == "IN_PROGRESS" and any(
        h.get("targetType") == "PAUSE" and h.get("status") == "AWAITING_ACTION"
        for h in sd.get("lifecycleHookDetails") or []
    )


def advance_until(env: Env, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Move the endpoint's clock one simulated second at a time until ``check`` holds."""
    for _ in range(LIMIT):
        sd = newest(env)
        if check(sd):
            return sd
        env.aws.advance(1.0)
    raise AssertionError(f"not reached within {LIMIT} simulated seconds: {newest(env)}")


def status_is(status: str) -> Callable[[dict[str, Any]], bool]:
    return lambda sd: sd["status"] == status


def history(env: Env) -> list[dict[str, Any]]:
    run = env.gitopsd("history", "web", "-o", "json")
    assert run.code == 0, run.err
    rows: list[dict[str, Any]] = json.loads(run.out)["history"]
    return rows


def test_approve_continues_reject_rolls_back_both_in_history(env: Env) -> None:
    blue_green(env)
    run = env.gitopsd("sync", "web", "--no-wait")
    assert run.code == 0, run.out + run.err
    first = advance_until(env, paused)
    assert first["lifecycleStage"] == "POST_TEST_TRAFFIC_SHIFT"
    env.aws.clear_calls()

    run = env.gitopsd("approve", "web", "--by", "alice", "--reason", "green looks fine")
    assert run.code == 0, run.out + run.err
    assert "Service/web: approved (CONTINUE) by alice" in run.out
    assert "POST_TEST_TRAFFIC_SHIFT" in run.out
    assert [c for c in env.aws.calls() if c.startswith("Continue")] == ["ContinueServiceDeployment"]
    done = advance_until(env, lambda sd: sd["status"] not in ("PENDING", "IN_PROGRESS"))
    assert done["serviceDeploymentArn"] == first["serviceDeploymentArn"]
    assert done["status"] == "SUCCESSFUL"

    env.edit(TASK_DEFINITION, "nginx:1.27", "nginx:1.28")
    env.commit("web: nginx 1.28")
    run = env.gitopsd("sync", "web", "--no-wait")
    assert run.code == 0, run.out + run.err
    second = advance_until(env, paused)
    assert second["serviceDeploymentArn"] != first["serviceDeploymentArn"]
    run = env.gitopsd("approve", "web", "--reject", "--by", "bob", "--reason", "p99 up")
    assert run.code == 0, run.out + run.err
    assert "Service/web: rejected (ROLLBACK) by bob" in run.out
    back = advance_until(env, status_is("ROLLBACK_SUCCESSFUL"))
    assert back["serviceDeploymentArn"] == second["serviceDeploymentArn"]
    assert "nginx:1.27" in str(
        env.ecs().describe_task_definition(taskDefinition=env.service("web")["taskDefinition"])
    )

    rows = {r["service_deployment"]: r for r in history(env)}
    approved = rows[first["serviceDeploymentArn"]]
    assert approved["outcome"] == "completed"
    assert [
        (d["outcome"], d["action"], d["by"], d["reason"], d["stage"]) for d in approved["approvals"]
    ] == [("approved", "CONTINUE", "alice", "green looks fine", "POST_TEST_TRAFFIC_SHIFT")]
    rejected = rows[second["serviceDeploymentArn"]]
    assert rejected["outcome"] == "rolled back by ECS"
    assert [(d["outcome"], d["action"], d["by"]) for d in rejected["approvals"]] == [
        ("rejected", "ROLLBACK", "bob")
    ]
    text = env.gitopsd("history", "web")
    assert text.code == 0
    assert "CONTINUE by alice at POST_TEST_TRAFFIC_SHIFT: green looks fine" in text.out
    assert "ROLLBACK by bob at POST_TEST_TRAFFIC_SHIFT: p99 up" in text.out


def test_nothing_awaiting_approval_is_a_clear_error(env: Env) -> None:
    run = env.gitopsd("sync", "web")  # the example's rolling web service: no hook at all
    assert run.code == 0, run.out + run.err
    env.aws.clear_calls()
    run = env.gitopsd("approve", "web")
    assert run.code == 2
    assert (
        "app 'web': no deployment awaits approval (no PAUSE hook is AWAITING_ACTION in "
        "services web)" in run.err
    )
    assert [c for c in env.aws.calls() if not c.startswith(("Describe", "List"))] == []
    run = env.gitopsd("approve", "web", "--service", "nope")
    assert run.code == 2
    assert "app 'web' declares no service 'nope' (services: web)" in run.err


class PrApprover:
    """Approves on its second question, as a PR bot would once the review lands."""

    def __init__(self) -> None:
        self.requests: list[ApprovalRequest] = []

    async def decide(self, request: ApprovalRequest) -> Decision | None:
        self.requests.append(request)
        if len(self.requests) < 2:
            return None
        return Decision(approve=True, reason="PR #7 approved", by="carol")


class Sink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def publish(self, event: Event) -> None:
        self.events.append(event)


def sync_in_lock_step(
    env: Env, store: DirStore, sink: Sink, approvers: list[ApproverEntry]
) -> Outcome:
    """``web``'s sync pass (the engine, as ``gitopsd sync`` runs it) while the endpoint's
    clock moves one simulated second per two polls of the watcher."""
    config = config_source.load(config_source.resolve(str(env.config)))
    app = config.app("web")

    def polls() -> int:
        return env.aws.calls().count("DescribeServiceDeployments")

    async def main() -> Outcome:
        sources = SourceSet(config)
        try:
            async with EcsBackend(
                config.aws, StateDir(config.daemon.state_dir), poll_interval=0.02
            ) as backend:
                reconciler = Reconciler(
                    config, backend, sources, events=sink, store=store, approvers=approvers
                )
                async with anyio.create_task_group() as tg:

                    async def drive() -> None:
                        while True:
                            before = await anyio.to_thread.run_sync(polls)
                            with anyio.fail_after(10):  # polling with a deadline
                                while True:
                                    if await anyio.to_thread.run_sync(polls) >= before + 2:
                                        break
                                    await anyio.sleep(0.01)
                            await anyio.to_thread.run_sync(env.aws.advance, 1.0)

                    tg.start_soon(drive)
                    with anyio.fail_after(60):
                        outcome = await reconciler.reconcile(app, Mode.SYNC)
                    tg.cancel_scope.cancel()
                return outcome
        finally:
            sources.close()

    return anyio.run(main)


def test_an_approver_plugin_approves_while_the_sync_waits(env: Env, tmp_path: Path) -> None:
    blue_green(env)
    approver, sink = PrApprover(), Sink()
    store = DirStore(tmp_path / "store")
    outcome = sync_in_lock_step(env, store, sink, [ApproverEntry("pr", approver, ("web",))])
    assert outcome.ok, outcome.message
    assert [r.state for r in outcome.rollouts] == ["COMPLETED"]
    assert len(approver.requests) == 2
    request = approver.requests[0]
    assert (request.app, request.key, request.stage) == (
        "web",
        "Service/web",
        "POST_TEST_TRAFFIC_SHIFT",
    )
    assert outcome.revision is not None
    assert request.revision == outcome.revision.commit
    assert request.timeout_action == "ROLLBACK"
    assert request.target.endswith("task-definition/web:1")
    kinds = [e.kind for e in sink.events if e.kind in (APPROVAL_NEEDED, APPROVAL_DECIDED)]
    assert kinds == [APPROVAL_NEEDED, APPROVAL_DECIDED]
    needed = next(e for e in sink.events if e.kind == APPROVAL_NEEDED)
    assert "gitopsd approve web" in needed.message
    (decision,) = anyio.run(read_decisions, store, "web")
    assert (decision.by, decision.outcome, decision.reason) == (
        "plugin pr (carol)",
        "approved",
        "PR #7 approved",
    )
    assert decision.deployment == newest(env)["serviceDeploymentArn"]
    assert newest(env)["status"] == "SUCCESSFUL"


def test_with_an_agent_running_the_agent_decides_and_status_says_approval_needed(
    env: Env,
    agent: Callable[..., AgentProcess],  # noqa: F811
) -> None:
    blue_green(env)
    running = agent(source_interval="0.3s")

    def waiting_in_status() -> str:
        progress = str(running.app("web").get("progress", ""))
        return progress if "approval needed" in progress else ""

    deadline = time.monotonic() + 60
    while not waiting_in_status():  # the agent applies, then its verify sees the pause
        assert time.monotonic() < deadline, running.log.read_text()[-4000:]
        env.aws.advance(1.0)  # time moves only when the test says so
        time.sleep(0.05)  # polling with a deadline: the agent's verify polls every 50ms
    assert "at POST_TEST_TRAFFIC_SHIFT" in waiting_in_status()
    status = env.gitopsd("status")
    assert "approval needed" in status.out
    assert any(line.get("event") == "approval.needed" for line in running.lines())

    run = env.gitopsd("approve", "web", "--by", "dave")
    assert run.code == 0, run.out + run.err
    assert "approved (CONTINUE) by dave via control API;" in run.out
    assert "(the agent acted)" in run.out
    done = advance_until(env, lambda sd: sd["status"] not in ("PENDING", "IN_PROGRESS"))
    assert done["status"] == "SUCCESSFUL"
    running.wait_for(
        "web Ready",
        lambda: any(
            c["type"] == "Ready" and c["status"] == "True" for c in running.app("web")["conditions"]
        ),
    )
    (row,) = [r for r in history(env) if r["service_deployment"] == done["serviceDeploymentArn"]]
    assert [(d["by"], d["outcome"]) for d in row["approvals"]] == [
        ("dave via control API", "approved")
    ]


def test_a_pause_that_times_out_is_reported_with_the_action_ecs_took(env: Env) -> None:
    blue_green(env)
    env.aws.configure(minute_seconds=1.0)  # the hook's "1 minute" is 1 simulated second
    env.edit(SERVICE, "timeoutInMinutes: 60", "timeoutInMinutes: 30")
    env.edit(SERVICE, "action: ROLLBACK", "action: CONTINUE")
    env.commit("web: the pause continues on its own after 30 minutes")
    sink = Sink()
    config = config_source.load(config_source.resolve(str(env.config)))
    store = DirStore(config.daemon.state_dir / "store")  # where `gitopsd history` reads
    outcome = sync_in_lock_step(env, store, sink, [])
    assert outcome.ok, outcome.message
    kinds = [e.kind for e in sink.events if e.kind in (APPROVAL_NEEDED, APPROVAL_DECIDED)]
    assert kinds == [APPROVAL_NEEDED, APPROVAL_DECIDED]
    timed_out = next(e for e in sink.events if e.kind == APPROVAL_DECIDED)
    assert timed_out.reason == "ApprovalTimedOut"
    assert "timed out; ECS took its timeout action CONTINUE" in timed_out.message
    (decision,) = anyio.run(read_decisions, store, "web")
    assert (decision.outcome, decision.action, decision.by) == (
        "timed out",
        "CONTINUE",
        "ECS (timeout)",
    )
    assert decision.stage == "POST_TEST_TRAFFIC_SHIFT"
    sd = newest(env)
    assert sd["status"] == "SUCCESSFUL"
    (row,) = [r for r in history(env) if r["service_deployment"] == sd["serviceDeploymentArn"]]
    assert [(d["outcome"], d["action"], d["by"]) for d in row["approvals"]] == [
        ("timed out", "CONTINUE", "ECS (timeout)")
    ]
