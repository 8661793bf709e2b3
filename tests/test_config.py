"""Config loading: every error names the key path and what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gitopsd.config import (
    DEFAULT_MAX_FILE_SIZE,
    _message,
    format_size,
    load_config,
    parse_config,
    parse_duration,
    parse_size,
)
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
    assert "aws.regoin: unknown key; did you mean 'region'?" in errors_of(data)


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (
            {"apps": [{**MINIMAL["apps"][0], "clustr": "c"}]},
            "apps[0].clustr: unknown key; did you mean 'cluster'?",
        ),
        ({"manifest": {}}, "manifest: unknown key; did you mean 'manifests'?"),
        (
            {"sources": [{**MINIMAL["sources"][0], "auth": {"tokn_env": "T"}}]},
            "sources[0].auth.tokn_env: unknown key; did you mean 'token_env'?",
        ),
        (
            {"apps": [{**MINIMAL["apps"][0], "sync": {"self-heal": True}}]},
            "apps[0].sync.self-heal: unknown key; did you mean 'self_heal'?",
        ),
        (
            {"apps": [{**MINIMAL["apps"][0], "ignore": [{"pointers": [], "pointer": []}]}]},
            "apps[0].ignore[0].pointer: unknown key; did you mean 'pointers'?",
        ),
        (
            {"daemon": {"zzz": 1}},
            "daemon.zzz: unknown key (known keys: interval, state_dir, "
            "rollout_poll_interval, lock_timeout, jitter, max_parallel_apps, backoff_min, "
            "backoff_max, grace_period)",
        ),
    ],
    ids=["app", "top-level", "auth", "dash", "ignore", "no-close-match"],
)
def test_unknown_key_suggests_the_closest_key_of_its_table(data: dict[str, Any], line: str) -> None:
    assert f"\n  {line}" in errors_of({**MINIMAL, **data})


def app_with(**keys: Any) -> dict[str, Any]:
    return {**MINIMAL, "apps": [{**MINIMAL["apps"][0], **keys}]}


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (
            {"aws": {"max_attempts": "six"}},
            'aws.max_attempts: expected an integer, got "six" (a string)',
        ),
        (
            {"aws": {"max_attempts": 1.5}},
            "aws.max_attempts: expected an integer, got 1.5 (a number)",
        ),
        ({"aws": {"max_attempts": 0}}, "aws.max_attempts: must be at least 1, got 0 (an integer)"),
        (
            {"aws": {"max_concurrency": 100}},
            "aws.max_concurrency: must be at most 64, got 100 (an integer)",
        ),
        ({"aws": {"region": 5}}, "aws.region: expected a string, got 5 (an integer)"),
        ({"aws": "eu-west-1"}, 'aws: expected a table, got "eu-west-1" (a string)'),
        ({"sources": {"name": "s"}}, "sources: expected a list, got a table"),
        (
            app_with(name="my app"),
            "apps[0].name: must be letters, digits, '-', '_' or '.' "
            '(up to 63 characters, the first a letter or digit), got "my app" (a string)',
        ),
        (
            {"sources": [{"name": "s", "url": "u", "commit": "HEAD"}]},
            "sources[0].commit: must be a commit id: 7 to 40 lowercase hexadecimal digits, "
            'got "HEAD" (a string)',
        ),
        (app_with(vars={"TAG": 1}), "apps[0].vars.TAG: expected a string, got 1 (an integer)"),
        (app_with(overlays="prod"), 'apps[0].overlays: expected a list, got "prod" (a string)'),
        (app_with(ignore=["/x"]), 'apps[0].ignore[0]: expected a table, got "/x" (a string)'),
        (
            app_with(sync={"wait": "maybe"}),
            'apps[0].sync.wait: expected a boolean (true or false), got "maybe" (a string)',
        ),
        (
            app_with(sync={"timeout": True}),
            'apps[0].sync.timeout: expected a duration such as 30 (seconds), "30s", "5m", '
            '"1h" or "250ms", got true (a boolean)',
        ),
        (
            {"daemon": {"state_dir": 5}},
            "daemon.state_dir: expected a path (a string), got 5 (an integer)",
        ),
        (
            {"daemon": {"lock_timeout": -1}},
            "daemon.lock_timeout: must be greater than zero, got -1 (an integer)",
        ),
        (
            {"sources": [{"name": "s", "url": "u", "allow_history_rewrite": "never"}]},
            "sources[0].allow_history_rewrite: expected a boolean (true or false), "
            'got "never" (a string)',
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None,
)
def test_type_and_value_errors_are_plain_words(data: dict[str, Any], line: str) -> None:
    message = errors_of({**MINIMAL, **data})
    assert f"\n  {line}" in message
    assert "Input should be" not in message
    assert "Value error" not in message


def test_an_error_type_without_its_own_wording_still_avoids_pydantics_phrasing() -> None:
    error = {"type": "url_parsing", "loc": ("x",), "msg": "Input should be a valid URL", "input": 1}
    assert _message(error) == "must be a valid URL, got 1 (an integer)"  # type: ignore[arg-type]


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
    assert (
        'daemon.interval: expected a duration such as 30 (seconds), "30s", "5m", "1h" or '
        '"250ms", got "soon" (a string)'
    ) in message


def test_manifests_section_defaults_to_one_mebibyte() -> None:
    cfg = parse_config(MINIMAL)
    assert cfg.manifests.max_file_size == DEFAULT_MAX_FILE_SIZE == 1024 * 1024


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (4096, 4096),
        ("4096", 4096),
        ("100B", 100),
        ("512KiB", 512 * 1024),
        ("512 kib", 512 * 1024),
        ("512kB", 512_000),
        ("512KB", 512_000),
        ("1MiB", 1024**2),
        ("1.5MiB", 1536 * 1024),
        ("2MB", 2_000_000),
        ("1GiB", 1024**3),
        ("1GB", 1_000_000_000),
    ],
)
def test_max_file_size_takes_bytes_or_a_unit(value: object, size: int) -> None:
    assert parse_size(value) == size
    cfg = parse_config({**MINIMAL, "manifests": {"max_file_size": value}})
    assert cfg.manifests.max_file_size == size


@pytest.mark.parametrize(
    ("value", "line"),
    [
        (
            "1 XB",
            'manifests.max_file_size: expected a size such as 1048576 (bytes), "512KiB", '
            '"1MiB" or "2MB", got "1 XB" (a string) '
            "(1 KiB = 1024 bytes, 1 kB = 1000 bytes; likewise MiB, GiB and MB, GB)",
        ),
        (
            True,
            'manifests.max_file_size: expected a size such as 1048576 (bytes), "512KiB", '
            '"1MiB" or "2MB", got true (a boolean)',
        ),
        (0, "manifests.max_file_size: must be greater than zero, got 0 (an integer)"),
        ("0KiB", 'manifests.max_file_size: must be greater than zero, got "0KiB" (a string)'),
    ],
)
def test_bad_max_file_size_is_explained(value: object, line: str) -> None:
    assert f"\n  {line}" in errors_of({**MINIMAL, "manifests": {"max_file_size": value}})


@pytest.mark.parametrize(
    ("size", "text"),
    [(1, "1 byte"), (1000, "1000 bytes"), (1024, "1 KiB"), (1536, "1.5 KiB"), (1024**2, "1 MiB")],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


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


def test_the_example_in_docs_config_md_is_what_gitopsd_prints() -> None:
    text = (ROOT / "docs" / "config.md").read_text()
    documented = text.split("```\n", 2)[1].rstrip("\n")
    data: dict[str, Any] = {
        "aws": {"max_attempts": "six", "max_concurrency": 100},
        "manifests": {"max_file_size": "1 XB"},
        "sources": [{"name": "s", "url": "u", "branch": "main", "tag": "v1"}],
        "apps": [
            {"name": "my app", "source": "s", "clustr": "c", "cluster": "c"},
            {"name": "b", "source": "s", "cluster": "c"},
            {"name": "c", "source": "s"},
        ],
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data, "gitopsd.toml")
    assert str(info.value) == documented
