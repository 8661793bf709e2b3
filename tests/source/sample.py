"""The sample configuration repository the Git source tests publish, and its credentials."""

from __future__ import annotations

from pathlib import Path

from support.gitserver import GitRepo, make_repo

HTTP_USER = "x-access-token"
HTTP_PASSWORD = "s3cret-t0ken"

SERVICE_YAML = "kind: Service\nname: web\n"
TASK_YAML = "kind: TaskDefinition\nfamily: web\n"
API_YAML = "kind: Service\nname: api\n"


def make_config_repo(work: Path, bare: Path) -> GitRepo:
    """A work repository with a few manifests on ``main``, published to the bare ``bare``."""
    repo = make_repo(work)
    repo.write("apps/web/base/service.yaml", SERVICE_YAML)
    repo.write("apps/web/base/task.yaml", TASK_YAML)
    repo.write("apps/api/service.yaml", API_YAML)
    repo.write("README.md", "config\n")
    repo.commit("initial manifests")
    repo.publish(bare)
    return repo
