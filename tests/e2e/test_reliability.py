"""Correct under faults, one fault at a time: each test is one point of docs/reliability.md.

Real parts only: the CLI in-process against the local ECS endpoint and a git daemon.
The fault-injection suite with random faults and crashes is tests/faults/.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import anyio
from support.gitserver import GitDaemon, GitRepo

from gitopsd.state import StateDir

from .conftest import CLUSTER, Env

WEB_TD = "apps/web/base/task-definition.yaml"
WEB_SVC = "apps/web/base/service.yaml"


def sync_ok(env: Env, *args: str) -> str:
    run = env.gitopsd("sync", *args)
    assert run.code == 0, run.out + run.err
    return run.out


def no_breaker(env: Env) -> None:
    env.edit(
        WEB_SVC,
        "    enable: true\n    rollback: true\n",
        "    enable: false\n    rollback: false\n",
    )
    env.commit("web: no circuit breaker")


def set_timeout(env: Env, value: str) -> None:
    env.config.write_text(
        env.config.read_text().replace('timeout = "30s"', f'timeout = "{value}"', 1)
    )


def state_dir(env: Env) -> Path:
    return env.config.parent / "state"


def test_rerun_after_an_interrupted_verify_reports_the_failing_rollout_and_rolls_back(
    env: Env,
) -> None:
    """`sync --no-wait` leaves exactly what a kill during verification leaves."""
    no_breaker(env)
    sync_ok(env, "web")
    good = env.service("web")["taskDefinition"]
    env.edit(WEB_TD, "nginx:1.27", "nginx:broken")
    env.commit("web: a build that cannot start")
    started = env.gitopsd("sync", "web", "--no-wait")
    assert started.code == 0, started.out
    assert env.service("web")["taskDefinition"] != good

    set_timeout(env, "1s")
    env.aws.clear_calls()
    rerun = env.gitopsd("sync", "web")
    assert rerun.code == 2, rerun.out
    assert "in sync: nothing to do" not in rerun.out
    assert "rollout Service/web: ROLLED_BACK" in rerun.out
    assert "gitopsd rolled back to web:" in rerun.out
    assert env.service("web")["taskDefinition"] == good
    assert Counter(env.writes()) == Counter({"UpdateService": 1})  # the rollback only


def test_diff_shows_a_failing_rollout_instead_of_in_sync(env: Env) -> None:
    no_breaker(env)
    sync_ok(env, "web")
    env.edit(WEB_TD, "nginx:1.27", "nginx:broken")
    env.commit("web: a build that cannot start")
    assert env.gitopsd("sync", "web", "--no-wait").code == 0
    diff = env.gitopsd("diff", "web")
    assert "in sync: nothing to do" not in diff.out
    assert "! Service/web: Progressing: rollout of web:" in diff.out


def test_read_only_commands_write_no_state(env: Env) -> None:
    sync_ok(env)
    state = StateDir(state_dir(env))
    records = [state.last_good("web").path, state_dir(env) / "store" / "applied" / "web.json"]
    before = {p: p.read_bytes() for p in records}
    for p in records:
        p.unlink()
    assert env.gitopsd("diff").code == 0
    assert env.gitopsd("sync", "--dry-run").code == 0
    assert not any(p.exists() for p in records)
    assert before  # a real sync did write them


def test_a_hand_deployed_revision_is_never_recorded_as_good(env: Env) -> None:
    sync_ok(env, "web")
    record = StateDir(state_dir(env)).last_good("web")
    good = record.load()["web"]
    ecs = env.ecs()
    td = ecs.describe_task_definition(taskDefinition=good)["taskDefinition"]
    keep = ("family", "containerDefinitions", "requiresCompatibilities", "cpu", "memory")
    manual = ecs.register_task_definition(**{k: td[k] for k in keep if k in td})["taskDefinition"][
        "taskDefinitionArn"
    ]
    ecs.update_service(cluster=CLUSTER, service="web", taskDefinition=manual)
    assert env.gitopsd("diff", "web").code in (0, 1)
    assert record.load()["web"] == good


def test_a_second_process_on_the_same_app_waits_then_fails_clearly(env: Env) -> None:
    env.config.write_text(
        env.config.read_text().replace("[daemon]\n", '[daemon]\nlock_timeout = "0.2s"\n', 1)
    )
    lock = StateDir(state_dir(env)).lock("web")

    async def hold_and_sync() -> None:
        await lock.acquire(1.0)
        try:
            run = await anyio.to_thread.run_sync(env.gitopsd, "sync", "web")
        finally:
            lock.release()
        assert run.code == 2
        assert "error (ApplyFailed, temporary): app 'web' is being synced by pid" in run.out
        assert "[daemon].lock_timeout" in run.out

    anyio.run(hold_and_sync)
    assert env.writes() == []
    sync_ok(env, "web")  # free again


def test_a_force_push_is_reported_and_refusable(env: Env) -> None:
    sync_ok(env, "worker")
    old = env.repo.head()
    env.repo.git("reset", "-q", "--hard", "HEAD~0")
    env.edit("apps/worker/worker.yaml", "desiredCount: 1", "desiredCount: 2")
    env.repo.git("commit", "-q", "--amend", "-a", "-m", "rewritten")
    env.repo.push()
    assert env.repo.head() != old

    strict = env.config.read_text().replace(
        'branch = "main"\n', 'branch = "main"\nallow_history_rewrite = false\n', 1
    )
    lenient = env.config.read_text()
    env.config.write_text(strict)
    env.aws.clear_calls()
    refused = env.gitopsd("sync", "worker")
    assert refused.code == 2
    assert "history rewritten" in refused.out
    assert "allow_history_rewrite is false" in refused.out
    assert "SourceFailed, permanent" in refused.out
    assert env.writes() == []

    env.config.write_text(lenient)
    followed = env.gitopsd("sync", "worker")
    assert followed.code == 0, followed.out
    assert "warning: history rewritten" in followed.out
    assert env.service("worker")["desiredCount"] == 2
    again = env.gitopsd("sync", "worker")
    assert "history rewritten" not in again.out  # said once, then it is the new base


def test_a_git_outage_falls_back_to_the_last_fetched_commit(
    env: Env, served: tuple[GitRepo, GitDaemon]
) -> None:
    sync_ok(env, "worker")
    head = env.repo.head()
    _, daemon = served
    daemon.__exit__(None, None, None)

    validate = env.gitopsd("validate", "worker")
    assert validate.code == 0, validate.out
    assert "may be stale" in validate.out
    diff = env.gitopsd("diff", "worker")
    assert diff.code == 0, diff.out
    assert f"using the last fetched commit {head[:12]}" in diff.out
    assert "the remote is unreachable" in diff.out
    offline = env.gitopsd("diff", "worker", "--offline", "-o", "json")
    assert offline.code == 0
    (app,) = json.loads(offline.out)["apps"]
    assert any("offline (--offline)" in w for w in app["warnings"])


def test_a_timed_out_rollout_is_temporary(env: Env) -> None:
    no_breaker(env)
    sync_ok(env, "web")
    env.config.write_text(
        env.config.read_text().replace("  [apps.sync]\n", "  [apps.sync]\n  rollback = false\n", 1)
    )
    set_timeout(env, "0.5s")
    env.edit(WEB_TD, "nginx:1.27", "nginx:broken")
    env.commit("web: a build that cannot start")
    run = env.gitopsd("sync", "web")
    assert run.code == 2
    assert "error (RolloutFailed, temporary)" in run.out
    assert "TIMED_OUT" in run.out
    assert "automatic rollback is off (sync.rollback)" in run.out
