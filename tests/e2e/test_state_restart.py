"""What the agent remembers survives a restart: with the DynamoDB store on an empty disk (a
replaced Fargate task), with the state-dir store on the same directory.

A real agent process, the local endpoint (ECS and DynamoDB over HTTP) and a git daemon:
an app suspended, a commit whose rollout failed and a webhook delivery are remembered;
after the restart the app is still suspended, the failed commit is not redeployed (zero
ECS writes), the replayed delivery is ignored, and the rest of each app's record is kept.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from statestore.table import create_state_table

from . import test_agent
from .conftest import READ_PREFIXES, Env
from .test_agent import SECRET, WEB_TD, AgentProcess, completed

agent = test_agent.agent  # the fixture that starts an agent process (and stops it after)

TABLE = "gitopsd-state"
#: DynamoDB's calls (the store at work); every other write is an ECS write.
STORE_CALLS = ("GetItem", "PutItem", "DeleteItem", "Query")
REMEMBERED = ("suspended", "failed_commit", "last_applied", "last_attempted")


def ecs_writes(env: Env) -> list[str]:
    return [c for c in env.aws.calls() if not c.startswith(READ_PREFIXES + STORE_CALLS)]


def send_hook(a: AgentProcess, delivery: str) -> tuple[int, dict[str, Any]]:
    body = b'{"ref": "refs/heads/main"}'
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        a.url + "/hooks/ci",
        data=body,
        headers={"X-Signature-256": signature, "X-Delivery-Id": delivery},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as r:
        return r.status, json.loads(r.read())


def triggered_by_webhook(a: AgentProcess) -> int:
    return sum(
        1
        for line in a.lines()
        if line.get("event") == "agent.triggered" and line.get("reason") == "webhook ci"
    )


@pytest.mark.parametrize("backend", ["dynamodb", "dir"])
def test_a_restart_keeps_suspended_apps_failed_commits_and_seen_deliveries(
    env: Env, agent: Callable[..., AgentProcess], backend: str
) -> None:
    if backend == "dynamodb":
        create_state_table(env.aws, TABLE)
        env.config.write_text(
            env.config.read_text() + f'\n[state]\nbackend = "dynamodb"\ntable = "{TABLE}"\n'
        )
    a = agent(source_interval="0.5s", webhook=True)
    a.wait_for("the first sync", lambda: completed(env, "web", "web:1"))
    a.wait_for("worker Ready", lambda: a.app("worker")["conditions"][0]["status"] == "True")

    suspend = env.gitopsd("suspend", "worker")
    assert suspend.code == 0, suspend.out + suspend.err
    env.edit(WEB_TD, "nginx:1.27", "nginx:broken")
    bad = env.commit("web: broken")
    a.wait_for("the failed commit remembered", lambda: a.app("web")["failed_commit"] == bad)
    assert completed(env, "web", "web:1")  # ECS rolled it back
    assert send_hook(a, "delivery-1")[0] == 202
    a.wait_for("the webhook's fetch", lambda: triggered_by_webhook(a) == 1)
    before = {n: {k: a.app(n)[k] for k in REMEMBERED} for n in ("web", "worker")}
    assert before["worker"]["suspended"] is True
    assert a.stop() == 0

    state_dir = env.config.parent / "state"
    if backend == "dynamodb":
        shutil.rmtree(state_dir)  # a replaced Fargate task: nothing on disk
        assert not state_dir.exists()
    env.aws.clear_calls()
    again = AgentProcess(env)
    try:
        again.started()
        again.wait_for("readiness", lambda: again.get("/readyz")[0] == 200)
        passes = again.app("web")["passes"]
        again.wait_for("three more passes", lambda: again.app("web")["passes"] >= passes + 3)
        after = {n: {k: again.app(n)[k] for k in REMEMBERED} for n in ("web", "worker")}
        assert after == before  # nothing lost
        worker = again.app("worker")
        assert worker["conditions"][0]["reason"] == "Suspended"
        stalled = next(c for c in again.app("web")["conditions"] if c["type"] == "Stalled")
        assert stalled["status"] == "True"
        assert ecs_writes(env) == []  # the failed commit is not redeployed; worker untouched
        if backend == "dynamodb":
            assert "GetItem" in env.aws.calls()
            assert not (state_dir / "store").exists()  # the records came from the table

        # The same delivery again: answered, not processed; a new one is.
        status, answer = send_hook(again, "delivery-1")
        assert (status, answer["duplicate"]) == (200, True)
        assert send_hook(again, "delivery-2")[0] == 202
        again.wait_for("the new delivery's fetch", lambda: triggered_by_webhook(again) == 1)
        assert any(
            x.get("event") == "webhook" and x.get("outcome") == "replayed" for x in again.lines()
        )
    finally:
        assert again.stop() == 0
