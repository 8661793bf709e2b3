"""Loading manifest files: YAML and JSON with line numbers, kinds, pasted describe output."""

from __future__ import annotations

import json

import pytest
import yaml

from gitopsd.backends.ecs.schema import describe_only_fields, ecs_schema
from gitopsd.config import DEFAULT_MAX_FILE_SIZE
from gitopsd.errors import ManifestError, Problem
from gitopsd.manifests import loader
from gitopsd.manifests.loader import LocatedDoc, load_manifests, parse_file
from gitopsd.manifests.render import read_directory, render_app
from gitopsd.model import Origin

from .support import SERVICE, TASK_DEFINITION, Repo


def test_two_document_yaml_and_a_json_file(repo: Repo) -> None:
    repo.write("app/web.yaml", TASK_DEFINITION + "---\n" + SERVICE)
    worker = {
        "kind": "TaskDefinition",
        "family": "worker",
        "containerDefinitions": [{"name": "worker", "image": "busybox", "memory": 128}],
    }
    repo.write("app/worker.json", json.dumps(worker, indent=2))
    resources = repo.render()
    assert [(r.kind, r.name) for r in resources] == [
        ("TaskDefinition", "web"),
        ("Service", "web"),
        ("TaskDefinition", "worker"),
    ]
    assert resources[1].origin == Origin("app/web.yaml", 12)
    assert resources[2].origin == Origin("app/worker.json", 1)
    assert "kind" not in resources[0].spec
    assert resources[0].spec["containerDefinitions"][0]["portMappings"] == [{"containerPort": 80}]
    assert resources[2].spec == {k: v for k, v in worker.items() if k != "kind"}


def test_yaml_lines_point_at_keys_and_items() -> None:
    text = b"""\
# comment
kind: TaskDefinition
family: web
containerDefinitions:
  - name: web
    environment:
      - name: A
        value: "1"
"""
    (doc,), problems = parse_file("a.yaml", text)
    assert problems == []
    assert doc.line == 2
    assert doc.where("/family") == Origin("a.yaml", 3)
    assert doc.where("/containerDefinitions") == Origin("a.yaml", 4)
    assert doc.where("/containerDefinitions/0") == Origin("a.yaml", 5)
    assert doc.where("/containerDefinitions/0/environment/0/value") == Origin("a.yaml", 8)
    # An unknown pointer falls back to its nearest located ancestor.
    assert doc.where("/containerDefinitions/0/nope/deeper") == Origin("a.yaml", 5)


def test_json_lines_with_tabs_exponents_and_escapes() -> None:
    text = '{\n\t"kind": "Service",\n\t"x": [\n\t\t1e3,\n\t\t{"a/b": "\\u00e9"}\n\t]\n}\n'
    (doc,), problems = parse_file("s.json", text.encode())
    assert problems == []
    assert doc.data == {"kind": "Service", "x": [1000.0, {"a/b": "é"}]}
    assert doc.where("/x/0") == Origin("s.json", 4)
    assert doc.where("/x/1/a~1b") == Origin("s.json", 5)


def test_yaml_anchors_and_merge_keys() -> None:
    text = b"""\
kind: TaskDefinition
family: web
x-defaults: &defaults
  essential: true
containerDefinitions:
  - <<: *defaults
    name: web
"""
    (doc,), problems = parse_file("a.yaml", text)
    assert problems == []
    assert doc.data["containerDefinitions"] == [{"essential": True, "name": "web"}]


def test_yaml_syntax_error_names_the_line(repo: Repo) -> None:
    repo.write("app/svc.yaml", "kind: Service\nserviceName: web\ntags: [a, b\ndesiredCount: 1\n")
    (problem,) = repo.problems()
    assert problem == (
        "app/svc.yaml:4: invalid YAML at column 13: expected ',' or ']', but got ':'"
        " (while parsing a flow sequence started at line 3, column 7)"
    )


