"""The ECS backend builds an app's gates once (the built-in cloudwatch type, a plugin's
type through the hook), and an unknown gate type stops the pass at plan, before any
AWS call."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest

from gitopsd.backends.ecs.backend import EcsBackend
from gitopsd.config import AppConfig, AwsConfig
from gitopsd.errors import PermanentError
from gitopsd.gates import GateContext, GateResult
from gitopsd.gates.cloudwatch import CloudWatchGate
from gitopsd.plugins import PluginRegistry, hookimpl
from gitopsd.state import StateDir

CLOUDWATCH = {
    "name": "errors",
    "cloudwatch": {
        "queries": [{"Id": "e", "Expression": "1"}],
        "threshold": 1,
        "comparison": "GreaterThanThreshold",
    },
}


class Always:
    async def check(self, context: GateContext) -> GateResult:
        return GateResult(True, "fine")


class Plugin:
    @hookimpl
    def gitopsd_gate(self, name: str, type: str, options: Mapping[str, Any]) -> object | None:
        return Always() if type == "always" else None


def app(*gates: dict[str, Any]) -> AppConfig:
    return AppConfig.model_validate({"name": "a", "source": "s", "cluster": "c", "gates": gates})


def backend(tmp_path: Path) -> EcsBackend:
    registry = PluginRegistry.discover({}, extra={"always": Plugin()})
    aws = AwsConfig(region="us-east-1", endpoint_url="http://127.0.0.1:9")  # never called
    return EcsBackend(aws, StateDir(tmp_path), gate_plugins=registry.gate)


def test_gates_are_built_once_per_app(tmp_path: Path) -> None:
    b = backend(tmp_path)
    a = app(CLOUDWATCH, {"name": "fine", "type": "always"})
    gates = b.gates(a)
    assert [(c.name, type(g)) for c, g in gates] == [
        ("errors", CloudWatchGate),
        ("fine", Always),
    ]
    assert b.gates(a) is gates


def test_an_unknown_gate_type_stops_the_plan_before_any_aws_call(tmp_path: Path) -> None:
    b = backend(tmp_path)
    with pytest.raises(PermanentError, match="no plugin provides gate type 'prometheus'"):
        anyio.run(b.plan, app({"name": "p99", "type": "prometheus"}), [], None)
