"""What gitopsd must never do: overwrite what it was told to ignore, take over another
app's service, half-apply silently, or churn revisions; and what it must survive."""

from __future__ import annotations

from collections import Counter

from .conftest import CLUSTER, Env

WEB_TD = "apps/web/base/task-definition.yaml"
WEB_SVC = "apps/web/base/service.yaml"


def sync_ok(env: Env, *args: str) -> str:
    run = env.gitopsd("sync", *args)
    assert run.code == 0, run.out + run.err
    return run.out


def add_ignore(env: Env, kind: str, pointers: str) -> None:
    env.config.write_text(
        env.config.read_text().replace(
            'vars = { ENV = "production" }\n',
            f'vars = {{ ENV = "production" }}\n[[apps.ignore]]\nkind = "{kind}"\n'
            f"pointers = {pointers}\n",
        )
    )


def test_ignored_image_is_kept_when_a_new_revision_is_registered(env: Env) -> None:
    sync_ok(env, "web")
    add_ignore(env, "TaskDefinition", '["/containerDefinitions/*/image"]')
    # CI deploys its own image behind Git's back ...
    ecs = env.ecs()
    td = ecs.describe_task_definition(taskDefinition=env.service("web")["taskDefinition"])
    spec = {
        k: v
        for k, v in td["taskDefinition"].items()
        if k in ("family", "networkMode", "requiresCompatibilities", "cpu", "memory")
    }
    containers = td["taskDefinition"]["containerDefinitions"]
    containers[0]["image"] = "registry.example/web:ci-42"
    arn = ecs.register_task_definition(**spec, containerDefinitions=containers)
    ecs.update_service(
        cluster=CLUSTER, service="web", taskDefinition=arn["taskDefinition"]["taskDefinitionArn"]
    )
    assert env.gitopsd("diff", "web").code == 0  # the image is CI's

    # ... then Git changes something else in the same task definition.
    env.edit(WEB_TD, "value: hello\n", "value: hello again\n")
    env.commit("web: a new greeting")
    diff = env.gitopsd("diff", "web", "-o", "json")
    assert "image" not in diff.out
    sync_ok(env, "web")
    running = ecs.describe_task_definition(taskDefinition=env.service("web")["taskDefinition"])
    (container,) = running["taskDefinition"]["containerDefinitions"]
    assert container["image"] == "registry.example/web:ci-42"
    assert {"name": "GREETING", "value": "hello again"} not in container["environment"]  # prod
    assert env.gitopsd("diff", "web").code == 0


def test_ignored_service_field_is_not_overwritten_by_an_unrelated_update(env: Env) -> None:
    sync_ok(env, "web")
    add_ignore(env, "Service", '["/desiredCount"]')
    env.ecs().update_service(cluster=CLUSTER, service="web", desiredCount=7)
    env.edit(WEB_TD, "nginx:1.27", "nginx:1.28")
    env.commit("web: nginx 1.28")
    sync_ok(env, "web")
    assert env.service("web")["desiredCount"] == 7


def test_a_service_owned_by_another_app_is_refused_and_left_alone(env: Env) -> None:
    sync_ok(env, "worker")
    env.config.write_text(env.config.read_text().replace('name = "worker"', 'name = "intruder"', 1))
    env.edit("apps/worker/worker.yaml", "desiredCount: 1", "desiredCount: 3")
    env.commit("worker: scale")
    env.aws.clear_calls()
    run = env.gitopsd("sync", "intruder")
    assert run.code == 2
    assert "Service/worker in cluster 'demo' belongs to app 'worker' (tag gitopsd:app)" in run.out
    assert env.writes() == []
    assert env.service("worker")["desiredCount"] == 1


