"""The OpenTelemetry SDK, set up once per process from ``[telemetry]`` and ``OTEL_*``.

Everything else records through the API (:mod:`gitopsd.telemetry.instruments`);
this module decides where it goes:

- traces: OTLP over HTTP (protobuf) and/or the console exporter, batched,
  every span passing through :class:`RedactingSpanExporter` (the one
  redaction mechanism, :mod:`gitopsd.redact`) before it leaves the process;
- metrics: a Prometheus reader on a registry of our own, which the agent's
  ``/metrics`` renders (:meth:`Telemetry.prometheus_text`), and OTLP/console
  push readers.

The standard variables win over the file, as in every OpenTelemetry SDK:
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_EXPORTER`` /
``OTEL_METRICS_EXPORTER`` (``otlp``, ``console``, ``none``, comma-separated),
``OTEL_EXPORTER_OTLP_ENDPOINT`` (and the per-signal ``..._TRACES_ENDPOINT`` /
``..._METRICS_ENDPOINT``), ``OTEL_EXPORTER_OTLP_HEADERS``,
``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``,
``OTEL_METRIC_EXPORT_INTERVAL``, ``OTEL_SDK_DISABLED``.

OpenTelemetry's global providers can be set once per process; a SIGHUP reload
keeps the running telemetry (a changed ``[telemetry]`` needs a restart, and the
agent says so).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import structlog
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import Event as SpanEvent
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Status
from opentelemetry.util.types import Attributes
from prometheus_client import CollectorRegistry, generate_latest

from gitopsd.config import TelemetryConfig
from gitopsd.redact import redact, register
from gitopsd.telemetry.exporters import metric_exporters, trace_exporters

log = structlog.get_logger(__name__)

#: Histogram buckets, in seconds: a reconcile pass (with a rollout wait) and one API call.
PASS_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
FETCH_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def _redact_attributes(attributes: Attributes) -> Attributes:
    if not attributes:
        return attributes
    out: dict[str, object] = {}
    for key, value in attributes.items():
        if isinstance(value, str):
            out[key] = redact(value)
        elif isinstance(value, tuple | list) and value and isinstance(value[0], str):
            out[key] = tuple(redact(v) for v in value if isinstance(v, str))
        else:
            out[key] = value
    return out  # type: ignore[return-value]


def redact_span(span: ReadableSpan) -> ReadableSpan:
    """A copy of ``span`` with every string attribute, event and status text redacted."""
    status = span.status
    if status.description:
        status = Status(status.status_code, redact(status.description))
    return ReadableSpan(
        name=redact(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_redact_attributes(span.attributes),
        events=[
            SpanEvent(e.name, _redact_attributes(e.attributes), e.timestamp) for e in span.events
        ],
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingSpanExporter(SpanExporter):
    """Hands spans to ``inner`` only after :func:`redact_span`."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([redact_span(s) for s in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def _headers(config: TelemetryConfig, env: Mapping[str, str]) -> dict[str, str] | None:
    if not config.headers_env:
        return None
    raw = env.get(config.headers_env, "")
    headers: dict[str, str] = {}
    for part in raw.split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            headers[key.strip()] = value.strip()
            register(value.strip())
    return headers


