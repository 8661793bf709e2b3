"""Config loading: every error names the key path and what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gitopsd.config import load_config, parse_config, parse_duration
from gitopsd.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

MINIMAL: dict[str, Any] = {
    "sources": [{"name": "s", "url": "git://127.0.0.1/x.git"}],
    "apps": [{"name": "a", "source": "s", "cluster": "c"}],
}


def errors_of(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "test.toml")
    return str(info.value)


def test_shipped_configs_are_valid() -> None:
    example = load_config(ROOT / "config" / "example.toml")
    assert [a.name for a in example.apps] == ["web", "worker"]
    assert example.daemon.state_dir.is_absolute()
    reference = load_config(ROOT / "config" / "reference.toml")
    assert reference.apps[0].sync.timeout == 600.0


def test_missing_required_key_names_its_path() -> None:
    data = {**MINIMAL, "apps": [*MINIMAL["apps"], {"name": "b", "source": "s"}]}
    assert "apps[1].cluster: required" in errors_of(data)


def test_unknown_key_is_refused_with_its_path() -> None:
    data = {**MINIMAL, "aws": {"regoin": "x"}}
    assert "aws.regoin: unknown key" in errors_of(data)


def test_app_must_name_a_declared_source() -> None:
    data = {**MINIMAL, "apps": [{"name": "a", "source": "nope", "cluster": "c"}]}
    message = errors_of(data)
    assert "apps[0].source: no source named 'nope' (sources: s)" in message


def test_duplicate_names_and_conflicting_refs() -> None:
    data: dict[str, Any] = {
        "sources": [
            {"name": "s", "url": "u", "branch": "main", "tag": "v1"},
        ],
        "apps": [
            {"name": "a", "source": "s", "cluster": "c"},
            {"name": "a", "source": "s", "cluster": "c"},
        ],
    }
    message = errors_of(data)
    assert "sources[0]: set only one of branch, tag or commit" in message


def test_duplicate_app_names() -> None:
    data = {**MINIMAL, "apps": MINIMAL["apps"] * 2}
    assert "apps[1].name: duplicate app name 'a'" in errors_of(data)


def test_app_path_must_stay_inside_the_repository() -> None:
    data = {**MINIMAL, "apps": [{"name": "a", "source": "s", "cluster": "c", "path": "../x"}]}
    assert "apps[0].path: must be a path inside the repository" in errors_of(data)


def test_ignore_pointer_must_be_a_json_pointer() -> None:
    app = {"name": "a", "source": "s", "cluster": "c", "ignore": [{"pointers": ["desiredCount"]}]}
    assert "apps[0].ignore[0].pointers" in errors_of({**MINIMAL, "apps": [app]})


@pytest.mark.parametrize(
    ("text", "seconds"), [(30, 30.0), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("250ms", 0.25)]
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_bad_duration_names_the_key() -> None:
    message = errors_of({**MINIMAL, "daemon": {"interval": "soon"}})
    assert "daemon.interval: 'soon' is not a duration" in message


def test_unreadable_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[aws\nregion = 1\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_config(bad)


def test_source_ref_forms() -> None:
    cfg = parse_config(
        {
            "sources": [
                {"name": "a", "url": "u"},
                {"name": "b", "url": "u", "tag": "v1"},
                {"name": "c", "url": "u", "commit": "abc1234"},
            ]
        }
    )
    assert [s.ref for s in cfg.sources] == ["refs/heads/main", "refs/tags/v1", "abc1234"]
