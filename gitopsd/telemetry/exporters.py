"""Which OpenTelemetry exporters ``[telemetry]`` and ``OTEL_*`` ask for, without the SDK.

Why: importing and setting up the OpenTelemetry SDK costs a one-shot command
(``validate``, ``diff``, ``sync``) a noticeable share of its start-up, and most runs
export nothing. The CLI asks :func:`exports_anything` first and sets the SDK up
(:mod:`gitopsd.telemetry.setup`) only when something is to be exported; the agent
always sets it up (its ``/metrics`` reads the SDK). The standard variables win over
the file, as in every OpenTelemetry SDK.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gitopsd.config import TelemetryConfig


def chosen(
    env: Mapping[str, str], var: str, configured: Sequence[str] | None, endpoint: bool
) -> list[str]:
    """The exporters ``var`` names (``none`` dropped), else the configured ones, else OTLP
    when an endpoint is set."""
    raw = env.get(var)
    if raw is not None:
        names = [n.strip().lower() for n in raw.split(",") if n.strip()]
        return [n for n in names if n != "none"]
    if configured is not None:
        return list(configured)
    return ["otlp"] if endpoint else []


def _disabled(env: Mapping[str, str]) -> bool:
    return env.get("OTEL_SDK_DISABLED", "").lower() == "true"


def _endpoint(config: TelemetryConfig, env: Mapping[str, str], signal: str) -> bool:
    return bool(
        (config.endpoint or "").rstrip("/")
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or env.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    )


def trace_exporters(config: TelemetryConfig, env: Mapping[str, str]) -> list[str]:
    """The span exporters asked for (``otlp``, ``console``, or unknown names to warn about)."""
    if _disabled(env):
        return []
    configured = list(config.traces_exporter) if config.traces_exporter is not None else None
    return chosen(env, "OTEL_TRACES_EXPORTER", configured, _endpoint(config, env, "TRACES"))


def metric_exporters(config: TelemetryConfig, env: Mapping[str, str]) -> list[str]:
    """The pushed metric exporters asked for (the agent's Prometheus reader comes on top)."""
    if _disabled(env):
        return []
    configured = list(config.metrics_exporter) if config.metrics_exporter is not None else None
    return chosen(env, "OTEL_METRICS_EXPORTER", configured, _endpoint(config, env, "METRICS"))


def exports_anything(config: TelemetryConfig, env: Mapping[str, str]) -> bool:
    """Whether a one-shot command has traces or metrics to send anywhere."""
    return bool(trace_exporters(config, env) or metric_exporters(config, env))
