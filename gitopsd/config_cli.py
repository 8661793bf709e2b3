"""``gitopsd config check`` and ``gitopsd config show``: the configuration, before anything runs.

Why: an operator wants to know that a file is valid before a deploy picks it up
(CI, a pre-commit hook), and what gitopsd actually runs with once defaults and
the environment are applied, without the secrets in it ending up in a terminal
log or a ticket.

``check`` validates the file and each enabled plugin's options and contacts
neither Git nor AWS: it reads the configuration (from ``--config``, else where
:mod:`gitopsd.config_source` finds it) and asks the plugins, nothing else.

``show`` prints the effective configuration (:func:`gitopsd.config_reference.to_document`:
every key, defaults filled in, ``$GITOPSD_HTTP_ADDRESS`` applied) as TOML or JSON,
and the ``OTEL_*`` variables that override ``[telemetry]``. Secrets go through the
one redaction mechanism (:mod:`gitopsd.redact`): the values that are secret are
*registered* as the agent registers them (``apps[].secret_vars`` values, the
options each plugin registers while it validates them, OTLP header values), and
the text is redacted, which also masks credentials in URLs
(``https://user:***@host``). Values of ``*_env`` / ``*_file`` keys are names and
paths, not secrets: they are shown.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

# Registered on every CLI start (``gitopsd --help`` included): the modules below are imported
# by the commands when they run, so that start-up stays fast (tests/test_startup.py).
if TYPE_CHECKING:
    from gitopsd.config import Config
    from gitopsd.plugins import PluginConfigError, PluginRegistry

EXIT_OK = 0

_PLUGIN_PROBLEM = re.compile(r"^\s*plugins\.(?P<name>[^.:\s]+)", re.MULTILINE)


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add ``gitopsd config check|show`` to the main CLI (``common``: --config, logging...)."""
    parser = subparsers.add_parser(
        "config", help="check the configuration, or show the effective one (secrets masked)"
    )
    actions = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    p = actions.add_parser(
        "check",
        parents=[common],
        help="validate the configuration and each enabled plugin's options; no Git or AWS call; "
        "exit 0 valid, 2 invalid",
    )
    p.set_defaults(func=cmd_check)
    p = actions.add_parser(
        "show",
        parents=[common],
        help="print the effective configuration (defaults filled in) with secrets masked",
    )
    p.add_argument("-o", "--output", choices=["toml", "json"], default="toml")
    p.set_defaults(func=cmd_show)


def _plugins(cfg: Config) -> tuple[PluginRegistry, PluginConfigError | None]:
    """The plugins found, given their options (they validate them and register their secrets),
    and the refusal naming ``plugins.NAME.key`` for each bad option, if any."""
    from gitopsd.plugins import PluginConfigError, PluginRegistry

    registry = PluginRegistry.discover(cfg.plugins)
    try:
        registry.configure()
    except PluginConfigError as exc:
        return registry, exc
    return registry, None


def unasked(cfg: Config, registry: PluginRegistry) -> list[str]:
    """``[plugins.NAME]`` tables that no plugin validated: disabled, or no such plugin."""
    found = set(registry.names())
    return [n for n in cfg.plugins if n not in found or not registry.enabled(n)]


def _unknown_plugins(cfg: Config, registry: PluginRegistry) -> list[str]:
    found = registry.names()
    return [
        f"plugins.{name}: no installed plugin has this name (installed: "
        f"{', '.join(found) or 'none'}), so its options are not checked"
        for name in cfg.plugins
        if name not in found
    ]


def _gate_problems(cfg: Config, registry: PluginRegistry) -> list[str]:
    """``apps[i].gates[j].type`` values no enabled plugin provides (``cloudwatch`` is built in),
    and the options a plugin refused, so ``config check`` finds them before a pass does."""
    from gitopsd.plugins import PluginConfigError

    problems = []
    for i, app in enumerate(cfg.apps):
        for j, gate in enumerate(app.gates):
            if gate.type == "cloudwatch":
                continue
            where = f"apps[{i}].gates[{j}]"
            try:
                found = registry.gate(gate.name, gate.type, dict(gate.options))
            except PluginConfigError as exc:
                problems.append(f"{where}.options: {exc}")
                continue
            if found is None:
                problems.append(
                    f"{where}.type: no enabled plugin provides gate type {gate.type!r} "
                    f"(app {app.name!r}, gate {gate.name!r}); install and enable the plugin "
                    'that does, or use type = "cloudwatch"'
                )
    return problems


