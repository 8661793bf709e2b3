"""config/reference.toml and the key tables of docs/config.md, generated from the typed config.

Why: a hand-written reference drifts from the code the day a key is added. Every
field of the models in :mod:`gitopsd.config` carries a one-line docstring (its
pydantic description); this module walks the models and writes
``config/reference.toml`` (every table and key, its default as TOML, the
explanation as a comment; keys without a default commented out, required keys
with an example value) and the tables between the ``<!-- BEGIN GENERATED name -->``
/ ``<!-- END GENERATED name -->`` markers of ``docs/config.md``. The reference is
itself a valid configuration: ``gitopsd config check config/reference.toml``
passes. ``tests/test_config_reference.py`` fails when the files drift.

Regenerate with ``make config-reference`` (``python -m gitopsd.config_reference
--write``); ``--check`` prints the difference and exits 1.

:func:`to_document` is also what ``gitopsd config show`` prints: a configuration
as plain TOML/JSON data, durations and sizes spelt as a user writes them.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.metadata
import json
import re
import sys
import textwrap
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator
from pydantic.fields import FieldInfo

from gitopsd.config import Config, parse_duration, parse_size

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = Path("config/reference.toml")
DOCS = Path("docs/config.md")
COMMAND = "make config-reference"
WIDTH = 100

#: Example values of keys that have no default (required ones, and optional ones shown
#: commented out), by key path without indices. A key missing here gets a placeholder.
EXAMPLES: dict[str, Any] = {
    "aws.region": "eu-west-1",
    "aws.profile": "deploy",
    "aws.endpoint_url": "http://127.0.0.1:4566",
    "http.control_token_env": "GITOPSD_CONTROL_TOKEN",
    "http.control_token_file": "/etc/gitopsd/control-token",
    "http.webhooks.name": "github",
    "http.webhooks.kind": "github",
    "http.webhooks.secret_env": "GITOPSD_WEBHOOK_SECRET",
    "http.webhooks.secret_file": "/etc/gitopsd/webhook-secret",
    "http.webhooks.sources": ["platform"],
    "telemetry.traces_exporter": ["otlp"],
    "telemetry.metrics_exporter": ["otlp"],
    "telemetry.endpoint": "http://otel-collector:4318",
    "telemetry.headers_env": "OTLP_HEADERS",
    "log.level": "info",
    "log.format": "json",
    "state.table": "gitopsd-state",
    "state.region": "eu-west-1",
    "sources.name": "platform",
    "sources.url": "https://git.example.com/platform/deploy.git",
    "sources.branch": "main",
    "sources.tag": "v1.2.3",
    "sources.commit": "0123abc",
    "sources.interval": 60.0,
    "sources.auth.token_env": "GIT_TOKEN",
    "sources.auth.token_file": "/etc/gitopsd/git-token",
    "sources.auth.username": "deploy",
    "sources.auth.password_env": "GIT_PASSWORD",
    "sources.auth.password_file": "/etc/gitopsd/git-password",
    "sources.auth.ssh_key_file": "/etc/gitopsd/deploy_key",
    "sources.verify.keys": ["/etc/gitopsd/signers/alice.asc"],
    "sources.verify.allowed_signers": "/etc/gitopsd/allowed_signers",
    "sources.verify.revoked_keys": "/etc/gitopsd/revoked_keys",
    "sources.auth.known_hosts_file": "/etc/gitopsd/known_hosts",
    "apps.name": "web",
    "apps.source": "platform",
    "apps.cluster": "prod",
    "apps.region": "eu-west-1",
    "apps.interval": 60.0,
    "apps.gates.name": "errors",
    "apps.gates.services": ["web"],
    "apps.gates.cloudwatch.queries": [
        {
            "Id": "errors",
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/ApplicationELB",
                    "MetricName": "HTTPCode_Target_5XX_Count",
                    "Dimensions": [{"Name": "TargetGroup", "Value": "targetgroup/web/0123abcd"}],
                },
                "Stat": "Sum",
            },
        }
    ],
    "apps.gates.cloudwatch.threshold": 5.0,
    "apps.gates.cloudwatch.comparison": "GreaterThanThreshold",
    "apps.ignore.kind": "Service",
    "apps.ignore.name": "web",
    "apps.ignore.pointers": ["/loadBalancers"],
    "policy.clusters": ["staging-*", "prod-*"],
    "policy.regions": ["eu-*"],
    "policy.accounts": ["111122223333"],
    "policy.task_roles": ["arn:aws:iam::*:role/app-*"],
    "policy.execution_roles": ["arn:aws:iam::*:role/ecsTaskExecution*"],
    "policy.privileged": False,
    "policy.host_network": False,
    "policy.host_pid": False,
    "policy.capabilities": ["NET_BIND_SERVICE"],
    "policy.plaintext_secrets": "warn",
    "policy.secret_env_names": ["*PASSWORD*", "*_DSN"],
    "policy.check_secret_refs": True,
    "apps.policy.clusters": ["prod-web"],
    "apps.policy.regions": ["eu-west-1"],
    "apps.policy.accounts": ["111122223333"],
    "apps.policy.task_roles": ["arn:aws:iam::*:role/app-web"],
    "apps.policy.execution_roles": ["arn:aws:iam::*:role/ecsTaskExecutionRole"],
    "apps.policy.privileged": False,
    "apps.policy.host_network": False,
    "apps.policy.host_pid": False,
    "apps.policy.capabilities": [],
    "apps.policy.plaintext_secrets": "refuse",
    "apps.policy.secret_env_names": ["*_DSN"],
    "apps.policy.check_secret_refs": True,
    "apps.aws.role_arn": "arn:aws:iam::111122223333:role/gitopsd-deployer",
    "apps.aws.external_id": "gitopsd",
    "apps.aws.session_name": "gitopsd-web",
}

#: Keys without a default that the reference sets (not commented out), so that it is a
#: valid configuration: a webhook needs one of its secret keys.
SET_IN_EXAMPLE = frozenset({"http.webhooks.secret_env", "sources.verify.keys"})

#: The options every notifier plugin takes (:class:`gitopsd.alerts.ChannelOptions`), with
#: the defaults :func:`gitopsd.alerts.parse_channel_options` applies and what they do.
#: The test checks that this covers ``ChannelOptions.KEYS`` exactly.
CHANNEL_OPTIONS: dict[str, tuple[Any, str]] = {
    "min_severity": ("info", "The least severe event sent: info, warning or error."),
    "apps": ([], "Only events of these apps (shell patterns); empty: every app."),
    "exclude_apps": ([], "Never events of these apps (shell patterns)."),
    "kinds": (
        [],
        "Only these event kinds (shell patterns); empty: every kind but reconcile_started, "
        "reconcile_finished, condition_changed and rollout_progressed.",
    ),
    "exclude_kinds": ([], "Never these event kinds (shell patterns)."),
    "dedup_window": ("1h", 'An identical alert within this window is suppressed ("0s": never).'),
    "retries": (4, "Retries of a failed delivery (0 to 100)."),
    "retry_backoff_min": ("1s", "The first retry delay; it doubles, with jitter."),
    "retry_backoff_max": ("1m", "The longest retry delay."),
    "timeout": ("10s", "Timeout of one delivery attempt."),
    "queue": (1000, "Alerts queued for this notifier; when full the oldest is dropped."),
}

Kind = Literal["duration", "size", "plain"]


# --- walking the models ----------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """One key of a table, as the reference shows it."""

    name: str
    #: The key path without indices (``apps.sync.mode``), as :data:`EXAMPLES` names it.
    path: str
    doc: str
    kind: Kind
    annotation: Any
    required: bool
    #: The default (unset when ``required``); None when the key has no default.
    default: Any = None


@dataclass
class Table:
    """A table (``[aws]``) or an array of tables (``[[apps]]``) and what it holds."""

    path: str
    array: bool
    doc: str
    keys: list[Key] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    #: ``[plugins]``: a table of tables that the plugins validate.
    open: bool = False

    def walk(self) -> list[Table]:
        """This table and every table below it, in file order."""
        return [self, *(t for sub in self.tables for t in sub.walk())]


def _strip_type(tp: Any) -> tuple[Any, list[Any]]:
    """The type under ``Annotated`` and ``X | None``, and the metadata collected on the way."""
    metadata: list[Any] = []
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp, *extra = typing.get_args(tp)
            metadata += extra
        elif origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(options) != 1:
                return tp, metadata
            tp = options[0]
        else:
            return tp, metadata


def _kind(info: FieldInfo) -> Kind:
    """Whether a field holds a duration, a size or a plain value."""
    _, metadata = _strip_type(info.annotation)
    for item in [*info.metadata, *metadata]:
        if isinstance(item, BeforeValidator):
            if item.func is parse_duration:
                return "duration"
            if item.func is parse_size:
                return "size"
    return "plain"


def _model_of(tp: Any) -> tuple[type[BaseModel] | None, bool]:
    """``(Model, is_array)`` when ``tp`` is a model or a list of models, else ``(None, False)``."""
    tp, _ = _strip_type(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp, False
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp) or (None,)
        item, _ = _strip_type(item)
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item, True
    return None, False


def _is_open_table(tp: Any) -> bool:
    """``dict[str, dict[str, Any]]``: tables whose keys the model does not know (plugins)."""
    tp, _ = _strip_type(tp)
    if typing.get_origin(tp) is not dict:
        return False
    _, value = typing.get_args(tp)
    return typing.get_origin(_strip_type(value)[0]) is dict


def one_line(text: str | None) -> str:
    """A docstring as one line of plain text (reST ````x```` becomes ```x```)."""
    return " ".join((text or "").split()).replace("``", "`")


def walk(model: type[BaseModel] = Config, path: str = "", array: bool = False) -> Table:
    """The tables and keys of ``model`` (default: the whole configuration)."""
    table = Table(path, array, one_line(model.__doc__))
    for name, info in model.model_fields.items():
        key_path = f"{path}.{name}" if path else name
        sub, is_array = _model_of(info.annotation)
        if sub is not None:
            child = walk(sub, key_path, is_array)
            child.doc = one_line(sub.__doc__) or one_line(info.description)
            table.tables.append(child)
            continue
        if _is_open_table(info.annotation):
            table.tables.append(Table(key_path, False, one_line(info.description), open=True))
            continue
        required = info.is_required()
        table.keys.append(
            Key(
                name=name,
                path=key_path,
                doc=one_line(info.description),
                kind=_kind(info),
                annotation=info.annotation,
                required=required,
                default=None if required else info.get_default(call_default_factory=True),
            )
        )
    return table


def undocumented(model: type[BaseModel] = Config, path: str = "") -> list[str]:
    """Key paths of fields without a description (a docstring after the field)."""
    missing = []
    for name, info in model.model_fields.items():
        key_path = f"{path}.{name}" if path else name
        if not one_line(info.description):
            missing.append(key_path)
        sub, _ = _model_of(info.annotation)
        if sub is not None:
            missing += undocumented(sub, key_path)
    return missing


# --- values as TOML ------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    """``"30s"``, ``"10m"``, ``"24h"``, ``"250ms"``: what :func:`parse_duration` reads back."""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    millis = seconds * 1000
    if millis == int(millis):
        return f"{int(millis)}ms"
    return f"{seconds}s"


def format_size(size: int) -> str:
    """``"1MiB"``, ``"512KiB"``, or a number of bytes: what :func:`parse_size` reads back."""
    for unit, name in ((1024**3, "GiB"), (1024**2, "MiB"), (1024, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit}{name}"
    return f"{size}B"


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_value(value: Any) -> str:
    """``value`` as an inline TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        items = ", ".join(
            f"{k if _BARE_KEY.match(k) else json.dumps(k)} = {toml_value(v)}"
            for k, v in value.items()
        )
        return "{ " + items + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML spelling for {type(value).__name__}")


