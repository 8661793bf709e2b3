"""Defences of docs/security.md's threat model that no other test shows on its own.

Each test here is named in docs/security.md next to the threat it answers;
tests/test_security_doc.py checks that every test the document names exists.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from gitopsd.backends.ecs.schema import ecs_schema
from gitopsd.config import AppConfig, HttpConfig, parse_config
from gitopsd.engine.sources import DirectorySource
from gitopsd.errors import ConfigError, SourceRejected
from gitopsd.http import HttpEndpoints, serve_http
from gitopsd.manifests.loader import parse_file
from gitopsd.manifests.render import read_directory, render_app
from gitopsd.source.cache import normalise_prefix
from gitopsd.statestore.deliveries import DeliveryLog
from gitopsd.statestore.dirstore import DirStore


class FakeView:
    """An AgentView that records what webhooks triggered."""

    def __init__(self) -> None:
        self.triggers: list[tuple[list[str], str]] = []

    def health(self) -> tuple[bool, str]:
        return True, "ok"

    def readiness(self) -> tuple[bool, str]:
        return True, "ok"

    def status(self) -> list[dict[str, Any]]:
        return []

    def metrics_text(self) -> str:
        return ""

    def trigger(self, sources: Sequence[str], reason: str) -> list[str]:
        self.triggers.append((list(sources), reason))
        return list(sources) or ["s"]

    async def control(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return {}


SOURCES = [{"name": "s", "url": "git://127.0.0.1/deploy.git"}]


def _app(**settings: object) -> dict[str, object]:
    return {"name": "web", "source": "s", "cluster": "prod", **settings}


# --- hostile manifests and paths ---------------------------------------------------------------


@pytest.mark.parametrize("overlay", ["../shared", "prod/../../etc", "/etc/gitopsd"])
def test_an_overlay_path_that_leaves_the_repository_is_refused(overlay: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"sources": SOURCES, "apps": [_app(overlays=["prod", overlay])]})
    assert f"apps[0].overlays: {overlay!r} (overlays[1]) must be a path inside the repository" in (
        str(info.value)
    )


@pytest.mark.parametrize("path", ["..", "../other-repo", "apps/../../x"])
def test_a_path_that_leaves_the_repository_is_refused_by_config_and_by_the_reader(
    path: str,
) -> None:
    """Refused when the config loads, and again where Git trees are read (both source kinds)."""
    with pytest.raises(ConfigError, match=r"apps\[0\]\.path: must be a path inside the repository"):
        parse_config({"sources": SOURCES, "apps": [_app(path=path)]})
    with pytest.raises(ValueError, match=r"must stay inside the repository \(no '\.\.'\)"):
        normalise_prefix(path)


@pytest.mark.parametrize("link", ["app/link.yaml", "app/dir"])
def test_a_symlink_to_a_file_outside_the_checkout_is_not_read(tmp_path: Path, link: str) -> None:
    """``--dir`` reports a link that leaves the checkout and reads nothing through it.

    (The Git tree reader does the same: tests/source/test_tree.py.) The library
    reader ``read_directory`` leaves such links out.
    """
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "stolen.yaml").write_text("kind: Service\nserviceName: stolen\n")
    root = tmp_path / "checkout"
    (root / "app").mkdir(parents=True)
    (root / "app" / "service.yaml").write_text("kind: Service\nserviceName: web\n")
    target = outside / "stolen.yaml" if link.endswith(".yaml") else outside
    (root / link).symlink_to(target, target_is_directory=target.is_dir())
    with pytest.raises(SourceRejected) as info:
        DirectorySource("platform", root).read_tree("worktree", "app", suffixes=(".yaml",))
    assert f"'{link}' is a symlink" in str(info.value)
    assert "stolen" not in str(info.value)
    assert sorted(read_directory(root)("app")) == ["app/service.yaml"]


def test_python_yaml_tags_construct_nothing(tmp_path: Path) -> None:
    """YAML tags that make PyYAML's full loader call Python are problems; nothing runs."""
    witness = tmp_path / "ran"
    text = (
        "kind: Service\n"
        f"a: !!python/object/apply:os.system ['touch {witness}']\n"
        "b: !!python/object/apply:pathlib.Path.touch\n"
        f"  [!!python/object/apply:pathlib.Path ['{witness}']]\n"
        "c: !!python/name:os.system\n"
    )
    docs, problems = parse_file("app/evil.yaml", text.encode())
    assert [p.line for p in problems] == [2, 3, 4, 5]
    assert all("unsupported YAML tag 'tag:yaml.org,2002:python/" in p.message for p in problems)
    assert not witness.exists()
    assert all(isinstance(v, str | list) for v in docs[0].data.values())


def test_a_variable_cannot_change_the_structure_of_a_document(tmp_path: Path) -> None:
    """A value substituted from vars stays one string, however much YAML it holds."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "td.yaml").write_text(
        "kind: TaskDefinition\n"
        "family: web\n"
        "containerDefinitions:\n"
        "  - name: web\n"
        "    image: nginx:${TAG}\n"
    )
    evil = "1\n    privileged: true\n  - name: sidecar\n    image: evil"
    app = AppConfig(name="web", source="s", path="app", cluster="prod", vars={"TAG": evil})
    (td,) = render_app(read_directory(tmp_path), app, ecs_schema())
    (container,) = td.spec["containerDefinitions"]
    assert container == {"name": "web", "image": f"nginx:{evil}"}


# --- forged and replayed webhooks ------------------------------------------------------------

SECRET = "hm-s3cret"
BODY = b'{"ref": "refs/heads/main"}'


@asynccontextmanager
async def _serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, view: FakeView
) -> AsyncIterator[str]:
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    config = HttpConfig.model_validate(
        {
            "address": "127.0.0.1:0",
            "webhooks": [{"name": "ci", "kind": "hmac", "secret_env": "TEST_HOOK_SECRET"}],
        }
    )
    deliveries = DeliveryLog(DirStore(tmp_path / "store"), retention=3600)
    async with anyio.create_task_group() as tg:
        endpoints: HttpEndpoints = await tg.start(
            functools.partial(serve_http, config, view, control_socket=None, deliveries=deliveries)
        )
        assert endpoints.url is not None
        try:
            yield f"{endpoints.url}/hooks/ci"
        finally:
            tg.cancel_scope.cancel()


async def _post(url: str, delivery: str, signature: str) -> tuple[int, object]:
    headers = {"X-Delivery-Id": delivery, "X-Signature-256": signature}
    async with (
        aiohttp.ClientSession() as client,
        client.post(url, data=BODY, headers=headers) as response,
    ):
        return response.status, await response.json()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_replayed_webhook_delivery_triggers_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, anyio_backend: str
) -> None:
    """A captured signed request sent again is ignored; a forged one cannot use up an id."""
    signed = "sha256=" + hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    forged = "sha256=" + hmac.new(b"guess", BODY, hashlib.sha256).hexdigest()
    view = FakeView()
    async with _serving(tmp_path, monkeypatch, view) as url:
        assert (await _post(url, "d-2", forged))[0] == 401
        assert (await _post(url, "d-1", signed))[0] == 202
        status, body = await _post(url, "d-1", signed)  # the replay
        assert (status, body) == (
            200,
            {"triggered": [], "duplicate": True, "detail": "delivery d-1 already seen"},
        )
        assert (await _post(url, "d-2", signed))[0] == 202  # the forgery did not burn d-2
    assert len(view.triggers) == 2
