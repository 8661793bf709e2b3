"""Fuzzing the configuration: any TOML document gives a config or a ConfigError naming the key.

Three sources of input: arbitrary tables (TOML's value types, keys that exist and
keys that do not), the shipped configurations with one value replaced, removed or
added at any key path, and raw bytes read by :func:`load_config`. Nothing may
escape as another exception: a bad value is reported at load time, naming its
key path, before any Git or AWS call.
"""

from __future__ import annotations

import datetime
import re
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import tomli_w
from hypothesis import example, given
from hypothesis import strategies as st

from gitopsd.config import Config, load_config, parse_config
from gitopsd.errors import ConfigError

from .support import FUZZ, time_limit

ROOT = Path(__file__).parents[2]
SHIPPED = {
    name: tomllib.loads((ROOT / "config" / name).read_text())
    for name in ("example.toml", "reference.toml")
}

#: Words a config might use: real keys in the wrong place find the cross-checks.
_WORDS = st.sampled_from(
    [
        "name",
        "source",
        "sources",
        "apps",
        "cluster",
        "path",
        "overlays",
        "url",
        "branch",
        "tag",
        "commit",
        "auth",
        "token_env",
        "vars",
        "secret_vars",
        "vars_from_env",
        "depends_on",
        "sync",
        "mode",
        "timeout",
        "interval",
        "state_dir",
        "webhooks",
        "kind",
        "secret_env",
        "plugins",
        "enabled",
        "max_file_size",
        "address",
        "..",
        "",
        "a\x00b",
    ]
)

_SCALARS = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | _WORDS
    | st.sampled_from(["30s", "5m", "1MiB", "-1", "0", "1e400", "../x", "/abs", "s", "a", "auto"])
    | st.datetimes(timezones=st.none() | st.just(datetime.UTC))
    | st.dates()
    | st.times()
)
TOML_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_WORDS, inner, max_size=4),
    max_leaves=12,
)
_TABLES = st.dictionaries(
    st.sampled_from(["aws", "daemon", "manifests", "http", "telemetry", "log", "state", "plugins"])
    | st.sampled_from(["sources", "apps"])
    | _WORDS,
    TOML_VALUES,
    max_size=5,
)

Path_ = tuple[str | int, ...]


def _paths(value: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every key path in ``value``, tables and lists included."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _paths(item, (*prefix, i))
    return found


def _show(path: Path_) -> str:
    """As messages name a key path: ``apps[0].sync.timeout``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _check(data: dict[str, Any]) -> ConfigError | Config:
    with time_limit():
        try:
            return parse_config(data, "gitopsd.toml")
        except ConfigError as exc:
            error = exc
    lines = str(error).split("\n")  # values may hold other line breaks (NEL, U+2028)
    assert lines[0] == "gitopsd.toml: invalid configuration", lines
    for line in lines[1:]:
        assert line.startswith("  "), lines
        assert line.strip(), lines
    return error


def _load(file: Path) -> None:
    """:func:`load_config` on ``file`` gives a config or a ConfigError naming the file."""
    with time_limit():
        try:
            load_config(file)
        except ConfigError as exc:
            message = str(exc)
        else:
            return
    assert message.startswith(f"{file}: "), message


@FUZZ
@given(data=_TABLES)
@example(data={"apps": [{"name": "a", "source": "s", "cluster": "c", "path": "a\x00b"}]})
@example(data={"aws": "\x85"})
def test_any_tables_give_a_config_or_a_config_error(data: dict[str, Any]) -> None:
    _check(data)


@st.composite
def _mutations(draw: st.DrawFn) -> tuple[dict[str, Any], Path_, str, Any]:
    """A shipped configuration, one key path in it, what is done there, and the new value."""
    base = draw(st.sampled_from(sorted(SHIPPED)))
    data = tomllib.loads(tomli_w.dumps(SHIPPED[base]))  # a deep copy
    path = draw(st.sampled_from(_paths(data)))
    action = draw(st.sampled_from(["replace", "remove", "add"]))
    value = draw(TOML_VALUES)
    return data, path, action, value


@FUZZ
@given(mutation=_mutations())
@example(mutation=({"daemon": {"state_dir": "x"}}, ("daemon", "state_dir"), "replace", "a\x00b"))
def test_a_wrong_value_at_any_key_is_named(
    mutation: tuple[dict[str, Any], Path_, str, Any],
) -> None:
    """Replace, remove or add a value at one key path of a shipped config.

    When the value's type changed and the config is refused, the message names the
    key (or a table around it, or a key inside the new value).
    """
    data, path, action, value = mutation
    *parents, last = path
    holder: Any = data
    for part in parents:
        holder = holder[part]
    old = holder[last]
    if action == "remove":
        del holder[last]
    elif action == "add" and isinstance(old, dict):
        old[f"unknown_{len(old)}"] = value
    else:
        holder[last] = value
    result = _check(data)
    with tempfile.TemporaryDirectory() as tmp:  # the same through the file: relative paths
        file = Path(tmp) / "gitopsd.toml"
        file.write_text(tomli_w.dumps(data))
        _load(file)
    if isinstance(result, Config) or action != "replace" or _toml_type(old) == _toml_type(value):
        return
    shown = _show(path)
    named = [
        key
        for line in str(result).split("\n")[1:]
        if (key := re.split(r":\s", line.strip(), maxsplit=1)[0])
    ]
    assert any(shown.startswith(k) or k.startswith(shown) for k in named), (shown, named)


@FUZZ
@given(
    text=st.lists(
        st.sampled_from(
            [
                "[daemon]\n",
                "[[apps]]\n",
                "[[sources]]\n",
                "[http]\n",
                "[plugins.x]\n",
                'name = "a"\n',
                'source = "s"\n',
                'cluster = "c"\n',
                'url = "git://h/r"\n',
                'state_dir = "st"\n',
                'state_dir = "a\\u0000b"\n',
                'path = "../x"\n',
                'overlays = ["../x", "/etc"]\n',
                "interval = 1e400\n",
                "interval = nan\n",
                "max_file_size = -1\n",
                "x = 1979-05-27T07:32:00Z\n",
                "= 1\n",
                "[",
                "]",
                '"',
                "\n",
                "\x00",
                "\ufeff",
                "é",
            ]
        )
        | st.text(max_size=10),
        max_size=25,
    ).map("".join),
    junk=st.binary(max_size=40),
)
def test_any_file_gives_a_config_or_a_config_error(text: str, junk: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "gitopsd.toml"
        file.write_bytes(text.encode("utf-8", "surrogatepass") + junk)
        _load(file)