def plain_value(value: Any, kind: Kind = "plain") -> Any:
    """``value`` as TOML/JSON data: durations and sizes spelt as a user writes them."""
    if value is None:
        return None
    if kind == "duration" and isinstance(value, int | float):
        return format_duration(float(value))
    if kind == "size" and isinstance(value, int):
        return format_size(value)
    if isinstance(value, BaseModel):
        return to_document(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): plain_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_value(v) for v in value]
    return value


def to_document(model: BaseModel) -> dict[str, Any]:
    """A configuration (or part of one) as plain data, every key present (None: unset)."""
    return {
        name: plain_value(getattr(model, name), _kind(info))
        for name, info in type(model).model_fields.items()
    }


def _placeholder(key: Key) -> Any:
    """A value of the right type for a key without a default and without an example."""
    if key.kind == "duration":
        return 60.0
    if key.kind == "size":
        return 1024 * 1024
    tp, _ = _strip_type(key.annotation)
    origin = typing.get_origin(tp)
    if origin is Literal:
        return typing.get_args(tp)[0]
    if origin is list:
        return []
    if origin is dict:
        return {}
    if tp is bool:
        return False
    if tp is int:
        return 1
    if tp is float:
        return 1.0
    if tp is Path:
        return "/path/to/file"
    return "..."


