"""The gate runner on an injected clock: intervals, failure_limit, temporary and permanent
errors, phases and services; building gates (built in, from a plugin, unknown type)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import pytest

from gitopsd.config import AppConfig, GateConfig
from gitopsd.errors import PermanentError, TemporaryError
from gitopsd.gates import Gate, GateContext, GateFailure, GateResult, GateRunner, build_gates
from gitopsd.plugins import PluginRegistry, hookimpl


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Scripted:
    """A gate answering from a script: a GateResult, or an exception to raise."""

    def __init__(self, *answers: GateResult | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def check(self, context: GateContext) -> GateResult:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


OK = GateResult(True, "errors = 0", (("errors", 0.0),))
BAD = GateResult(False, "query errors = 12 > 5", (("errors", 12.0),))


def gate(**keys: Any) -> GateConfig:
    return GateConfig.model_validate({"name": "g", "type": "scripted", "interval": 60, **keys})


def context(phase: str = "progressing") -> GateContext:
    return GateContext("a", "web", "arn:sd", "arn:td", phase)


def run(runner: GateRunner, ctx: GateContext | None = None) -> GateFailure | None:
    return anyio.run(runner.run, ctx or context())


def test_a_gate_fails_after_failure_limit_failed_checks_at_its_interval() -> None:
    clock = Clock()
    scripted = Scripted(BAD, BAD)
    runner = GateRunner([(gate(failure_limit=1), scripted)], clock=clock)
    assert run(runner) is None  # one failed check is tolerated
    assert dict(runner.details()) == {"gate_g": "failed 1/2: query errors = 12 > 5"}
    clock.now += 59
    assert run(runner) is None  # not due yet: no check
    assert scripted.calls == 1
    clock.now += 1
    failure = run(runner)
    assert failure is not None
    assert failure.gate == "g"
    assert failure.message == "gate g failed 2 check(s) (failure_limit 1): query errors = 12 > 5"
    assert runner.failures["g"] == 2


def test_passing_checks_do_not_reset_the_count() -> None:
    clock = Clock()
    runner = GateRunner([(gate(failure_limit=1), Scripted(BAD, OK, BAD))], clock=clock)
    outcomes = []
    for _ in range(3):
        outcomes.append(run(runner))
        clock.now += 60
    assert outcomes[:2] == [None, None]
    assert outcomes[2] is not None
    assert [c.summary.split(":")[0] for c in runner.checks] == ["failed 1/2", "ok", "failed 2/2"]


def test_temporary_errors_are_not_failed_checks() -> None:
    clock = Clock()
    scripted = Scripted(
        TemporaryError("gate g: CloudWatch GetMetricData: Throttling: Rate exceeded"),
        TimeoutError(),
        BAD,
    )
    runner = GateRunner([(gate(failure_limit=0), scripted)], clock=clock)
    assert run(runner) is None
    assert dict(runner.details())["gate_g"].startswith("not checked (temporary: gate g: Cloud")
    clock.now += 60
    assert run(runner) is None
    assert runner.failures["g"] == 0
    clock.now += 60
    failure = run(runner)  # the first real failed check, with failure_limit 0
    assert failure is not None
    assert "failed 1 check(s) (failure_limit 0)" in failure.message


def test_a_permanent_error_fails_the_gate_at_once() -> None:
    scripted = Scripted(PermanentError("gate g: CloudWatch GetMetricData: InvalidParameter"))
    runner = GateRunner([(gate(failure_limit=5), scripted)], clock=Clock())
    failure = run(runner)
    assert failure is not None
    assert failure.message == "gate g: gate g: CloudWatch GetMetricData: InvalidParameter"


def test_gates_run_only_in_their_phases_and_for_their_services() -> None:
    bake_only = Scripted(BAD)
    runner = GateRunner([(gate(during=["bake"], failure_limit=0), bake_only)], clock=Clock())
    assert run(runner, context("progressing")) is None
    assert bake_only.calls == 0
    assert runner.next_due("progressing") is None
    assert run(runner, context("bake")) is not None
    gates: list[tuple[GateConfig, Gate]] = [(gate(services=["api"]), Scripted())]
    assert GateRunner.of(gates, "web") is None
    assert GateRunner.of(gates, "api") is not None


def app(*gates: dict[str, Any]) -> AppConfig:
    return AppConfig.model_validate({"name": "a", "source": "s", "cluster": "c", "gates": gates})


def test_an_unknown_gate_type_is_a_permanent_error_naming_the_gate() -> None:
    with pytest.raises(PermanentError, match=r"gates\[0\] \(p99\): no plugin provides gate type"):
        build_gates(app({"name": "p99", "type": "prometheus"}), cloudwatch=lambda c: Scripted())


class PrometheusPlugin:
    """A plugin providing gate type "prometheus" through the gitopsd_gate hook."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, Mapping[str, Any]]] = []

    @hookimpl
    def gitopsd_gate(self, name: str, type: str, options: Mapping[str, Any]) -> object | None:
        self.asked.append((name, type, options))
        if type != "prometheus":
            return None
        if "query" not in options:
            raise ValueError("options.query: required")
        return Scripted(OK)


def test_a_plugin_provides_a_gate_type_through_the_hook() -> None:
    plugin = PrometheusPlugin()
    registry = PluginRegistry.discover({}, extra={"prom": plugin})
    built = build_gates(
        app({"name": "p99", "type": "prometheus", "options": {"query": "up"}}),
        cloudwatch=lambda c: Scripted(),
        plugins=registry.gate,
    )
    ((config, made),) = built
    assert config.name == "p99"
    assert isinstance(made, Gate)
    assert plugin.asked == [("p99", "prometheus", {"query": "up"})]
    with pytest.raises(Exception, match=r"gates p99 \(type prometheus, plugin prom\): options"):
        build_gates(
            app({"name": "p99", "type": "prometheus"}),
            cloudwatch=lambda c: Scripted(),
            plugins=registry.gate,
        )
