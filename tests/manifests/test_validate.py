"""Offline validation against botocore's ECS model and gitopsd's own rules."""

from __future__ import annotations

from typing import Any

import pytest

from gitopsd.backends.ecs.service_model import input_shape
from gitopsd.backends.ecs.validate import check_create_service, validate_documents
from gitopsd.errors import PlanError
from gitopsd.manifests.loader import parse_file
from gitopsd.model import Origin

from .support import SERVICE, TASK_DEFINITION, Repo


def test_unknown_field_with_suggestion(repo: Repo) -> None:
    repo.write("app/svc.yaml", SERVICE)
    repo.write("app/td.yaml", TASK_DEFINITION.replace("    image:", "    imgae:"))
    assert repo.problems() == [
        "app/td.yaml:6: containerDefinitions[0].image: missing required field 'image'",
        "app/td.yaml:7: containerDefinitions[0].imgae: unknown field 'imgae' "
        "(did you mean 'image'?)",
    ]


def test_unknown_field_without_a_close_match_lists_the_fields() -> None:
    (doc,), _ = parse_file("a.yaml", b"kind: Service\nserviceName: a\nzzz: 1\n")
    problems = [p for p in validate_documents([doc]) if p.path == "zzz"]
    assert problems[0].message.startswith("unknown field 'zzz' (known fields: cluster, serviceName")


def test_wrong_types(repo: Repo) -> None:
    repo.write("app/td.yaml", TASK_DEFINITION)
    repo.write(
        "app/svc.yaml",
        """\
        kind: Service
        serviceName: web
        taskDefinition: web
        desiredCount: "2"
        enableExecuteCommand: "true"
        healthCheckGracePeriodSeconds: true
        loadBalancers: {targetGroupArn: x}
        tags: [{key: a, value: null}]
        deploymentConfiguration:
          maximumPercent: 1.5
        """,
    )
    assert repo.problems() == [
        "app/svc.yaml:4: desiredCount: expected integer, got string (quoted numbers and "
        "${VAR} substitutions are strings; set numbers unquoted, per environment with an overlay)",
        "app/svc.yaml:5: enableExecuteCommand: expected boolean, got string "
        "(write true or false, unquoted)",
        "app/svc.yaml:6: healthCheckGracePeriodSeconds: expected integer, got boolean",
        "app/svc.yaml:7: loadBalancers: expected list, got mapping",
        "app/svc.yaml:8: tags[0].value: expected string, got null",
        "app/svc.yaml:10: deploymentConfiguration.maximumPercent: expected integer, got number",
    ]


def test_missing_required_members(repo: Repo) -> None:
    repo.write("app/svc.yaml", "kind: Service\ntaskDefinition: web\n")
    repo.write(
        "app/td.yaml",
        """\
        kind: TaskDefinition
        family: web
        containerDefinitions:
          - image: nginx
            secrets:
              - name: TOKEN
        """,
    )
    assert repo.problems() == [
        "app/svc.yaml:1: serviceName: missing required field 'serviceName'",
        "app/td.yaml:4: containerDefinitions[0].name: missing required field 'name'",
        "app/td.yaml:6: containerDefinitions[0].secrets[0].valueFrom: "
        "missing required field 'valueFrom'",
    ]


def test_bad_enum_value(repo: Repo) -> None:
    repo.write("app/td.yaml", TASK_DEFINITION + "networkMode: AWSVPC\n")
    repo.write("app/svc.yaml", SERVICE.replace("FARGATE", "fargate"))
    assert repo.problems() == [
        "app/svc.yaml:5: launchType: invalid value 'fargate' "
        "(allowed: EC2, FARGATE, EXTERNAL, MANAGED_INSTANCES); did you mean 'FARGATE'?",
        "app/td.yaml:11: networkMode: invalid value 'AWSVPC' "
        "(allowed: bridge, host, awsvpc, none); did you mean 'awsvpc'?",
    ]