@dataclass
class Telemetry:
    """The process's providers, and the Prometheus registry behind ``/metrics``."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    registry: CollectorRegistry
    traces: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    settings: TelemetryConfig = field(default_factory=TelemetryConfig)

    def prometheus_text(self) -> str:
        """Every metric in the Prometheus text exposition format (0.0.4)."""
        return generate_latest(self.registry).decode()

    def flush(self, timeout: float = 5.0) -> None:
        self.tracer_provider.force_flush(int(timeout * 1000))
        self.meter_provider.force_flush(int(timeout * 1000))

    def shutdown(self) -> None:
        """Flush and stop the exporters (at exit)."""
        try:
            self.tracer_provider.shutdown()
            self.meter_provider.shutdown()
        except Exception:  # an exporter's receiver gone at exit: nothing left to do
            log.warning("telemetry.shutdown_failed", exc_info=True)


_CURRENT: Telemetry | None = None


def current() -> Telemetry | None:
    """The telemetry set up in this process, if any."""
    return _CURRENT


def setup_telemetry(
    config: TelemetryConfig,
    *,
    env: Mapping[str, str] | None = None,
    version: str = "",
    span_exporters: Sequence[SpanExporter] = (),
    metric_readers: Sequence[MetricReader] = (),
) -> Telemetry:
    """Build the providers and install them as OpenTelemetry's globals (once per process:
    a second call returns the first setup). ``span_exporters`` / ``metric_readers`` are
    added to what the settings ask for (tests use in-memory ones)."""
    global _CURRENT
    if _CURRENT is not None:
        if config != _CURRENT.settings:
            log.warning(
                "telemetry.reload_ignored",
                hint="[telemetry] changes take effect when gitopsd restarts",
            )
        return _CURRENT
    env = os.environ if env is None else env
    service = env.get("OTEL_SERVICE_NAME") or config.service_name
    attributes: dict[str, str] = {SERVICE_NAME: service}
    if version:
        attributes[SERVICE_VERSION] = version
    resource = Resource.create(attributes)

    base = (config.endpoint or "").rstrip("/")
    env_endpoint = bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    headers = _headers(config, env)
    for value in (env.get("OTEL_EXPORTER_OTLP_HEADERS") or "").split(","):
        register(value.partition("=")[2].strip())

    sampler = None
    if "OTEL_TRACES_SAMPLER" not in env:
        sampler = ParentBased(TraceIdRatioBased(config.sample_ratio))
    tracer_provider = TracerProvider(resource=resource, sampler=sampler)
    traces = trace_exporters(config, env)
    exporters: list[SpanExporter] = list(span_exporters)
    for name in traces:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            explicit = base and not env_endpoint and "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" not in env
            exporters.append(
                OTLPSpanExporter(
                    endpoint=f"{base}/v1/traces" if explicit else None, headers=headers
                )
            )
        elif name == "console":
            exporters.append(ConsoleSpanExporter(out=sys.stderr))
        else:
            log.warning("telemetry.unknown_exporter", signal="traces", exporter=name)
    for exporter in exporters:
        tracer_provider.add_span_processor(BatchSpanProcessor(RedactingSpanExporter(exporter)))

    registry = CollectorRegistry(auto_describe=True)
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    readers: list[MetricReader] = [
        PrometheusMetricReader(registry=registry, scope_info_enabled=False),
        *metric_readers,
    ]
    pushed = metric_exporters(config, env)
    interval = None
    if "OTEL_METRIC_EXPORT_INTERVAL" not in env:
        interval = config.metric_export_interval * 1000
    for name in pushed:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            explicit = (
                base and not env_endpoint and "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT" not in env
            )
            readers.append(
                PeriodicExportingMetricReader(
                    OTLPMetricExporter(
                        endpoint=f"{base}/v1/metrics" if explicit else None, headers=headers
                    ),
                    export_interval_millis=interval,
                )
            )
        elif name == "console":
            readers.append(
                PeriodicExportingMetricReader(
                    ConsoleMetricExporter(out=sys.stderr), export_interval_millis=interval
                )
            )
        else:
            log.warning("telemetry.unknown_exporter", signal="metrics", exporter=name)
    views = [
        View(
            instrument_name="gitopsd.reconcile.duration",
            aggregation=ExplicitBucketHistogramAggregation(PASS_BUCKETS),
        ),
        View(
            instrument_name="rpc.client.duration",
            aggregation=ExplicitBucketHistogramAggregation(CALL_BUCKETS),
        ),
        View(
            instrument_name="gitopsd.git.fetch.duration",
            aggregation=ExplicitBucketHistogramAggregation(FETCH_BUCKETS),
        ),
    ]
    meter_provider = MeterProvider(resource=resource, metric_readers=readers, views=views)
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    _CURRENT = Telemetry(tracer_provider, meter_provider, registry, traces, pushed, config)
    log.debug("telemetry.ready", service=service, traces=traces, metrics=["prometheus", *pushed])
    return _CURRENT