def test_a_service_nobody_owns_is_adopted(env: Env) -> None:
    ecs = env.ecs()
    arn = ecs.register_task_definition(
        family="worker",
        containerDefinitions=[{"name": "worker", "image": "busybox:old", "memory": 128}],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster=CLUSTER, serviceName="worker", taskDefinition=arn, desiredCount=2)
    run = env.gitopsd("sync", "worker")
    assert run.code == 0, run.out
    svc = env.service("worker")
    assert svc["desiredCount"] == 1
    assert {t["key"]: t["value"] for t in svc["tags"]}["gitopsd:app"] == "worker"


def test_dropping_a_whole_block_resets_it_and_converges(env: Env) -> None:
    sync_ok(env, "web")
    env.edit(
        WEB_SVC,
        "deploymentConfiguration:\n  deploymentCircuitBreaker:\n    enable: true\n"
        "    rollback: true\n",
        "",
    )
    env.commit("web: default deployment configuration")
    out = sync_ok(env, "web")
    assert "/deploymentConfiguration/deploymentCircuitBreaker" in out
    breaker = env.service("web")["deploymentConfiguration"]["deploymentCircuitBreaker"]
    assert breaker == {"enable": False, "rollback": False}
    env.aws.clear_calls()
    assert env.gitopsd("diff", "web").code == 0
    assert env.writes() == []


def test_a_write_failing_part_way_names_the_resource_and_reports_what_was_written(
    env: Env,
) -> None:
    sync_ok(env, "web")
    env.edit(WEB_TD, "nginx:1.27", "nginx:1.28")
    env.commit("web: nginx 1.28")
    env.aws.inject_fault("UpdateService", "ThrottlingException", count=2)
    run = env.gitopsd("sync", "web")
    assert run.code == 2
    assert "applied TaskDefinition/web: registered web:2" in run.out
    assert (
        "error (ApplyFailed, temporary): Service/web (apps/web/base/service.yaml:2): "
        "ECS UpdateService failed: ThrottlingException" in run.out
    )
    # The next sync finishes the job with the revision already registered.
    env.aws.clear_calls()
    sync_ok(env, "web")
    assert Counter(env.writes())["RegisterTaskDefinition"] == 0
    assert env.service("web")["taskDefinition"].endswith("task-definition/web:2")


def test_a_rolled_back_revision_is_reused_not_registered_again(env: Env) -> None:
    sync_ok(env, "web")
    env.edit(WEB_TD, "nginx:1.27", "nginx:broken")
    env.commit("web: broken")
    assert env.gitopsd("sync", "web").code == 2  # rolled back by ECS
    env.aws.clear_calls()
    again = env.gitopsd("sync", "web")
    assert again.code == 2
    writes = Counter(env.writes())
    assert writes["RegisterTaskDefinition"] == 0
    assert writes["UpdateService"] == 1
    assert '~ /taskDefinition: "web:1" -> "web:2"' in again.out  # the existing revision


def test_task_definition_tag_change_retags_without_a_new_revision(env: Env) -> None:
    sync_ok(env, "worker")
    env.edit(
        "apps/worker/worker.yaml",
        "family: worker\n",
        "family: worker\ntags:\n  - key: team\n    value: queue\n  - key: flag\n",
    )
    env.commit("worker: tag the task definition")
    env.aws.clear_calls()
    sync_ok(env, "worker")
    assert Counter(env.writes()) == Counter({"TagResource": 1})
    td = env.ecs().describe_task_definition(taskDefinition="worker", include=["TAGS"])
    assert td["taskDefinition"]["revision"] == 1
    assert {t["key"]: t.get("value", "") for t in td["tags"]}["team"] == "queue"
    assert env.gitopsd("diff", "worker").code == 0


def test_diff_works_when_the_state_dir_cannot_be_written(env: Env) -> None:
    sync_ok(env, "worker")
    blocker = env.config.parent / "not-a-dir"
    blocker.write_text("")
    env.config.write_text(
        env.config.read_text().replace('state_dir = "state"', f'state_dir = "{blocker}/x"')
    )
    # With --dir (a CI check of a working tree) no Git cache is needed either.
    run = env.gitopsd("diff", "worker", "--dir", str(env.repo.path))
    assert run.code == 0, run.out + run.err
