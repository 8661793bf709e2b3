"""A throwaway repository on disk for manifest tests: write files, render an app."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gitopsd.backends.ecs.schema import ecs_schema
from gitopsd.config import AppConfig
from gitopsd.errors import ManifestError
from gitopsd.manifests.render import read_directory, render_app
from gitopsd.manifests.schema import Schema
from gitopsd.model import Resource

TASK_DEFINITION = """\
kind: TaskDefinition
family: web
cpu: "256"
memory: "512"
containerDefinitions:
  - name: web
    image: nginx:1.27
    essential: true
    portMappings:
      - containerPort: 80
"""

SERVICE = """\
kind: Service
serviceName: web
taskDefinition: web
desiredCount: 2
launchType: FARGATE
"""


class Repo:
    """Files below ``root``; ``render`` runs the whole pipeline through ``read_directory``.

    Documents are rendered with ``schema``: by default the ECS backend's, the one gitopsd ships.
    """

    def __init__(self, root: Path, schema: Schema | None = None) -> None:
        self.root = root
        self.schema = schema or ecs_schema()

    def write(self, path: str, text: str) -> None:
        file = self.root / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(textwrap.dedent(text))

    def app(
        self,
        path: str = "app",
        overlays: list[str] | None = None,
        variables: dict[str, str] | None = None,
    ) -> AppConfig:
        return AppConfig(
            name="web",
            source="git",
            path=path,
            overlays=overlays or [],
            cluster="prod",
            vars=variables or {},
        )

    def render(
        self,
        path: str = "app",
        overlays: list[str] | None = None,
        variables: dict[str, str] | None = None,
    ) -> list[Resource]:
        return render_app(
            read_directory(self.root), self.app(path, overlays, variables), self.schema
        )

    def problems(
        self,
        path: str = "app",
        overlays: list[str] | None = None,
        variables: dict[str, str] | None = None,
    ) -> list[str]:
        """The rendered problems, one string each (``file:line: path: message``)."""
        with pytest.raises(ManifestError) as info:
            self.render(path, overlays, variables)
        return [str(p) for p in info.value.problems]
