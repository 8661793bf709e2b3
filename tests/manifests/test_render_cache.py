"""The render cache: an unchanged app is not parsed again; any change it reads misses."""

from __future__ import annotations

import pytest

from gitopsd.config import AppConfig
from gitopsd.errors import ManifestError
from gitopsd.manifests import loader
from gitopsd.manifests.render import RenderCache, read_directory, render_app
from gitopsd.redact import REDACTOR, redact

from .support import SERVICE, TASK_DEFINITION, Repo

PATCH = """\
target: {kind: Service, name: web}
mergePatch: {desiredCount: 3}
"""


class Counted:
    """Renders ``repo`` through one cache, counting the files parsed."""

    def __init__(self, repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
        self.repo = repo
        self.cache = RenderCache()
        self.parsed = 0
        real = loader.parse_file

        def parse_file(*args: object, **kwargs: object) -> object:
            self.parsed += 1
            return real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(loader, "parse_file", parse_file)

    def render(self, app: AppConfig, **options: object) -> tuple[list[object], int]:
        """The resources, and how many files were parsed for them."""
        before = self.parsed
        out = render_app(
            read_directory(self.repo.root),
            app,
            self.repo.schema,
            cache=self.cache,
            **options,  # type: ignore[arg-type]
        )
        return list(out), self.parsed - before


@pytest.fixture
def counted(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> Counted:
    repo.write("app/td.yaml", TASK_DEFINITION.replace("nginx:1.27", "nginx:${TAG}"))
    repo.write("app/svc.yaml", SERVICE)
    repo.write("overlays/prod/patch.yaml", PATCH)
    return Counted(repo, monkeypatch)


def app(repo: Repo, tag: str = "1.27", overlays: list[str] | None = None) -> AppConfig:
    return repo.app(
        overlays=["overlays/prod"] if overlays is None else overlays, variables={"TAG": tag}
    )


def test_an_unchanged_app_is_not_parsed_again(repo: Repo, counted: Counted) -> None:
    first, parsed = counted.render(app(repo))
    assert parsed == 3
    again, parsed = counted.render(app(repo))
    assert parsed == 0
    assert again == first
    assert (counted.cache.hits, counted.cache.misses) == (1, 1)


def test_a_changed_file_var_overlay_or_setting_misses(repo: Repo, counted: Counted) -> None:
    base, _ = counted.render(app(repo))

    repo.write("app/svc.yaml", SERVICE.replace("FARGATE", "EC2"))
    changed, parsed = counted.render(app(repo))
    assert parsed == 3
    assert changed != base
    assert counted.render(app(repo))[1] == 0

    vars_changed, parsed = counted.render(app(repo, tag="1.28"))
    assert parsed == 3
    assert vars_changed[1].spec["containerDefinitions"][0]["image"] == "nginx:1.28"  # type: ignore[attr-defined]

    repo.write("overlays/prod/patch.yaml", PATCH.replace("3", "5"))
    overlay_changed, parsed = counted.render(app(repo))
    assert parsed == 3
    assert overlay_changed[0].spec["desiredCount"] == 5  # type: ignore[attr-defined]

    without_overlay, parsed = counted.render(app(repo, overlays=[]))
    assert parsed == 2
    assert without_overlay[0].spec["desiredCount"] == 2  # type: ignore[attr-defined]

    repo.write("app/new.yaml", "kind: Service\nserviceName: other\ntaskDefinition: web\n")
    assert counted.render(app(repo, overlays=[]))[1] == 3  # a file added

    assert counted.render(app(repo, overlays=[]), max_file_size=10_000)[1] == 3  # a setting


def test_vars_from_the_environment_are_part_of_the_key(
    repo: Repo, counted: Counted, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = AppConfig(
        name="web",
        source="git",
        path="app",
        cluster="prod",
        vars_from_env={"TAG": "GITOPSD_TEST_TAG"},
    )
    monkeypatch.setenv("GITOPSD_TEST_TAG", "1.27-secret-tag")
    _, parsed = counted.render(config)
    assert parsed == 2
    REDACTOR.forget_all()
    again, parsed = counted.render(config)
    assert parsed == 0
    assert "1.27-secret-tag" not in redact(repr(again))  # still registered as secret on a hit
    monkeypatch.setenv("GITOPSD_TEST_TAG", "1.28-secret-tag")
    assert counted.render(config)[1] == 2


def test_a_failed_render_is_not_kept(repo: Repo, counted: Counted) -> None:
    repo.write("app/svc.yaml", SERVICE.replace("desiredCount: 2", "desiredCount: two"))
    for _ in range(2):
        with pytest.raises(ManifestError):
            counted.render(app(repo, overlays=[]))
    assert counted.cache.hits == 0


def test_bounded() -> None:
    cache = RenderCache(max_entries=2)
    for n in range(3):
        cache.put(bytes([n]), [], [])
    assert cache.get(bytes([0])) is None
    assert cache.get(bytes([2])) == []