def _shown(key: Key) -> tuple[str, bool]:
    """The value shown for ``key`` as TOML, and whether the line is commented out."""
    if key.required or key.default is None:
        value = EXAMPLES.get(key.path, _placeholder(key))
        active = key.required or key.path in SET_IN_EXAMPLE
    else:
        value, active = key.default, True
    return toml_value(plain_value(value, key.kind)), active


# --- config/reference.toml -------------------------------------------------------------


_CODE = re.compile(r"`[^`]*`")
_KEEP = "\x00"  # a space inside `code`, kept while wrapping


def _comment(text: str) -> list[str]:
    """``text`` as comment lines of at most :data:`WIDTH` characters, never breaking `code`."""
    text = _CODE.sub(lambda m: m[0].replace(" ", _KEEP), text)
    lines = textwrap.wrap(
        text,
        WIDTH,
        initial_indent="# ",
        subsequent_indent="# ",
        break_on_hyphens=False,
        break_long_words=False,
    )
    return [line.replace(_KEEP, " ") for line in lines]


@dataclass(frozen=True)
class PluginOptions:
    """A first-party plugin found through its entry point, and the options it declares."""

    name: str
    distribution: str
    #: Option name -> description (``OPTION_DOCS`` of the plugin's module), or names only.
    options: dict[str, str]


