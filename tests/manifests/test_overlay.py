"""Overlays: merge patches, JSON patches, added documents, and where patched values point."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitopsd.backends.ecs.schema import ecs_schema
from gitopsd.manifests.loader import LocatedDoc, parse_file
from gitopsd.manifests.overlay import Patch, apply_patch, parse_overlay
from gitopsd.model import Origin
from gitopsd.pointer import value_at

from .support import SERVICE, TASK_DEFINITION, Repo

PROD = "overlays/prod"


def base(repo: Repo) -> None:
    repo.write("app/td.yaml", TASK_DEFINITION)
    repo.write("app/svc.yaml", SERVICE)


def test_merge_patch_changes_adds_and_removes(repo: Repo) -> None:
    base(repo)
    repo.write(
        f"{PROD}/scale.yaml",
        """\
        target: {kind: Service, name: web}
        mergePatch:
          desiredCount: 4
          launchType: null
          networkConfiguration:
            awsvpcConfiguration: {subnets: [subnet-1]}
        """,
    )
    svc = next(r for r in repo.render(overlays=[PROD]) if r.kind == "Service")
    assert svc.spec == {
        "serviceName": "web",
        "taskDefinition": "web",
        "desiredCount": 4,
        "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}},
    }
    assert svc.origin.file == "app/svc.yaml"  # a patched resource stays where it was declared


def test_merge_patched_values_point_into_the_overlay(repo: Repo) -> None:
    base(repo)
    repo.write(
        f"{PROD}/p.yaml",
        """\
        target: {kind: TaskDefinition, name: web}
        mergePatch:
          cpu: 512
          runtimePlatform:
            cpuArchitecture: ARM
        """,
    )
    assert repo.problems(overlays=[PROD]) == [
        "overlays/prod/p.yaml:3: cpu: expected string, got integer (quote it to make it a string)",
        "overlays/prod/p.yaml:5: runtimePlatform.cpuArchitecture: invalid value 'ARM' "
        "(allowed: X86_64, ARM64); did you mean 'ARM64'?",
    ]


def test_json_patch_ops_and_shifted_lines(repo: Repo) -> None:
    base(repo)
    repo.write(
        "app/td.yaml",
        TASK_DEFINITION + "    healthCheck: {command: [CMD, true], retries: yes}\n",
    )
    repo.write(
        f"{PROD}/p.yaml",
        """\
        target: {kind: TaskDefinition, name: web}
        jsonPatch:
          - op: add
            path: /containerDefinitions/0
            value: {name: sidecar, image: envoy, essentail: true}
          - {op: replace, path: /memory, value: "1024"}
          - {op: remove, path: /cpu}
          - {op: test, path: /family, value: web}
        """,
    )
    # The sidecar's typo points at the overlay; the base container's bad values moved
    # to index 1 but still point at the base file.
    assert repo.problems(overlays=[PROD]) == [
        "app/td.yaml:11: containerDefinitions[1].healthCheck.command[1]: "
        "expected string, got boolean (quote it to make it a string)",
        "app/td.yaml:11: containerDefinitions[1].healthCheck.retries: "
        "expected integer, got boolean",
        "overlays/prod/p.yaml:5: containerDefinitions[0].essentail: "
        "unknown field 'essentail' (did you mean 'essential'?)",
    ]


def test_json_patch_result(repo: Repo) -> None:
    base(repo)
    repo.write(
        f"{PROD}/p.json",
        json.dumps(
            {
                "target": {"kind": "TaskDefinition", "name": "web"},
                "jsonPatch": [
                    {"op": "add", "path": "/containerDefinitions/-", "value": {"name": "b"}},
                    {"op": "copy", "from": "/containerDefinitions/0/image", "path": "/x"},
                    {"op": "move", "from": "/x", "path": "/containerDefinitions/1/image"},
                    {"op": "remove", "path": "/cpu"},
                ],
            }
        ),
    )
    td = next(r for r in repo.render(overlays=[PROD]) if r.kind == "TaskDefinition")
    assert [c["name"] for c in td.spec["containerDefinitions"]] == ["web", "b"]
    assert td.spec["containerDefinitions"][1] == {"name": "b", "image": "nginx:1.27"}
    assert "cpu" not in td.spec
    assert "x" not in td.spec


@pytest.mark.parametrize(
    ("op", "message"),
    [
        (
            "{op: test, path: /desiredCount, value: 3}",
            "operation 'test /desiredCount' failed on Service 'web': "
            "test failed: the value is 2, not 3",
        ),
        (
            "{op: replace, path: /deploymentConfiguration/maximumPercent, value: 150}",
            "operation 'replace /deploymentConfiguration/maximumPercent' failed on Service 'web': "
            "'/deploymentConfiguration' does not exist",
        ),
        (
            "{op: remove, path: /tags/0}",
            "operation 'remove /tags/0' failed on Service 'web': '/tags' does not exist",
        ),
        ("{op: ad, path: /x}", "operation 'ad /x': 'op' must be one of add, remove, replace, "),
        (
            "{op: add, path: /x}",
            "operation 'add /x' failed on Service 'web': "
            "The operation does not contain a 'value' member",
        ),
        (  # not a pointer: the library's reason, not a guess from a mangled path
            "{op: remove, path: tags/0}",
            "operation 'remove tags/0' failed on Service 'web': Location must start with /",
        ),
    ],
)
def test_failing_json_patch_names_the_overlay_line(repo: Repo, op: str, message: str) -> None:
    base(repo)
    repo.write(
        f"{PROD}/p.yaml",
        f"target: {{kind: Service, name: web}}\njsonPatch:\n  - {{op: test, path: /serviceName, "
        f"value: web}}\n  - {op}\n",
    )
    (problem,) = repo.problems(overlays=[PROD])
    assert problem.startswith(f"overlays/prod/p.yaml:4: jsonPatch[1]: {message}")


def test_a_failed_patch_leaves_its_target_as_it_was(repo: Repo) -> None:
    base(repo)
    repo.write(
        f"{PROD}/p.yaml",
        """\
        target: {kind: Service, name: web}
        jsonPatch:
          - {op: replace, path: /desiredCount, value: bad}
          - {op: remove, path: /nope}
        """,
    )
    # Only the failing op is reported, not the type error its first op would have caused.
    (problem,) = repo.problems(overlays=[PROD])
    assert problem.startswith("overlays/prod/p.yaml:4: jsonPatch[1]: ")


def test_patch_target_must_exist(repo: Repo) -> None:
    base(repo)
    repo.write(f"{PROD}/p.yaml", "target: {kind: Service, name: api}\nmergePatch: {}\n")
    assert repo.problems(overlays=[PROD]) == [
        "overlays/prod/p.yaml:1: target: patch target Service 'api' does not exist in the app "
        "(Service names: web)"
    ]


def test_malformed_patch_documents(repo: Repo) -> None:
    base(repo)
    repo.write(
        f"{PROD}/p.yaml",
        """\
        target: {kind: Service, name: web}
        mergePatch: {}
        jsonPatch: []
        ---
        target: {kind: Service}
        mergePatch: [1]
        ---
        target: {kind: Pod, name: web, namespace: x}
        jsonPatch: []
        ---
        serviceName: web
        ---
        target: {kind: Service, name: web}
        mergePatch: {}
        spec: {}
        """,
    )
    assert repo.problems(overlays=[PROD]) == [
        "overlays/prod/p.yaml:3: jsonPatch: set 'mergePatch' or 'jsonPatch', not both",
        "overlays/prod/p.yaml:5: target.name: must be the resource's name (a string)",
        "overlays/prod/p.yaml:6: mergePatch: must be a mapping",
        "overlays/prod/p.yaml:8: target.namespace: unknown field 'namespace'; use kind and name",
        "overlays/prod/p.yaml:8: target.kind: unknown kind 'Pod' "
        "(known kinds: TaskDefinition, Service)",
        "overlays/prod/p.yaml:11: neither a manifest nor a patch: add 'kind' for a new "
        "resource, or a patch has 'target' and one of 'mergePatch' or 'jsonPatch'",
        "overlays/prod/p.yaml:15: spec: unknown field 'spec'; a patch has 'target' and one "
        "of 'mergePatch' or 'jsonPatch'",
    ]


def test_a_patch_cannot_change_kind(repo: Repo) -> None:
    base(repo)
    repo.write(
        f"{PROD}/p.yaml", "target: {kind: Service, name: web}\nmergePatch: {kind: TaskDefinition}\n"
    )
    assert repo.problems(overlays=[PROD]) == [
        "overlays/prod/p.yaml:2: mergePatch: a patch cannot change 'kind'"
    ]


def test_overlays_add_documents_and_apply_in_configuration_order(repo: Repo) -> None:
    base(repo)
    repo.write(
        "overlays/a/worker.yaml",
        """\
        kind: TaskDefinition
        family: worker
        containerDefinitions: [{name: worker, image: busybox, memory: 64}]
        ---
        target: {kind: Service, name: web}
        mergePatch: {desiredCount: 3}
        """,
    )
    repo.write(
        "overlays/b/p.yaml",
        """\
        target: {kind: TaskDefinition, name: worker}   # added by overlay a
        mergePatch: {cpu: "128"}
        ---
        target: {kind: Service, name: web}
        mergePatch: {desiredCount: 5}
        """,
    )
    resources = repo.render(overlays=["overlays/a", "overlays/b"])
    assert [r.key for r in resources] == [
        "Service/web",
        "TaskDefinition/web",
        "TaskDefinition/worker",
    ]
    assert resources[0].spec["desiredCount"] == 5
    assert resources[2].spec["cpu"] == "128"
    assert resources[2].origin == Origin("overlays/a/worker.yaml", 1)
    # In the other order, b's patch of the worker comes before a adds it.
    assert repo.problems(overlays=["overlays/b", "overlays/a"]) == [
        "overlays/b/p.yaml:1: target: patch target TaskDefinition 'worker' does not exist "
        "in the app (TaskDefinition names: web)"
    ]


def test_an_overlay_below_the_app_path_is_not_part_of_the_base(repo: Repo) -> None:
    base(repo)
    repo.write("app/overlays/prod/p.yaml", "target: {kind: Service, name: web}\nmergePatch: {}\n")
    assert len(repo.render(overlays=["app/overlays/prod"])) == 2


def test_an_empty_overlay_directory_is_a_problem(repo: Repo) -> None:
    base(repo)
    assert repo.problems(overlays=["overlays/typo"]) == [
        "overlays/typo: overlay 'overlays/typo' has no patches (*.yaml, *.yml, *.json)"
    ]


def test_variables_apply_to_patched_values(repo: Repo) -> None:
    base(repo)
    repo.write(
        f"{PROD}/p.yaml",
        "target: {kind: TaskDefinition, name: web}\nmergePatch: {memory: '${MEM}'}\n",
    )
    assert repo.problems(overlays=[PROD]) == [
        "overlays/prod/p.yaml:2: memory: undefined variable ${MEM}; "
        "define it in apps[].vars (defined: none)"
    ]
    td = next(
        r
        for r in repo.render(overlays=[PROD], variables={"MEM": "2048"})
        if r.kind == "TaskDefinition"
    )
    assert td.spec["memory"] == "2048"


# --- RFC 7396 ---------------------------------------------------------------------------------


def _patch_doc(field: str, body: Any) -> Patch:
    text = json.dumps({"target": {"kind": "Service", "name": "s"}, field: body}, indent=1)
    (doc,), _ = parse_file("o.json", text.encode())
    return Patch("Service", "s", doc, field)


def _doc(data: dict[str, Any]) -> LocatedDoc:
    (doc,), _ = parse_file("b.json", json.dumps({"kind": "Service", **data}, indent=1).encode())
    return doc


# Appendix A of RFC 7396, restricted to object targets and patches.
@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ({"a": "foo"}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_follows_rfc_7396(
    target: dict[str, Any], patch: dict[str, Any], result: dict[str, Any]
) -> None:
    doc, body = _doc(target), _patch_doc("mergePatch", patch)
    before = copy.deepcopy(doc.data), copy.deepcopy(body.doc.data)
    patched, problems = apply_patch(doc, body)
    assert problems == []
    assert patched is not None
    assert patched.data == {"kind": "Service", **result}
    assert (doc.data, body.doc.data) == before  # inputs untouched
    for pointer in patched.origins:
        assert _exists(patched.data, pointer), pointer


def _exists(data: Any, pointer: str) -> bool:
    absent = object()
    return value_at(data, pointer, absent) is not absent


# --- origins under arbitrary list edits -------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_json_patch_origins_follow_list_items(data: st.DataObject) -> None:
    size = data.draw(st.integers(0, 4))
    items: list[dict[str, int | str]] = [{"v": i} for i in range(size)]
    ops: list[dict[str, Any]] = []
    for j in range(data.draw(st.integers(1, 6))):
        kind = data.draw(st.sampled_from(["add", "remove", "move", "copy"] if items else ["add"]))
        if kind == "add":
            at = data.draw(st.integers(0, len(items)))
            ops.append({"op": "add", "path": f"/l/{at}", "value": {"v": f"new{j}"}})
            items.insert(at, {"v": f"new{j}"})
        elif kind == "remove":
            at = data.draw(st.integers(0, len(items) - 1))
            ops.append({"op": "remove", "path": f"/l/{at}"})
            items.pop(at)
        else:
            src = data.draw(st.integers(0, len(items) - 1))
            item = items.pop(src) if kind == "move" else copy.deepcopy(items[src])
            at = data.draw(st.integers(0, len(items)))
            ops.append({"op": kind, "from": f"/l/{src}", "path": f"/l/{at}"})
            items.insert(at, item)
    base_text = "kind: Service\nl:\n" + "".join(f"  - {{v: {i}}}\n" for i in range(size))
    if not size:
        base_text = "kind: Service\nl: []\n"
    (doc,), _ = parse_file("b.yaml", base_text.encode())
    overlay_text = "target: {kind: Service, name: s}\njsonPatch:\n" + "".join(
        f"  - {json.dumps(op)}\n" for op in ops
    )
    (patch,), problems = parse_overlay({"o.yaml": overlay_text.encode()}, ecs_schema())
    assert problems == []
    assert isinstance(patch, Patch)
    patched, problems = apply_patch(doc, patch)
    assert problems == []
    assert patched is not None
    assert patched.data["l"] == items
    for pointer in patched.origins:
        assert _exists(patched.data, pointer), pointer
    for index, value in enumerate(items):
        where = patched.where(f"/l/{index}/v")
        if isinstance(value["v"], int):
            assert where == Origin("b.yaml", 3 + value["v"])
        else:
            assert where == Origin("o.yaml", 3 + int(str(value["v"])[3:]))
