"""The one-shot pipeline end to end: Git (git daemon) -> manifests -> plan -> apply -> verify.

These are the acceptance points of the foundation: the first sync creates, an
immediate second sync makes zero write calls, a changed image shows as exactly
that field and rolls out one new revision, reordering and AWS defaults give no
diff, and a broken manifest fails only its own app.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from .conftest import CLUSTER, EXAMPLES, Env

WEB_TD = "apps/web/base/task-definition.yaml"
WORKER = "apps/worker/worker.yaml"


def sync_all(env: Env) -> None:
    run = env.gitopsd("sync")
    assert run.code == 0, run.out + run.err


def test_a_new_replica_service_without_desired_count_is_refused_before_any_write(
    env: Env,
) -> None:
    env.edit(WORKER, "desiredCount: 1\n", "")
    env.commit("worker: no count")
    assert env.gitopsd("validate", "worker").code == 0  # it may be an autoscaled service
    run = env.gitopsd("sync", "worker")
    assert run.code == 2
    assert "apps/worker/worker.yaml:11: desiredCount: required to create Service 'worker'" in (
        run.out
    )
    assert env.writes() == []


def test_first_sync_creates_and_second_sync_writes_nothing(env: Env) -> None:
    diff = env.gitopsd("diff")
    assert diff.code == 1
    assert "+ TaskDefinition/web  (create)" in diff.out
    assert env.writes() == []  # diff is read-only

    first = env.gitopsd("sync")
    assert first.code == 0, first.out + first.err
    writes = Counter(env.writes())
    assert writes["RegisterTaskDefinition"] == 2
    assert writes["CreateService"] == 2
    assert "rollout Service/web: COMPLETED" in first.out
    web = env.service("web")
    assert web["desiredCount"] == 3  # from the prod overlay
    assert web["taskDefinition"].endswith("task-definition/web:1")
    tags = {t["key"]: t["value"] for t in web["tags"]}
    assert tags["gitopsd:app"] == "web"
    assert tags["team"] == "storefront"
    # The commit is on the task definition the service runs, not on the service: a rollout
    # costs no TagResource per service.
    assert "gitopsd:revision" not in tags
    td = env.ecs().describe_task_definition(taskDefinition=web["taskDefinition"], include=["TAGS"])
    assert {t["key"]: t["value"] for t in td["tags"]}["gitopsd:revision"] == env.repo.head()

    env.aws.clear_calls()
    second = env.gitopsd("sync")
    assert second.code == 0
    assert env.writes() == []
    assert "in sync: nothing to do" in second.out
    again = env.gitopsd("diff")
    assert again.code == 0
    assert env.writes() == []
    # The API budget: 2 services in one app each -> one DescribeServices per app and pass.
    calls = Counter(env.aws.calls())
    assert calls["DescribeServices"] == 4  # two passes x two apps


def test_image_change_shows_that_field_and_rolls_out_one_revision(env: Env) -> None:
    sync_all(env)
    env.edit(WEB_TD, "nginx:1.27", "nginx:1.28")
    env.commit("web: nginx 1.28")
    env.aws.clear_calls()

    diff = env.gitopsd("diff", "-o", "json")
    assert diff.code == 1
    doc = json.loads(diff.out)
    changes = {
        (a["app"], r["kind"], r["name"]): [
            (c["path"], c.get("before"), c.get("after")) for c in r["changes"]
        ]
        for a in doc["apps"]
        for r in a["resources"]
        if r["action"] != "no-op"
    }
    assert changes == {
        ("web", "TaskDefinition", "web"): [
            (
                "/containerDefinitions/web/image",
                "public.ecr.aws/nginx/nginx:1.27",
                "public.ecr.aws/nginx/nginx:1.28",
            )
        ],
        ("web", "Service", "web"): [("/taskDefinition", "web:1", "web:(new revision)")],
    }
    text = env.gitopsd("diff", "web")
    assert text.code == 1
    assert '~ /containerDefinitions/web/image: "public.ecr.aws/nginx/nginx:1.27" -> ' in text.out

    env.aws.clear_calls()
    run = env.gitopsd("sync")
    assert run.code == 0, run.out + run.err
    writes = Counter(env.writes())
    assert writes["RegisterTaskDefinition"] == 1
    assert writes["UpdateService"] == 1
    assert writes["CreateService"] == 0
    web = env.service("web")
    assert web["taskDefinition"].endswith("task-definition/web:2")
    primary = next(d for d in web["deployments"] if d["status"] == "PRIMARY")
    assert primary["rolloutState"] == "COMPLETED"
    assert env.gitopsd("diff").code == 0


def test_reordered_lists_and_explicit_defaults_give_no_diff(env: Env) -> None:
    sync_all(env)
    td = env.repo.path / WEB_TD
    text = td.read_text()
    # Swap the two environment entries and spell out values AWS fills in by default.
    env_entries = "      - name: ENVIRONMENT\n        value: ${ENV}\n"
    greeting = "      - name: GREETING\n        value: hello\n"
    text = text.replace(env_entries + greeting, greeting + env_entries)
    text = text.replace(
        "      - containerPort: 80\n",
        "      - containerPort: 80\n        protocol: tcp\n    essential: true\n    cpu: 0\n"
        "    mountPoints: []\n    volumesFrom: []\n",
    )
    text += "volumes: []\nplacementConstraints: []\n"
    env.repo.write(WEB_TD, text)
    # The prod overlay patches GREETING by position (RFC 6902): follow it to its new index.
    env.edit("apps/web/overlays/prod/scale.yaml", "environment/1/value", "environment/0/value")
    svc = env.repo.path / "apps/web/base/service.yaml"
    env.repo.write(
        "apps/web/base/service.yaml",
        svc.read_text().replace(
            "    rollback: true\n",
            "    rollback: true\n  maximumPercent: 200\n  minimumHealthyPercent: 100\n"
            "schedulingStrategy: REPLICA\npropagateTags: NONE\nenableExecuteCommand: false\n",
        ),
    )
    env.commit("web: same thing, said differently")
    env.aws.clear_calls()
    diff = env.gitopsd("diff")
    assert diff.code == 0, diff.out
    run = env.gitopsd("sync")
    assert run.code == 0
    assert env.writes() == []


def test_broken_manifest_fails_its_app_only(env: Env) -> None:
    sync_all(env)
    before = env.service("web")["taskDefinition"]
    env.edit(WEB_TD, "    image: public.ecr.aws/nginx/nginx:1.27", "    imgae: nginx:1.99")
    env.edit(WORKER, "desiredCount: 1", "desiredCount: 2")
    env.commit("break web, scale worker")
    env.aws.clear_calls()

    run = env.gitopsd("sync")
    assert run.code == 2
    assert "apps/web/base/task-definition.yaml:10" in run.out
    assert "containerDefinitions[0].imgae" in run.out
    assert "RenderFailed" in run.out
    assert Counter(env.writes()) == Counter({"UpdateService": 1})
    assert env.service("web")["taskDefinition"] == before
    assert env.service("worker")["desiredCount"] == 2

    diff = env.gitopsd("diff")
    assert diff.code == 2  # an error wins over "changes"


def test_failed_rollout_is_rolled_back_by_the_circuit_breaker(env: Env) -> None:
    sync_all(env)
    good = env.service("web")["taskDefinition"]
    env.edit(WEB_TD, "nginx:1.27", "nginx:broken")
    env.commit("web: a build that cannot start")

    run = env.gitopsd("sync", "web")
    assert run.code == 2
    assert "rollout Service/web: ROLLED_BACK: web:2 failed" in run.out
    assert "ECS rolled back to web:1" in run.out
    assert "ALERT app web: RolledBack" in run.err
    web = env.service("web")
    assert web["taskDefinition"] == good
    # Git still says "broken": the app is out of sync until Git is fixed.
    assert env.gitopsd("diff", "web").code == 1


def test_gitopsd_rolls_back_when_ecs_does_not(env: Env) -> None:
    # No circuit breaker: ECS keeps retrying forever; gitopsd gives up after the
    # sync timeout and puts the service back on the last revision that COMPLETED.
    env.edit(
        "apps/web/base/service.yaml",
        "    enable: true\n    rollback: true\n",
        "    enable: false\n    rollback: false\n",
    )
    env.commit("web: no circuit breaker")
    sync_all(env)
    good = env.service("web")["taskDefinition"]
    env.config.write_text(env.config.read_text().replace('timeout = "30s"', 'timeout = "1s"', 1))
    env.edit(WEB_TD, "nginx:1.27", "nginx:broken")
    env.commit("web: a build that cannot start")

    run = env.gitopsd("sync", "web")
    assert run.code == 2
    assert "TIMED_OUT" in run.out or "ROLLED_BACK" in run.out
    assert "gitopsd rolled back to web:1" in run.out
    assert env.service("web")["taskDefinition"] == good


def test_dry_run_makes_no_write_call(env: Env) -> None:
    run = env.gitopsd("sync", "--dry-run")
    assert run.code == 0
    assert "dry run" in run.out
    assert "+ Service/web  (create)" in run.out
    assert env.writes() == []


def test_drift_is_reported_and_healed(env: Env) -> None:
    sync_all(env)
    ecs = env.ecs()
    ecs.update_service(cluster=CLUSTER, service="worker", desiredCount=5)
    arn = env.service("web")["serviceArn"]
    ecs.tag_resource(resourceArn=arn, tags=[{"key": "team", "value": "someone-else"}])

    diff = env.gitopsd("diff")
    assert diff.code == 1
    assert "~ /desiredCount: 5 -> 1" in diff.out
    assert '~ /tags/team: "someone-else" -> "storefront"' in diff.out
    assert env.gitopsd("sync").code == 0
    assert env.service("worker")["desiredCount"] == 1
    assert {t["key"]: t["value"] for t in env.service("web")["tags"]}["team"] == "storefront"
    assert env.gitopsd("diff").code == 0


def test_desired_count_left_to_autoscaling_when_omitted(env: Env) -> None:
    sync_all(env)  # CreateService needs desiredCount for a REPLICA service
    env.edit(WORKER, "desiredCount: 1\n", "")
    env.commit("worker: let autoscaling own the count")
    sync_all(env)
    env.ecs().update_service(cluster=CLUSTER, service="worker", desiredCount=3)
    env.aws.clear_calls()
    assert env.gitopsd("diff", "worker").code == 0
    assert env.gitopsd("sync", "worker").code == 0
    assert env.writes() == []


def test_validate_examples_and_a_broken_copy(env: Env, tmp_path: Path) -> None:
    ok = env.gitopsd("validate", "--dir", str(EXAMPLES))
    assert ok.code == 0, ok.out
    assert "ok  app web: 2 resources" in ok.out

    broken = tmp_path / "broken"
    shutil.copytree(EXAMPLES, broken)
    svc = broken / "apps/worker/worker.yaml"
    svc.write_text(svc.read_text().replace("desiredCount: 1", "desiredCount: many"))
    bad = env.gitopsd("validate", "--dir", str(broken))
    assert bad.code == 2
    assert "apps/worker/worker.yaml:14" in bad.out
    assert "desiredCount" in bad.out
    assert "ok  app web" in bad.out  # the other app is still checked


def test_render_prints_final_documents(env: Env) -> None:
    run = env.gitopsd("render", "web")
    assert run.code == 0
    assert "desiredCount: 3" in run.out  # overlay applied
    assert "value: hello from production" in run.out
    assert "${" not in run.out


def test_unreachable_source_fails_every_app_of_it_with_a_clear_error(env: Env) -> None:
    env.config.write_text(
        env.config.read_text().replace(
            'url = "git://127.0.0.1:', 'url = "git://127.0.0.1:1/nothing.git" # '
        )
    )
    run = env.gitopsd("diff")
    assert run.code == 2
    assert run.out.count("SourceFailed, temporary") == 2
    assert env.aws.calls() == []


def test_aws_endpoint_url_from_the_environment_just_works(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = env.config.read_text()
    env.config.write_text(text.replace(f'endpoint_url = "{env.aws.endpoint_url}"\n', ""))
    monkeypatch.setenv("AWS_ENDPOINT_URL", env.aws.endpoint_url)
    run = env.gitopsd("diff", "worker")
    assert run.code == 1, run.out
    assert "+ Service/worker  (create)" in run.out


def test_ignore_pointers_hide_differences_owned_elsewhere(env: Env) -> None:
    sync_all(env)
    ecs = env.ecs()
    ecs.update_service(cluster=CLUSTER, service="web", desiredCount=7)
    arn = env.service("web")["serviceArn"]
    ecs.tag_resource(resourceArn=arn, tags=[{"key": "CostCenter", "value": "42"}])
    assert env.gitopsd("diff", "web").code == 1

    env.config.write_text(
        env.config.read_text().replace(
            'vars = { ENV = "production" }\n',
            'vars = { ENV = "production" }\nignore_tag_keys = ["CostCenter"]\n'
            '[[apps.ignore]]\nkind = "Service"\npointers = ["/desiredCount"]\n',
        )
    )
    env.aws.clear_calls()
    run = env.gitopsd("sync", "web")
    assert run.code == 0, run.out
    assert "in sync: nothing to do" in run.out
    assert env.writes() == []
    tags = {t["key"]: t["value"] for t in env.service("web")["tags"]}
    assert tags["CostCenter"] == "42"  # another tool's tag is left alone


def test_a_service_tagged_with_a_revision_by_an_older_gitopsd_loses_it_on_its_next_change(
    env: Env,
) -> None:
    sync_all(env)
    worker = env.service("worker")
    env.ecs().tag_resource(
        resourceArn=worker["serviceArn"], tags=[{"key": "gitopsd:revision", "value": "0" * 40}]
    )
    env.edit(WORKER, "desiredCount: 1", "desiredCount: 2")
    env.commit("scale worker")
    env.aws.clear_calls()
    assert env.gitopsd("sync", "worker").code == 0
    assert Counter(env.writes()) == Counter({"UpdateService": 1, "UntagResource": 1})
    assert "gitopsd:revision" not in {t["key"] for t in env.service("worker")["tags"]}