def first_party_plugins() -> list[PluginOptions]:
    """The installed plugins of gitopsd's own distributions (``gitopsd``, ``gitopsd-*``)."""
    from gitopsd.plugins import PLUGINS_GROUP

    found = []
    for ep in importlib.metadata.entry_points(group=PLUGINS_GROUP):
        dist = ep.dist.name if ep.dist is not None else ""
        if dist != "gitopsd" and not dist.startswith("gitopsd-"):
            continue
        try:
            module = ep.load()
        except Exception:  # a broken plugin: listed without options
            module = None
        docs = getattr(module, "OPTION_DOCS", None)
        names = getattr(module, "OPTIONS", ())
        if isinstance(docs, Mapping):
            options = {str(k): one_line(str(v)) for k, v in docs.items()}
        else:
            options = {str(n): "" for n in names}
        found.append(PluginOptions(ep.name, dist, options))
    return sorted(found, key=lambda p: p.name)


def _plugins_toml(table: Table) -> list[str]:
    lines = [*_comment(table.doc), ""]
    lines += _comment(
        "Every notifier plugin also takes these options (shown with their defaults; "
        "the console notifier's min_severity is warning). See docs/plugins.md."
    )
    for name, (default, doc) in CHANNEL_OPTIONS.items():
        lines += _comment(doc)
        lines.append(f"# {name} = {toml_value(default)}")
    for plugin in first_party_plugins():
        lines += ["", f"# The {plugin.name} plugin ({plugin.distribution}): see docs/plugins.md."]
        if plugin.options and not any(plugin.options.values()):
            lines += _comment(f"Its own options: {', '.join(plugin.options)}.")
        lines.append(f"# [{table.path}.{plugin.name}]")
        lines.append("# enabled = true")
        for option, doc in plugin.options.items():
            if doc:
                lines += _comment(doc)
                lines.append(f"# {option} = ...")
    return lines


def _table_toml(table: Table) -> list[str]:
    if table.open:
        return ["", *_plugins_toml(table)]
    lines = [""]
    if table.path:
        lines += _comment(table.doc)
        header = f"[[{table.path}]]" if table.array else f"[{table.path}]"
        example = " (one example entry)" if table.array else ""
        lines.append(header + (f"  # an array of tables{example}" if table.array else ""))
    for key in table.keys:
        value, active = _shown(key)
        doc = ("Required. " if key.required else "") + key.doc
        lines += _comment(doc)
        lines.append(f"{'' if active else '# '}{key.name} = {value}")
    for sub in table.tables:
        lines += _table_toml(sub)
    return lines


def render_reference() -> str:
    """The text of ``config/reference.toml``."""
    head = [
        "# gitopsd reference configuration: every key, its default and what it does.",
        f"# Generated from gitopsd/config.py by `{COMMAND}`: do not edit by hand.",
        "# A commented-out key has no default; a required key shows an example value.",
        '# Durations: 30 (seconds), "30s", "5m", "1h", "250ms". Sizes: 1048576 (bytes),',
        '# "512KiB", "1MiB", "2MB". See docs/config.md.',
    ]
    body = _table_toml(walk())
    return "\n".join(head + body[1:] if body and body[0] == "" else head + body).rstrip() + "\n"


