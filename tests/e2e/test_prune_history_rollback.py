"""Prune, history and rollback through the CLI, against the local endpoint and a git daemon."""

from __future__ import annotations

import json

from .conftest import Env

WEB_TD = "apps/web/base/task-definition.yaml"
WORKER = "apps/worker/worker.yaml"


def enable_prune(env: Env, share: str = "0.5") -> None:
    env.config.write_text(
        env.config.read_text().replace(
            "  [apps.sync]\n", f"  [apps.sync]\n  prune = true\n  prune_max_share = {share}\n"
        )
    )


def test_prune_shows_in_diff_waits_above_the_share_and_removes_only_tagged_services(
    env: Env,
) -> None:
    # The worker app gets a second service, then drops it from Git.
    text = (env.repo.path / WORKER).read_text()
    extra = text.split("---\n", 1)[1].replace("serviceName: worker", "serviceName: worker-2")
    env.repo.write(WORKER, text + "---\n" + extra)
    env.commit("worker: a second service")
    assert env.gitopsd("sync", "worker").code == 0
    ecs = env.ecs()
    worker_td = env.service("worker")["taskDefinition"]
    ecs.create_service(
        cluster="demo", serviceName="by-hand", taskDefinition=worker_td, desiredCount=1
    )
    env.repo.write(WORKER, text)
    env.commit("worker: drop worker-2")
    enable_prune(env, share="0.4")

    diff = env.gitopsd("diff", "worker")
    assert "- Service/worker-2  (held: no longer declared" in diff.out
    held = env.gitopsd("sync", "worker")
    assert held.code == 0, held.out
    assert "--confirm-prune" in held.out
    assert env.service("worker-2")["status"] == "ACTIVE"

    env.aws.clear_calls()
    run = env.gitopsd("sync", "worker", "--confirm-prune")
    assert run.code == 0, run.out
    assert "applied Service/worker-2" in run.out or "pruned" in run.out
    gone = ecs.describe_services(cluster="demo", services=["worker-2"])["services"]
    assert not gone or gone[0]["status"] != "ACTIVE"
    assert env.service("by-hand")["status"] == "ACTIVE"  # untagged: never touched
    assert env.service("worker")["status"] == "ACTIVE"
    assert env.gitopsd("diff", "worker").code == 0


def test_history_lists_deployments_from_aws_and_rollback_suspends(env: Env) -> None:
    assert env.gitopsd("sync", "web").code == 0
    first = env.repo.head()
    env.edit(WEB_TD, "nginx:1.27", "nginx:1.28")
    env.commit("web: nginx 1.28")
    assert env.gitopsd("sync", "web").code == 0
    env.edit(WEB_TD, "nginx:1.28", "nginx:broken")
    env.commit("web: broken")
    assert env.gitopsd("sync", "web").code == 2

    history = env.gitopsd("history", "web", "-o", "json")
    assert history.code == 0, history.out + history.err
    rows = json.loads(history.out)["history"]
    outcomes = [r["outcome"] for r in rows]
    assert outcomes[0] == "rolled back by ECS"
    assert outcomes.count("completed") == 2
    assert rows[1]["message"] == "web: nginx 1.28"
    text = env.gitopsd("history", "web")
    assert "rolled back by ECS" in text.out

    run = env.gitopsd("rollback", "web", "--to", first[:10])
    assert run.code == 0, run.out + run.err
    assert "automatic sync suspended" in run.out
    assert env.service("web")["taskDefinition"].endswith("web:1")
    record = env.config.parent / "state" / "store" / "agent" / "web.json"
    assert json.loads(record.read_text())["value"]["suspended"] is True


def test_status_without_an_agent_reads_live_state(env: Env) -> None:
    assert env.gitopsd("sync", "worker").code == 0
    run = env.gitopsd("status")
    assert "no gitopsd agent is running" in run.err
    lines = run.out.splitlines()
    assert lines[0].split()[:5] == ["APP", "REVISION", "SYNC", "HEALTH", "READY"]
    worker = next(line for line in lines if line.startswith("worker"))
    assert "Synced" in worker
    assert "Healthy" in worker
    web = next(line for line in lines if line.startswith("web"))
    assert "OutOfSync" in web  # never synced