@pytest.mark.parametrize(
    ("text", "line", "column", "what"),
    [
        # the parser: 'mapping values are not allowed here\n  in ..., line 3, column 15'
        (
            "kind: Service\nserviceName: web\n  desiredCount: 1\n",
            3,
            15,
            "mapping values are not allowed here",
        ),
        ("kind: Service\nname: a: b\n", 2, 8, "mapping values are not allowed here"),
        (
            "kind: Service\nimage: 'nginx\n",
            3,
            1,
            "found unexpected end of stream"
            " (while scanning a quoted scalar started at line 2, column 8)",
        ),
        (
            "kind: Service\n\tdesiredCount: 2\n",
            2,
            1,
            "found character '\\t' that cannot start any token (while scanning for the next token)",
        ),
        ("kind: Service\nrole: *nope\n", 2, 7, "found undefined alias 'nope'"),
        (
            "a: {x: 1]\n",
            1,
            9,
            "expected ',' or '}', but got ']' (while parsing a flow mapping started at column 4)",
        ),
        # no mark from PyYAML's reader, only a position: counted here the same way
        (
            "kind: Service\nrole: a\x07b\n",
            2,
            8,
            "unacceptable character #x0007: special characters are not allowed",
        ),
    ],
    ids=["indent", "colon", "quote", "tab", "alias", "flow", "control"],
)
def test_yaml_syntax_errors_name_the_parsers_line_and_column(
    text: str, line: int, column: int, what: str
) -> None:
    """PyYAML's 0-based marks are reported 1-based, as PyYAML's own message prints them."""
    _, problems = parse_file("svc.yaml", text.encode())
    assert problems == [Problem("svc.yaml", line, "", f"invalid YAML at column {column}: {what}")]
    with pytest.raises(yaml.YAMLError) as info:
        list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    if isinstance(info.value, yaml.MarkedYAMLError):  # what PyYAML itself prints
        assert f"line {line}, column {column}:" in str(info.value)


def test_yaml_syntax_error_after_a_bom_and_crlf_counts_like_an_editor() -> None:
    _, problems = parse_file("svc.yaml", b"\xef\xbb\xbfkind: Service\r\nname: a: b\r\n")
    assert problems == [
        Problem("svc.yaml", 2, "", "invalid YAML at column 8: mapping values are not allowed here")
    ]


def test_json_syntax_error_names_the_line(repo: Repo) -> None:
    repo.write("app/svc.json", '{\n  "kind": "Service",\n  "serviceName": "web",,\n}\n')
    (problem,) = repo.problems()
    assert problem == (
        "app/svc.json:3: invalid JSON at column 24: "
        "Expecting property name enclosed in double quotes"
    )


@pytest.mark.parametrize(
    ("text", "line", "column", "what"),
    [
        ('{\n  "kind": "Service"\n  "x": 1}', 3, 3, "Expecting ',' delimiter"),
        ('{"kind": "Service"}\n{"x": 1}\n', 2, 1, "Extra data"),
        ('{\n  "kind": Service\n}', 2, 11, "Expecting value"),
        ("\ufeff{\n\t\"kind\": 'Service'}", 2, 10, "Expecting value"),
    ],
    ids=["comma", "extra", "bare", "bom-tab"],
)
def test_json_syntax_errors_name_the_line_and_column(
    text: str, line: int, column: int, what: str
) -> None:
    """json's lineno and colno count from 1 already."""
    _, problems = parse_file("svc.json", text.encode())
    assert problems == [Problem("svc.json", line, "", f"invalid JSON at column {column}: {what}")]


def test_a_file_over_the_size_cap_is_refused_before_parsing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def parse(file: str, text: str) -> tuple[list[LocatedDoc], list[Problem]]:
        raise AssertionError(f"{file} was parsed")

    monkeypatch.setattr(loader, "_parse_yaml", parse)
    monkeypatch.setattr(loader, "_parse_json", parse)
    big = b"kind: Service\nserviceName: web\n" + b"# padding\n" * 20  # 231 bytes
    files = {"app/big.yaml": big, "app/big.json": big}
    docs, problems = load_manifests(files, ecs_schema(), max_file_size=200)
    assert docs == []
    assert [str(p) for p in problems] == [
        f"app/{name}: file is 231 bytes, larger than the limit of 200 bytes for one manifest "
        "file, so it was not parsed: split it, or raise [manifests].max_file_size"
        for name in ("big.json", "big.yaml")
    ]


def test_the_size_cap_is_a_limit_on_bytes_not_characters() -> None:
    text = "kind: Service\nserviceName: caf\u00e9\n"
    assert (len(text), len(text.encode())) == (32, 33)
    _, problems = parse_file("a.yaml", text.encode(), max_file_size=32)
    assert problems[0].message.startswith("file is 33 bytes, larger than the limit of 32 bytes")
    docs, problems = parse_file("a.yaml", text.encode(), max_file_size=33)
    assert (len(docs), problems) == (1, [])


def test_the_size_cap_names_large_sizes_in_binary_units() -> None:
    problem = loader.too_large("apps/web/big.yaml", 27 * 1024 * 1024 + 300_000, 1024 * 1024)
    assert str(problem) == (
        "apps/web/big.yaml: file is 27.3 MiB (28611552 bytes), larger than the limit of "
        "1 MiB (1048576 bytes) for one manifest file, so it was not parsed: "
        "split it, or raise [manifests].max_file_size"
    )