# --- docs/config.md --------------------------------------------------------------------

BLOCK = re.compile(
    r"(?P<begin><!-- BEGIN GENERATED (?P<name>[\w.]+) -->\n)(?P<body>.*?)"
    r"(?P<end><!-- END GENERATED (?P=name) -->)",
    re.DOTALL,
)


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _md_table(table: Table) -> str:
    if table.open:
        rows = [
            f"| `{name}` | `{toml_value(default)}` | {_md(doc)} |"
            for name, (default, doc) in CHANNEL_OPTIONS.items()
        ]
        plugins = ", ".join(
            f"`{p.name}` ({p.distribution})" + (f": {', '.join(p.options)}" if p.options else "")
            for p in first_party_plugins()
        )
        return (
            "Options every notifier plugin takes, besides its own:\n\n"
            "| key | default | meaning |\n|---|---|---|\n"
            + "\n".join(rows)
            + f"\n\nFirst-party plugins and their own options: {plugins or 'none installed'}.\n"
        )
    rows = []
    for key in table.keys:
        if key.required:
            default = "required"
        elif key.default is None:
            default = "unset"
        else:
            default = f"`{toml_value(plain_value(key.default, key.kind))}`"
        rows.append(f"| `{key.name}` | {_md(default)} | {_md(key.doc)} |")
    return "| key | default | meaning |\n|---|---|---|\n" + "\n".join(rows) + "\n"


def doc_tables() -> dict[str, str]:
    """Each generated block of docs/config.md, by table path (``aws``, ``apps.sync``)."""
    return {t.path: _md_table(t) for t in walk().walk() if t.path}


class DocsLayoutError(Exception):
    """docs/config.md lacks a block for a table, or has one for a table that is gone."""


def render_docs(current: str) -> str:
    """``current`` (docs/config.md) with every generated block filled in."""
    tables = doc_tables()
    found = [m["name"] for m in BLOCK.finditer(current)]
    missing = [name for name in tables if name not in found]
    unknown = [name for name in found if name not in tables]
    problems = [
        f"{DOCS}: no block for [{name}]: add the two lines "
        f"'<!-- BEGIN GENERATED {name} -->' and '<!-- END GENERATED {name} -->' "
        f"where its table belongs, then run `{COMMAND}`"
        for name in missing
    ] + [
        f"{DOCS}: block '{name}' names no table of the configuration: remove it" for name in unknown
    ]
    if problems:
        raise DocsLayoutError("\n".join(problems))
    return BLOCK.sub(lambda m: m["begin"] + tables[m["name"]] + m["end"], current)


# --- command line ------------------------------------------------------------------------


def outputs(root: Path = ROOT) -> dict[Path, str]:
    """What each generated file should hold, by path relative to ``root``."""
    return {
        REFERENCE: render_reference(),
        DOCS: render_docs((root / DOCS).read_text(encoding="utf-8")),
    }


def drift(root: Path = ROOT) -> str:
    """A unified diff of every generated file against what it should hold ("" when none)."""
    out: list[str] = []
    for rel, wanted in outputs(root).items():
        path = root / rel
        have = path.read_text(encoding="utf-8") if path.exists() else ""
        if have != wanted:
            out += difflib.unified_diff(
                have.splitlines(keepends=True),
                wanted.splitlines(keepends=True),
                f"{rel} (in the repository)",
                f"{rel} (generated)",
            )
    return "".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gitopsd.config_reference",
        description="Generate config/reference.toml and the key tables of docs/config.md.",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="write the generated files")
    mode.add_argument("--check", action="store_true", help="exit 1 with a diff when they drift")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this)")
    args = parser.parse_args(argv)
    missing = undocumented()
    if missing:
        print(
            "fields without a description (add a docstring after each in gitopsd/config.py): "
            + ", ".join(missing),
            file=sys.stderr,
        )
        return 1
    try:
        if args.check:
            diff = drift(args.root)
            if diff:
                print(diff, end="")
                print(f"\nthe generated files are out of date: run `{COMMAND}`", file=sys.stderr)
                return 1
            return 0
        for rel, text in outputs(args.root).items():
            (args.root / rel).write_text(text, encoding="utf-8")
            print(f"wrote {rel}")
    except DocsLayoutError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
