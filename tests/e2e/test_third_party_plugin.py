"""A third-party plugin, installed from its own distribution, is found and alerted.

The distribution is tests/data/gitopsd-testplugin (a pyproject.toml and a module, as a
user would publish one). It is installed with uv into a temporary directory put on
PYTHONPATH of a gitopsd subprocess: discovery goes through its entry-point metadata only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gitopsd.local_aws.testing import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY

from .conftest import Env

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "tests" / "data" / "gitopsd-testplugin"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    uv = ROOT / ".tools" / "bin" / "uv"
    installer = [str(uv), "pip", "install", "--python", sys.executable]
    if not uv.exists():  # outside `make`: the interpreter's pip does the same
        installer = [sys.executable, "-m", "pip", "install", "--quiet"]
    subprocess.run(
        [*installer, "--no-deps", "--target", str(target), str(DIST)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert list(target.glob("gitopsd_testplugin-0.1.0.dist-info"))
    return target


def gitopsd(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        PYTHONPATH=str(site),
        AWS_ACCESS_KEY_ID=DUMMY_ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=DUMMY_SECRET_KEY,
    )
    env.pop("AWS_PROFILE", None)
    return subprocess.run(
        [sys.executable, "-m", "gitopsd", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_installed_third_party_plugin_is_listed_configured_and_alerted(
    env: Env, site: Path, tmp_path: Path
) -> None:
    alerts = tmp_path / "alerts.jsonl"
    env.config.write_text(env.config.read_text() + f'\n[plugins.testplugin]\npath = "{alerts}"\n')

    listed = gitopsd(site, "plugins", "-c", str(env.config))
    assert listed.returncode == 0, listed.stderr
    row = next(line.split() for line in listed.stdout.splitlines() if line.startswith("testplugin"))
    assert row[:5] == ["testplugin", "gitopsd-testplugin", "0.1.0", "notifier", "yes"]

    env.edit("apps/web/base/task-definition.yaml", "nginx:1.27", "nginx:broken")
    env.commit("web: a build that cannot start")
    run = gitopsd(site, "sync", "web", "-c", str(env.config))
    assert run.returncode == 2, run.stdout + run.stderr
    sent = [json.loads(line) for line in alerts.read_text().splitlines()]
    problems = [a for a in sent if a["kind"] in ("rolled_back", "rollout_failed")]
    assert len(problems) == 1, sent
    assert problems[0]["app"] == "web"
    assert problems[0]["commit_message"] == "web: a build that cannot start"

    env.config.write_text(env.config.read_text().replace(f'path = "{alerts}"', "pat = 1"))
    bad = gitopsd(site, "sync", "web", "-c", str(env.config))
    assert bad.returncode == 2
    assert "plugins.testplugin.path: required" in bad.stderr