def test_a_file_at_or_under_the_cap_is_read(repo: Repo) -> None:
    repo.write("app/td.yaml", TASK_DEFINITION)
    repo.write("app/svc.yaml", SERVICE)
    size = max(len(TASK_DEFINITION), len(SERVICE))
    resources = render_app(read_directory(repo.root), repo.app(), repo.schema, max_file_size=size)
    assert sorted(r.key for r in resources) == ["Service/web", "TaskDefinition/web"]
    with pytest.raises(ManifestError) as info:
        render_app(read_directory(repo.root), repo.app(), repo.schema, max_file_size=size - 1)
    too_large = [p.file for p in info.value.problems if "larger than the limit" in p.message]
    assert too_large == ["app/td.yaml"]  # the service then names an undeclared family


def test_the_default_cap_is_one_mebibyte(repo: Repo) -> None:
    repo.write("app/svc.yaml", SERVICE)
    padding = DEFAULT_MAX_FILE_SIZE - len(TASK_DEFINITION)
    repo.write("app/td.yaml", TASK_DEFINITION + "#" * padding)
    assert len(render_app(read_directory(repo.root), repo.app(), repo.schema)) == 2
    repo.write("app/td.yaml", TASK_DEFINITION + "#" * (padding + 1))
    assert [p for p in repo.problems() if p.startswith("app/td.yaml")] == [
        "app/td.yaml: file is 1.0 MiB (1048577 bytes), larger than the limit of 1 MiB "
        "(1048576 bytes) for one manifest file, so it was not parsed: "
        "split it, or raise [manifests].max_file_size"
    ]


def test_the_size_cap_applies_to_overlay_files(repo: Repo) -> None:
    repo.write("app/td.yaml", TASK_DEFINITION)
    repo.write("app/svc.yaml", SERVICE)
    cap = max(len(TASK_DEFINITION), len(SERVICE))
    patch = "target: {kind: Service, name: web}\nmergePatch: {desiredCount: 3}\n"
    repo.write("prod/scale.yaml", patch + "#" * cap)
    with pytest.raises(ManifestError) as info:
        render_app(
            read_directory(repo.root), repo.app(overlays=["prod"]), repo.schema, max_file_size=cap
        )
    (problem,) = info.value.problems
    assert problem.file == "prod/scale.yaml"
    assert "larger than the limit" in problem.message


def test_duplicate_keys_are_problems() -> None:
    _, yaml_problems = parse_file("a.yaml", b"kind: Service\nserviceName: a\nserviceName: b\n")
    _, json_problems = parse_file("a.json", b'{"kind": "Service",\n"kind": "Service"}')
    assert [str(p) for p in yaml_problems] == [
        "a.yaml:3: serviceName: duplicate key 'serviceName' (first at line 2)"
    ]
    assert [str(p) for p in json_problems] == [
        "a.json:2: kind: duplicate key 'kind' (first at line 1)"
    ]


def test_document_shape_and_kind_problems() -> None:
    files = {
        "a.yaml": b"---\n---\n- 1\n---\nfamily: web\n---\nkind: Secret\n---\n# only a comment\n",
        "b.yaml": b"kind: [Service]\n",
        "c.yaml": b"target: {kind: Service, name: web}\nmergePatch: {}\n",
        "d.yaml": b"",
        "e.json": b"  \n",
        "notes.txt": b"not a manifest",
        ".hidden/x.yaml": b"- not read",
    }
    docs, problems = load_manifests(files, ecs_schema())
    assert docs == []
    kinds = "(known kinds: TaskDefinition, Service)"
    assert [str(p) for p in problems] == [
        "a.yaml:3: a document must be a mapping, got list",
        f"a.yaml:5: missing 'kind' {kinds}",
        f"a.yaml:7: kind: unknown kind 'Secret' {kinds}",
        f'b.yaml:1: kind: unknown kind ["Service"] {kinds}',
        f"c.yaml:1: missing 'kind' {kinds}; this looks like an overlay patch: keep patches in "
        "a directory listed in apps[].overlays, outside the app's path",
    ]


def test_a_pasted_describe_wrapper_gets_a_hint() -> None:
    _, problems = load_manifests({"a.json": b'{"taskDefinition": {"family": "web"}}'}, ecs_schema())
    (problem,) = problems
    assert "make the object under 'taskDefinition' the document" in problem.message
    assert "add 'kind: TaskDefinition'" in problem.message


def test_unsupported_yaml_tags_are_problems() -> None:
    _, problems = parse_file("a.yaml", b"kind: Service\nrole: !GetAtt Role.Arn\n")
    assert [str(p) for p in problems] == [
        "a.yaml:2: role: unsupported YAML tag '!GetAtt'; manifests hold plain JSON-like data"
    ]


