"""Traces, metrics and logs of a real sync (CLI in-process, local ECS endpoint, git daemon).

Spans are read with OpenTelemetry's in-memory exporter, added to the process's tracer
provider behind the same redacting exporter every real exporter sits behind; metrics are
read from the Prometheus registry that the agent's ``/metrics`` serves, with the
Prometheus text parser.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from gitopsd.config import TelemetryConfig
from gitopsd.telemetry.setup import RedactingSpanExporter, Telemetry, current, setup_telemetry

from .conftest import Env

WEB_TD = "apps/web/base/task-definition.yaml"

_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    t = current() or setup_telemetry(TelemetryConfig(), env={})
    if not getattr(t, "_test_exporter", False):
        t.tracer_provider.add_span_processor(SimpleSpanProcessor(RedactingSpanExporter(_EXPORTER)))
        t._test_exporter = True  # type: ignore[attr-defined]
    _EXPORTER.clear()
    yield t
    _EXPORTER.clear()


def spans() -> list[ReadableSpan]:
    return list(_EXPORTER.get_finished_spans())


def children(of: ReadableSpan, all_spans: list[ReadableSpan]) -> list[ReadableSpan]:
    assert of.context is not None
    return [s for s in all_spans if s.parent is not None and s.parent.span_id == of.context.span_id]


def samples(t: Telemetry, name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for family in text_string_to_metric_families(t.prometheus_text()):
        for sample in family.samples:
            if sample.name == name:
                out.append((dict(sample.labels), float(sample.value)))
    return out


def test_a_sync_is_one_trace_with_stage_spans_and_a_span_per_aws_call(
    env: Env, telemetry: Telemetry
) -> None:
    env.aws.clear_calls()
    run = env.gitopsd("sync", "web")
    assert run.code == 0, run.out + run.err
    all_spans = spans()
    roots = [s for s in all_spans if s.name == "reconcile" and s.attributes]
    (root,) = [s for s in roots if s.attributes and s.attributes["gitopsd.app"] == "web"]
    assert root.parent is None
    attrs = dict(root.attributes or {})
    assert attrs["gitopsd.result"] == "ReconciliationSucceeded"
    assert len(str(attrs["vcs.ref.head.revision"])) == 40
    assert root.context is not None
    trace_id = root.context.trace_id
    in_trace = [s for s in all_spans if s.context is not None and s.context.trace_id == trace_id]

    stages = [s.name for s in sorted(children(root, in_trace), key=lambda s: s.start_time or 0)]
    assert stages[:3] == ["source", "render", "source"]  # fetch, render, history check
    assert stages[3:] == ["plan", "apply", "verify", "notify"]

    aws = [s for s in in_trace if s.name.startswith("ECS/")]
    ecs_calls = [c for c in env.aws.calls() if c != "GetCallerIdentity"]
    # One span per AWS call (every call of this pass; no retries happened).
    assert sorted(s.name.removeprefix("ECS/") for s in aws) == sorted(ecs_calls)
    # the account check (guard-rails) has its own span
    assert [s.name for s in in_trace if s.name.startswith("STS/")] == ["STS/GetCallerIdentity"]
    for span in aws:
        a = dict(span.attributes or {})
        assert a["rpc.system"] == "aws-api"
        assert a["rpc.service"] == "ECS"
        assert a["rpc.method"] == span.name.removeprefix("ECS/")
        assert a["gitopsd.aws.attempts"] == 1
        assert a["gitopsd.aws.throttled"] is False
        assert a.get("aws.request_id")
    writes = {s.name for s in aws if s.parent and s.parent.span_id == _stage(in_trace, "apply")}
    assert {"ECS/RegisterTaskDefinition", "ECS/CreateService"} <= writes

    (rollout,) = [s for s in in_trace if s.name == "rollout"]
    r = dict(rollout.attributes or {})
    assert r["gitopsd.result"] == "COMPLETED"
    assert str(r["aws.ecs.service_deployment.arn"]).startswith("arn:aws:ecs:")
    assert r["aws.ecs.service.name"] == "web"
    assert rollout.parent is not None
    assert rollout.parent.span_id == _stage(in_trace, "verify")
    assert any(e.name == "rollout.progress" for e in rollout.events)

    fetches = [s for s in all_spans if s.name == "git.fetch"]
    assert fetches
    f = dict(fetches[0].attributes or {})
    assert int(str(f["gitopsd.git.bytes"])) > 0
    assert int(str(f["gitopsd.git.objects"])) > 0


def _app(span: ReadableSpan) -> object:
    return (span.attributes or {}).get("gitopsd.app")


def _stage(spans_: list[ReadableSpan], name: str) -> int:
    (span,) = [s for s in spans_ if s.name == name]
    assert span.context is not None
    return int(span.context.span_id)


def test_a_failing_stage_span_carries_the_error_and_the_root_the_reason(
    env: Env, telemetry: Telemetry
) -> None:
    env.edit(WEB_TD, "image: ", "image: [")
    env.commit("web: broken YAML")
    run = env.gitopsd("sync", "web")
    assert run.code == 2
    all_spans = spans()
    (root,) = [
        s
        for s in all_spans
        if s.name == "reconcile" and (s.attributes or {})["gitopsd.app"] == "web"
    ]
    assert (root.attributes or {})["gitopsd.result"] == "RenderFailed"
    assert not root.status.is_ok
    (render,) = [s for s in children(root, all_spans) if s.name == "render"]
    assert render.status.description
    assert "task-definition.yaml" in render.status.description
    assert any(e.name == "exception" for e in render.events)


def test_metrics_of_a_sync_in_prometheus_text(env: Env, telemetry: Telemetry) -> None:
    before = {tuple(sorted(lbl.items())): v for lbl, v in samples(telemetry, "gitopsd_syncs_total")}
    assert env.gitopsd("sync", "web").code == 0
    syncs = {tuple(sorted(lbl.items())): v for lbl, v in samples(telemetry, "gitopsd_syncs_total")}
    key = (("gitopsd_app", "web"), ("gitopsd_result", "ReconciliationSucceeded"))
    assert syncs.get(key, 0) - before.get(key, 0) == 1

    durations = samples(telemetry, "gitopsd_reconcile_duration_seconds_count")
    assert any(lbl.get("gitopsd_app") == "web" and v >= 1 for lbl, v in durations)

    calls = samples(telemetry, "gitopsd_aws_calls_total")
    ok = {lbl["rpc_method"] for lbl, v in calls if lbl.get("gitopsd_outcome") == "ok" and v > 0}
    assert {"RegisterTaskDefinition", "CreateService", "DescribeServices"} <= ok

    rpc = samples(telemetry, "rpc_client_duration_seconds_count")
    assert any(lbl.get("rpc_system") == "aws-api" for lbl, _ in rpc)
    rollouts = samples(telemetry, "gitopsd_rollouts_total")
    assert any(lbl == {"gitopsd_app": "web", "gitopsd_result": "COMPLETED"} for lbl, _ in rollouts)
    fetch = samples(telemetry, "gitopsd_git_fetch_bytes_total")
    assert fetch
    assert all(v > 0 for _, v in fetch)


def test_throttled_calls_are_counted_and_marked_on_the_span(env: Env, telemetry: Telemetry) -> None:
    env.aws.arm_fault("DescribeServices", count=1)
    run = env.gitopsd("diff", "web")
    assert run.code in (0, 1), run.out + run.err
    throttled = [
        s
        for s in spans()
        if s.name == "ECS/DescribeServices" and (s.attributes or {}).get("gitopsd.aws.throttled")
    ]
    assert throttled
    assert (throttled[0].attributes or {})["gitopsd.aws.attempts"] == 2
    calls = samples(telemetry, "gitopsd_aws_calls_total")
    assert any(
        lbl.get("gitopsd_outcome") == "throttled" and lbl.get("rpc_method") == "DescribeServices"
        for lbl, _ in calls
    )


def test_log_lines_inside_a_pass_carry_app_revision_stage_and_trace_ids(
    env: Env, telemetry: Telemetry
) -> None:
    run = env.gitopsd("sync", "web", "--log-level", "info", "--log-format", "json")
    assert run.code == 0, run.err
    lines = [json.loads(line) for line in run.err.splitlines() if line.startswith("{")]
    inside = [line for line in lines if line.get("event") == "rollout.progress"]
    assert inside
    for line in inside:
        assert line["app"] == "web"
        assert len(line["revision"]) == 40
        assert line["stage"] == "verify"
        assert len(line["trace_id"]) == 32
        assert len(line["span_id"]) == 16
    done = [line for line in lines if line.get("event") == "reconcile.done"]
    (root,) = [
        s for s in spans() if s.name == "reconcile" and (s.attributes or {})["gitopsd.app"] == "web"
    ]
    assert root.context is not None
    assert done[0]["trace_id"] == format(root.context.trace_id, "032x")
