"""``apps[].gates`` in the configuration: the shape gitopsd accepts and the errors that
name the key (a bad comparison, a query not in GetMetricData's shape, a missing table)."""

from __future__ import annotations

from typing import Any

import pytest

from gitopsd.config import parse_config
from gitopsd.errors import ConfigError

QUERY: dict[str, Any] = {
    "Id": "errors",
    "MetricStat": {
        "Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": "HTTPCode_Target_5XX_Count"},
        "Stat": "Sum",
    },
}


def config(*gates: dict[str, Any]) -> dict[str, Any]:
    return {
        "sources": [{"name": "s", "url": "git://127.0.0.1/x.git"}],
        "apps": [{"name": "a", "source": "s", "cluster": "c", "gates": list(gates)}],
    }


def cloudwatch(**keys: Any) -> dict[str, Any]:
    table = {"queries": [QUERY], "threshold": 5, "comparison": "GreaterThanThreshold"}
    return {"name": "errors", "cloudwatch": {**table, **keys}}


def errors_of(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "gitopsd.toml")
    return str(info.value)


def test_a_cloudwatch_gate_with_defaults() -> None:
    (gate,) = parse_config(config(cloudwatch())).apps[0].gates
    assert (gate.type, gate.interval, gate.failure_limit) == ("cloudwatch", 60.0, 1)
    assert gate.during == ["progressing", "bake"]
    assert gate.services is None
    assert gate.cloudwatch is not None
    assert (gate.cloudwatch.period, gate.cloudwatch.lookback) == (60, 300.0)


def test_a_plugin_gate_takes_options() -> None:
    data = config(
        {"name": "p99", "type": "prometheus", "options": {"query": "x"}, "interval": "30s"}
    )
    (gate,) = parse_config(data).apps[0].gates
    assert (gate.type, gate.options, gate.interval) == ("prometheus", {"query": "x"}, 30.0)


def test_an_unknown_comparison_is_named() -> None:
    text = errors_of(config(cloudwatch(comparison="Above")))
    assert "apps[0].gates[0].cloudwatch.comparison: must be one of" in text
    assert "GreaterThanThreshold" in text


def test_a_query_not_in_getmetricdatas_shape_is_named() -> None:
    bad = {**QUERY, "MetricStat": {**QUERY["MetricStat"], "Statistic": "Sum"}}
    text = errors_of(config(cloudwatch(queries=[bad])))
    assert "apps[0].gates[0].cloudwatch.queries:" in text
    assert 'Unknown parameter in [0].MetricStat: "Statistic"' in text


def test_a_query_needs_an_id_and_one_of_metricstat_or_expression() -> None:
    text = errors_of(config(cloudwatch(queries=[{"Id": "x"}])))
    assert "[0]: give exactly one of MetricStat and Expression" in text
    text = errors_of(config(cloudwatch(queries=[{"Expression": "1"}])))
    assert 'Missing required parameter in [0]: "Id"' in text


def test_metric_math_is_accepted() -> None:
    math = [{**QUERY, "ReturnData": False}, {"Id": "rate", "Expression": "errors / 60"}]
    (gate,) = parse_config(config(cloudwatch(queries=math))).apps[0].gates
    assert gate.cloudwatch is not None
    assert len(gate.cloudwatch.queries) == 2


def test_type_and_tables_must_agree() -> None:
    assert "a cloudwatch gate needs a cloudwatch table" in errors_of(config({"name": "g"}))
    wrong = {**cloudwatch(), "type": "prometheus"}
    assert 'cloudwatch: only for type = "cloudwatch"' in errors_of(config(wrong))


def test_gate_names_are_unique_and_phases_known() -> None:
    assert "gate names must be unique" in errors_of(config(cloudwatch(), cloudwatch()))
    text = errors_of(config({**cloudwatch(), "during": ["canary"]}))
    assert "apps[0].gates[0].during[0]" in text