def test_yaml_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    (problem,) = parse_file("bomb.yaml", "\n".join(lines).encode())[1]
    assert "more than" in problem.message


def test_not_utf8() -> None:
    (problem,) = parse_file("a.yaml", b"kind: Service\nx: \xff\n")[1]
    assert str(problem) == "a.yaml:2: not UTF-8 text"


def test_pasted_describe_output_drops_read_only_fields(repo: Repo) -> None:
    # As printed by `aws ecs describe-task-definition` (inner object) plus `kind`.
    task_definition = {
        "kind": "TaskDefinition",
        "taskDefinitionArn": "arn:aws:ecs:eu-west-1:123456789012:task-definition/web:7",
        "containerDefinitions": [
            {
                "name": "web",
                "image": "nginx:1.27",
                "cpu": 0,
                "portMappings": [{"containerPort": 80, "hostPort": 80, "protocol": "tcp"}],
                "essential": True,
                "environment": [],
                "mountPoints": [],
                "volumesFrom": [],
                "systemControls": [],
            }
        ],
        "family": "web",
        "networkMode": "awsvpc",
        "revision": 7,
        "volumes": [],
        "status": "ACTIVE",
        "requiresAttributes": [{"name": "com.amazonaws.ecs.capability.docker-remote-api.1.18"}],
        "placementConstraints": [],
        "compatibilities": ["EC2", "FARGATE"],
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "registeredAt": "2024-05-01T10:00:00.000000+02:00",
        "registeredBy": "arn:aws:iam::123456789012:user/me",
    }
    # As printed by `aws ecs describe-services` (one item of .services), trimmed by hand:
    # taskDefinition changed from the ARN to the family.
    service = {
        "kind": "Service",
        "serviceArn": "arn:aws:ecs:eu-west-1:123456789012:service/prod/web",
        "serviceName": "web",
        "clusterArn": "arn:aws:ecs:eu-west-1:123456789012:cluster/prod",
        "loadBalancers": [],
        "serviceRegistries": [],
        "status": "ACTIVE",
        "desiredCount": 2,
        "runningCount": 2,
        "pendingCount": 0,
        "launchType": "FARGATE",
        "platformVersion": "LATEST",
        "platformFamily": "Linux",
        "taskDefinition": "web",
        "deploymentConfiguration": {
            "deploymentCircuitBreaker": {"enable": True, "rollback": True},
            "maximumPercent": 200,
            "minimumHealthyPercent": 100,
        },
        "deployments": [{"id": "ecs-svc/1", "status": "PRIMARY", "desiredCount": 2}],
        "roleArn": "arn:aws:iam::123456789012:role/aws-service-role/ecs.amazonaws.com/X",
        "events": [{"id": "e1", "createdAt": "2024-05-01T10:00:00+02:00", "message": "steady"}],
        "createdAt": "2024-05-01T09:00:00+02:00",
        "placementConstraints": [],
        "placementStrategy": [],
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": ["subnet-1"],
                "securityGroups": ["sg-1"],
                "assignPublicIp": "DISABLED",
            }
        },
        "schedulingStrategy": "REPLICA",
        "deploymentController": {"type": "ECS"},
        "createdBy": "arn:aws:iam::123456789012:user/me",
        "enableECSManagedTags": False,
        "propagateTags": "NONE",
        "enableExecuteCommand": False,
    }
    repo.write("app/td.json", json.dumps(task_definition, indent=4))
    repo.write("app/svc.json", json.dumps(service, indent=4))
    svc, td = repo.render()
    for dropped in ("taskDefinitionArn", "revision", "status", "requiresAttributes"):
        assert dropped not in td.spec
    for dropped in ("compatibilities", "registeredAt", "registeredBy"):
        assert dropped not in td.spec
    for dropped in ("serviceArn", "clusterArn", "status", "runningCount", "pendingCount"):
        assert dropped not in svc.spec
    for dropped in ("events", "deployments", "createdAt", "createdBy", "roleArn"):
        assert dropped not in svc.spec
    assert td.spec["family"] == "web"
    assert svc.spec["networkConfiguration"] == service["networkConfiguration"]


def test_describe_only_fields_are_derived_from_the_model() -> None:
    task_definition = describe_only_fields("TaskDefinition")
    assert {"taskDefinitionArn", "revision", "status", "compatibilities"} <= task_definition
    assert {
        "registeredAt",
        "registeredBy",
        "deregisteredAt",
        "requiresAttributes",
    } <= task_definition
    assert not {"family", "containerDefinitions", "cpu"} & task_definition
    service = describe_only_fields("Service")
    assert {"serviceArn", "clusterArn", "runningCount", "events", "deployments"} <= service
    assert not {"serviceName", "taskDefinition", "desiredCount", "tags"} & service