def test_model_bounds_maps_and_unions(repo: Repo) -> None:
    repo.write(
        "app/td.yaml",
        TASK_DEFINITION
        + """\
    dockerLabels: {"com.example/team": 7}
    """,
    )
    repo.write(
        "app/svc.yaml",
        SERVICE
        + """\
capacityProviderStrategy:
  - {capacityProvider: FARGATE, weight: 2000}
tags: [{key: "", value: x}]
""",
    )
    assert repo.problems() == [
        "app/svc.yaml:7: capacityProviderStrategy[0].weight: must be at most 1000, got 2000",
        "app/svc.yaml:8: tags[0].key: too short: at least 1 character(s) required",
        'app/td.yaml:11: containerDefinitions[0].dockerLabels["com.example/team"]: '
        "expected string, got integer (quote it to make it a string)",
    ]


def test_service_cluster_comes_from_the_app(repo: Repo) -> None:
    repo.write("app/td.yaml", TASK_DEFINITION)
    repo.write("app/svc.yaml", SERVICE + "cluster: prod\n")
    (problem,) = repo.problems()
    assert problem.startswith("app/svc.yaml:6: cluster: must not be set: a service runs in")
    assert "apps[].cluster" in problem


def test_service_must_point_at_a_declared_family(repo: Repo) -> None:
    repo.write("app/td.yaml", TASK_DEFINITION)
    repo.write("app/svc.yaml", SERVICE.replace("taskDefinition: web", "taskDefinition: wbe"))
    assert repo.problems() == [
        "app/svc.yaml:3: taskDefinition: taskDefinition 'wbe' names no TaskDefinition in this "
        "app (declared families: web); did you mean 'web'?"
    ]


def test_service_task_definition_arn_or_revision_is_explained(repo: Repo) -> None:
    repo.write("app/td.yaml", TASK_DEFINITION)
    arn = "arn:aws:ecs:eu-west-1:123456789012:task-definition/web:7"
    repo.write("app/a.yaml", SERVICE.replace("taskDefinition: web", f"taskDefinition: {arn}"))
    repo.write(
        "app/b.yaml",
        SERVICE.replace("serviceName: web", "serviceName: api").replace(
            "taskDefinition: web", "taskDefinition: web:3"
        ),
    )
    repo.write("app/c.yaml", "kind: Service\nserviceName: worker\n")
    problems = repo.problems()
    assert len(problems) == 3
    assert problems[0].startswith(
        "app/a.yaml:3: taskDefinition: must name a task-definition family declared in this app, "
        "not an ARN: gitopsd registers the revision itself"
    )
    assert problems[0].endswith("write 'web'")
    assert problems[1].startswith("app/b.yaml:3: taskDefinition: must name a task-definition")
    assert "not family:revision" in problems[1]
    assert problems[2].startswith(
        "app/c.yaml:1: taskDefinition: missing required field 'taskDefinition'"
    )


def test_duplicate_names(repo: Repo) -> None:
    repo.write("app/a.yaml", TASK_DEFINITION + "---\n" + SERVICE)
    repo.write(
        "app/b.json",
        '{"kind": "TaskDefinition",\n "family": "web",\n'
        ' "containerDefinitions": [{"name": "w", "image": "x"}]}',
    )
    repo.write("app/c.yaml", SERVICE)
    assert repo.problems() == [
        "app/b.json:2: family: duplicate TaskDefinition 'web': also declared at app/a.yaml:2",
        "app/c.yaml:2: serviceName: duplicate Service 'web': also declared at app/a.yaml:13",
    ]


def test_invalid_names(repo: Repo) -> None:
    repo.write("app/td.yaml", TASK_DEFINITION.replace("family: web", "family: web.v2"))
    repo.write("app/svc.yaml", SERVICE.replace("taskDefinition: web", "taskDefinition: web.v2"))
    (problem,) = repo.problems()
    assert problem == (
        "app/td.yaml:2: family: invalid name 'web.v2': use 1-255 letters, digits, '_' and '-'"
    )


