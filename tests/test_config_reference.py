"""config/reference.toml and docs/config.md are generated from the typed config and never drift."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitopsd import config_reference as ref
from gitopsd.alerts import ChannelOptions, parse_channel_options
from gitopsd.config import (
    AwsConfig,
    DaemonConfig,
    HttpConfig,
    LogConfig,
    ManifestsConfig,
    StateConfig,
    SyncPolicy,
    TelemetryConfig,
    _Strict,
    load_config,
    parse_duration,
    parse_size,
)

ROOT = Path(__file__).resolve().parent.parent
#: A key's line in the reference, set or commented out.
KEY_LINE = re.compile(r"^(# )?[a-z_]+ = ")


def test_every_field_has_a_description() -> None:
    missing = ref.undocumented()
    assert missing == [], (
        "fields without a one-line docstring after them in gitopsd/config.py: " + ", ".join(missing)
    )


def test_a_field_without_a_docstring_is_found() -> None:
    class Sample(_Strict):
        documented: int = 1
        """Says what it is."""
        bare: int = 2

    assert ref.undocumented(Sample, "sample") == ["sample.bare"]


def test_generated_files_are_up_to_date() -> None:
    diff = ref.drift(ROOT)
    assert diff == "", (
        f"config/reference.toml or docs/config.md differ from the typed config; run "
        f"`{ref.COMMAND}` (python -m gitopsd.config_reference --write):\n{diff}"
    )


def test_reference_is_a_valid_configuration_showing_every_default() -> None:
    path = ROOT / ref.REFERENCE
    tomllib.loads(path.read_text())
    cfg = load_config(path)
    # Every table that is not an example entry holds exactly the defaults: durations,
    # sizes and paths are spelt so that they read back as the same values.
    assert cfg.aws == AwsConfig()
    assert cfg.daemon == DaemonConfig()
    assert cfg.manifests == ManifestsConfig()
    assert cfg.http.model_copy(update={"webhooks": []}) == HttpConfig()
    assert cfg.telemetry == TelemetryConfig()
    assert cfg.log == LogConfig()
    assert cfg.state == StateConfig()
    assert cfg.apps[0].sync == SyncPolicy()
    assert cfg.plugins == {}


def test_reference_names_every_key_with_its_explanation() -> None:
    text = (ROOT / ref.REFERENCE).read_text()
    lines = text.splitlines()
    for table in ref.walk().walk():
        if not table.path or table.open:
            continue
        header = f"[[{table.path}]]" if table.array else f"[{table.path}]"
        start = next(i for i, line in enumerate(lines) if line.startswith(header))
        section = lines[start + 1 :]
        for key in table.keys:
            at = next(
                i
                for i, line in enumerate(section)
                if line.startswith((f"{key.name} = ", f"# {key.name} = "))
            )
            above = at
            while section[above - 1].startswith("# ") and not KEY_LINE.match(section[above - 1]):
                above -= 1
            comment = " ".join(c.removeprefix("# ") for c in section[above:at])
            assert key.doc in comment, f"{table.path}.{key.name}: its explanation is not above it"
            active = key.required or key.default is not None or key.path in ref.SET_IN_EXAMPLE
            assert section[at].startswith("# ") != active, f"{table.path}.{key.name}"


def test_reference_lists_the_first_party_plugins_and_the_common_notifier_options() -> None:
    text = (ROOT / ref.REFERENCE).read_text()
    for plugin in ("console", "webhook", "slack", "sns"):
        assert f"# [plugins.{plugin}]" in text
    for option in ChannelOptions.KEYS:
        assert f"# {option} = " in text


def test_channel_options_table_matches_the_notifier_defaults() -> None:
    assert set(ref.CHANNEL_OPTIONS) == set(ChannelOptions.KEYS)
    parsed, _ = parse_channel_options(
        {k: default for k, (default, _) in ref.CHANNEL_OPTIONS.items()}
    )
    assert parsed == parse_channel_options({})[0]


@given(st.integers(min_value=1, max_value=10**9))
def test_durations_read_back(millis: int) -> None:
    seconds = millis / 1000
    assert parse_duration(ref.format_duration(seconds)) == pytest.approx(seconds)


@given(st.integers(min_value=1, max_value=2**40))
def test_sizes_read_back(size: int) -> None:
    assert parse_size(ref.format_size(size)) == size


def test_a_table_without_a_block_in_the_docs_is_named() -> None:
    text = (ROOT / ref.DOCS).read_text()
    text = text.replace("<!-- BEGIN GENERATED state -->\n", "").replace(
        "<!-- END GENERATED state -->", ""
    )
    with pytest.raises(ref.DocsLayoutError, match=r"no block for \[state\].*make config-reference"):
        ref.render_docs(text)


def test_check_prints_the_diff_and_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for rel in (ref.REFERENCE, ref.DOCS):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    assert ref.main(["--check", "--root", str(tmp_path)]) == 0
    stale = (
        (tmp_path / ref.REFERENCE).read_text().replace('call_timeout = "30s"', "call_timeout = 5")
    )
    (tmp_path / ref.REFERENCE).write_text(stale)
    assert ref.main(["--check", "--root", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert '-call_timeout = 5\n+call_timeout = "30s"' in out
    assert "make config-reference" in err
    assert ref.main(["--write", "--root", str(tmp_path)]) == 0
    assert ref.drift(tmp_path) == ""
