"""The render entry point: every problem at once, deterministic output, local reader."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from gitopsd.backends.ecs.schema import ecs_schema
from gitopsd.errors import Problem
from gitopsd.manifests.loader import LocatedDoc
from gitopsd.manifests.render import dump_resources, read_directory, render_app

from .support import SERVICE, TASK_DEFINITION, Repo


def test_several_problems_from_every_stage_are_reported_at_once(repo: Repo) -> None:
    repo.write("app/a-broken.yaml", "kind: Service\nserviceName: [\n")
    repo.write(
        "app/td.yaml",
        TASK_DEFINITION.replace("nginx:1.27", "nginx:${TAG}").replace("essential", "esential"),
    )
    repo.write("app/svc.yaml", SERVICE.replace("desiredCount: 2", "desiredCount: two"))
    repo.write("overlays/prod/p.yaml", "target: {kind: Service, name: api}\nmergePatch: {}\n")
    assert repo.problems(overlays=["overlays/prod"]) == [
        "app/a-broken.yaml:3: invalid YAML at column 1: expected the node content, but found"
        " '<stream end>' (while parsing a flow node)",
        "app/svc.yaml:4: desiredCount: expected integer, got string",
        "app/td.yaml:7: containerDefinitions[0].image: undefined variable ${TAG}; "
        "define it in apps[].vars (defined: none)",
        "app/td.yaml:8: containerDefinitions[0].esential: unknown field 'esential' "
        "(did you mean 'essential'?)",
        "overlays/prod/p.yaml:1: target: patch target Service 'api' does not exist in the app "
        "(Service names: web)",
    ]


def test_missing_app_path(repo: Repo) -> None:
    repo.write("apps/web/README.md", "no manifests here")
    assert repo.problems(path="apps/x") == [
        "apps/x: path 'apps/x' has no manifests (*.yaml, *.yml, *.json)"
    ]
    assert repo.problems(path="apps/web") == [
        "apps/web: path 'apps/web' has no manifests (*.yaml, *.yml, *.json)"
    ]


def test_root_path_and_hidden_files(repo: Repo) -> None:
    repo.write("web.yaml", TASK_DEFINITION + "---\n" + SERVICE)
    repo.write(".github/workflows/ci.yml", "on: push\n")
    repo.write(".git/config.json", "{}")
    assert [r.key for r in repo.render(path=".")] == ["TaskDefinition/web", "Service/web"]


def test_dump_is_yaml_with_kind_first_and_keys_as_written(repo: Repo) -> None:
    repo.write(
        "app/td.yaml",
        TASK_DEFINITION
        + """\
    command: ["sh", "-c", "echo one\\necho two\\n"]
""",
    )
    repo.write("app/svc.yaml", SERVICE)
    resources = repo.render()
    text = dump_resources(resources)
    assert text.startswith("---\n# app/svc.yaml:1\nkind: Service\nserviceName: web\n")
    assert "      - |\n        echo one\n        echo two\n" in text
    documents = list(yaml.safe_load_all(text))
    assert documents == [{"kind": r.kind, **r.spec} for r in resources]
    assert list(documents[1]) == ["kind", "family", "cpu", "memory", "containerDefinitions"]


def test_render_is_deterministic(repo: Repo, tmp_path: Path) -> None:
    repo.write("app/b/td.yaml", TASK_DEFINITION)
    repo.write(
        "app/a/svc.json", '{"kind": "Service", "serviceName": "web", "taskDefinition": "web"}'
    )
    repo.write("app/c.yml", SERVICE.replace("serviceName: web", "serviceName: api"))
    read = read_directory(tmp_path)
    app = repo.app()

    def shuffled(prefix: str) -> Mapping[str, bytes]:
        files = dict(read(prefix))
        keys = list(files)
        random.Random(len(keys)).shuffle(keys)
        return {k: files[k] for k in reversed(keys)}

    first = dump_resources(render_app(read, app, ecs_schema()))
    assert dump_resources(render_app(read, app, ecs_schema())) == first
    assert dump_resources(render_app(shuffled, app, ecs_schema())) == first
    assert [line for line in first.splitlines() if line.startswith("# ")] == [
        "# app/a/svc.json:1",
        "# app/b/td.yaml:1",
        "# app/c.yml:1",
    ]


def test_a_custom_validator_is_used(repo: Repo, tmp_path: Path) -> None:
    repo.write("app/x.yaml", "kind: Service\nserviceName: web\n")
    seen: list[LocatedDoc] = []

    def validate(docs: Sequence[LocatedDoc]) -> list[Problem]:
        seen.extend(docs)
        return []

    schema = dataclasses.replace(ecs_schema(), validate=validate)
    (resource,) = render_app(read_directory(tmp_path), repo.app(), schema)
    assert resource.name == "web"
    assert [d.data for d in seen] == [{"kind": "Service", "serviceName": "web"}]


def test_read_directory_lists_files_below_a_prefix(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.yaml").write_text("x")
    (tmp_path / "a" / "y.bin").write_bytes(b"\0")
    (tmp_path / "outside.txt").write_text("o")
    (tmp_path / "a" / "link").symlink_to(tmp_path.parent)
    read = read_directory(tmp_path)
    files = read("a")
    assert sorted(files) == ["a/b/x.yaml", "a/y.bin"]
    assert files["a/b/x.yaml"] == b"x"
    assert "outside.txt" in read(".")
    assert dict(read("missing")) == {}