def test_free_form_document_members_are_not_checked() -> None:
    text = b"""\
kind: Service
serviceName: web
taskDefinition: web
deploymentConfiguration:
  strategy: BLUE_GREEN  # hooks run in blue/green-family deployments only
  lifecycleHooks:
    - hookTargetArn: arn:aws:lambda:eu-west-1:1:function:f
      roleArn: arn:aws:iam::1:role/r
      lifecycleStages: [PRE_SCALE_UP]
      hookDetails: {anything: [1, {goes: true}]}
"""
    (doc,), _ = parse_file("a.yaml", text)
    problems = validate_documents([doc])
    assert [p.path for p in problems] == ["taskDefinition"]  # only the undeclared family


def test_reserved_tag_prefixes(repo: Repo) -> None:
    repo.write(
        "app/td.yaml",
        TASK_DEFINITION
        + """\
tags:
  - {key: team, value: shop}
  - {key: "gitopsd:app", value: web}
""",
    )
    repo.write(
        "app/svc.yaml",
        SERVICE
        + """\
tags:
  - key: "aws:cloudformation:stack-name"
    value: mine
  - key: "AWS:owner"
  - key: owner-aws:x
""",
    )

    def reserved(key: str) -> str:
        return (
            f"reserved tag key {key!r}: the prefixes 'gitopsd:', 'aws:' are reserved "
            "(gitopsd writes its own ownership tags; AWS sets the aws: ones); rename the tag"
        )

    assert repo.problems() == [
        f"app/svc.yaml:7: tags[0].key: {reserved('aws:cloudformation:stack-name')}",
        f"app/svc.yaml:9: tags[1].key: {reserved('AWS:owner')}",
        f"app/td.yaml:13: tags[1].key: {reserved('gitopsd:app')}",
    ]


def test_tags_without_a_value_are_valid() -> None:
    text = b"kind: Service\nserviceName: web\ntaskDefinition: web\ntags: [{key: team}]\n"
    (doc,), _ = parse_file("a.yaml", text)
    assert [p.path for p in validate_documents([doc])] == ["taskDefinition"]


def test_a_service_without_desired_count_is_valid_offline(repo: Repo) -> None:
    """It may be an existing service whose count autoscaling owns; creating one is checked later."""
    repo.write("app/td.yaml", TASK_DEFINITION)
    repo.write("app/svc.yaml", SERVICE.replace("desiredCount: 2\n", ""))
    (_, service) = repo.render()
    assert "desiredCount" not in service.spec


@pytest.mark.parametrize(
    "spec",
    [
        {"serviceName": "web", "taskDefinition": "web", "desiredCount": 2},
        {"serviceName": "web", "taskDefinition": "web", "desiredCount": 0},
        {"serviceName": "agent", "taskDefinition": "agent", "schedulingStrategy": "DAEMON"},
    ],
    ids=["replica", "zero", "daemon"],
)
def test_creating_a_service_with_desired_count_or_as_daemon_is_fine(spec: dict[str, Any]) -> None:
    check_create_service(spec, Origin("apps/web/svc.yaml", 1))


@pytest.mark.parametrize(
    "strategy", [{}, {"schedulingStrategy": "REPLICA"}], ids=["default", "replica"]
)
def test_creating_a_replica_service_without_desired_count_is_refused(
    strategy: dict[str, str],
) -> None:
    spec = {"serviceName": "web", "taskDefinition": "web", **strategy}
    with pytest.raises(PlanError) as info:
        check_create_service(spec, Origin("apps/web/svc.yaml", 3))
    assert str(info.value) == (
        "apps/web/svc.yaml:3: desiredCount: required to create Service 'web': CreateService "
        "needs it for a REPLICA service (schedulingStrategy REPLICA or unset); set desiredCount "
        "(autoscaling may take it over later: once the service exists, a manifest without "
        "desiredCount leaves the live count alone)"
    )


def test_the_desired_count_rule_is_the_one_botocore_documents() -> None:
    """If a later botocore documents a default instead, check_create_service must follow."""
    shape = input_shape("CreateService")
    text = shape.members["desiredCount"].documentation
    assert "required if <code>schedulingStrategy</code> is <code>REPLICA</code>" in text
    assert "desiredCount" not in shape.required_members
