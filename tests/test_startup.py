"""Start-up: ``gitopsd --help`` and ``gitopsd version`` import none of the heavy libraries.

Every CLI call pays for what ``gitopsd.cli`` imports before the command runs: AWS's
SDK, OpenTelemetry's, pydantic, dulwich and structlog cost seconds on a cold start.
The commands import them when they run. Checked by what a fresh interpreter has in
``sys.modules`` afterwards (deterministic, unlike a time).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CONFIG = Path(__file__).resolve().parents[1] / "config" / "example.toml"

#: Top-level packages no command needs before it runs.
HEAVY = (
    "aiobotocore",
    "aiohttp",
    "anyio",
    "botocore",
    "dulwich",
    "opentelemetry",
    "pluggy",
    "prometheus_client",
    "pydantic",
    "rich",
    "structlog",
    "tenacity",
    "yaml",
)
#: gitopsd's own modules that pull those in.
HEAVY_OWN = ("gitopsd.config", "gitopsd.backends", "gitopsd.engine", "gitopsd.telemetry")

PROBE = """
import json, sys
from gitopsd.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def imported(*args: str) -> tuple[int, set[str]]:
    """Run ``gitopsd ARGS`` in a fresh interpreter: its exit status and imported modules."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    return int(report["code"] or 0), set(report["modules"])


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(
        m
        for m in modules
        if m.split(".")[0] in HEAVY or any(m == o or m.startswith(o + ".") for o in HEAVY_OWN)
    )


@pytest.mark.parametrize(
    "args",
    [("--help",), ("--version",), ("version",), ("sync", "--help"), ("config", "--help")],
)
def test_help_and_version_import_nothing_heavy(args: tuple[str, ...]) -> None:
    code, modules = imported(*args)
    assert code == 0
    assert heavy_in(modules) == []


def test_validate_needs_no_aws_client_and_no_opentelemetry_sdk() -> None:
    """A render reads botocore's ECS model, never calls AWS; nothing is exported."""
    code, modules = imported("validate", "--dir", str(EXAMPLES), "-c", str(CONFIG))
    assert code == 0
    assert not [m for m in modules if m.startswith("opentelemetry.sdk")]
    assert not [m for m in modules if m.split(".")[0] in ("aiobotocore", "aiohttp")]
    assert "botocore.client" not in modules


def test_every_command_is_still_registered() -> None:
    import argparse

    from gitopsd.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    commands = set(sub.choices)
    for name in ("validate", "render", "diff", "sync", "run", "status", "config", "version"):
        assert name in commands
    assert {"local-aws", "iam-policy"} <= set(commands)