def summary(label: str, cfg: Config, registry: PluginRegistry) -> str:
    """The one line ``config check`` prints for a valid configuration."""

    def count(n: int, word: str) -> str:
        return f"{n} {word}{'' if n == 1 else 's'}"

    notifiers = ", ".join(c.name for c in registry.channels) or "none"
    return (
        f"{label}: valid ({count(len(cfg.sources), 'source')}, {count(len(cfg.apps), 'app')}, "
        f"{count(len(cfg.http.webhooks), 'webhook')}; notifiers: {notifiers})"
    )


def cmd_check(args: argparse.Namespace) -> int:
    from gitopsd import config_source
    from gitopsd.errors import ConfigError

    source = config_source.resolve(args.config)
    cfg = config_source.load(source)
    registry, refusal = _plugins(cfg)
    if refusal is not None:
        raise ConfigError(f"{source.label}: invalid plugin options\n  {refusal}")
    gates = _gate_problems(cfg, registry)
    if gates:
        raise ConfigError(f"{source.label}: invalid gates\n  " + "\n  ".join(gates))
    print(summary(source.label, cfg, registry))
    for warning in _unknown_plugins(cfg, registry):
        print(f"gitopsd: warning: {source.label}: {warning}", file=sys.stderr)
    return EXIT_OK


def register_secrets(cfg: Config, environ: Mapping[str, str]) -> tuple[set[str], str | None]:
    """Register every secret value ``show`` could print, as the agent does when it reads them.

    Returns the plugin tables no plugin vouched for (a refusal, a disabled or unknown
    plugin: their own options are then masked whole, since nothing said which are
    secret) and the refusal's message.
    """
    from gitopsd.redact import REDACTOR

    for app in cfg.apps:
        REDACTOR.register_all(app.vars[n] for n in app.secret_vars if n in app.vars)
    for name, value in environ.items():
        if name.startswith("OTEL_") and "HEADERS" in name:
            REDACTOR.register_all(v.partition("=")[2].strip() for v in value.split(","))
    if cfg.telemetry.headers_env:
        headers = environ.get(cfg.telemetry.headers_env, "")
        REDACTOR.register_all(v.partition("=")[2].strip() for v in headers.split(","))
    registry, refusal = _plugins(cfg)
    masked = set(unasked(cfg, registry))
    if refusal is None:
        return masked, None
    masked |= {m["name"] for m in _PLUGIN_PROBLEM.finditer(f"  {refusal}")}
    return masked, str(refusal)


def effective(cfg: Config, masked: set[str]) -> dict[str, Any]:
    """The configuration as data, the own options of the plugins in ``masked`` masked."""
    from gitopsd.alerts import ChannelOptions
    from gitopsd.config_reference import to_document
    from gitopsd.redact import MASK

    doc = to_document(cfg)
    plugins: dict[str, Any] = doc.get("plugins") or {}
    for name in masked & set(plugins):
        plugins[name] = {
            k: v if k == "enabled" or k in ChannelOptions.KEYS else MASK
            for k, v in plugins[name].items()
        }
    return doc


def _without_none(value: Any) -> Any:
    """TOML has no null: unset keys are left out."""
    if isinstance(value, Mapping):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def render(cfg: Config, label: str, output: str, environ: Mapping[str, str]) -> tuple[str, str]:
    """The text ``show`` prints (redacted) and its warnings for stderr (redacted)."""
    import tomli_w

    from gitopsd.redact import REDACTOR

    masked, problem = register_secrets(cfg, environ)
    doc = effective(cfg, masked)
    otel = [f"{k}={v}" for k, v in sorted(environ.items()) if k.startswith("OTEL_")]
    notes = []
    if problem is not None:
        notes.append(
            f"{label}: a plugin refused its options, so its own options are masked "
            f"(`gitopsd config check` says why):\n  {problem}"
        )
    if output == "json":
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
        if otel:
            notes.append("the environment overrides [telemetry]: " + ", ".join(otel))
    else:
        head = [f"# The effective configuration of {label}: defaults filled in, secrets masked."]
        head += [f"# The environment overrides [telemetry]: {v}" for v in otel]
        text = "\n".join(head) + "\n\n" + tomli_w.dumps(_without_none(doc))
    return REDACTOR.redact(text), REDACTOR.redact("\n".join(notes))


def cmd_show(args: argparse.Namespace) -> int:
    from gitopsd import config_source

    source = config_source.resolve(args.config)
    cfg = config_source.load(source)
    text, notes = render(cfg, source.label, args.output, os.environ)
    print(text, end="")
    if notes:
        print(f"gitopsd: warning: {notes}", file=sys.stderr)
    return EXIT_OK
