"""`gitopsd run` end to end: a real agent process, the local ECS endpoint, a git daemon.

The agent runs as a subprocess (as systemd or ECS runs it) with short intervals; the
tests push commits and watch AWS and the agent's status, polling with deadlines.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gitopsd.local_aws.testing import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY

from .conftest import Env

WEB_TD = "apps/web/base/task-definition.yaml"
SECRET = "s3cret"


class AgentProcess:
    def __init__(self, env: Env) -> None:
        self.env = env
        self.log = env.config.parent / "agent.log"
        run_env = dict(
            os.environ,
            AWS_ACCESS_KEY_ID=DUMMY_ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=DUMMY_SECRET_KEY,
            HOOK_SECRET=SECRET,
            PYTHONUNBUFFERED="1",
        )
        run_env.pop("AWS_PROFILE", None)
        self._log_file = self.log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gitopsd", "run", "-c", str(env.config), "--log-level", "info"],
            env=run_env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.url = ""

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}: {self.log.read_text()}")
            found = check()
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out waiting for {what}; log:\n{self.log.read_text()[-4000:]}"
                )
            time.sleep(0.05)  # polling with a deadline

    def started(self) -> None:
        def url() -> str:
            for line in self.lines():
                if line.get("event") == "agent.started":
                    return str(line["url"])
            return ""

        self.url = self.wait_for("the agent to start", url)

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def app(self, name: str) -> dict[str, Any]:
        _, body = self.get("/api/v1/apps")
        return next(a for a in body["apps"] if a["app"] == name)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
        return self.proc.returncode


def agent_config(env: Env, *, source_interval: str, webhook: bool = False) -> None:
    text = env.config.read_text()
    text = text.replace(
        "[daemon]\n",
        '[daemon]\ninterval = "0.3s"\nbackoff_min = "0.2s"\nbackoff_max = "1s"\n'
        'grace_period = "5s"\n',
        1,
    )
    text = text.replace(
        'branch = "main"\n', f'branch = "main"\ninterval = "{source_interval}"\n', 1
    )
    text += '\n[http]\naddress = "127.0.0.1:0"\n'
    if webhook:
        text += '[[http.webhooks]]\nname = "ci"\nkind = "hmac"\nsecret_env = "HOOK_SECRET"\n'
    env.config.write_text(text)


@pytest.fixture
def agent(env: Env) -> Iterator[Callable[..., AgentProcess]]:
    started: list[AgentProcess] = []

    def start(**kw: Any) -> AgentProcess:
        agent_config(env, **kw)
        a = AgentProcess(env)
        started.append(a)
        a.started()
        return a

    yield start
    for a in started:
        a.stop()


def web_td(env: Env) -> str:
    return str(env.service("web")["taskDefinition"]).rsplit("/", 1)[-1]


def completed(env: Env, name: str, label: str) -> bool:
    try:
        svc = env.service(name)
    except AssertionError:
        return False
    primary = next(d for d in svc["deployments"] if d["status"] == "PRIMARY")
    return bool(svc["taskDefinition"].endswith(label) and primary["rolloutState"] == "COMPLETED")


def test_the_agent_applies_pushed_commits_remembers_failures_reports_drift_and_stops(
    env: Env, agent: Callable[..., AgentProcess]
) -> None:
    a = agent(source_interval="0.5s")
    a.wait_for(
        "the first sync",
        lambda: completed(env, "web", "web:1") and completed(env, "worker", "worker:1"),
    )
    a.wait_for("readiness", lambda: a.get("/readyz")[0] == 200)
    assert a.get("/healthz")[0] == 200
    a.wait_for("web Ready", lambda: a.app("web")["conditions"][0]["status"] == "True")

    # A pushed commit is applied and COMPLETED with no other command.
    env.edit(WEB_TD, "nginx:1.27", "nginx:1.28")
    env.commit("web: nginx 1.28")
    a.wait_for("web:2 rolled out", lambda: completed(env, "web", "web:2"))

    # A failing image: FAILED, rolled back by ECS, alerted once, not retried every interval.
    env.edit(WEB_TD, "nginx:1.28", "nginx:broken")
    bad = env.commit("web: broken")
    a.wait_for("the failed commit remembered", lambda: a.app("web")["failed_commit"] == bad)
    assert completed(env, "web", "web:2")
    writes = Counter(env.writes())
    passes = a.app("web")["passes"]
    a.wait_for("three more passes", lambda: a.app("web")["passes"] >= passes + 3)
    assert Counter(env.writes()) == writes  # not redeployed
    web = a.app("web")
    stalled = next(c for c in web["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True"
    assert "not retried until Git moves" in stalled["message"] or "failed" in stalled["message"]

    # Drift made behind Git's back is reported (warn is the default), not reverted.
    env.ecs().update_service(cluster="demo", service="worker", desiredCount=4)
    a.wait_for("drift reported", lambda: "desiredCount" in a.app("worker")["drift"])
    assert env.service("worker")["desiredCount"] == 4

    # Status through the control socket, as a user types it.
    status = env.gitopsd("status", "-o", "json")
    assert status.code == 0, status.out + status.err
    assert {x["app"] for x in json.loads(status.out)["apps"]} == {"web", "worker"}

    # SIGTERM: exits 0 within the grace period.
    assert a.stop() == 0
    assert any(line.get("event") == "agent.stopped" for line in a.lines())


def test_a_signed_webhook_triggers_a_fetch_and_a_bad_signature_fetches_nothing(
    env: Env, agent: Callable[..., AgentProcess]
) -> None:
    a = agent(source_interval="1h", webhook=True)
    a.wait_for("the first sync", lambda: completed(env, "web", "web:1"))
    env.edit(WEB_TD, "nginx:1.27", "nginx:1.28")
    env.commit("web: nginx 1.28")

    body = b'{"ref": "refs/heads/main"}'
    bad = urllib.request.Request(
        a.url + "/hooks/ci", data=body, headers={"X-Signature-256": "sha256=00"}, method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(bad, timeout=5)
    assert refused.value.code == 401
    assert not any(line.get("event") == "agent.triggered" for line in a.lines())

    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    good = urllib.request.Request(
        a.url + "/hooks/ci", data=body, headers={"X-Signature-256": signature}, method="POST"
    )
    with urllib.request.urlopen(good, timeout=5) as r:
        assert r.status == 202
    a.wait_for("web:2 rolled out after the webhook", lambda: completed(env, "web", "web:2"), 20)


def test_a_bad_commit_stalls_the_app_the_old_version_runs_and_the_next_good_commit_recovers(
    env: Env, agent: Callable[..., AgentProcess]
) -> None:
    a = agent(source_interval="0.5s")
    a.wait_for("the first sync", lambda: completed(env, "web", "web:1"))
    env.edit(WEB_TD, "    image: public.ecr.aws/nginx/nginx:1.27", "    imgae: nginx:1.99")
    env.commit("web: typo")

    def stalled() -> bool:
        web = a.app("web")
        ready = next(c for c in web["conditions"] if c["type"] == "Ready")
        return bool(ready["reason"] == "RenderFailed" and re.search(r"imgae", ready["message"]))

    a.wait_for("RenderFailed", stalled)
    assert completed(env, "web", "web:1")  # the old version keeps running
    env.edit(WEB_TD, "    imgae: nginx:1.99", "    image: public.ecr.aws/nginx/nginx:1.28")
    env.commit("web: fixed")
    a.wait_for("web:2 rolled out", lambda: completed(env, "web", "web:2"))
    a.wait_for("web Ready again", lambda: a.app("web")["conditions"][0]["status"] == "True")
    assert Path(a.log).exists()


def test_a_restart_at_the_applied_commit_reports_drift_instead_of_reverting_it(
    env: Env, agent: Callable[..., AgentProcess]
) -> None:
    a = agent(source_interval="0.5s")
    a.wait_for("the first sync", lambda: completed(env, "worker", "worker:1"))
    a.wait_for("worker Ready", lambda: a.app("worker")["conditions"][0]["status"] == "True")
    assert a.stop() == 0
    desired = env.service("worker")["desiredCount"]
    env.ecs().update_service(cluster="demo", service="worker", desiredCount=4)
    env.aws.clear_calls()
    again = AgentProcess(env)
    try:
        again.started()
        again.wait_for("drift reported", lambda: "desiredCount" in again.app("worker")["drift"])
        assert env.service("worker")["desiredCount"] == 4
        assert "UpdateService" not in env.writes()
    finally:
        assert again.stop() == 0
    # The drift undone by hand: a restart at the applied commit has nothing to apply and
    # every service steady, so the app is Ready at once (not "Unknown" until Git moves).
    env.ecs().update_service(cluster="demo", service="worker", desiredCount=desired)
    env.aws.clear_calls()
    third = AgentProcess(env)
    try:
        third.started()
        third.wait_for(
            "worker checked", lambda: third.app("worker")["conditions"][0]["status"] != "Unknown"
        )
        ready = third.app("worker")["conditions"][0]
        assert (ready["status"], ready["reason"]) == ("True", "InSync"), ready
        assert "UpdateService" not in env.writes()
    finally:
        assert third.stop() == 0


def test_a_newer_commit_cancels_an_older_rollout_wait_and_sigterm_during_a_wait_exits_0(
    env: Env, agent: Callable[..., AgentProcess]
) -> None:
    a = agent(source_interval="0.3s")
    a.wait_for("the first sync", lambda: completed(env, "web", "web:1"))
    env.aws.configure(pace=0.2)  # a rollout now takes many seconds
    env.edit(WEB_TD, "nginx:1.27", "nginx:1.28")
    env.commit("web: slow rollout")
    a.wait_for("web:2 rolling out", lambda: "web:2" in web_td(env))
    env.edit(WEB_TD, "nginx:1.28", "nginx:1.29")
    env.commit("web: newer")
    a.wait_for(
        "the older wait cancelled",
        lambda: any(x.get("event") == "agent.rollout_wait_superseded" for x in a.lines()),
    )
    a.wait_for("web:3 rolling out", lambda: "web:3" in web_td(env))
    started = time.monotonic()
    assert a.stop() == 0  # SIGTERM during the rollout wait of web:3
    assert time.monotonic() - started < 10


def test_a_restart_on_a_wiped_state_dir_converges_with_zero_writes(
    env: Env, agent: Callable[..., AgentProcess]
) -> None:
    a = agent(source_interval="0.5s")
    a.wait_for("the first sync", lambda: completed(env, "web", "web:1"))
    a.wait_for(
        "both Ready",
        lambda: all(a.app(n)["conditions"][0]["status"] == "True" for n in ("web", "worker")),
    )
    assert a.stop() == 0
    shutil.rmtree(env.config.parent / "state")
    env.aws.clear_calls()
    again = AgentProcess(env)
    try:
        again.started()
        again.wait_for("readiness", lambda: again.get("/readyz")[0] == 200)
        again.wait_for(
            "both Ready",
            lambda: all(
                again.app(n)["conditions"][0]["status"] == "True" for n in ("web", "worker")
            ),
        )
        assert env.writes() == []
    finally:
        assert again.stop() == 0


def test_depends_on_waits_for_the_dependency(env: Env, agent: Callable[..., AgentProcess]) -> None:
    env.config.write_text(
        env.config.read_text().replace(
            'name = "web"\n', 'name = "web"\ndepends_on = ["worker"]\n', 1
        )
    )
    env.edit("apps/worker/worker.yaml", "desiredCount: 1", "desiredCount: many")
    env.commit("worker: broken")
    a = agent(source_interval="0.5s")

    def waiting() -> bool:
        ready = a.app("web")["conditions"][0]
        return bool(ready["reason"] == "DependencyNotReady" and "worker" in ready["message"])

    a.wait_for("web waiting for worker", waiting)
    assert env.ecs().describe_services(cluster="demo", services=["web"])["services"] == []
    env.edit("apps/worker/worker.yaml", "desiredCount: many", "desiredCount: 1")
    env.commit("worker: fixed")
    a.wait_for("web applied after worker", lambda: completed(env, "web", "web:1"), 30)


def test_heal_reverts_drift_and_a_fight_with_another_writer_is_backed_off_and_reported(
    env: Env, agent: Callable[..., AgentProcess]
) -> None:
    head, name, tail = env.config.read_text().partition('name = "worker"\n')
    tail = tail.replace("  [apps.sync]\n", '  [apps.sync]\n  drift = "heal"\n', 1)
    env.config.write_text(head + name + tail)
    a = agent(source_interval="0.5s")
    a.wait_for("the first sync", lambda: completed(env, "worker", "worker:1"))
    ecs = env.ecs()
    for _ in range(4):  # another writer keeps scaling it back up
        ecs.update_service(cluster="demo", service="worker", desiredCount=4)
        a.wait_for("healed", lambda: env.service("worker")["desiredCount"] == 1, 30)
    ready = a.wait_for(
        "the fight reported",
        lambda: (r := a.app("worker")["conditions"][0])["reason"] == "DriftFight" and r,
        30,
    )
    assert "another writer keeps changing" in ready["message"]


def test_sigterm_during_an_apply_finishes_the_write_and_exits_0(
    env: Env, agent: Callable[..., AgentProcess]
) -> None:
    a = agent(source_interval="0.3s")
    a.wait_for("the first sync", lambda: completed(env, "web", "web:1"))
    env.aws.arm_fault("UpdateService", None, latency=2.0, count=1)  # a slow write
    env.edit(WEB_TD, "nginx:1.27", "nginx:1.28")
    env.commit("web: nginx 1.28")
    a.wait_for("the write in flight", lambda: "UpdateService" in env.aws.calls())
    assert a.stop() == 0
    assert "web:2" in web_td(env)  # the write was finished, not abandoned


def test_a_sync_gitopsd_does_not_live_to_finish_twice_is_not_started_a_third_time(
    env: Env, agent: Callable[..., AgentProcess]
) -> None:
    """The crash-loop guard: e.g. gitopsd deploys its own image, ECS rolls the broken one
    back to an agent that would deploy it again, forever."""
    record = env.config.parent / "state" / "store" / "agent" / "web.json"

    def stored() -> dict[str, Any]:
        return dict(json.loads(record.read_text())["value"]) if record.exists() else {}

    a = agent(source_interval="0.3s")
    a.wait_for("the first sync", lambda: completed(env, "web", "web:1"))
    env.aws.configure(pace=0.05)  # the rollout of web:2 outlives two agents
    env.edit(WEB_TD, "nginx:1.27", "nginx:1.28")
    commit = env.commit("web: a rollout gitopsd never sees the end of")
    a.wait_for("web:2 rolling out", lambda: "web:2" in web_td(env))
    assert stored()["syncing"] == commit
    a.proc.kill()  # SIGKILL during the rollout wait
    a.stop()
    second = AgentProcess(env)
    second.started()
    second.wait_for("the sync resumed", lambda: stored().get("interrupted") == 1)
    second.wait_for("its rollout followed", lambda: second.app("web")["rollouts"])
    second.proc.kill()
    second.stop()
    env.aws.clear_calls()
    third = AgentProcess(env)
    try:
        third.started()
        third.wait_for(
            "the commit marked failed",
            lambda: third.app("web")["conditions"][0]["reason"] == "SyncInterrupted",
        )
        ready = third.app("web")["conditions"][0]
        assert ready["status"] == "False"
        assert commit[:12] in ready["message"]
        assert stored()["failed_commit"] == commit
        assert not stored()["syncing"]
        assert "UpdateService" not in env.writes()
    finally:
        assert third.stop() == 0
